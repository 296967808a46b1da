/*
 * safetensors.c - safetensors reader (F32, F16, BF16), single files and sharded models.
 *
 * Layout: u64 header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
 * {str: str}}, then the data section. The header is bounded (N <= the file, <= 256 MiB), parsed with duplicate keys
 * rejected, and every tensor is checked: known dtype, non-negative shape whose byte size equals end - begin,
 * range inside the data section, no two ranges overlapping. HF names are mapped to GGUF names; q_proj/k_proj are
 * marked for llama.cpp's row permutation (resolved once config.json gives the head counts).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "io_int.h"
#include "qd/alloc.h"
#include "qd/err.h"

#define ST_MAX_HEADER (256u << 20)

static int st_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int st_err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = qd_error_vset(code, QD_EC_INVALID, fmt, ap);
    va_end(ap);
    return rc;
}

static int st_dtype(const char *s, qd_type *t)
{
    if (!strcmp(s, "F32"))
        *t = QD_TYPE_F32;
    else if (!strcmp(s, "F16"))
        *t = QD_TYPE_F16;
    else if (!strcmp(s, "BF16"))
        *t = QD_TYPE_BF16;
    else
        return -1;
    return 0;
}

static int json_u64(json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int io_st_parse(qd_model *m, const uint8_t *p, size_t len, const char *dir, int shard)
{
    uint64_t n;
    json_t *root = NULL, *val;
    json_error_t jerr;
    const char *key;
    size_t first = m->n_tensors;
    int rc = QD_OK;
    (void)dir;

    if (len < 8)
        return qd_error_set(QD_ETRUNCATED, QD_EC_INVALID, "safetensors: file shorter than its 8-byte header length");
    memcpy(&n, p, 8);
    if (n > len - 8)
        return qd_error_set(QD_ETRUNCATED, QD_EC_INVALID,
                            "safetensors: header length %llu runs past the end of the file (%zu bytes)",
                            (unsigned long long)n, len);
    if (n > ST_MAX_HEADER)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "safetensors: header of %llu bytes is over the %u limit",
                            (unsigned long long)n, ST_MAX_HEADER);
    root = json_loadb((const char *)p + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "safetensors: header is not valid JSON: %s (at %d)",
                            jerr.text, jerr.position);
    if (!json_is_object(root)) {
        rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "safetensors: header is not a JSON object");
        goto done;
    }
    const uint8_t *data = p + 8 + n;
    uint64_t data_size = len - 8 - n;
    json_object_foreach(root, key, val) {
        qd_tensor t;
        json_t *dt, *shape, *offs;
        uint64_t b, e;
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) {
                rc = st_err(QD_ECORRUPT, "safetensors: %s is not an object%s", key, "");
                goto done;
            }
            json_object_foreach(val, mk, mv) {
                char kbuf[256];
                if (!json_is_string(mv)) {
                    rc = st_err(QD_ECORRUPT, "safetensors: __metadata__.%s is not a string%s", mk, "");
                    goto done;
                }
                if (shard == 0) {
                    snprintf(kbuf, sizeof(kbuf), "safetensors.%s", mk);
                    if ((rc = io_model_set_str(m, kbuf, json_string_value(mv))))
                        goto done;
                }
            }
            continue;
        }
        memset(&t, 0, sizeof(t));
        dt = json_object_get(val, "dtype");
        shape = json_object_get(val, "shape");
        offs = json_object_get(val, "data_offsets");
        if (!json_is_object(val) || !json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs) ||
            json_array_size(offs) != 2) {
            rc = st_err(QD_ECORRUPT, "safetensors: tensor %s: needs dtype, shape and data_offsets[2]%s", key, "");
            goto done;
        }
        if (st_dtype(json_string_value(dt), &t.type)) {
            rc = st_err(QD_EUNSUPPORTED, "safetensors: tensor %s: dtype %s is not supported (F32, F16, BF16)", key,
                        json_string_value(dt));
            goto done;
        }
        size_t rank = json_array_size(shape);
        if (rank > 4) {
            rc = st_err(QD_EUNSUPPORTED, "safetensors: tensor %s: more than 4 dimensions%s", key, "");
            goto done;
        }
        t.n_dims = rank ? (uint32_t)rank : 1;
        for (int d = 0; d < 4; d++)
            t.ne[d] = 1;
        uint64_t nel = 1;
        for (size_t d = 0; d < rank; d++) {
            uint64_t v;
            if (json_u64(json_array_get(shape, d), &v) || (v && nel > (UINT64_MAX / 8) / v)) {
                rc = st_err(QD_ECORRUPT, "safetensors: tensor %s: bad or overflowing shape%s", key, "");
                goto done;
            }
            t.ne[rank - 1 - d] = (int64_t)v; /* row-major [out, in] -> ggml ne[0] = in */
            nel *= v;
        }
        if (json_u64(json_array_get(offs, 0), &b) || json_u64(json_array_get(offs, 1), &e) || e < b) {
            rc = st_err(QD_ECORRUPT, "safetensors: tensor %s: bad data_offsets%s", key, "");
            goto done;
        }
        t.nbytes = nel * (t.type == QD_TYPE_F32 ? 4 : 2);
        if (e - b != t.nbytes) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID,
                              "safetensors: tensor %s: data_offsets hold %llu bytes, the shape needs %llu", key,
                              (unsigned long long)(e - b), (unsigned long long)t.nbytes);
            goto done;
        }
        t.offset = b;
        t.data = data + (b <= data_size ? b : 0);
        qd_name_permute perm;
        if (strstr(key, "rotary_emb.inv_freq"))
            continue; /* derived from rope_theta; llama.cpp's converter drops it */
        if (qd_name_map(t.name, sizeof(t.name), &perm, key, QD_NAMES_HF, QD_NAMES_GGUF)) {
            qd_error_clear();
            if (strlen(key) > QD_GGUF_MAX_NAME) {
                rc = st_err(QD_EUNSUPPORTED, "safetensors: tensor %s: unknown name too long for GGUF%s", key, "");
                goto done;
            }
            snprintf(t.name, sizeof(t.name), "%s", key);
            perm = QD_PERMUTE_NONE;
        }
        t.permute_heads = perm == QD_PERMUTE_Q ? -1 : perm == QD_PERMUTE_K ? -2 : 0;
        t.src_name = qd_strdup(key);
        if (!t.src_name) {
            rc = QD_ENOMEM;
            goto done;
        }
        if (qd_model_tensor_find(m, t.name)) {
            qd_free(t.src_name);
            rc = st_err(QD_ECORRUPT, "safetensors: tensor %s appears twice (as %s)", t.name, key);
            goto done;
        }
        if ((rc = io_model_add_tensor(m, &t)))
            goto done;
    }
    rc = io_check_layout(m, first, data_size, "safetensors");
