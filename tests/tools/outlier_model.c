/*
 * outlier_model.c - a model with activation outliers for the calibrated methods' tests and figures: any model file
 * the runtime loads, with qd_llama_add_outliers() applied (include/qd/awq.h: a few residual channels scaled up in
 * attn_norm / ffn_norm and the matching q/k/v and gate/up columns scaled down, the same float function), written as
 * an f32 GGUF.
 *
 *   outlier_model --in MODEL --out OUT.gguf [--channels 4] [--factor 32] [--seed 1]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/awq.h"
#include "qd/err.h"
#include "qd/runtime.h"

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    int channels = 4;
    float factor = 32.0f;
    unsigned long long seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--in"))
            in = argv[i + 1];
        else if (!strcmp(argv[i], "--out"))
            out = argv[i + 1];
        else if (!strcmp(argv[i], "--channels"))
            channels = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--factor"))
            factor = strtof(argv[i + 1], NULL);
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "outlier_model: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!in || !out) {
        fprintf(stderr, "usage: outlier_model --in MODEL --out OUT.gguf [--channels N] [--factor F] [--seed S]\n");
        return 2;
    }
    qd_llama_model *m = NULL, *o = NULL;
    int rc = qd_llama_load_model(&m, in);
    if (rc == QD_OK)
        rc = qd_llama_add_outliers(&o, m, channels, factor, seed);
    if (rc == QD_OK)
        rc = qd_llama_write_gguf(o, out, 0, NULL, 0);
    if (rc != QD_OK)
        fprintf(stderr, "outlier_model: %s\n", qd_error_last()->message);
    qd_llama_free(o);
    qd_llama_free(m);
    return rc == QD_OK ? 0 : 1;
}
