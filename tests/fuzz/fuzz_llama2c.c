/*
 * fuzz_llama2c.c - the llama2.c checkpoint reader on arbitrary bytes. Oracle: whatever parses has consistent
 * hyper-parameters, the tensor count 3 + 9 * layers, every tensor inside the input, and readable rows.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/model.h"

#define CHECK(c)                                                                                                   \
    do {                                                                                                           \
        if (!(c))                                                                                                  \
            abort();                                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qd_model *m = NULL;
    qd_hparams h;
    if (qd_model_open_mem(&m, data, size, QD_MODEL_LLAMA2C) != QD_OK) {
        CHECK(qd_error_last()->message[0] != '\0');
        return 0;
    }
    CHECK(qd_model_hparams(m, &h) == QD_OK);
    CHECK(qd_model_tensor_count(m) == (size_t)(3 + 9 * h.n_layer));
    for (size_t i = 0; i < qd_model_tensor_count(m); i++) {
        const qd_tensor *t = qd_model_tensor_at(m, i);
        CHECK(t->data >= (const uint8_t *)data && t->data + t->nbytes <= (const uint8_t *)data + size);
        float *row = qd_mallocarray((size_t)t->ne[0], sizeof(float));
        if (row) {
            CHECK(qd_tensor_read_f32(t, t->ne[1] - 1, 1, row) == QD_OK);
            qd_free(row);
        }
    }
    qd_model_free(m);
    return 0;
}
