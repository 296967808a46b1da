/*
 * methods.h - `quant quantize --method NAME`: the options every method sees, and the method table's entries.
 * A method is one line in the table of cmd_quantize.c plus a function here; each returns an exit code.
 */
#ifndef QUANT_METHODS_H
#define QUANT_METHODS_H

#include <stdbool.h>

#include "qd/pipeline.h"

typedef struct qmethod_args {
    const char *in, *out, *type, *format, *method;
    const char *imatrix_path;  /* --imatrix FILE */
    const char *calib;         /* --calib SET: a QDVALSET file or sample:N:LEN:SEED */
    const char *val;           /* --val SET: a validation set the calibration set must not overlap */
    const char *calib_class;   /* --calib-class: none, generic-text, code, multilingual, domain:NAME */
    long group;                /* --group (0: the method's default) */
    int bits;                  /* --bits (0: the method's default) */
    double damp;               /* --damp (< 0: default 0.01) */
    bool act_order, sym;       /* --act-order, --sym */
    bool no_true_sequential;   /* --no-true-sequential: GPTQ's whole block from one pass */
    bool double_quant, per_tensor, weight_only;
    bool json;                 /* --json: the summary as one JSON object (schemas/client.schema.json) */
    int threads;
    qd_quantize_opts *o;       /* GGUF: the recipe and options parsed so far */
} qmethod_args;

typedef struct qmethod {
    const char *name;
    const char *summary;
    int (*run)(const qmethod_args *a);
} qmethod;

/* cmd_quantize.c: run the GGUF pipeline with o (progress bar, summary line); an exit code */
int quantize_gguf_run(const qmethod_args *a, qd_quantize_opts *o);
/* cmd_quantize.c: the Hugging Face layouts (bnb, compressed-tensors) with round to nearest */
int quantize_hf_rtn(const qmethod_args *a);

/* method_gptq.c: imatrix (collect on the fly, or --imatrix FILE) and GPTQ (GGUF or autogptq) */
int method_imatrix(const qmethod_args *a);
int method_gptq(const qmethod_args *a);

#endif
