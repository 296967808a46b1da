/*
 * runtime_bench.c - `make bench-runtime`: the reference runtime's speed on a generated llama model, and the
 * per-type quality tables of docs/VALIDATION.md.
 *
 *   runtime_bench speed [LAYERS]      dim-2048 model (n_ff 5632, 32/4 heads, vocab 32000, tied, heavy tails),
 *                                     f32 / Q8_0 / Q4_0 / Q4_K: prompt tokens/s (256-token batches, as a
 *                                     perplexity run evaluates) and decode tokens/s (one token at a time)
 *   runtime_bench table MODEL|synthetic [SEQS LEN]
 *                                     validate every type we can make per tensor against MODEL (llama2.c file),
 *                                     or against a generated dim-256 model with outliers; markdown rows
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/validate.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int die(const char *what)
{
    fprintf(stderr, "runtime_bench: %s: %s\n", what, qd_error_last()->message);
    return 1;
}

static int speed(int layers)
{
    qd_llama_config cfg = {2048, 5632, layers, 32, 4, 32000, 512, 10000.0f, 1e-5f, true};
    qd_llama_model *g;
    double t0 = now();
    if (qd_llama_synthetic(&g, &cfg, 2048) < 0)
        return die("generate");
    int64_t np;
    qd_llama_bpw(g, &np);
    printf("generated llama model: dim 2048, n_ff 5632, %d layers, 32/4 heads, vocab 32000 (tied), %.1f M params "
           "(%.1f s to generate)\n", layers, (double)np / 1e6, now() - t0);
    static const qd_type types[] = {QD_TYPE_F32, QD_TYPE_Q8_0, QD_TYPE_Q4_0, QD_TYPE_Q4_K};
    int32_t toks[256];
    for (int i = 0; i < 256; i++)
        toks[i] = (int32_t)((i * 7919 + 1) % 32000);
    printf("%-6s %8s %14s %14s  %s\n", "type", "bpw", "prompt tok/s", "decode tok/s", "simd");
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        qd_llama_model *m = g;
        if (types[k] != QD_TYPE_F32) {
            qd_llama_quant_options o = {types[k], false, QD_TYPE_COUNT};
            if (qd_llama_quantize(&m, g, &o) < 0)
                return die("quantize");
        }
        qd_llama_ctx *c;
        qd_llama_ctx_options co = QD_LLAMA_CTX_OPTIONS_INIT;
        co.n_ctx = 512;
        if (qd_llama_ctx_new(&c, m, &co) < 0)
            return die("context");
        float *lg = qd_mallocarray(32000, sizeof(float));
        double t1 = now();
        if (qd_llama_eval(c, toks, 256, NULL, lg) < 0)
            return die("eval");
        double tp = now() - t1;
        int nd = 16;
        t1 = now();
        for (int i = 0; i < nd; i++)
            if (qd_llama_eval(c, &toks[i], 1, NULL, lg) < 0)
                return die("decode");
        double td = now() - t1;
        printf("%-6s %8.3f %14.1f %14.2f  %s, 2 threads\n", qd_type_traits_get(types[k])->name,
               qd_llama_bpw(m, NULL), 256 / tp, nd / td, qd_llama_simd_name(c));
        qd_free(lg);
        qd_llama_ctx_free(c);
        if (m != g)
            qd_llama_free(m);
    }
    qd_llama_free(g);
    const char *lp = getenv("LLAMA_PERPLEXITY");
    if (!lp || !*lp)
        printf("llama-perplexity: LLAMA_PERPLEXITY was not given, so there is no llama.cpp figure to compare with\n");
    else
        printf("llama-perplexity: LLAMA_PERPLEXITY=%s is set, but the same-GGUF comparison needs our GGUF writer "
               "(model.h, another branch); not run\n", lp);
    return 0;
}

static int table(const char *model, int seqs, int len)
{
    qd_llama_model *ref;
    bool synth = !strcmp(model, "synthetic");
    if (synth) {
        qd_llama_config cfg = {256, 768, 4, 8, 4, 1024, 256, 10000.0f, 1e-5f, false};
        if (qd_llama_synthetic(&ref, &cfg, 256) < 0)
            return die("generate");
        /* random weights give a nearly flat next-token distribution; sharpen it as trained models are: scale the
         * classifier so logits spread over a few nats (x25 made the generated model chaotic: rankings became noise) */
        float *w = ref->output.data;
        for (int64_t i = 0; i < ref->output.rows * ref->output.cols; i++)
            w[i] *= 4.0f;
    } else if (qd_llama_load_llama2c(&ref, model) < 0)
        return die(model);
    if (getenv("WIDEN")) { /* the exactly equivalent d256 model: every type really applies */
        qd_llama_model *w;
        if (qd_llama_widen(&w, ref, 256, 256) < 0)
            return die("widen");
        qd_llama_free(ref);
        ref = w;
        printf("widened to dim 256, n_ff 256, %d heads (exactly equivalent; eps %.3g)\n", ref->cfg.n_heads,
               ref->cfg.norm_eps);
    }
    double t0 = now();
    qd_valset *set;
    if (qd_valset_sample(&set, ref, (uint32_t)seqs, (uint32_t)len, 42, 2) < 0)
        return die("sample");
    printf("set: %d x %d tokens sampled from the reference in %.2f s\n\n", seqs, len, now() - t0);
    printf("| type | tensor mix | bpw | mean KLD | p99 KLD | max KLD | same top %% | PPL ratio | seconds |\n");
    printf("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    static const qd_type types[] = {QD_TYPE_Q8_0, QD_TYPE_Q6_K, QD_TYPE_Q5_K, QD_TYPE_Q5_0, QD_TYPE_Q4_K,
                                    QD_TYPE_Q4_0, QD_TYPE_Q3_K, QD_TYPE_Q2_K, QD_TYPE_IQ4_NL, QD_TYPE_IQ4_XS};
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        qd_llama_quant_options o = {types[k], true, QD_TYPE_COUNT};
        qd_llama_model *q;
        if (qd_llama_quantize(&q, ref, &o) < 0)
            return die("quantize");
        qd_validation_report *r;
        if (qd_validate_run(&r, ref, q, set, NULL) < 0)
            return die("validate");
        /* tensor mix by weights */
        int64_t by[QD_TYPE_COUNT] = {0}, tot = 0;
        for (int i = 0; i < qd_llama_tensor_count(q); i++) {
            qd_llama_tensor *t = qd_llama_tensor_at(q, i, NULL);
            by[t->type] += t->rows * t->cols;
            tot += t->rows * t->cols;
        }
        char mix[160] = "";
        for (int t = 0; t < QD_TYPE_COUNT; t++)
            if (by[t]) {
                size_t l = strlen(mix);
                snprintf(mix + l, sizeof(mix) - l, "%s%s %.0f%%", l ? ", " : "", qd_type_traits_get((qd_type)t)->name,
                         100.0 * (double)by[t] / (double)tot);
            }
        printf("| %s | %s | %.3f | %.5f | %.4f | %.3f | %.2f | %.4f | %.2f |\n", qd_type_traits_get(types[k])->name,
               mix, r->bpw, r->overall.mean, r->overall.p99, r->overall.max, 100 * r->overall.same_top,
               r->overall.ppl_ratio, r->seconds);
        fflush(stdout);
        qd_validation_report_free(r);
        qd_llama_free(q);
    }
    qd_valset_free(set);
    qd_llama_free(ref);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "speed"))
        return speed(argc >= 3 ? atoi(argv[2]) : 2);
    if (argc >= 3 && !strcmp(argv[1], "table"))
        return table(argv[2], argc >= 4 ? atoi(argv[3]) : 64, argc >= 5 ? atoi(argv[4]) : 256);
    fprintf(stderr, "usage: runtime_bench speed [LAYERS] | table MODEL|synthetic [SEQS LEN]\n");
    return 2;
}
