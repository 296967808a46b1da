/*
 * cmd_quantize.c - `quant quantize`: a whole model into a GGUF with one of llama-quantize's recipes.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "qd/err.h"
#include "qd/hfquant.h"
#include "qd/pipeline.h"
#include "qd/quant.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: quant quantize --in SRC --type RECIPE --out OUT.gguf [--imatrix FILE] [-t N] [--pure]\n"
               "                      [--allow-requantize] [--output-tensor-type T] [--token-embedding-type T] [--json]\n"
               "       quant quantize SRC --recipe RECIPE --out OUT.gguf ...   (the same, SRC a local file or dir)\n"
               "       quant quantize NAME[:TAG|@DIGEST] --recipe RECIPE [--calib C] [--hardware H] [--follow]\n"
               "                      [--json] [--registry URL]   (a job on a registry: quant quantize NAME --help)\n"
               "Which form: --in, or a first operand that exists as a local file or directory, is the local form;\n"
               "any other operand is a reference quantized on the registry (--registry, QUANT_REGISTRY or the\n"
               "config file; without one it is a usage error, exit 2).\n\n"
               "SRC is a GGUF, a safetensors file or directory (sharded with model.safetensors.index.json), or a\n"
               "llama2.c checkpoint. RECIPE is one of llama-quantize's names:\n  ");
    qd_ftype ft;
    for (size_t i = 0; qd_recipe_at(i, &ft); i++)
        fprintf(f, "%s ", qd_recipe_name(ft));
    fprintf(f, "\n-t N: threads (default: one per CPU); the output does not depend on N.\n\n"
               "       quant quantize --in SRC --format bnb|compressed-tensors --type T --out DIR [--method rtn]\n"
               "                      [--group N] [--double-quant] [--per-tensor] [--weight-only]\n"
               "writes a Transformers/vLLM folder (model.safetensors, config.json with quantization_config,\n"
               "README.md).\n"
               "bnb: T = nf4|fp4 (--group: blocksize, default 64; --double-quant: absmax in 8 bits, blocks of 256).\n"
               "compressed-tensors: T = int8 (per channel, W8A8; --weight-only: W8A16 packed, per channel or --group)\n"
               "| fp8_e4m3 | fp8_e5m2 (per channel, or --per-tensor) |\n"
               "int4 (--group, default 128). Method: rtn (round to nearest); calibrated methods plug in later.\n");
}

/* --format bnb|compressed-tensors: the Hugging Face layouts of hfquant.h */
static void print_json(json_t *o)
{
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (text)
        printf("%s\n", text);
    free(text); /* jansson */
}

static int quantize_hf(const char *in, const char *out, const char *format, const char *type, const char *method,
                       long group, bool double_quant, bool per_tensor, bool weight_only, bool json)
{
    qd_hfq_export_opts o;
    qd_hfq_export_stats st;
    memset(&o, 0, sizeof(o));
    if (qd_hfq_format_from_name(format, &o.q.format) || qd_hfq_type_from_name(type, &o.q.type))
        return qd_fail(QD_EINVAL, "quantize");
    o.q.group = (int32_t)group;
    o.q.double_quant = double_quant;
    o.q.per_tensor = per_tensor;
    o.q.weight_only = weight_only;
    o.method = method ? method : "rtn";
    int rc = qd_hfq_export(&st, in, out, &o);
    if (rc)
        return qd_fail(rc, rc == QD_EUNSUPPORTED ? "quantize: unsupported" : "quantize");
    if (json) {
        print_json(json_pack("{s:s,s:s,s:s,s:s,s:I,s:i,s:i,s:f,s:f,s:f}", "out", out, "format",
                             qd_hfq_format_name(o.q.format), "type", qd_hfq_type_name(o.q.type), "method", o.method,
                             "file_bytes", (json_int_t)st.file_bytes, "tensors", (int)st.n_tensors, "quantized",
                             (int)st.n_quantized, "bits_per_quantized_weight",
                             st.q_elements ? (double)st.q_bytes * 8.0 / (double)st.q_elements : 0.0, "max_rel_rmse",
                             st.max_rel_rmse, "seconds", st.seconds));
        return EXIT_OK_;
    }
    printf("%s: %s %s (method %s) %llu bytes, %zu tensors (%zu quantized, %.4f bits per quantized weight), "
           "worst relative RMS error %.5f, %.2f s\n",
           out, qd_hfq_format_name(o.q.format), qd_hfq_type_name(o.q.type), o.method,
           (unsigned long long)st.file_bytes, st.n_tensors, st.n_quantized,
           st.q_elements ? (double)st.q_bytes * 8.0 / (double)st.q_elements : 0.0, st.max_rel_rmse, st.seconds);
    return EXIT_OK_;
}

typedef struct qprog {
    progress bar;
    char label[96];
} qprog;

static void on_progress(const qd_quantize_progress *p, void *payload)
{
    qprog *q = payload;
    snprintf(q->label, sizeof(q->label), "tensor %zu/%zu", p->tensor + 1, p->n_tensors);
    q->bar.label = q->label;
    progress_update(p->bytes_in_done, p->bytes_in_total, &q->bar);
}

/* The options of either form that take a value (to tell an operand from an option's value). */
static bool takes_value(const char *a)
{
    static const char *const v[] = {"--in", "--out", "--type", "--imatrix", "--format", "--method", "--group", "-t",
                                    "--threads", "--output-tensor-type", "--token-embedding-type", "--recipe",
                                    "--calib", "--hardware", "--registry", "--cacert", NULL};
    for (size_t i = 0; v[i]; i++)
        if (!strcmp(a, v[i]))
            return true;
    return false;
}

