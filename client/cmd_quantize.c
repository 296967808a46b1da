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
#include "methods.h"
#include "qd/err.h"
#include "qd/hfquant.h"
#include "qd/pipeline.h"
#include "qd/quant.h"

static int method_rtn(const qmethod_args *a);

/* --method NAME: one line per method (client/methods.h) */
static const qmethod methods[] = {
    {"rtn", "round to nearest (llama-quantize's reference quantizers; with --imatrix FILE, its importance weights)",
     method_rtn},
    {"imatrix", "importance-weighted K-quants/IQ: --calib SET (collected on the fly) or --imatrix FILE", method_imatrix},
    {"gptq", "GPTQ: --calib SET; GGUF (Q4_0/Q4_1/Q5_0/Q8_0 recipes) or --format autogptq (--bits 2|3|4|8)",
     method_gptq},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: quant quantize --in SRC --type RECIPE --out OUT.gguf [--imatrix FILE] [-t N] [--pure]\n"
               "                      [--allow-requantize] [--output-tensor-type T] [--token-embedding-type T] [--json]\n"
               "                      [--fsync] [--device auto|cpu|cuda]\n"
               "       quant quantize SRC --recipe RECIPE --out OUT.gguf ...   (the same, SRC a local file or dir)\n"
               "       quant quantize NAME[:TAG|@DIGEST] --recipe RECIPE [--calib sample:N:LEN:SEED] [--follow]\n"
               "                      [--json] [--registry URL]   (a job on a registry: quant quantize NAME --help)\n"
               "Which form: --in, or a first operand that exists as a local file or directory, is the local form;\n"
               "any other operand is a reference quantized on the registry (--registry, QUANT_REGISTRY or the\n"
               "config file; without one it is a usage error, exit 2).\n\n"
               "SRC is a GGUF, a safetensors file or directory (sharded with model.safetensors.index.json), or a\n"
               "llama2.c checkpoint. RECIPE is one of llama-quantize's names:\n  ");
    qd_ftype ft;
    for (size_t i = 0; qd_recipe_at(i, &ft); i++)
        fprintf(f, "%s ", qd_recipe_name(ft));
    fprintf(f, "\n-t N: threads (default: one per CPU); the output does not depend on N.\n"
               "--fsync: make OUT durable before it is renamed into place (written with O_DIRECT where the file\n"
               "system allows it); without it OUT is written through the page cache, as cp and llama-quantize do,\n"
               "and a crash soon after may leave it missing or short (never another file's bytes).\n"
               "--device: where tensors are quantized. auto (default): the GPU, in a build with it (make CUDA=1)\n"
               "where a device answers, for large tensors whose scale search is the work (K-quants, IQ4, importance-\n"
               "weighted types), the CPU for the rest; cuda: the GPU for every tensor it can take (an error without\n"
               "one); cpu: never the GPU. The bytes are the same on either.\n\n"
               "       quant quantize --in SRC --format bnb|compressed-tensors --type T --out DIR [--method rtn]\n"
               "                      [--group N] [--double-quant] [--per-tensor] [--weight-only]\n"
               "writes a Transformers/vLLM folder (model.safetensors, config.json with quantization_config,\n"
               "README.md).\n"
               "bnb: T = nf4|fp4 (--group: blocksize, default 64; --double-quant: absmax in 8 bits, blocks of 256).\n"
               "compressed-tensors: T = int8 (per channel, W8A8; --weight-only: W8A16 packed, per channel or --group)\n"
               "| fp8_e4m3 | fp8_e5m2 (per channel, or --per-tensor) |\n"
               "int4 (--group, default 128).\n\n"
               "--method M (default rtn):\n");
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        fprintf(f, "  %-10s %s\n", methods[i].name, methods[i].summary);
    fprintf(f, "Calibrated methods: --calib SET (a QDVALSET file, or sample:N:LEN:SEED = N sequences of LEN tokens\n"
               "sampled from the source model from BOS with SEED), --val SET (refuse a calibration set that shares a\n"
               "sequence with this validation set), --calib-class C (recorded: none, generic-text, code,\n"
               "multilingual, domain:NAME; default domain:self-sampled for sample: specs, else generic-text).\n"
               "GPTQ: --bits N (autogptq: 2, 3, 4, 8; default 4), --group N (default 128; GGUF grids use 32),\n"
               "--act-order, --sym, --damp F (default 0.01), --no-true-sequential, --format gguf|autogptq.\n"
               "docs/CALIBRATION.md.\n"
               "  awq, smoothquant: AWQ int4 and SmoothQuant W8A8, with options of their own\n"
               "             (quant quantize --method awq --help; docs/AWQ_SMOOTHQUANT.md)\n");
}

static void print_json(json_t *o)
{
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (text)
        printf("%s\n", text);
    free(text); /* jansson */
}

