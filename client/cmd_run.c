/*
 * cmd_run.c - `quant run --model M --tokens N`: greedy decode from BOS with the reference runtime.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/runtime.h"

static int usage(FILE *f)
{
    fprintf(f, "usage: quant run --model M [--tokens N] [--threads T] [--kv f32|f16|q8_0|q4_0|fp8_e4m3]\n"
               "                 [--type TYPE] [--prompt IDS [--probs]]\n\n"
               "Greedy decode N tokens (default 32) from BOS (token 1) and print their ids, one line.\n"
               "M is any model file quant reads: a GGUF (any type, run as stored), a safetensors file or sharded\n"
               "directory, or a llama2.c checkpoint. --type quantizes the model in memory first (e.g. Q4_K; rows\n"
               "that do not fit the block stay f32).\n"
               "--prompt 1,2,3 starts from those ids instead of BOS; with --probs, prints instead one JSON object\n"
               "{\"tokens\": [...], \"probs\": [[...] after each prompt token], \"greedy\": [N ids]} (the oracle\n"
               "comparison in tests/oracle/ reads it).\n"
               "--json: {\"tokens\": [prompt ids], \"greedy\": [N ids]} instead of the line of ids.\n");
    return f == stdout ? 0 : EXIT_USAGE;
}

int cmd_run(int argc, char **argv)
{
    const char *model = NULL, *type = NULL, *prompt_arg = NULL;
    bool probs = false, json = false;
    int n = 32, rc;
    qd_llama_ctx_options o = QD_LLAMA_CTX_OPTIONS_INIT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout);
        if (!strcmp(a, "--probs")) {
            probs = true;
            continue;
        }
        if (!strcmp(a, "--json")) {
            json = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "quant run: %s needs a value (or is unknown)\n", a);
            return EXIT_USAGE;
        }
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--tokens"))
            n = atoi(v);
        else if (!strcmp(a, "--threads"))
            o.n_threads = atoi(v);
        else if (!strcmp(a, "--type"))
            type = v;
        else if (!strcmp(a, "--prompt"))
            prompt_arg = v;
        else if (!strcmp(a, "--kv")) {
            if ((rc = qd_llama_kv_from_name(v, &o.kv_type)) < 0)
                return qd_fail(rc, "run");
        } else {
            fprintf(stderr, "quant run: unknown option %s\n", a);
            return usage(stderr);
        }
        i++;
    }
    if (!model) {
        fprintf(stderr, "quant run: --model is required\n");
        return EXIT_USAGE;
    }
    if (n <= 0 || n > 1 << 20) {
        fprintf(stderr, "quant run: --tokens must be a positive number\n");
        return EXIT_USAGE;
    }
    qd_llama_model *m = NULL, *q = NULL;
    qd_llama_ctx *c = NULL;
    int32_t *out = NULL, prompt[4096];
    int np = 0;
    float *lg = NULL;
    for (const char *p = prompt_arg; p && *p;) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p || np == 4096 || t < 0 || t > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "quant run: --prompt takes comma-separated token ids (at most 4096)\n");
            return EXIT_USAGE;
        }
        prompt[np++] = (int32_t)t;
        p = *end ? end + 1 : end;
    }
    if (probs && np == 0) {
        fprintf(stderr, "quant run: --probs needs --prompt\n");
        return EXIT_USAGE;
    }
    if ((rc = qd_llama_load_model(&m, model)) < 0)
        return qd_fail(rc, model);
    if (type) {
        qd_llama_quant_options qo = {QD_TYPE_F32, false, QD_TYPE_COUNT};
        if ((rc = qd_type_from_name(type, &qo.type)) < 0 || (rc = qd_llama_quantize(&q, m, &qo)) < 0) {
            rc = qd_fail(rc, "run");
            goto done;
        }
    }
    if (n + np + 1 > m->cfg.seq_len)
        o.n_ctx = n + np + 1;
    out = qd_mallocarray((size_t)n, sizeof(int32_t));
    if (!out) {
        rc = qd_fail(QD_ENOMEM, "run");
        goto done;
    }
    if ((rc = qd_llama_ctx_new(&c, q ? q : m, &o)) < 0) {
        rc = qd_fail(rc, "run");
        goto done;
    }
    if (probs) {
        int V = m->cfg.vocab;
        if (!(lg = qd_mallocarray((size_t)np * V, sizeof(float)))) {
            rc = qd_fail(QD_ENOMEM, "run");
            goto done;
        }
        if ((rc = qd_llama_eval(c, prompt, np, lg, NULL)) < 0) {
            rc = qd_fail(rc, "run");
            goto done;
        }
        printf("{\"tokens\": [");
        for (int i = 0; i < np; i++)
            printf(i ? ", %d" : "%d", (int)prompt[i]);
        printf("], \"probs\": [");
        for (int p = 0; p < np; p++) { /* softmax in double */
            const float *r = lg + (size_t)p * V;
            double mx = r[0], sum = 0;
            for (int i = 1; i < V; i++)
                mx = r[i] > mx ? r[i] : mx;
            for (int i = 0; i < V; i++)
                sum += exp(r[i] - mx);
            printf(p ? ", [" : "[");
            for (int i = 0; i < V; i++)
                printf(i ? ", %.9g" : "%.9g", exp(r[i] - mx) / sum);
            printf("]");
        }
        printf("], \"greedy\": [");
        qd_llama_reset(c);
        if ((rc = qd_llama_generate_greedy(c, prompt, np, n, out)) < 0) {
            rc = qd_fail(rc, "run");
            goto done;
        }
        for (int i = 0; i < n; i++)
            printf(i ? ", %d" : "%d", (int)out[i]);
        printf("]}\n");
        rc = 0;
        goto done;
    }
    if ((rc = qd_llama_generate_greedy(c, np ? prompt : NULL, np, n, out)) < 0) {
        rc = qd_fail(rc, "run");
        goto done;
    }
    if (json) {
        printf("{\"tokens\": [");
        for (int i = 0; i < np; i++)
            printf(i ? ", %d" : "%d", (int)prompt[i]);
        printf("], \"greedy\": [");
        for (int i = 0; i < n; i++)
            printf(i ? ", %d" : "%d", (int)out[i]);
        printf("]}\n");
    } else {
        for (int i = 0; i < n; i++)
            printf(i ? " %d" : "%d", (int)out[i]);
        printf("\n");
    }
    rc = 0;
done:
    qd_free(lg);
    qd_free(out);
    qd_llama_ctx_free(c);
    qd_llama_free(q);
    qd_llama_free(m);
    return rc;
}
