/*
 * cmd_quantize_calib.c - `quant quantize --method awq|smoothquant`: the activation-calibrated methods
 * (include/qd/awq.h, include/qd/smoothquant.h, docs/CALIB.md). cmd_quantize() hands these methods over here.
 *
 *   quant quantize --method awq --in SRC --calib SET --out OUT.gguf [--type q4_0|q4_1] [--no-clip] [--n-grid N]
 *   quant quantize --method awq --in SRC --calib SET --format autoawq --out DIR [--group 32|64|128]
 *   quant quantize --method smoothquant --in SRC --calib SET --format compressed-tensors --out DIR [--alpha A]
 *
 * Every output records the method, its parameters and the calibration (class, set digest, sequences, tokens):
 * GGUF keys quantize.* and, for folders, quantd.json beside config.json. --val SET runs the validation pass on the
 * variant as the runtime runs it and prints the KLD figures.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
#include "qd/alloc.h"
#include "qd/awq.h"
#include "qd/calib.h"
#include "qd/digest.h"
#include "qd/err.h"
#include "qd/gptq.h"
#include "qd/runtime.h"
#include "qd/smoothquant.h"
#include "qd/validate.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: quant quantize --method awq --in SRC --calib SET --out OUT.gguf [--type q4_0|q4_1]\n"
            "       quant quantize --method awq --in SRC --calib SET --format autoawq --out DIR [--group 32|64|128]\n"
            "       quant quantize --method smoothquant --in SRC --calib SET --format compressed-tensors --out DIR\n"
            "                      [--alpha A]\n"
            "  common: [--calib-class CLASS] [--seqs N] [--val SET] [-t N]\n"
            "  awq: [--no-clip] [--n-grid N] (N = 1: round to nearest on the same grid, for comparison)\n"
            "SET is a QDVALSET file (quant validate --save-set) or sample:N:LEN:SEED (docs/CALIBRATION.md); CLASS is none|generic-text|code|multilingual|\n"
            "domain:NAME (default generic-text). --val SET: validate the variant as the runtime runs it (disjoint\n"
            "from the calibration set) and print mean/p99 KLD, top-1 and bits per weight.\n");
}

static void print_val(const char *label, const qd_llama_model *ref, const qd_llama_model *var, const qd_valset *val,
                      int threads, double bpw)
{
    qd_validation_report *r = NULL;
    qd_validate_options vo = QD_VALIDATE_OPTIONS_INIT;
    vo.n_threads = threads;
    if (qd_validate_run(&r, ref, var, val, &vo) < 0) {
        qd_fail(QD_ERROR, "validate");
        return;
    }
    printf("%s: mean KLD %.6f  p99 KLD %.6f  top-1 %.4f  bpw %.4f  (%lld positions)\n", label, r->overall.mean,
           r->overall.p99, r->overall.same_top, bpw > 0 ? bpw : r->bpw, (long long)r->overall.n);
    qd_validation_report_free(r);
}

/* quantd.json: the record a folder carries for the predicate (read back by the folder loader) */
static int write_record(const char *dir, json_t *rec)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/quantd.json", dir);
    if (json_dump_file(rec, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)))
        return qd_error_set(QD_EIO, QD_EC_OS, "write %s failed", path);
    return QD_OK;
}

/* bits per weight of the AutoAWQ layout over all tensors: packable linears 4 + (16 + 4) / group, the rest f32 */
static double awq_bpw(const qd_llama_model *m, int group)
{
    double bits = 0, n = 0;
    for (int i = 0; i < qd_llama_tensor_count(m); i++) {
        const char *name;
        qd_llama_tensor *t = qd_llama_tensor_at((qd_llama_model *)m, i, &name);
        double e = (double)t->rows * (double)t->cols;
        bool q = !strncmp(name, "blk.", 4) && !strstr(name, "norm") && qd_awq_packable(t->rows, t->cols, group);
        bits += e * (q ? 4.0 + 20.0 / group : 32.0);
        n += e;
    }
    return n > 0 ? bits / n : 0;
}