/* --format bnb|compressed-tensors: the Hugging Face layouts of hfquant.h */
int quantize_hf_rtn(const qmethod_args *a)
{
    qd_hfq_export_opts o;
    qd_hfq_export_stats st;
    memset(&o, 0, sizeof(o));
    if (qd_hfq_format_from_name(a->format, &o.q.format) || qd_hfq_type_from_name(a->type, &o.q.type))
        return qd_fail(QD_EINVAL, "quantize");
    o.q.group = (int32_t)a->group;
    o.q.double_quant = a->double_quant;
    o.q.per_tensor = a->per_tensor;
    o.q.weight_only = a->weight_only;
    o.method = a->method ? a->method : "rtn";
    int rc = qd_hfq_export(&st, a->in, a->out, &o);
    if (rc)
        return qd_fail(rc, rc == QD_EUNSUPPORTED ? "quantize: unsupported" : "quantize");
    if (a->json) {
        print_json(json_pack("{s:s,s:s,s:s,s:s,s:I,s:i,s:i,s:f,s:f,s:f}", "out", a->out, "format",
                             qd_hfq_format_name(o.q.format), "type", qd_hfq_type_name(o.q.type), "method", o.method,
                             "file_bytes", (json_int_t)st.file_bytes, "tensors", (int)st.n_tensors, "quantized",
                             (int)st.n_quantized, "bits_per_quantized_weight",
                             st.q_elements ? (double)st.q_bytes * 8.0 / (double)st.q_elements : 0.0, "max_rel_rmse",
                             st.max_rel_rmse, "seconds", st.seconds));
        return EXIT_OK_;
    }
    printf("%s: %s %s (method %s) %llu bytes, %zu tensors (%zu quantized, %.4f bits per quantized weight), "
           "worst relative RMS error %.5f, %.2f s\n",
           a->out, qd_hfq_format_name(o.q.format), qd_hfq_type_name(o.q.type), o.method,
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

int quantize_gguf_run(const qmethod_args *a, qd_quantize_opts *o)
{
    qd_quantize_stats st;
    qprog q;
    int rc;
    memset(&q, 0, sizeof(q));
    progress_start(&q.bar, "quantize", 0);
    q.bar.active = isatty(2) != 0;
    o->progress = on_progress;
    o->payload = &q;
    rc = qd_quantize_model(&st, a->in, a->out, o);
    progress_end(&q.bar);
    if (rc) /* "unsupported" marks valid input this build cannot handle (e.g. a type without kernels) */
        return qd_fail(rc, rc == QD_EUNSUPPORTED ? "quantize: unsupported" : "quantize");
    double bpw = st.n_elements ? (double)st.tensor_bytes * 8.0 / (double)st.n_elements : 0;
    if (a->json) {
        print_json(json_pack("{s:s,s:s,s:I,s:f,s:i,s:i,s:i,s:i,s:i,s:f,s:i,s:s,s:i}", "out", a->out, "recipe",
                             qd_recipe_name(o->ftype), "file_bytes", (json_int_t)st.file_bytes, "bits_per_weight", bpw,
                             "tensors", (int)st.n_tensors, "quantized", (int)st.n_quantized, "fallback",
                             (int)st.n_fallback, "beyond_llama", (int)st.n_beyond_llama, "imatrix", (int)st.n_imatrix,
                             "seconds", st.seconds, "threads", st.threads, "kernels", st.kernel, "gpu_tensors",
                             (int)st.n_cuda));
        return EXIT_OK_;
    }
    printf("%s: %s %llu bytes (%.2f MiB), %.4f bits per weight, %zu tensors (%zu quantized, %zu fallback",
           a->out, qd_recipe_name(o->ftype), (unsigned long long)st.file_bytes, (double)st.file_bytes / 1048576.0,
           bpw, st.n_tensors, st.n_quantized, st.n_fallback);
    if (st.n_beyond_llama)
        printf(", %zu where llama.cpp refuses -> f16", st.n_beyond_llama);
    if (st.n_imatrix)
        printf(", %zu with imatrix", st.n_imatrix);
    if (st.n_method)
        printf(", %zu by %s", st.n_method, a->method);
    if (st.n_cuda)
        printf(", %zu on the GPU", st.n_cuda);
    printf("), %.2f s, %d threads, kernels %s\n", st.seconds, st.threads, st.kernel);
    return EXIT_OK_;
}

static int method_rtn(const qmethod_args *a)
{
    if (a->format && strcmp(a->format, "gguf"))
        return quantize_hf_rtn(a);
    if (qd_recipe_from_name(a->type, &a->o->ftype))
        return qd_fail(QD_EINVAL, "quantize");
    a->o->imatrix_path = a->imatrix_path;
    return quantize_gguf_run(a, a->o);
}

static int parse_long(const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < lo || n > hi) {
        fprintf(stderr, "quant quantize: %s wants %ld..%ld\n", opt, lo, hi);
        return -1;
    }
    *out = n;
    return 0;
}

/* The options of any form that take a value (to tell an operand from an option's value). */
static bool takes_value(const char *a)
{
    static const char *const v[] = {"--in", "--out", "--type", "--imatrix", "--format", "--method", "--group", "-t",
                                    "--threads", "--output-tensor-type", "--token-embedding-type", "--recipe",
                                    "--calib", "--val", "--calib-class", "--bits", "--damp", "--alpha", "--n-grid",
                                    "--seqs", "--hardware", "--registry", "--cacert", "--device", NULL};
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
    qmethod_args a;
    qd_quantize_opts o;

    if (registry_form(argc, argv))
        return cmd_quantize_remote(argc, argv);
    /* AWQ and SmoothQuant parse their own options (client/cmd_quantize_calib.c) */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--method") && (!strcmp(argv[i + 1], "awq") || !strcmp(argv[i + 1], "smoothquant")))
            return cmd_quantize_calib(argc, argv);
    memset(&a, 0, sizeof(a));
    memset(&o, 0, sizeof(o));
    a.damp = -1;
    a.o = &o;
    o.recipe = (qd_recipe_opts)QD_RECIPE_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (s[0] != '-' && !a.in) { /* SRC as an operand (registry_form saw that it exists here) */
            a.in = s;
            continue;
        }
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            usage(stdout);
            return EXIT_OK_;
        } else if (!strcmp(s, "--pure")) {
            o.recipe.pure = true;
            continue;
        } else if (!strcmp(s, "--double-quant")) {
            a.double_quant = true;
            continue;
        } else if (!strcmp(s, "--per-tensor")) {
            a.per_tensor = true;
            continue;
        } else if (!strcmp(s, "--weight-only")) {
            a.weight_only = true;
            continue;
        } else if (!strcmp(s, "--allow-requantize")) {
            o.allow_requantize = true;
            continue;
        } else if (!strcmp(s, "--fsync")) {
            o.durable = true;
            continue;
        } else if (!strcmp(s, "--device") && v) {
            if (!strcmp(v, "auto"))
                o.device = QD_DEVICE_AUTO;
            else if (!strcmp(v, "cpu"))
                o.device = QD_DEVICE_CPU;
            else if (!strcmp(v, "cuda"))
                o.device = QD_DEVICE_CUDA;
            else {
                fprintf(stderr, "quant quantize: --device %s: auto, cpu or cuda\n", v);
                return EXIT_USAGE;
            }
            i++;
            continue;
        } else if (!strcmp(s, "--act-order") || !strcmp(s, "--desc-act")) {
            a.act_order = true;
            continue;
        } else if (!strcmp(s, "--json")) {
            a.json = true;
            continue;
        } else if (!strcmp(s, "--sym")) {
            a.sym = true;
            continue;
        } else if (!strcmp(s, "--no-true-sequential")) {
            a.no_true_sequential = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "quant quantize: %s needs a value\n", s);
            return EXIT_USAGE;
        }
        if (!strcmp(s, "--in"))
            a.in = v;
        else if (!strcmp(s, "--out"))
            a.out = v;
        else if (!strcmp(s, "--type") || !strcmp(s, "--recipe"))
            a.type = v;
        else if (!strcmp(s, "--imatrix"))
            a.imatrix_path = v;
        else if (!strcmp(s, "--format"))
            a.format = v;
        else if (!strcmp(s, "--method"))
            a.method = v;
        else if (!strcmp(s, "--calib"))
            a.calib = v;
        else if (!strcmp(s, "--val"))
            a.val = v;
        else if (!strcmp(s, "--calib-class"))
            a.calib_class = v;
        else if (!strcmp(s, "--group")) {
            if (parse_long(s, v, 1, 65536, &a.group))
                return EXIT_USAGE;
        } else if (!strcmp(s, "--bits")) {
            if (parse_long(s, v, 1, 16, &n))
                return EXIT_USAGE;
            a.bits = (int)n;
        } else if (!strcmp(s, "--damp")) {
            char *end;
            a.damp = strtod(v, &end);
            if (!*v || *end || !(a.damp >= 0 && a.damp <= 10)) {
                fprintf(stderr, "quant quantize: --damp wants a fraction 0..10 (default 0.01)\n");
                return EXIT_USAGE;
            }
        } else if (!strcmp(s, "-t") || !strcmp(s, "--threads")) {
            if (parse_long(s, v, 1, 256, &n))
                return EXIT_USAGE;
            o.threads = (int)n;
            a.threads = (int)n;
        } else if (!strcmp(s, "--output-tensor-type") || !strcmp(s, "--token-embedding-type")) {
            qd_type t;
            if (qd_type_from_name(v, &t))
                return qd_fail(QD_EINVAL, "quantize");
            if (!strcmp(s, "--output-tensor-type"))
                o.recipe.output_type = (int)t;
            else
                o.recipe.token_embd_type = (int)t;
        } else {
            fprintf(stderr, "quant quantize: unknown option %s\n", s);
            usage(stderr);
            return EXIT_USAGE;
        }
        i++;
    }
    if (!a.in || !a.out || !a.type) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *mname = a.method ? a.method : "rtn";
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (!strcmp(mname, methods[i].name)) {
            a.method = methods[i].name;
            return methods[i].run(&a);
        }
    fprintf(stderr, "quant quantize: unknown --method %s (", mname);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        fprintf(stderr, "%s%s", i ? ", " : "", methods[i].name);
    fprintf(stderr, ")\n");
    return EXIT_USAGE;
}
