/*
 * cmd_kernels.c - `quant kernels`: which kernel variant this machine uses and why.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "qd/cuda.h"
#include "qd/err.h"
#include "qd/quant.h"

/* The GPU path: the device it would use (*c, closed by the caller) or why there is none (reason). */
static void gpu_probe(qd_cuda **c, char *reason, size_t n)
{
    *c = NULL;
    reason[0] = 0;
    if (qd_cuda_open(c, 0) != QD_OK)
        snprintf(reason, n, "%s", qd_error_last()->message);
}

int cmd_kernels(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: quant kernels [--json]\n\nPrints the kernel variant in use (QD_KERNELS=ref|avx2|avx512 forces one), the "
               "variants this build has, the CPU features seen, the types it can quantize, and the GPU the GPU path\n"
               "would use (make CUDA=1 builds it) or why there is none.\n"
               "--json: the same as one object (schemas/client.schema.json#/$defs/kernels).\n");
        return 0;
    }
    int json = argc == 2 && !strcmp(argv[1], "--json");
    if (argc > 1 && !json) {
        fprintf(stderr, "quant kernels: takes no arguments but --json\n");
        return EXIT_USAGE;
    }
    int rc = qd_kernels_select();
    if (rc < 0)
        return qd_fail(rc, "kernels");
    qd_cuda *gpu;
    char why[256];
    gpu_probe(&gpu, why, sizeof(why));
    if (json) {
        json_t *o = json_pack("{s:s,s:[],s:s,s:[],s:[],s:{s:b,s:s?,s:s?,s:s?}}", "kernels",
                              qd_kernels_name(qd_kernels_current()), "built", "cpu", qd_kernels_cpu_features(),
                              "quantize", "vectorized", "gpu", "built", qd_cuda_built(), "device",
                              gpu ? qd_cuda_device(gpu)->name : NULL, "kernel", gpu ? qd_cuda_kernel_name(gpu) : NULL,
                              "reason", gpu ? NULL : why);
        char *text;
        qd_cuda_close(gpu);
        if (!o)
            return qd_fail(QD_ENOMEM, "kernels");
        for (int v = QD_KERNELS_REF; v <= QD_KERNELS_CUDA; v++)
            if (qd_kernels_built((qd_kernel_variant)v))
                json_array_append_new(json_object_get(o, "built"),
                                      json_pack("{s:s,s:b}", "name", qd_kernels_name((qd_kernel_variant)v), "usable",
                                                qd_kernels_usable((qd_kernel_variant)v)));
        for (int t = 0; t < QD_TYPE_COUNT; t++) {
            const qd_type_traits *tr = qd_type_traits_get((qd_type)t);
            if (tr && tr->can_quantize)
                json_array_append_new(json_object_get(o, "quantize"), json_string(tr->name));
            if (tr && qd_kernels_accelerated((qd_type)t))
                json_array_append_new(json_object_get(o, "vectorized"), json_string(tr->name));
        }
        text = json_dumps(o, JSON_INDENT(2));
        json_decref(o);
        if (!text)
            return qd_fail(QD_ENOMEM, "kernels");
        printf("%s\n", text);
        free(text); /* jansson */
        return 0;
    }
    printf("kernels: %s\n", qd_kernels_name(qd_kernels_current()));
    printf("built:");
    for (int v = QD_KERNELS_REF; v <= QD_KERNELS_CUDA; v++)
        if (qd_kernels_built((qd_kernel_variant)v))
            printf(" %s%s", qd_kernels_name((qd_kernel_variant)v),
                   qd_kernels_usable((qd_kernel_variant)v) ? "" : " (not on this CPU)");
    printf("\n");
    printf("cpu: %s\n", qd_kernels_cpu_features());
    printf("quantize:");
    for (int t = 0; t < QD_TYPE_COUNT; t++) {
        const qd_type_traits *tr = qd_type_traits_get((qd_type)t);
        if (tr && tr->can_quantize)
            printf(" %s", tr->name);
    }
    printf("\n");
    printf("vectorized here:");
    for (int t = 0; t < QD_TYPE_COUNT; t++)
        if (qd_kernels_accelerated((qd_type)t))
            printf(" %s", qd_type_traits_get((qd_type)t)->name);
    printf("%s\n", qd_kernels_current() == QD_KERNELS_REF ? " (none: the reference)" : "");
    if (gpu)
        printf("gpu: %s, sm_%d, %d multiprocessors: kernels %s (quant quantize --device)\n", qd_cuda_device(gpu)->name,
               qd_cuda_device(gpu)->sm, qd_cuda_device(gpu)->multiprocessors, qd_cuda_kernel_name(gpu));
    else
        printf("gpu: none (%s)\n", why);
    qd_cuda_close(gpu);
    return 0;
}
