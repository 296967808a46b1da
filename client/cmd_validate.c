/*
 * cmd_validate.c - `quant validate`: a variant against its reference (docs/VALIDATION.md).
 *
 * REF and VAR are any model files the engine reads (include/qd/model.h: GGUF of any type, safetensors, llama2.c),
 * given as paths or as sha256: digests of blobs in --store (then the bytes validated are the stored bytes, exactly
 * what gets published); or VAR is made in memory from REF with --variant-type. --predicate writes the
 * https://quantd.dev/variant/v1 predicate for `quant sign`.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "qd/alloc.h"
#include "qd/digest.h"
#include "qd/model.h"
#include "qd/err.h"
#include "qd/store.h"
#include "qd/verify.h"
#include "qd/validate.h"

static int usage(FILE *f)
{
    fprintf(f,
            "usage: quant validate --ref REF (--variant VAR | --variant-type TYPE [--fallback]) [--set SET]\n"
            "                      [--policy POLICY] [--class NAME] [--json] [--store DIR] [--save-set PATH]\n"
            "                      [--seqs N] [--len L] [--seed S] [--threads T] [--kv TYPE] [--score-all]\n"
            "                      [--predicate OUT.json [--target-hardware H[,H...]] [--builder ID]\n"
            "                       [--source-name NAME]]\n\n"
            "Runs REF and VAR over a validation set and reports KL divergence (mean, median, p90, p99, max), top-1\n"
            "agreement and PPL as llama.cpp's llama-perplexity --kl-divergence defines them, per slice and overall,\n"
            "plus per-tensor relative RMSE, SQNR and cosine; then applies the policy.\n"
            "  REF, VAR      model files: GGUF (any type; a variant is run as stored), safetensors (file or sharded\n"
            "                directory), llama2.c; a path, or sha256:<hex> of a blob in --store (validated as stored)\n"
            "  --variant-type TYPE  quantize REF in memory to TYPE (q8_0, q4_K, iq4_nl, ...) and validate that\n"
            "  --set SET     a QDVALSET file, or sha256:<hex> of one in --store; default: sample --seqs sequences\n"
            "                of --len tokens (64 x 256) from REF starting at BOS with --seed (42); its digest is\n"
            "                reported, and it is put into --store (created if need be) when given\n"
            "  --policy P    a JSON policy (schemas/validation-policy.schema.json); default: the built-in one\n"
            "  --class NAME  judge by that policy class instead of the variant's dominant type\n"
            "  --json        print the report as JSON (schemas/validation-report.schema.json; .kld.mean)\n"
            "  --kv TYPE     the variant's KV cache precision: f32 f16 q8_0 q4_0 fp8_e4m3\n"
            "  --predicate OUT.json  write the https://quantd.dev/variant/v1 predicate (for quant sign): source =\n"
            "                REF's digest, recipe from VAR's general.file_type and tensor types, validation; written\n"
            "                whether the verdict is pass or fail. --target-hardware (default cpu-<machine>), --builder\n"
            "                (default quant@<host>); created_at is now, or SOURCE_DATE_EPOCH when set\n"
            "Exit status: 0 pass, 9 the variant failed the policy, 2 bad usage or input, 3 not found, 1 other.\n");
    return f == stdout ? 0 : EXIT_USAGE;
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = qd_malloc(cap + 1);
    while (b) {
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        char *nb = qd_reallocarray(b, cap * 2 + 1, 1);
        if (!nb) {
            qd_free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    fclose(f);
    if (!b)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "%s: out of memory", path);
    b[n] = 0;
    *out = b;
    *len = n;
    return QD_OK;
}

typedef struct sink_buf {
    char *p;
    size_t n, cap;
} sink_buf;

static int sink(const void *data, size_t len, void *payload)
{
    sink_buf *s = payload;
    if (s->n + len > s->cap) {
        size_t nc = (s->n + len) * 2;
        char *np = qd_reallocarray(s->p, nc, 1);
        if (!np)
            return QD_ENOMEM;
        s->p = np;
        s->cap = nc;
    }
    memcpy(s->p + s->n, data, len);
    s->n += len;
    return QD_OK;
}

/* A model named by a path, or by sha256:<hex> of a blob in the store (what gets published is what is validated).
 * dig gets the model's digest ("sha256:<hex>": the blob's, or the file's; "" for a directory). */
