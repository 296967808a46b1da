/*
 * cmd_inspect.c - `quant inspect FILE [--json]`: metadata and the tensor table of a GGUF, safetensors or llama2.c
 * model.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
#include "qd/err.h"
#include "qd/model.h"

#define ARR_SHOW 8

static json_t *kv_scalar_json(qd_gguf_type t, const uint8_t *p)
{
    qd_kv tmp;
    memset(&tmp, 0, sizeof(tmp));
    tmp.type = t;
    switch (t) {
    case QD_GGUF_U8: return json_integer(*p);
    case QD_GGUF_I8: return json_integer(*(const int8_t *)p);
    case QD_GGUF_BOOL: return json_boolean(*p);
    default: break;
    }
    uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f; uint64_t u64; int64_t i64; double d;
    switch (t) {
    case QD_GGUF_U16: memcpy(&u16, p, 2); return json_integer(u16);
    case QD_GGUF_I16: memcpy(&i16, p, 2); return json_integer(i16);
    case QD_GGUF_U32: memcpy(&u32, p, 4); return json_integer(u32);
    case QD_GGUF_I32: memcpy(&i32, p, 4); return json_integer(i32);
    case QD_GGUF_F32: memcpy(&f, p, 4); return json_real(f);
    case QD_GGUF_U64: memcpy(&u64, p, 8); return json_integer((json_int_t)u64);
    case QD_GGUF_I64: memcpy(&i64, p, 8); return json_integer(i64);
    case QD_GGUF_F64: memcpy(&d, p, 8); return json_real(d);
    default: return json_null();
    }
}

static json_t *kv_json(const qd_kv *kv, int full)
{
    switch (kv->type) {
    case QD_GGUF_STRING: return json_stringn_nocheck(kv->str, (size_t)kv->str_len);
    case QD_GGUF_BOOL: return json_boolean(kv->num.u);
    case QD_GGUF_F32: case QD_GGUF_F64: return json_real(kv->num.f);
    case QD_GGUF_U8: case QD_GGUF_U16: case QD_GGUF_U32: case QD_GGUF_U64: return json_integer((json_int_t)kv->num.u);
    case QD_GGUF_I8: case QD_GGUF_I16: case QD_GGUF_I32: case QD_GGUF_I64: return json_integer(kv->num.i);
    case QD_GGUF_ARRAY: {
        json_t *a = json_array();
        uint64_t n = full ? kv->n : (kv->n < ARR_SHOW ? kv->n : ARR_SHOW);
        size_t sz = qd_gguf_type_size(kv->arr_type);
        for (uint64_t i = 0; i < n; i++) {
            if (kv->arr_type == QD_GGUF_STRING)
                json_array_append_new(a, json_stringn_nocheck(((char **)kv->arr)[i], (size_t)kv->arr_lens[i]));
            else
                json_array_append_new(a, kv_scalar_json(kv->arr_type, (const uint8_t *)kv->arr + i * sz));
        }
        return a;
    }
    default: return json_null();
    }
}

static void print_kv(const qd_kv *kv)
{
    printf("  %-48s ", kv->key);
    if (kv->type == QD_GGUF_ARRAY) {
        printf("[%s x %llu]", qd_gguf_type_name(kv->arr_type), (unsigned long long)kv->n);
        json_t *j = kv_json(kv, 0);
        char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s)
            printf(" %s%s", s, kv->n > ARR_SHOW ? " ..." : "");
        free(s); /* allocated by jansson */
        json_decref(j);
        printf("\n");
        return;
    }
    json_t *j = kv_json(kv, 1);
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    printf("%-6s %s\n", qd_gguf_type_name(kv->type), s ? s : "?");
    free(s); /* allocated by jansson */
    json_decref(j);
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int as_json = 0, rc;
    qd_model *m;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: quant inspect FILE [--json]\n  metadata and tensor table of a GGUF, safetensors "
                   "(file, directory or index) or llama2.c checkpoint\n");
            return EXIT_OK_;
        } else if (!path)
            path = argv[i];
        else {
            fprintf(stderr, "quant inspect: one file at a time\n");
            return EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: quant inspect FILE [--json]\n");
        return EXIT_USAGE;
    }
    if ((rc = qd_model_open(&m, path)))
        return qd_fail(rc, "inspect");

    size_t nt = qd_model_tensor_count(m), nk = qd_model_kv_count(m);
    uint64_t total = 0, nel = 0;
    for (size_t i = 0; i < nt; i++) {
        total += qd_model_tensor_at(m, i)->nbytes;
        nel += (uint64_t)qd_tensor_nelements(qd_model_tensor_at(m, i));
    }
    qd_hparams hp;
    int have_hp = qd_model_hparams(m, &hp) == QD_OK;
    qd_error_clear();

    if (as_json) {
        json_t *root = json_object(), *meta = json_object(), *tens = json_array();
        json_object_set_new(root, "file", json_string(path));
        json_object_set_new(root, "format", json_string(qd_model_format_name(qd_model_format_of(m))));
        if (qd_model_format_of(m) == QD_MODEL_GGUF) {
            json_object_set_new(root, "gguf_version", json_integer(qd_model_gguf_version(m)));
            json_object_set_new(root, "alignment", json_integer(qd_model_alignment(m)));
            json_object_set_new(root, "data_offset", json_integer((json_int_t)qd_model_data_offset(m)));
        }
        json_object_set_new(root, "tensor_count", json_integer((json_int_t)nt));
        json_object_set_new(root, "kv_count", json_integer((json_int_t)nk));
        json_object_set_new(root, "tensor_bytes", json_integer((json_int_t)total));
        json_object_set_new(root, "n_elements", json_integer((json_int_t)nel));
        if (have_hp) {
            json_t *h = json_object();
            json_object_set_new(h, "arch", json_string(hp.arch));
            json_object_set_new(h, "n_vocab", json_integer(hp.n_vocab));
            json_object_set_new(h, "n_embd", json_integer(hp.n_embd));
            json_object_set_new(h, "n_ff", json_integer(hp.n_ff));
            json_object_set_new(h, "n_layer", json_integer(hp.n_layer));
            json_object_set_new(h, "n_head", json_integer(hp.n_head));
            json_object_set_new(h, "n_head_kv", json_integer(hp.n_head_kv));
            json_object_set_new(h, "n_ctx", json_integer(hp.n_ctx));
            json_object_set_new(h, "has_tokenizer", json_boolean(hp.has_tokenizer));
            json_object_set_new(root, "hparams", h);
        }
        for (size_t i = 0; i < nk; i++) {
            const qd_kv *kv = qd_model_kv_at(m, i);
            json_object_set_new(meta, kv->key, kv_json(kv, 0));
        }
        json_object_set_new(root, "metadata", meta);
        for (size_t i = 0; i < nt; i++) {
            const qd_tensor *t = qd_model_tensor_at(m, i);
            json_t *o = json_object(), *shape = json_array();
            const qd_type_traits *tr = qd_type_traits_get(t->type);
            for (uint32_t d = 0; d < t->n_dims; d++)
                json_array_append_new(shape, json_integer(t->ne[d]));
            json_object_set_new(o, "name", json_string(t->name));
            if (t->src_name)
                json_object_set_new(o, "source_name", json_string(t->src_name));
            json_object_set_new(o, "type", json_string(tr ? tr->name : "?"));
            json_object_set_new(o, "shape", shape);
            json_object_set_new(o, "offset", json_integer((json_int_t)t->offset));
            json_object_set_new(o, "bytes", json_integer((json_int_t)t->nbytes));
            if (t->permute_heads > 0)
                json_object_set_new(o, "permute_heads", json_integer(t->permute_heads));
            json_array_append_new(tens, o);
        }
        json_object_set_new(root, "tensors", tens);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        if (s)
            printf("%s\n", s);
        free(s); /* allocated by jansson */
        json_decref(root);
        qd_model_free(m);
        return EXIT_OK_;
    }

    printf("%s: %s", path, qd_model_format_name(qd_model_format_of(m)));
    if (qd_model_format_of(m) == QD_MODEL_GGUF)
        printf(" v%u, alignment %u, data at %llu", qd_model_gguf_version(m), qd_model_alignment(m),
               (unsigned long long)qd_model_data_offset(m));
    printf("\n%zu tensors, %llu elements, %llu bytes (%.4f bits per weight), %zu metadata keys\n", nt,
           (unsigned long long)nel, (unsigned long long)total, nel ? (double)total * 8.0 / (double)nel : 0.0, nk);
    if (have_hp)
        printf("%s: vocab %lld, embd %lld, ff %lld, layers %lld, heads %lld/%lld, ctx %lld%s\n", hp.arch,
               (long long)hp.n_vocab, (long long)hp.n_embd, (long long)hp.n_ff, (long long)hp.n_layer,
               (long long)hp.n_head, (long long)hp.n_head_kv, (long long)hp.n_ctx,
               hp.has_tokenizer ? "" : ", no tokenizer");
    printf("metadata:\n");
    for (size_t i = 0; i < nk; i++)
        print_kv(qd_model_kv_at(m, i));
    printf("tensors:\n");
    for (size_t i = 0; i < nt; i++) {
        const qd_tensor *t = qd_model_tensor_at(m, i);
        const qd_type_traits *tr = qd_type_traits_get(t->type);
        char shape[96];
        int o = snprintf(shape, sizeof(shape), "[%lld", (long long)t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims && o < (int)sizeof(shape); d++)
            o += snprintf(shape + o, sizeof(shape) - (size_t)o, ", %lld", (long long)t->ne[d]);
        if (o < (int)sizeof(shape))
            snprintf(shape + o, sizeof(shape) - (size_t)o, "]");
        printf("  %-36s %-8s %-22s %12llu bytes%s\n", t->name, tr ? tr->name : "?", shape,
               (unsigned long long)t->nbytes, t->permute_heads > 0 ? "  (HF rows, permuted on read)" : "");
    }
    qd_model_free(m);
    return EXIT_OK_;
}