done:
    json_decref(root);
    return rc;
}

static int cfg_int(json_t *cfg, const char *name, int64_t *out)
{
    json_t *v = json_object_get(cfg, name);
    if (!json_is_integer(v))
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* config.json (HF) -> llama.* metadata; resolve the Q/K permutation; canonical tensor order. */
int io_st_finish(qd_model *m, const char *dir)
{
    char path[4096];
    json_t *cfg = NULL;
    json_error_t jerr;
    int64_t n_head = 0, n_head_kv = 0, v;
    int rc = QD_OK;

    if (dir) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/config.json", dir);
        if (stat(path, &st) == 0) {
            cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
            if (!cfg || !json_is_object(cfg)) {
                json_decref(cfg);
                return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: not a JSON object: %s", path, jerr.text);
            }
        }
    }
    if (cfg) {
        json_t *mt = json_object_get(cfg, "model_type");
        const char *arch = json_is_string(mt) ? json_string_value(mt) : "llama";
        if (strcmp(arch, "llama") && strcmp(arch, "mistral")) {
            rc = qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID, "config.json: model_type %s is not llama-family", arch);
            goto done;
        }
        static const struct {
            const char *hf, *gguf;
        } ints[] = {{"max_position_embeddings", "llama.context_length"},
                    {"hidden_size", "llama.embedding_length"},
                    {"num_hidden_layers", "llama.block_count"},
                    {"intermediate_size", "llama.feed_forward_length"},
                    {"num_attention_heads", "llama.attention.head_count"},
                    {"num_key_value_heads", "llama.attention.head_count_kv"},
                    {"vocab_size", "llama.vocab_size"}};
        if ((rc = io_model_set_str(m, "general.architecture", "llama")))
            goto done;
        for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
            if (cfg_int(cfg, ints[i].hf, &v) == 0 && v >= 0 && v <= UINT32_MAX)
                if ((rc = io_model_set_u32(m, ints[i].gguf, (uint32_t)v)))
                    goto done;
        }
        if (cfg_int(cfg, "num_attention_heads", &n_head))
            n_head = 0;
        if (cfg_int(cfg, "num_key_value_heads", &n_head_kv))
            n_head_kv = n_head;
        int64_t hidden;
        if (n_head > 0 && cfg_int(cfg, "hidden_size", &hidden) == 0 && hidden % n_head == 0)
            if ((rc = io_model_set_u32(m, "llama.rope.dimension_count", (uint32_t)(hidden / n_head))))
                goto done;
        json_t *eps = json_object_get(cfg, "rms_norm_eps"), *theta = json_object_get(cfg, "rope_theta");
        if (json_is_number(eps) && (rc = io_model_set_f32(m, "llama.attention.layer_norm_rms_epsilon",
                                                          (float)json_number_value(eps))))
            goto done;
        if (json_is_number(theta) &&
            (rc = io_model_set_f32(m, "llama.rope.freq_base", (float)json_number_value(theta))))
            goto done;
    }
    for (size_t i = 0; i < m->n_tensors; i++) {
        qd_tensor *t = &m->tensors[i];
        if (t->permute_heads >= 0)
            continue;
        int64_t heads = t->permute_heads == -1 ? n_head : n_head_kv;
        if (heads <= 0) {
            rc = qd_error_set(QD_EUNSUPPORTED, QD_EC_INVALID,
                              "safetensors: %s needs the head counts of config.json to be reordered for GGUF",
                              t->src_name);
            goto done;
        }
        if (t->ne[1] % (2 * heads)) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "safetensors: %s has %lld rows, not a multiple of 2 x %lld heads",
                              t->src_name, (long long)t->ne[1], (long long)heads);
            goto done;
        }
        t->permute_heads = (int32_t)heads;
    }
    io_sort_tensors_canonical(m);
