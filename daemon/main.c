/*
 * main.c - `quantd`, the daemon. Until the daemon issue lands it prints its version and usage only.
 */
#include <stdio.h>
#include <string.h>

#include "qd/version.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: quantd [--version] [--help]\n\n"
               "quantd serves, quantizes, validates and signs model artifacts from a content-addressed store.\n"
               "This build has the store only: use `quant store ...` to work on a store directly.\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("quantd %s\n", qd_version_string());
        return 0;
    }
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
