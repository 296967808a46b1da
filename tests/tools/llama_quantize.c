/*
 * llama_quantize - llama-quantize's command line over llama.cpp's own quantizer in a shared library: the npm package
 * the runtime tests already install (node-llama-cpp, make deps) ships libllama, whose llama_model_quantize is the
 * function llama-quantize calls. tests/integration/453_llama_quantize_identical.sh compares our output with it
 * tensor by tensor, and bench/quantize_model.sh times it beside ours where no llama-quantize binary is installed.
 *
 *   LLAMA_LIB=path/to/libllama.so llama_quantize IN.gguf OUT.gguf TYPE [THREADS]
 *
 * TYPE is a recipe name as llama-quantize takes it (Q4_0, Q8_0, Q4_K_M, ...). The library is opened at run time
 * (dlopen), so nothing of llama.cpp is linked into this project.
 *
 * llama_model_quantize_params is llama.cpp's struct, and its layout has changed between releases; only its first
 * two members are used here, which have kept their place since the struct exists: int32_t nthread, then the
 * llama_ftype enum. The struct comes back by value (through a hidden result pointer on x86-64 and AArch64), into
 * a buffer larger than any release's struct; the library's defaults must read nthread 0 and a known recipe, or the
 * program refuses to run.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "qd/recipe.h"

typedef struct params_buf {
    int32_t nthread;
    int32_t ftype;
    unsigned char rest[1016]; /* the remaining members, whatever this release has (about 100 bytes today) */
} params_buf;

typedef params_buf (*defaults_fn)(void);
typedef uint32_t (*quantize_fn)(const char *in, const char *out, const params_buf *params);

int main(int argc, char **argv)
{
    const char *lib = getenv("LLAMA_LIB");
    qd_ftype ft;
    if (argc < 4 || argc > 5 || !lib || !*lib) {
        fprintf(stderr, "usage: LLAMA_LIB=libllama.so %s IN.gguf OUT.gguf TYPE [THREADS]\n", argv[0]);
        return 2;
    }
    if (qd_recipe_from_name(argv[3], &ft) != 0) {
        fprintf(stderr, "llama_quantize: unknown type %s\n", argv[3]);
        return 2;
    }
    int threads = argc == 5 ? atoi(argv[4]) : 0;
    if (threads < 0 || threads > 4096) {
        fprintf(stderr, "llama_quantize: bad thread count %s\n", argv[4]);
        return 2;
    }
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "llama_quantize: %s\n", dlerror());
        return 1;
    }
    defaults_fn defaults = (defaults_fn)dlsym(h, "llama_model_quantize_default_params");
    quantize_fn quantize = (quantize_fn)dlsym(h, "llama_model_quantize");
    if (!defaults || !quantize) {
        fprintf(stderr, "llama_quantize: %s has no llama_model_quantize\n", lib);
        return 1;
    }
    params_buf p = defaults();
    if (p.nthread != 0 || !qd_recipe_name((qd_ftype)p.ftype)) {
        fprintf(stderr, "llama_quantize: %s's default quantize parameters read nthread %d, ftype %d: not the layout "
                "this program knows\n", lib, p.nthread, p.ftype);
        return 1;
    }
    p.nthread = threads;
    p.ftype = (int32_t)ft;
    uint32_t rc = quantize(argv[1], argv[2], &p);
    if (rc) {
        fprintf(stderr, "llama_quantize: llama_model_quantize failed (%u)\n", rc);
        return 1;
    }
    return 0;
}
