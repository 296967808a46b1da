/*
 * fuzz_gguf.c - the GGUF reader on arbitrary bytes. Oracle: whatever parses must survive a write -> read round
 * trip unchanged (every kv and tensor), and its F32/F16/BF16 rows must convert.
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
    qd_model *m = NULL, *m2 = NULL;
    qd_gguf_writer *w = NULL;
    const void **datas = NULL;
    uint8_t *out = NULL;
    size_t out_len = 0;

    if (qd_model_open_mem(&m, data, size, QD_MODEL_GGUF) != QD_OK) {
        CHECK(qd_error_last()->message[0] != '\0');
        return 0;
    }
    size_t nt = qd_model_tensor_count(m), nk = qd_model_kv_count(m);
    for (size_t i = 0; i < nt; i++) {
        const qd_tensor *t = qd_model_tensor_at(m, i);
        CHECK(t->data >= (const uint8_t *)data && t->data + t->nbytes <= (const uint8_t *)data + size);
        if ((t->type == QD_TYPE_F32 || t->type == QD_TYPE_F16 || t->type == QD_TYPE_BF16) && t->ne[0] > 0 &&
            t->ne[0] <= 4096 && qd_tensor_nelements(t) > 0) {
            float *row = qd_mallocarray((size_t)t->ne[0], sizeof(float));
            if (row) {
                CHECK(qd_tensor_read_f32(t, 0, 1, row) == QD_OK);
                qd_free(row);
            }
        }
    }
    /* round trip: same alignment, every kv, every tensor */
    if (qd_gguf_writer_new(&w, qd_model_alignment(m)) != QD_OK)
        goto done;
    for (size_t i = 0; i < nk; i++)
        CHECK(qd_gguf_set_kv(w, qd_model_kv_at(m, i)) == QD_OK);
    datas = qd_calloc(nt ? nt : 1, sizeof(void *));
    if (!datas)
        goto done;
    for (size_t i = 0; i < nt; i++) {
        const qd_tensor *t = qd_model_tensor_at(m, i);
        CHECK(qd_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne) == QD_OK);
        datas[i] = t->data;
    }
    CHECK(qd_gguf_writer_to_mem(w, datas, &out, &out_len) == QD_OK);
    CHECK(qd_model_open_mem(&m2, out, out_len, QD_MODEL_GGUF) == QD_OK);
    CHECK(qd_model_kv_count(m2) == nk && qd_model_tensor_count(m2) == nt);
    for (size_t i = 0; i < nk; i++) {
        const qd_kv *a = qd_model_kv_at(m, i), *b = qd_model_kv_find(m2, a->key); /* order may change */
        CHECK(b && a->type == b->type && a->n == b->n);
        if (a->type == QD_GGUF_STRING)
            CHECK(a->str_len == b->str_len && !memcmp(a->str, b->str, a->str_len));
        else if (a->type != QD_GGUF_ARRAY)
            CHECK(!memcmp(&a->num, &b->num, sizeof(a->num)) || a->type == QD_GGUF_F32 || a->type == QD_GGUF_F64);
    }
    for (size_t i = 0; i < nt; i++) {
        const qd_tensor *a = qd_model_tensor_at(m, i), *b = qd_model_tensor_at(m2, i);
        CHECK(!strcmp(a->name, b->name) && a->type == b->type && a->nbytes == b->nbytes);
        CHECK(!memcmp(a->ne, b->ne, sizeof(a->ne)));
        CHECK(a->nbytes == 0 || !memcmp(a->data, b->data, a->nbytes));
    }
done:
    qd_model_free(m2);
    qd_free(out);
    qd_free(datas);
    qd_gguf_writer_free(w);
    qd_model_free(m);
    return 0;
}
