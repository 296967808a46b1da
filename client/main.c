/*
 * main.c - `quant`, the quantd client: a table of commands, each `int cmd_<name>(argc, argv)`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "qd/log.h"
#include "qd/version.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static int cmd_version(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--json")) { /* {"version": "..."}: the version string has no quotes */
        printf("{\"version\": \"%s\"}\n", qd_version_string());
        return 0;
    }
    printf("quant %s\n", qd_version_string());
    return 0;
}

static int cmd_help(int argc, char **argv);

static const command commands[] = {
    {"store", cmd_store, "work on a local store: put, get, stat, ls, rm, fsck, gc, info"},
    {"rows", cmd_rows, "quantize or dequantize raw f32 rows to/from a ggml type"},
    {"kernels", cmd_kernels, "the kernel variant in use and the CPU features seen"},
    {"quantize", cmd_quantize, "quantize a model file into a GGUF, or NAME:TAG on a registry (a job)"},
    {"imatrix", cmd_imatrix, "collect an importance matrix over a calibration set (llama.cpp .dat or GGUF)"},
    {"inspect", cmd_inspect, "show the metadata and tensors of a GGUF, safetensors or llama2.c model"},
    {"key", cmd_key, "signing keys: gen, show, export, import; list, publish, revoke, rotate on a registry"},
    {"policy", cmd_policy, "trust policies: new, check"},
    {"sign", cmd_sign, "sign files: an in-toto statement in a DSSE envelope, as a Sigstore bundle"},
    {"verify", cmd_verify, "verify a bundle against a trust policy and the files (exit 4 when it fails)"},
    {"run", cmd_run, "greedy decode from BOS with the reference runtime (token ids)"},
    {"validate", cmd_validate, "validate a variant against its reference (KLD, top-1, PPL; policy verdict)"},
    {"token", cmd_token, "API tokens for quantd: create, list, revoke (offline, on the store)"},
    {"log", cmd_log, "the signed log: init, publish, tag, checkpoint, timestamp, prove, verify (docs/LOG.md)"},
    {"audit", cmd_audit_main, "audit a daemon's indexes or a log: query, lineage (table, tree, json, dot), reindex"},
    {"push", cmd_push, "push files to a registry as a ModelPack artifact; --sign attaches a signature bundle"},
    {"pull", cmd_pull, "pull an artifact, verified against the trust policy before any weight is fetched"},
    {"jobs", cmd_jobs, "quantize jobs on a registry: ls, show, cancel, follow"},
    {"card", cmd_card, "a Markdown model card from an artifact's verified signed statement"},
    {"version", cmd_version, "print the version"},
    {"help", cmd_help, "list the commands"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: quant <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'quant <command> --help' describes one command. Exit codes: 0 ok, 1 error, 2 usage, 3 not found,\n"
               "4 verification failed, 5 daemon unreachable, 6 conflict, 7 not a usable store, 8 full.\n");
}

static int cmd_help(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    usage(stdout);
    return 0;
}

/* The library's log lines: warnings and errors on stderr; QUANT_VERBOSE=1 adds info, 2 adds debug. */
static void log_to_stderr(int level, const char *module, const char *line, void *payload)
{
    (void)payload;
    fprintf(stderr, "quant: %s: %s: %s\n", qd_log_level_name(level), module ? module : "-", line);
}

int main(int argc, char **argv)
{
    const char *verbose = getenv("QUANT_VERBOSE");
    qd_log_set_sink(log_to_stderr, NULL);
    qd_log_set_level(verbose && *verbose ? QD_LOG_WARN + atoi(verbose) : QD_LOG_WARN);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return cmd_help(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--version"))
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "quant: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