static int load_model(qd_llama_model **out, const char *name, qd_store *st, char *dig)
{
    qd_digest d;
    sink_buf sb = {0};
    int rc;
    struct stat sst;
    dig[0] = 0;
    if (strncmp(name, "sha256:", 7)) {
        if ((rc = qd_llama_load_model(out, name)) < 0)
            return rc;
        if (stat(name, &sst) == 0 && S_ISREG(sst.st_mode)) {
            if ((rc = qd_file_sha256(&d, name)) < 0)
                return rc;
            qd_digest_format(dig, &d);
        }
        return QD_OK;
    }
    if (!st)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: a digest needs --store DIR", name);
    if ((rc = qd_digest_parse(&d, name)) < 0 || (rc = qd_store_get(st, &d, 0, UINT64_MAX, sink, &sb)) < 0) {
        qd_free(sb.p);
        return rc;
    }
    if ((rc = qd_llama_load_model_mem(out, sb.p, sb.n, name)) < 0)
        qd_free(sb.p);
    else
        qd_digest_format(dig, &d);
    return rc;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    size_t n = strlen(text);
    if (!f || fwrite(text, 1, n, f) != n || fputc('\n', f) == EOF) {
        int e = errno;
        if (f)
            fclose(f);
        return qd_error_set(QD_EIO, QD_EC_OS, "cannot write %s: %s", path, strerror(e));
    }
    return fclose(f) == 0 ? QD_OK : qd_error_set(QD_EIO, QD_EC_OS, "cannot write %s: %s", path, strerror(errno));
}