/* The local form has --in, or a first operand that names an existing file or directory; any other operand is a
 * NAME[:TAG|@DIGEST] for a registry. @return true for the registry form */
static bool registry_form(int argc, char **argv)
{
    const char *operand = NULL;
    struct stat st;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--in"))
            return false;
        if (takes_value(argv[i]))
            i++;
        else if (argv[i][0] != '-' && !operand)
            operand = argv[i];
    }
    return operand && stat(operand, &st) != 0;
}

int cmd_quantize(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *type = NULL, *imatrix = NULL, *format = NULL, *method = NULL;
    long group = 0;
    bool double_quant = false, per_tensor = false, weight_only = false, json = false;
    qd_quantize_opts o;
    qd_quantize_stats st;
    qprog q;
    int rc;

    if (registry_form(argc, argv))
        return cmd_quantize_remote(argc, argv);
    memset(&o, 0, sizeof(o));
    o.recipe = (qd_recipe_opts)QD_RECIPE_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' && !in) { /* SRC as an operand (registry_form saw that it exists here) */
            in = a;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return EXIT_OK_;
        } else if (!strcmp(a, "--pure")) {
            o.recipe.pure = true;
            continue;
        } else if (!strcmp(a, "--double-quant")) {
            double_quant = true;
            continue;
        } else if (!strcmp(a, "--per-tensor")) {
            per_tensor = true;
            continue;
        } else if (!strcmp(a, "--weight-only")) {
            weight_only = true;
            continue;
        } else if (!strcmp(a, "--allow-requantize")) {
            o.allow_requantize = true;
            continue;
        } else if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "quant quantize: %s needs a value\n", a);
            return EXIT_USAGE;
        }
        if (!strcmp(a, "--in"))
            in = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--type") || !strcmp(a, "--recipe"))
            type = v;
        else if (!strcmp(a, "--imatrix"))
            imatrix = v;
        else if (!strcmp(a, "--format"))
            format = v;
        else if (!strcmp(a, "--method"))
            method = v;
        else if (!strcmp(a, "--group")) {
            char *end;
            group = strtol(v, &end, 10);
            if (*end || group < 1 || group > 65536) {
                fprintf(stderr, "quant quantize: --group wants 1..65536\n");
                return EXIT_USAGE;
            }
        }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 256) {
                fprintf(stderr, "quant quantize: -t wants 1..256\n");
                return EXIT_USAGE;
            }
            o.threads = (int)n;
        } else if (!strcmp(a, "--output-tensor-type") || !strcmp(a, "--token-embedding-type")) {
            qd_type t;
            if (qd_type_from_name(v, &t))
                return qd_fail(QD_EINVAL, "quantize");
            if (!strcmp(a, "--output-tensor-type"))
                o.recipe.output_type = (int)t;
            else
                o.recipe.token_embd_type = (int)t;
        } else {
            fprintf(stderr, "quant quantize: unknown option %s\n", a);
            usage(stderr);
            return EXIT_USAGE;
        }
        i++;
    }
    if (!in || !out || !type) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (format && strcmp(format, "gguf"))
        return quantize_hf(in, out, format, type, method, group, double_quant, per_tensor, weight_only, json);
    if (method && strcmp(method, "rtn")) {
        fprintf(stderr, "quant quantize: --method %s is not available yet (rtn only)\n", method);
        return EXIT_USAGE;
    }
    if (qd_recipe_from_name(type, &o.ftype))
        return qd_fail(QD_EINVAL, "quantize");
    o.imatrix_path = imatrix;
    memset(&q, 0, sizeof(q));
    progress_start(&q.bar, "quantize", 0);
    q.bar.active = isatty(2) != 0;
    o.progress = on_progress;
    o.payload = &q;
    rc = qd_quantize_model(&st, in, out, &o);
    progress_end(&q.bar);
    if (rc) /* "unsupported" marks valid input this build cannot handle (e.g. a type without kernels) */
        return qd_fail(rc, rc == QD_EUNSUPPORTED ? "quantize: unsupported" : "quantize");
    double bpw = st.n_elements ? (double)st.tensor_bytes * 8.0 / (double)st.n_elements : 0;
    if (json) {
        print_json(json_pack("{s:s,s:s,s:I,s:f,s:i,s:i,s:i,s:i,s:i,s:f,s:i,s:s}", "out", out, "recipe",
                             qd_recipe_name(o.ftype), "file_bytes", (json_int_t)st.file_bytes, "bits_per_weight", bpw,
                             "tensors", (int)st.n_tensors, "quantized", (int)st.n_quantized, "fallback",
                             (int)st.n_fallback, "beyond_llama", (int)st.n_beyond_llama, "imatrix", (int)st.n_imatrix,
                             "seconds", st.seconds, "threads", st.threads, "kernels",
                             qd_kernels_name(qd_kernels_current())));
        return EXIT_OK_;
    }
    printf("%s: %s %llu bytes (%.2f MiB), %.4f bits per weight, %zu tensors (%zu quantized, %zu fallback",
           out, qd_recipe_name(o.ftype), (unsigned long long)st.file_bytes, (double)st.file_bytes / 1048576.0, bpw,
           st.n_tensors, st.n_quantized, st.n_fallback);
    if (st.n_beyond_llama)
        printf(", %zu where llama.cpp refuses -> f16", st.n_beyond_llama);
    if (st.n_imatrix)
        printf(", %zu with imatrix", st.n_imatrix);
    printf("), %.2f s, %d threads, kernels %s\n", st.seconds, st.threads, qd_kernels_name(qd_kernels_current()));
    return EXIT_OK_;
}