int cmd_quantize_calib(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *type = NULL, *format = "gguf", *method = NULL, *calib_path = NULL,
               *val_path = NULL, *klass = "generic-text";
    long group = 0, n_grid = 20, seqs = 0, threads = 2;
    double alpha = 0.5;
    bool clip = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EXIT_OK_;
        }
        if (!strcmp(a, "--no-clip")) {
            clip = false;
            continue;
        }
        if (!v) {
            fprintf(stderr, "quant quantize: %s needs a value\n", a);
            return EXIT_USAGE;
        }
        char *end = NULL;
        if (!strcmp(a, "--in"))
            in = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--type"))
            type = v;
        else if (!strcmp(a, "--format"))
            format = v;
        else if (!strcmp(a, "--method"))
            method = v;
        else if (!strcmp(a, "--calib"))
            calib_path = v;
        else if (!strcmp(a, "--calib-class"))
            klass = v;
        else if (!strcmp(a, "--val"))
            val_path = v;
        else if (!strcmp(a, "--group"))
            group = strtol(v, &end, 10);
        else if (!strcmp(a, "--n-grid"))
            n_grid = strtol(v, &end, 10);
        else if (!strcmp(a, "--seqs"))
            seqs = strtol(v, &end, 10);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads"))
            threads = strtol(v, &end, 10);
        else if (!strcmp(a, "--alpha"))
            alpha = strtod(v, &end);
        else {
            fprintf(stderr, "quant quantize: unknown option %s for --method %s\n", a, method ? method : "?");
            usage(stderr);
            return EXIT_USAGE;
        }
        if (end && *end) {
            fprintf(stderr, "quant quantize: %s wants a number, not '%s'\n", a, v);
            return EXIT_USAGE;
        }
        i++;
    }
    bool awq = method && !strcmp(method, "awq"), sq = method && !strcmp(method, "smoothquant");
    if (!in || !out || !calib_path || (!awq && !sq)) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if ((awq && strcmp(format, "gguf") && strcmp(format, "autoawq")) ||
        (sq && strcmp(format, "compressed-tensors"))) {
        fprintf(stderr, "quant quantize: --method %s writes %s\n", method,
                awq ? "--format gguf or autoawq" : "--format compressed-tensors (W8A8 int8)");
        return EXIT_USAGE;
    }
    if (sq && type && strcmp(type, "int8")) {
        fprintf(stderr, "quant quantize: smoothquant is W8A8: --type int8\n");
        return EXIT_USAGE;
    }
    if (n_grid < 1 || n_grid > 1000 || threads < 1 || threads > 256 || seqs < 0 || !(alpha >= 0 && alpha <= 1) ||
        (group && group != 32 && group != 64 && group != 128)) {
        fprintf(stderr, "quant quantize: out of range: --n-grid 1..1000, -t 1..256, --alpha 0..1, "
                        "--group 32|64|128\n");
        return EXIT_USAGE;
    }
    if (strcmp(klass, "none") && strcmp(klass, "generic-text") && strcmp(klass, "code") &&
        strcmp(klass, "multilingual") && strncmp(klass, "domain:", 7)) {
        fprintf(stderr, "quant quantize: --calib-class %s (none|generic-text|code|multilingual|domain:NAME)\n", klass);
        return EXIT_USAGE;
    }
    qd_llama_model *ref = NULL, *f32 = NULL, *var = NULL;
    qd_valset *cal = NULL, *val = NULL;
    qd_calibset cs;
    memset(&cs, 0, sizeof(cs));
    const char *cdig = cs.digest;
    json_t *rec = NULL;
    qd_awq_report rep;
    memset(&rep, 0, sizeof(rep));
    int rc;
    if ((rc = qd_llama_load_model(&ref, in)) < 0) {
        rc = qd_fail(rc, in);
        goto done;
    }
    /* the calibration set: a QDVALSET file or sample:N:LEN:SEED, checked (and disjoint from --val) as for GPTQ */
    if ((val_path && (rc = qd_calibset_load_set(&val, val_path, ref, (int)threads)) < 0) ||
        (rc = qd_calibset_open(&cs, calib_path, ref, val, (int)threads)) < 0) {
        rc = qd_fail(rc, "calibration");
        goto done;
    }
    cal = cs.set;
    int64_t tokens = 0;
    uint32_t used = seqs > 0 && (uint32_t)seqs < cal->n_seqs ? (uint32_t)seqs : cal->n_seqs;
    int ftype = 0, eff_group = 0;
    const char *fmt_name;
    if (awq) {
        qd_awq_options o = QD_AWQ_OPTIONS_INIT;
        bool gguf = !strcmp(format, "gguf");
        if (gguf) {
            if (type && strcmp(type, "q4_0") && strcmp(type, "q4_1")) {
                fprintf(stderr, "quant quantize: awq into GGUF: --type q4_0 or q4_1\n");
                rc = EXIT_USAGE;
                goto done;
            }
            o.grid = type && !strcmp(type, "q4_1") ? QD_AWQ_GRID_Q4_1 : QD_AWQ_GRID_Q4_0;
            ftype = o.grid == QD_AWQ_GRID_Q4_1 ? 3 : 2; /* LLAMA_FTYPE_MOSTLY_Q4_1 / Q4_0 */
            eff_group = 32;
            fmt_name = o.grid == QD_AWQ_GRID_Q4_1 ? "Q4_1" : "Q4_0";
        } else {
            o.grid = QD_AWQ_GRID_INT4;
            o.group = group ? (int)group : 128;
            eff_group = o.group;
            fmt_name = "autoawq";
        }
        o.n_grid = (int)n_grid;
        o.clip = clip;
        o.max_seqs = (int)seqs;
        o.n_threads = (int)threads;
        if ((rc = qd_awq_apply(&f32, &rep, ref, cal, &o)) < 0 || (rc = qd_awq_quantize(&var, f32, &o)) < 0) {
            rc = qd_fail(rc, "awq");
            goto done;
        }
        tokens = rep.tokens;
        char alphas[2048] = "";
        size_t al = 0;
        for (int i = 0; i < rep.n_blocks && al + 8 < sizeof(alphas); i++)
            al += (size_t)snprintf(alphas + al, sizeof(alphas) - al, "%s%.2f", i ? "," : "", rep.blocks[i].alpha);
        if (gguf) {
            qd_gguf_extra ex[] = {
                {"quantize.method", "awq", 0, false},
                {"quantize.format", fmt_name, 0, false},
                {"quantize.weight_bits", NULL, 4, false},
                {"quantize.group_size", NULL, 32, false},
                {"quantize.symmetric", o.grid == QD_AWQ_GRID_Q4_0 ? "true" : "false", 0, false},
                {"quantize.params.n_grid", NULL, (double)o.n_grid, false},
                {"quantize.params.clip", clip ? "true" : "false", 0, false},
                {"quantize.params.alphas", alphas, 0, false},
                {"quantize.calib.class", klass, 0, false},
                {"quantize.calib.dataset_digest", cdig, 0, false},
                {"quantize.calib.samples", NULL, (double)used, false},
                {"quantize.calib.tokens", NULL, (double)tokens, false},
            };
            if ((rc = qd_llama_write_gguf(var, out, ftype, ex, (int)(sizeof(ex) / sizeof(ex[0])))) < 0) {
                rc = qd_fail(rc, out);
                goto done;
            }
        } else {
            uint64_t bytes = 0;
            const char *base = strrchr(in, '/');
            if ((rc = qd_awq_export(f32, o.group, out, base ? base + 1 : in, &bytes)) < 0) {
                rc = qd_fail(rc, out);
                goto done;
            }
            rec = json_pack("{ss ss si si sb s{si sb ss} s{ss ss si sI}}", "method", "awq", "format", "autoawq",
                            "weight_bits", 4, "group_size", o.group, "symmetric", 0, "params", "n_grid", o.n_grid,
                            "clip", clip, "alphas", alphas, "calibration", "class", klass, "dataset_digest", cdig,
                            "samples", (int)used, "tokens", (json_int_t)tokens);
        }
        printf("%s: awq %s (group %d, alpha grid %d, clip %s) from %u calibration sequences, %lld tokens\n", out,
               fmt_name, eff_group, o.n_grid, clip ? "on" : "off", used, (long long)tokens);
    } else {
        qd_sq_options o = QD_SQ_OPTIONS_INIT;
        o.alpha = alpha;
        o.max_seqs = (int)seqs;
        o.n_threads = (int)threads;
        const char *base = strrchr(in, '/');
        if ((rc = qd_sq_smooth(&f32, &tokens, ref, cal, &o)) < 0 || (rc = qd_w8a8_quantize(&var, f32)) < 0 ||
            (rc = qd_sq_export(f32, out, base ? base + 1 : in, "smoothquant")) < 0) {
            rc = qd_fail(rc, "smoothquant");
            goto done;
        }
        rec = json_pack("{ss ss si si sb s{sf} s{ss ss si sI}}", "method", "smoothquant", "format", "int-quantized",
                        "weight_bits", 8, "activation_bits", 8, "symmetric", 1, "params", "alpha", alpha,
                        "calibration", "class", klass, "dataset_digest", cdig, "samples", (int)used, "tokens",
                        (json_int_t)tokens);
        printf("%s: smoothquant W8A8 (alpha %.2f) from %u calibration sequences, %lld tokens\n", out, alpha, used,
               (long long)tokens);
    }
    if (rec && (rc = write_record(out, rec)) < 0) {
        rc = qd_fail(rc, out);
        goto done;
    }
    if (val) {
        if (awq) /* the AWQ search report: per block, the chosen alpha and the error against RTN */
            for (int i = 0; i < rep.n_blocks; i++)
                if (!rep.blocks[i].skipped)
                    printf("  layer %d %-7s alpha %.2f  error vs rtn %.4f\n", rep.blocks[i].layer,
                           rep.blocks[i].group, rep.blocks[i].alpha,
                           rep.blocks[i].err_rtn > 0 ? rep.blocks[i].err_final / rep.blocks[i].err_rtn : 1.0);
        print_val(method, ref, var, val, (int)threads, awq && strcmp(format, "gguf") ? awq_bpw(var, eff_group) : 0);
    }
    rc = EXIT_OK_;
done:
    json_decref(rec);
    qd_awq_report_free(&rep);
    qd_llama_free(var);
    qd_llama_free(f32);
    qd_llama_free(ref);
    qd_calibset_free(&cs);
    qd_valset_free(val);
    return rc;
}
