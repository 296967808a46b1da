/*
 * fuzz_safetensors.c - the safetensors reader on arbitrary bytes. Oracle: whatever parses has every tensor inside
 * the input, disjoint, of the size its shape says, with GGUF names, and its rows convert to f32.
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
    if (qd_model_open_mem(&m, data, size, QD_MODEL_SAFETENSORS) != QD_OK) {
        CHECK(qd_error_last()->message[0] != '\0');
        return 0;
    }
    for (size_t i = 0; i < qd_model_tensor_count(m); i++) {
        const qd_tensor *t = qd_model_tensor_at(m, i);
        CHECK(t->data >= (const uint8_t *)data && t->data + t->nbytes <= (const uint8_t *)data + size);
        CHECK(strlen(t->name) > 0 && strlen(t->name) <= QD_GGUF_MAX_NAME);
        CHECK((uint64_t)qd_tensor_nelements(t) * (t->type == QD_TYPE_F32 ? 4u : 2u) == t->nbytes);
        for (size_t j = 0; j < i; j++) {
            const qd_tensor *u = qd_model_tensor_at(m, j);
            CHECK(t->nbytes == 0 || u->nbytes == 0 || t->data + t->nbytes <= u->data ||
                  u->data + u->nbytes <= t->data);
        }
        int64_t rows = t->ne[0] ? qd_tensor_nelements(t) / t->ne[0] : 0;
        if (rows > 0 && t->ne[0] <= 4096) {
            float *row = qd_mallocarray((size_t)t->ne[0], sizeof(float));
            if (row) {
                CHECK(qd_tensor_read_f32(t, rows - 1, 1, row) == QD_OK);
                qd_free(row);
            }
        }
    }
    qd_model_free(m);
    return 0;
}