int cmd_validate(int argc, char **argv)
{
    const char *ref_path = NULL, *var_path = NULL, *var_type = NULL, *set_arg = NULL, *policy_path = NULL;
    const char *cls = NULL, *store_dir = NULL, *save_set = NULL, *pred_path = NULL, *targets = NULL;
    const char *builder = NULL, *source_name = NULL;
    bool json = false, fallback = false;
    long seqs = 64, len = 256, threads = 2;
    unsigned long long seed = 42;
    qd_validate_options vo = QD_VALIDATE_OPTIONS_INIT;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout);
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!strcmp(a, "--fallback")) {
            fallback = true;
            continue;
        }
        if (!strcmp(a, "--score-all")) {
            vo.score_all = true;
            continue;
        }
        if (!v || strncmp(a, "--", 2)) {
            fprintf(stderr, "quant validate: %s: unknown option or missing value\n", a);
            return usage(stderr);
        }
        i++;
        if (!strcmp(a, "--ref"))
            ref_path = v;
        else if (!strcmp(a, "--variant"))
            var_path = v;
        else if (!strcmp(a, "--variant-type"))
            var_type = v;
        else if (!strcmp(a, "--set"))
            set_arg = v;
        else if (!strcmp(a, "--policy"))
            policy_path = v;
        else if (!strcmp(a, "--class"))
            cls = v;
        else if (!strcmp(a, "--store"))
            store_dir = v;
        else if (!strcmp(a, "--save-set"))
            save_set = v;
        else if (!strcmp(a, "--predicate"))
            pred_path = v;
        else if (!strcmp(a, "--target-hardware"))
            targets = v;
        else if (!strcmp(a, "--builder"))
            builder = v;
        else if (!strcmp(a, "--source-name"))
            source_name = v;
        else if (!strcmp(a, "--seqs"))
            seqs = strtol(v, NULL, 10);
        else if (!strcmp(a, "--len"))
            len = strtol(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--threads"))
            threads = strtol(v, NULL, 10);
        else if (!strcmp(a, "--kv")) {
            if ((rc = qd_llama_kv_from_name(v, &vo.kv_type)) < 0)
                return qd_fail(rc, "validate");
        } else {
            fprintf(stderr, "quant validate: unknown option %s\n", a);
            return usage(stderr);
        }
    }
    if (!ref_path || (!var_path == !var_type)) {
        fprintf(stderr, "quant validate: --ref and one of --variant / --variant-type are required\n");
        return EXIT_USAGE;
    }
    if (seqs <= 0 || seqs > 100000 || len < 2 || len > 1 << 20 || threads <= 0 || threads > 64) {
        fprintf(stderr, "quant validate: --seqs, --len (>= 2) and --threads must be positive numbers\n");
        return EXIT_USAGE;
    }
    vo.n_threads = (int)threads;
    qd_llama_model *ref = NULL, *var = NULL;
    qd_valset *set = NULL;
    qd_validation_report *rep = NULL;
    qd_store *st = NULL;
    char *policy_text = NULL, *report = NULL, *pred = NULL, extra[1024];
    char ref_dig[QD_DIGEST_STR_LEN + 1] = "", var_dig[QD_DIGEST_STR_LEN + 1] = "";
    void *blob = NULL;
    size_t blob_len = 0, plen;
    sink_buf sb = {0};
    qd_validation_policy pol;
    qd_digest sd;
    char sdig[QD_DIGEST_STR_LEN + 1] = "";
    bool sampled = false;

    qd_validation_policy_default(&pol);
    if (policy_path && ((rc = read_file(policy_path, &policy_text, &plen)) < 0 ||
                        (rc = qd_validation_policy_parse(&pol, policy_text, plen)) < 0)) {
        rc = qd_fail(rc, policy_path);
        goto done;
    }
    qd_store_options so = {QD_STORE_OPTIONS_VERSION, QD_STORE_CREATE, 0, 0, 0, 0};
    if (store_dir && (rc = qd_store_open(&st, store_dir, &so)) < 0) {
        rc = qd_fail(rc, store_dir);
        goto done;
    }
    if (pred_path && var_type) {
        fprintf(stderr, "quant validate: --predicate needs a real variant (--variant), not --variant-type\n");
        rc = EXIT_USAGE;
        goto done;
    }
    if ((rc = load_model(&ref, ref_path, st, ref_dig)) < 0) { /* the messages name the file or digest */
        rc = qd_fail(rc, "validate: reference");
        goto done;
    }
    if (var_type) {
        qd_llama_quant_options qo = {QD_TYPE_F32, fallback, QD_TYPE_COUNT};
        if ((rc = qd_type_from_name(var_type, &qo.type)) < 0 || (rc = qd_llama_quantize(&var, ref, &qo)) < 0) {
            rc = qd_fail(rc, "validate --variant-type");
            goto done;
        }
    } else if ((rc = load_model(&var, var_path, st, var_dig)) < 0) {
        rc = qd_fail(rc, "validate: variant");
        goto done;
    }
    if ((rc = qd_llama_same_shape(ref, var)) < 0) {
        qd_error_prefix("%s is not a variant of %s", var_path ? var_path : "the variant", ref_path);
        rc = qd_fail(rc, "validate");
        goto done;
    }
    if (pred_path && !ref_dig[0]) {
        fprintf(stderr, "quant validate: --predicate needs the reference as one file or a store digest (the "
                        "predicate's source is its sha256)\n");
        rc = EXIT_USAGE;
        goto done;
    }
    if (set_arg && !strncmp(set_arg, "sha256:", 7)) {
        if (!st) {
            fprintf(stderr, "quant validate: --set %s needs --store DIR\n", set_arg);
            rc = EXIT_USAGE;
            goto done;
        }
        if ((rc = qd_digest_parse(&sd, set_arg)) < 0 || (rc = qd_store_get(st, &sd, 0, UINT64_MAX, sink, &sb)) < 0) {
            rc = qd_fail(rc, set_arg);
            goto done;
        }
        blob = sb.p;
        blob_len = sb.n;
        sb.p = NULL;
    } else if (set_arg) {
        char *b;
        if ((rc = read_file(set_arg, &b, &blob_len)) < 0) {
            rc = qd_fail(rc, set_arg);
            goto done;
        }
        blob = b;
    } else {
        if (len > ref->cfg.seq_len)
            len = ref->cfg.seq_len;
        if ((rc = qd_valset_sample(&set, ref, (uint32_t)seqs, (uint32_t)len, seed, (int)threads)) < 0 ||
            (rc = qd_valset_serialize(&blob, &blob_len, set)) < 0) {
            rc = qd_fail(rc, "validate: sampling the validation set");
            goto done;
        }
        sampled = true;
    }
    if (!set && (rc = qd_valset_parse(&set, blob, blob_len)) < 0) {
        rc = qd_fail(rc, set_arg);
        goto done;
    }
    if ((rc = qd_sha256_buf(&sd, blob, blob_len)) < 0) {
        rc = qd_fail(rc, "validate");
        goto done;
    }
    qd_digest_format(sdig, &sd);
    if (st && sampled && (rc = qd_store_put_buf(st, blob, blob_len, &sd, NULL)) < 0) {
        rc = qd_fail(rc, "validate: storing the validation set");
        goto done;
    }
    if (save_set) {
        FILE *f = fopen(save_set, "wb");
        if (!f || fwrite(blob, 1, blob_len, f) != blob_len) {
            if (f)
                fclose(f);
            fprintf(stderr, "quant validate: cannot write %s: %s\n", save_set, strerror(errno));
            rc = EXIT_ERR;
            goto done;
        }
        fclose(f);
    }
    if ((rc = qd_validate_run(&rep, ref, var, set, &vo)) < 0 || (rc = qd_validation_judge(rep, &pol, cls)) < 0) {
        rc = qd_fail(rc, "validate");
        goto done;
    }
    snprintf(extra, sizeof(extra),
             "{\"set\": {\"digest\": \"%s\", \"sequences\": %u, \"tokens\": %llu, \"sampled\": %s, \"seed\": %llu}, "
             "\"reference\": {\"digest\": %s%s%s, \"format\": \"%s\"}, \"variant\": {\"digest\": %s%s%s, \"format\": \"%s\"}}",
             sdig, set->n_seqs, (unsigned long long)set->n_tokens, sampled ? "true" : "false", sampled ? seed : 0ULL,
             ref_dig[0] ? "\"" : "", ref_dig[0] ? ref_dig : "null", ref_dig[0] ? "\"" : "",
             qd_llama_source(ref) ? qd_model_format_name(qd_model_format_of(qd_llama_source(ref))) : "memory",
             var_dig[0] ? "\"" : "", var_dig[0] ? var_dig : "null", var_dig[0] ? "\"" : "",
             qd_llama_source(var) ? qd_model_format_name(qd_model_format_of(qd_llama_source(var))) : "memory");
    if (pred_path) {
        char host[256] = "localhost", bid[300], tbuf[256], mach[80] = "cpu-unknown";
        const char *tv[16];
        size_t nt = 0;
        struct utsname un;
        if (uname(&un) == 0) {
            snprintf(mach, sizeof(mach), "cpu-%s", un.machine);
            for (char *c = mach; *c; c++)
                *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : (*c == '-' && c > mach + 3) ? '_' : *c);
        }
        snprintf(tbuf, sizeof(tbuf), "%s", targets ? targets : mach);
        for (char *tok = strtok(tbuf, ","); tok && nt < 16; tok = strtok(NULL, ","))
            tv[nt++] = tok;
        gethostname(host, sizeof(host) - 1);
        snprintf(bid, sizeof(bid), "quant@%s", host);
        const char *sde = getenv("SOURCE_DATE_EPOCH");
        qd_variant_predicate_info pi = {ref_dig, source_name, sdig, var, tv, nt, builder ? builder : bid,
                                        sde && *sde ? strtoll(sde, NULL, 10) : (int64_t)time(NULL)};
        if ((rc = qd_variant_predicate_json(&pred, rep, &pi)) < 0 || (rc = write_text(pred_path, pred)) < 0) {
            rc = qd_fail(rc, "validate --predicate");
            goto done;
        }
    }
    if (json) {
        if ((rc = qd_validation_report_json(&report, rep, extra)) < 0) {
            rc = qd_fail(rc, "validate");
            goto done;
        }
        fputs(report, stdout);
    } else {
        const qd_kld_stats *s = &rep->overall;
        printf("set: %s (%u sequences, %llu tokens%s)\n", sdig, set->n_seqs, (unsigned long long)set->n_tokens,
               sampled ? ", sampled from the reference" : "");
        bool w8a8 = false; /* W8A8 tensors (row_scale) quantize their inputs to int8 per token */
        for (int i = 0; i < qd_llama_tensor_count(var) && !w8a8; i++)
            w8a8 = qd_llama_tensor_at(var, i, NULL)->row_scale != NULL;
        printf("variant: %.4f bits/weight, dominant type %s; kv cache %s; activations %s\n", rep->bpw,
               qd_type_traits_get(rep->dominant_type)->name, qd_llama_kv_name(vo.kv_type),
               w8a8 ? "int8 per token (W8A8)" : "f32");
        printf("scored tokens: %lld; %.3f s (%.0f tokens/s over both models, %s)\n", (long long)s->n, rep->seconds,
               rep->seconds > 0 ? 2.0 * (double)rep->tokens_evaluated / rep->seconds : 0, rep->simd);
        printf("Mean PPL(ref) %.6f  PPL(var) %.6f  ratio %.6f\n", s->ppl_ref, s->ppl_var, s->ppl_ratio);
        printf("Mean KLD %.6f +- %.6f  median %.6f  p90 %.6f  p99 %.6f  max %.6f\n", s->mean, s->mean_err, s->median,
               s->p90, s->p99, s->max);
        printf("Same top p: %.3f +- %.3f %%\n", 100 * s->same_top, 100 * s->same_top_err);
        for (uint32_t i = 0; i < rep->n_slices; i++)
            printf("slice %-16s tokens %lld  mean KLD %.6f  p99 %.6f  same top %.3f %%\n", rep->slices[i].name,
                   (long long)rep->slices[i].s.n, rep->slices[i].s.mean, rep->slices[i].s.p99,
                   100 * rep->slices[i].s.same_top);
        for (int w = 0; w < 3 && rep->worst[w] >= 0; w++) {
            const qd_tensor_metrics *t = &rep->tensors[rep->worst[w]];
            printf("worst tensor %d: %s (%s) SQNR %.2f dB, rel RMSE %.4f, cosine %.6f%s%s\n", w + 1, t->name,
                   qd_type_traits_get(t->var_type)->name, t->sqnr_db, t->rel_rmse, t->cosine,
                   t->diagnosis[0] ? "; " : "", t->diagnosis);
        }
        printf("verdict: %s (class %s)\n", rep->pass ? "pass" : "FAIL", rep->class_name);
        for (int i = 0; i < rep->n_reasons; i++)
            printf("  - %s\n", rep->reasons[i]);
    }
    fflush(stdout);
    if (!rep->pass)
        for (int i = 0; i < rep->n_reasons; i++)
            fprintf(stderr, "quant validate: fail: %s\n", rep->reasons[i]);
    rc = rep->pass ? 0 : EXIT_VALIDATION;
done:
    qd_free(report);
    qd_free(pred);
    qd_free(policy_text);
    qd_free(blob);
    qd_free(sb.p);
    qd_validation_report_free(rep);
    qd_valset_free(set);
    qd_llama_free(var);
    qd_llama_free(ref);
    qd_store_close(st);
    return rc;
}