done:
    json_decref(cfg);
    return rc;
}

int io_st_open_sharded(qd_model *m, const char *dir, const char *index)
{
    json_error_t jerr;
    json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &jerr), *wm, *val;
    const char *key;
    char **files = NULL;
    size_t n_files = 0;
    int rc = QD_OK;

    if (!root)
        return qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: not valid JSON: %s", index, jerr.text);
    wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: no weight_map object", index);
        goto done;
    }
    files = qd_calloc(json_object_size(wm) + 1, sizeof(char *));
    if (!files) {
        rc = QD_ENOMEM;
        goto done;
    }
    json_object_foreach(wm, key, val) {
        const char *f = json_string_value(val);
        size_t j;
        if (!f || strchr(f, '/') || !strcmp(f, "..")) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: weight_map.%s is not a file name", index, key);
            goto done;
        }
        for (j = 0; j < n_files && strcmp(files[j], f); j++)
            ;
        if (j == n_files)
            files[n_files++] = (char *)f;
    }
    m->maps = qd_calloc(n_files ? n_files : 1, sizeof(io_map));
    if (!m->maps) {
        rc = QD_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n_files; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if ((rc = io_map_file(&m->maps[i], path)))
            goto done;
        m->n_maps++;
        if ((rc = io_st_parse(m, m->maps[i].base, m->maps[i].size, dir, (int)i))) {
            qd_error_prefix("%s", path);
            goto done;
        }
    }
    json_object_foreach(wm, key, val) {
        char g[QD_GGUF_MAX_NAME + 1];
        if (strstr(key, "rotary_emb.inv_freq"))
            continue;
        if (qd_name_map(g, sizeof(g), NULL, key, QD_NAMES_HF, QD_NAMES_GGUF)) {
            qd_error_clear();
            snprintf(g, sizeof(g), "%s", key);
        }
        if (!qd_model_tensor_find(m, g)) {
            rc = qd_error_set(QD_ECORRUPT, QD_EC_INVALID, "%s: tensor %s is not in %s", index, key,
                              json_string_value(val));
            goto done;
        }
    }
    rc = io_st_finish(m, dir);
done:
    qd_free(files);
    json_decref(root);
    return rc;
}
