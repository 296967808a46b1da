/*
 * main.c - `quant`, the quantd client: a table of commands, each `int cmd_<name>(argc, argv)`.
 */
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "qd/version.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("quant %s\n", qd_version_string());
    return 0;
}

static int cmd_help(int argc, char **argv);

static const command commands[] = {
    {"store", cmd_store, "work on a local store: put, get, stat, ls, rm, fsck, gc, info"},
    {"token", cmd_token, "API tokens for quantd: create, list, revoke (offline, on the store)"},
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

int main(int argc, char **argv)
{
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
