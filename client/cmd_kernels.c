/*
 * cmd_kernels.c - `quant kernels`: which kernel variant this machine uses and why.
 */
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "qd/err.h"
#include "qd/quant.h"

int cmd_kernels(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: quant kernels\n\nPrints the kernel variant in use (QD_KERNELS=ref|avx2|avx512 forces one), the "
               "variants this build has, the CPU features seen, and the types it can quantize.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "quant kernels: takes no arguments\n");
        return EXIT_USAGE;
    }
    int rc = qd_kernels_select();
    if (rc < 0)
        return qd_fail(rc, "kernels");
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
    return 0;
}
