/* io_int.h - private to quantd/io: the model object and the per-format parsers. */
#ifndef QD_IO_INT_H
#define QD_IO_INT_H

#include <stddef.h>
#include <stdint.h>

#include "qd/alloc.h"
#include "qd/model.h"

/* One mapped file (a model has several for sharded safetensors). */
typedef struct io_map {
    const uint8_t *base;
    size_t size;
    int mapped; /* 1: munmap on free; 0: caller's memory */
    int fd;     /* the file, kept open for pread (qd_tensor_read_f32_staged) while mapped; -1 when none */
} io_map;

struct qd_model {
    qd_model_format format;
    io_map *maps;
    size_t n_maps;
    qd_kv *kvs;
    size_t n_kv;
    qd_arena arena; /* every kv's keys, strings and arrays */
    qd_tensor *tensors;
    size_t n_tensors;
    uint32_t gguf_version;
    uint32_t alignment;
    uint64_t data_offset;
};

/* Bounded little-endian cursor over a byte range. */
typedef struct io_cur {
    const uint8_t *p;
    size_t len;
    size_t pos;
} io_cur;

int io_model_add_kv(qd_model *m, const qd_kv *kv); /* kv's members are in m->arena */
int io_model_set_u32(qd_model *m, const char *key, uint32_t v);
int io_model_set_f32(qd_model *m, const char *key, float v);
int io_model_set_str(qd_model *m, const char *key, const char *v);
int io_model_add_tensor(qd_model *m, const qd_tensor *t); /* copies; src_name is taken over */
int io_check_layout(qd_model *m, size_t first, uint64_t data_size, const char *what); /* in range, no overlap */
void io_sort_tensors_canonical(qd_model *m);

int io_gguf_parse(qd_model *m, const uint8_t *p, size_t len);
int io_st_parse(qd_model *m, const uint8_t *p, size_t len, const char *dir, int shard); /* adds tensors */
int io_st_open_sharded(qd_model *m, const char *dir, const char *index);
int io_st_finish(qd_model *m, const char *dir);     /* config.json -> llama.* keys, canonical order */
int io_l2c_parse(qd_model *m, const uint8_t *p, size_t len);

int io_map_file(io_map *out, const char *path);
void io_unmap(io_map *m);
/* Give each tensor whose data lies inside one of the model's file mappings that file's descriptor and offset. */
void io_bind_tensor_files(qd_model *m);

#endif
