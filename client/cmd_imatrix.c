/*
 * cmd_imatrix.c - `quant imatrix`: collect llama.cpp's importance matrix over a calibration set and write it as
 * llama.cpp's legacy imatrix.dat or its GGUF imatrix (docs/CALIBRATION.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "qd/err.h"
#include "qd/gptq.h"

static int usage(FILE *f)
{
    fprintf(f, "usage: quant imatrix --model M --calib SET --out FILE [--format dat|gguf] [--val SET]\n"
               "                     [--process-output] [-t N]\n\n"
               "Runs the reference runtime over the calibration set and writes, for every matmul, the sum of x^2 per\n"
               "input column and the number of positions (the mean is llama.cpp's importance).\n"
               "  M              any model the engine reads (GGUF, safetensors, llama2.c)\n"
               "  SET            a QDVALSET file, or sample:N:LEN:SEED (N sequences of LEN tokens sampled from M\n"
               "                 from BOS with SEED)\n"
               "  --format       gguf (llama.cpp's GGUF imatrix: <name>.in_sum2, <name>.counts) or dat (the legacy\n"
               "                 imatrix.dat); default: gguf when FILE ends in .gguf, else dat\n"
               "  --val SET      refuse a calibration set that shares a sequence with this validation set\n"
               "  --process-output  include output.weight (as llama-imatrix --process-output)\n");
    return f == stdout ? EXIT_OK_ : EXIT_USAGE;
}

int cmd_imatrix(int argc, char **argv)
{
    const char *model = NULL, *calib = NULL, *out = NULL, *format = NULL, *vals = NULL;
    bool with_output = false;
    int threads = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout);
        if (!strcmp(a, "--process-output")) {
            with_output = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "quant imatrix: %s needs a value\n", a);
            return EXIT_USAGE;
        }
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--calib"))
            calib = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--format"))
            format = v;
        else if (!strcmp(a, "--val"))
            vals = v;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < 1 || n > 256) {
                fprintf(stderr, "quant imatrix: -t wants 1..256\n");
                return EXIT_USAGE;
            }
            threads = (int)n;
        } else {
            fprintf(stderr, "quant imatrix: unknown option %s\n", a);
            return usage(stderr);
        }
        i++;
    }
    if (!model || !calib || !out) {
        fprintf(stderr, "quant imatrix: --model, --calib and --out are required\n");
        return usage(stderr);
    }
    qd_imatrix_format f;
    size_t ol = strlen(out);
    if (!format)
        f = ol > 5 && !strcmp(out + ol - 5, ".gguf") ? QD_IMATRIX_GGUF : QD_IMATRIX_DAT;
    else if (!strcmp(format, "gguf"))
        f = QD_IMATRIX_GGUF;
    else if (!strcmp(format, "dat"))
        f = QD_IMATRIX_DAT;
    else {
        fprintf(stderr, "quant imatrix: --format dat|gguf\n");
        return EXIT_USAGE;
    }
    qd_llama_model *m = NULL;
    qd_valset *val = NULL;
    qd_calibset cs;
    qd_actstats *s = NULL;
    int rc, ec = EXIT_OK_;
    memset(&cs, 0, sizeof(cs));
    if ((rc = qd_llama_load_model(&m, model)) < 0)
        return qd_fail(rc, "imatrix: load model");
    if (vals && (rc = qd_calibset_load_set(&val, vals, m, threads)) < 0) {
        qd_error_prefix("--val");
        ec = qd_fail(rc, "imatrix");
        goto done;
    }
    if ((rc = qd_calibset_open(&cs, calib, m, val, threads)) < 0) {
        ec = qd_fail(rc, "imatrix");
        goto done;
    }
    qd_calib_options co = QD_CALIB_OPTIONS_INIT;
    co.n_threads = threads;
    uint32_t maxlen = 0;
    for (uint32_t i = 0; i < cs.set->n_seqs; i++)
        maxlen = cs.set->lens[i] > maxlen ? cs.set->lens[i] : maxlen;
    if ((rc = qd_actstats_collect(&s, m, cs.set, &co)) < 0 ||
        (rc = qd_imatrix_write(s, out, f, cs.name, (int32_t)cs.set->n_seqs, (int32_t)maxlen, with_output)) < 0) {
        ec = qd_fail(rc, "imatrix");
        goto done;
    }
    size_t nm = 0;
    for (size_t i = 0; i < qd_actstats_count(s); i++)
        nm += with_output || qd_actstats_at(s, i)->site != QD_SITE_OUTPUT;
    printf("%s: %s imatrix, %zu matrices, %u sequences, %llu tokens, calibration %s (%s)\n", out,
           f == QD_IMATRIX_GGUF ? "GGUF" : "legacy .dat", nm,
           cs.set->n_seqs, (unsigned long long)cs.set->n_tokens, cs.name, cs.digest);
done:
    qd_actstats_free(s);
    qd_calibset_free(&cs);
    qd_valset_free(val);
    qd_llama_free(m);
    return ec;
}
