/*
 * test_gguf.c - GGUF v3 writer -> reader round trips (every metadata type, every ggml tensor type, alignment) and
 * hostile headers (truncation at every length, huge counts, bad offsets, overlap, unknown types, ...).
 */
#include "testutil.h"

#include <math.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/model.h"

typedef struct built {
    uint8_t *p;
    size_t len;
} built;

/* A small GGUF: a few kvs and two F32 tensors "a.weight" [8, 2] and "b.weight" [8]. */
static built build_small(uint32_t alignment)
{
    qd_gguf_writer *w;
    built b = {NULL, 0};
    float a[16], bb[8];
    for (int i = 0; i < 16; i++)
        a[i] = (float)i * 0.5f;
    for (int i = 0; i < 8; i++)
        bb[i] = -(float)i;
    assert_int_equal(qd_gguf_writer_new(&w, alignment), QD_OK);
    assert_int_equal(qd_gguf_set_str(w, "general.architecture", "llama"), QD_OK);
    assert_int_equal(qd_gguf_set_u32(w, "test.u32", 7), QD_OK);
    int64_t ne_a[2] = {8, 2}, ne_b[1] = {8};
    assert_int_equal(qd_gguf_add_tensor(w, "a.weight", QD_TYPE_F32, 2, ne_a), QD_OK);
    assert_int_equal(qd_gguf_add_tensor(w, "b.weight", QD_TYPE_F32, 1, ne_b), QD_OK);
    const void *datas[2] = {a, bb};
    assert_int_equal(qd_gguf_writer_to_mem(w, datas, &b.p, &b.len), QD_OK);
    qd_gguf_writer_free(w);
    return b;
}

static int open_mem(const uint8_t *p, size_t len)
{
    qd_model *m = NULL;
    int rc = qd_model_open_mem(&m, p, len, QD_MODEL_GGUF);
    qd_model_free(m);
    return rc;
}

/* Position of the tensor info of name (just after its name string). */
static size_t info_pos(const built *b, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 8; i + nl <= b->len; i++)
        if (!memcmp(b->p + i, name, nl) && !memcmp(b->p + i - 8, &(uint64_t){nl}, 8))
            return i + nl;
    fail_msg("tensor info %s not found", name);
    return 0;
}

static void test_gguf__roundtrip_every_kv_type(void **state)
{
    (void)state;
    qd_gguf_writer *w;
    qd_model *m;
    uint8_t *p;
    size_t len;
    uint8_t u8s[3] = {1, 2, 255};
    int8_t i8s[3] = {-128, 0, 127};
    uint16_t u16s[2] = {0, 65535};
    int16_t i16s[2] = {-32768, 32767};
    uint32_t u32s[2] = {0, 4000000000u};
    int32_t i32s[3] = {-5, 0, 2147483647};
    float f32s[3] = {1.5f, -0.0f, 3.25e-20f};
    uint8_t bools[3] = {1, 0, 1};
    uint64_t u64s[2] = {0, UINT64_MAX};
    int64_t i64s[2] = {INT64_MIN, INT64_MAX};
    double f64s[2] = {M_PI, -1e300};
    const char *strs[3] = {"", "hello", "\xe4\xb8\x80 utf8"};

    assert_int_equal(qd_gguf_writer_new(&w, 0), QD_OK);
    qd_kv kv;
    memset(&kv, 0, sizeof(kv));
    const struct {
        const char *key;
        qd_gguf_type t;
        uint64_t u;
    } ints[] = {{"k.u8", QD_GGUF_U8, 200},           {"k.i8", QD_GGUF_I8, (uint64_t)-100},
                {"k.u16", QD_GGUF_U16, 60000},       {"k.i16", QD_GGUF_I16, (uint64_t)-30000},
                {"k.u32", QD_GGUF_U32, 4000000000u}, {"k.i32", QD_GGUF_I32, (uint64_t)-2000000000},
                {"k.bool", QD_GGUF_BOOL, 1},         {"k.u64", QD_GGUF_U64, UINT64_MAX - 3},
                {"k.i64", QD_GGUF_I64, (uint64_t)INT64_MIN}};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        kv.key = (char *)ints[i].key;
        kv.type = ints[i].t;
        kv.num.u = ints[i].u;
        assert_int_equal(qd_gguf_set_kv(w, &kv), QD_OK);
    }
    kv.key = "k.f32";
    kv.type = QD_GGUF_F32;
    kv.num.f = 0.1f;
    assert_int_equal(qd_gguf_set_kv(w, &kv), QD_OK);
    kv.key = "k.f64";
    kv.type = QD_GGUF_F64;
    kv.num.f = 0.1;
    assert_int_equal(qd_gguf_set_kv(w, &kv), QD_OK);
    assert_int_equal(qd_gguf_set_str(w, "k.str", "a string"), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.u8", QD_GGUF_U8, u8s, 3), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.i8", QD_GGUF_I8, i8s, 3), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.u16", QD_GGUF_U16, u16s, 2), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.i16", QD_GGUF_I16, i16s, 2), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.u32", QD_GGUF_U32, u32s, 2), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.i32", QD_GGUF_I32, i32s, 3), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.f32", QD_GGUF_F32, f32s, 3), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.bool", QD_GGUF_BOOL, bools, 3), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.u64", QD_GGUF_U64, u64s, 2), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.i64", QD_GGUF_I64, i64s, 2), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.f64", QD_GGUF_F64, f64s, 2), QD_OK);
    assert_int_equal(qd_gguf_set_arr(w, "a.empty", QD_GGUF_U32, NULL, 0), QD_OK);
    assert_int_equal(qd_gguf_set_str_arr(w, "a.str", strs, 3), QD_OK);
    assert_int_equal(qd_gguf_set_u32(w, "k.u32", 4000000000u), QD_OK); /* replacing keeps one copy */
    assert_int_equal(qd_gguf_writer_to_mem(w, (const void *const *)NULL, &p, &len), QD_OK);
    qd_gguf_writer_free(w);

    assert_int_equal(qd_model_open_mem(&m, p, len, QD_MODEL_UNKNOWN), QD_OK);
    assert_int_equal(qd_model_format_of(m), QD_MODEL_GGUF);
    assert_int_equal(qd_model_gguf_version(m), 3);
    assert_int_equal(qd_model_kv_count(m), 25);
    int64_t v;
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        const qd_kv *k = qd_model_kv_find(m, ints[i].key);
        assert_non_null(k);
        assert_int_equal(k->type, ints[i].t);
        if (ints[i].t != QD_GGUF_U64) {
            assert_int_equal(qd_kv_int(k, &v), QD_OK);
        }
    }
    assert_int_equal(qd_kv_int(qd_model_kv_find(m, "k.i8"), &v), QD_OK);
    assert_int_equal(v, -100);
    assert_int_equal(qd_kv_int(qd_model_kv_find(m, "k.i16"), &v), QD_OK);
    assert_int_equal(v, -30000);
    assert_int_equal(qd_kv_int(qd_model_kv_find(m, "k.i32"), &v), QD_OK);
    assert_int_equal(v, -2000000000);
    assert_int_equal(qd_kv_int(qd_model_kv_find(m, "k.i64"), &v), QD_OK);
    assert_true(v == INT64_MIN);
    assert_true(qd_model_kv_find(m, "k.u64")->num.u == UINT64_MAX - 3);
    assert_int_equal(qd_kv_int(qd_model_kv_find(m, "k.u64"), &v), QD_EINVAL); /* does not fit int64 */
    assert_true(qd_model_kv_find(m, "k.f32")->num.f == (double)0.1f);
    assert_true(qd_model_kv_find(m, "k.f64")->num.f == 0.1);
    assert_string_equal(qd_model_kv_find(m, "k.str")->str, "a string");
    const qd_kv *a = qd_model_kv_find(m, "a.i32");
    assert_int_equal(a->arr_type, QD_GGUF_I32);
    assert_int_equal(a->n, 3);
    assert_memory_equal(a->arr, i32s, sizeof(i32s));
    assert_memory_equal(qd_model_kv_find(m, "a.f64")->arr, f64s, sizeof(f64s));
    assert_memory_equal(qd_model_kv_find(m, "a.i64")->arr, i64s, sizeof(i64s));
    assert_memory_equal(qd_model_kv_find(m, "a.u16")->arr, u16s, sizeof(u16s));
    assert_memory_equal(qd_model_kv_find(m, "a.bool")->arr, bools, sizeof(bools));
    assert_int_equal(qd_model_kv_find(m, "a.empty")->n, 0);
    const qd_kv *s = qd_model_kv_find(m, "a.str");
    assert_int_equal(s->n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s->arr_lens[i], strlen(strs[i]));
        assert_string_equal(((char **)s->arr)[i], strs[i]);
    }
    qd_model_free(m);
    qd_free(p);
}

static void test_gguf__roundtrip_every_tensor_type_aligned(void **state)
{
    (void)state;
    tu_rng r;
    tu_rng_seed(&r, tu_seed());
    for (uint32_t align = 32; align <= 256; align *= 8) {
        qd_gguf_writer *w;
        qd_model *m;
        uint8_t *p, *datas[QD_TYPE_COUNT] = {0};
        const void *dptr[QD_TYPE_COUNT];
        size_t len, n = 0, sizes[QD_TYPE_COUNT];
        qd_type types[QD_TYPE_COUNT];
        assert_int_equal(qd_gguf_writer_new(&w, align), QD_OK);
        for (int t = 0; t < QD_TYPE_COUNT; t++) {
            const qd_type_traits *tr = qd_type_traits_get((qd_type)t);
            if (!tr)
                continue;
            char name[32];
            int64_t ne[3] = {tr->block_size * 3, 2, 1};
            snprintf(name, sizeof(name), "t.%s", tr->name);
            assert_int_equal(qd_gguf_add_tensor(w, name, (qd_type)t, 3, ne), QD_OK);
            sizes[n] = qd_row_size((qd_type)t, ne[0]) * 2;
            datas[n] = malloc(sizes[n]);
            tu_fill(&r, datas[n], sizes[n]);
            dptr[n] = datas[n];
            types[n++] = (qd_type)t;
        }
        assert_true(n >= 30);
        assert_int_equal(qd_gguf_writer_to_mem(w, dptr, &p, &len), QD_OK);
        qd_gguf_writer_free(w);
        assert_int_equal(qd_model_open_mem(&m, p, len, QD_MODEL_GGUF), QD_OK);
        assert_int_equal(qd_model_alignment(m), align);
        assert_int_equal(qd_model_data_offset(m) % align, 0);
        assert_int_equal(qd_model_tensor_count(m), n);
        for (size_t i = 0; i < n; i++) {
            const qd_tensor *t = qd_model_tensor_at(m, i);
            assert_int_equal(t->type, types[i]);
            assert_int_equal(t->n_dims, 3);
            assert_int_equal(t->ne[1], 2);
            assert_int_equal(t->nbytes, sizes[i]);
            assert_int_equal((size_t)(t->data - p) % align, 0);
            assert_memory_equal(t->data, datas[i], sizes[i]);
            free(datas[i]);
        }
        qd_model_free(m);
        qd_free(p);
    }
}

static void test_gguf__file_writer_streams_and_renames(void **state)
{
    (void)state;
    char *dir = tu_sandbox(), path[600], part[620];
    qd_gguf_writer *w;
    qd_model *m;
    float x[64];
    struct stat st;
    for (int i = 0; i < 64; i++)
        x[i] = (float)i;
    snprintf(path, sizeof(path), "%s/out.gguf", dir);
    snprintf(part, sizeof(part), "%s.part", path);
    assert_int_equal(qd_gguf_writer_new(&w, 0), QD_OK);
    int64_t ne[2] = {32, 2};
    assert_int_equal(qd_gguf_add_tensor(w, "x", QD_TYPE_F32, 2, ne), QD_OK);
    assert_int_equal(qd_gguf_add_tensor(w, "x", QD_TYPE_F32, 2, ne), QD_EEXISTS);
    int64_t bad[1] = {33};
    assert_int_equal(qd_gguf_add_tensor(w, "q", QD_TYPE_Q4_0, 1, bad), QD_EINVAL);
    assert_int_equal(qd_gguf_writer_begin(w, path), QD_OK);
    assert_int_equal(stat(part, &st), 0);
    assert_int_equal(qd_gguf_writer_write(w, x, 100), QD_OK); /* in pieces */
    assert_int_equal(qd_gguf_writer_finish(w), QD_EINVAL);     /* not all written */
    assert_int_equal(qd_gguf_writer_write(w, (uint8_t *)x + 100, 156), QD_OK);
    assert_int_equal(qd_gguf_writer_write(w, x, 1), QD_EINVAL); /* more than declared */
    assert_int_equal(qd_gguf_writer_finish(w), QD_OK);
    assert_int_equal(qd_gguf_writer_file_size(w) % 32, 0);
    qd_gguf_writer_free(w);
    assert_int_not_equal(stat(part, &st), 0);
    assert_int_equal(qd_model_open(&m, path), QD_OK);
    assert_memory_equal(qd_model_tensor_find(m, "x")->data, x, sizeof(x));
    qd_model_free(m);
    tu_rmtree(dir);
    free(dir);
}

static void test_gguf__truncated_at_every_length_is_an_error(void **state)
{
    (void)state;
    built b = build_small(0);
    assert_int_equal(open_mem(b.p, b.len), QD_OK);
    for (size_t l = 0; l < b.len; l++) {
        uint8_t *c = malloc(l ? l : 1); /* exact-size copy so ASan sees any overread */
        memcpy(c, b.p, l);
        int rc = open_mem(c, l);
        assert_true(rc == QD_ETRUNCATED || rc == QD_ECORRUPT);
        assert_true(strlen(qd_error_last()->message) > 0);
        free(c);
    }
    qd_free(b.p);
}

static void expect_mutation(size_t off, const void *bytes, size_t n, int want, const char *needle)
{
    built b = build_small(0);
    memcpy(b.p + off, bytes, n);
    int rc = open_mem(b.p, b.len);
    if (rc != want || !strstr(qd_error_last()->message, needle))
        fail_msg("mutation at %zu: rc %d (want %d), message '%s' (want '%s')", off, rc, want,
                 qd_error_last()->message, needle);
    qd_free(b.p);
}

static void test_gguf__hostile_headers_are_clear_errors(void **state)
{
    (void)state;
    built b = build_small(0);
    size_t pa = info_pos(&b, "a.weight"), pb = info_pos(&b, "b.weight");
    qd_free(b.p);
    uint64_t huge = (uint64_t)1 << 62;
    uint32_t v;

    v = 1;
    expect_mutation(4, &v, 4, QD_EUNSUPPORTED, "version 1");
    v = 4;
    expect_mutation(4, &v, 4, QD_EUNSUPPORTED, "version 4");
    expect_mutation(0, "GGUX", 4, QD_ECORRUPT, "magic");
    v = 0x03000000u;
    expect_mutation(4, &v, 4, QD_EUNSUPPORTED, "big-endian");
    expect_mutation(8, &huge, 8, QD_ECORRUPT, "tensors cannot fit");
    expect_mutation(16, &huge, 8, QD_ECORRUPT, "metadata pairs cannot fit");
    /* first key's length */
    expect_mutation(24, &huge, 8, QD_ECORRUPT, "past the end");
    /* unknown tensor type / removed type numbers */
    v = 99;
    expect_mutation(pa + 4 + 16, &v, 4, QD_ECORRUPT, "unknown type 99");
    v = 4; /* Q4_2: removed from ggml */
    expect_mutation(pa + 4 + 16, &v, 4, QD_ECORRUPT, "unknown type 4");
    /* Q4_0 row of 8 values: not a multiple of 32 */
    v = 2;
    expect_mutation(pa + 4 + 16, &v, 4, QD_ECORRUPT, "not a multiple");
    /* dims */
    v = 5;
    expect_mutation(pa, &v, 4, QD_ECORRUPT, "dimensions");
    v = 0;
    expect_mutation(pa, &v, 4, QD_ECORRUPT, "dimensions");
    /* shape overflow */
    uint64_t big = (uint64_t)1 << 62;
    expect_mutation(pa + 4, &big, 8, QD_ECORRUPT, "overflow");
    big = (uint64_t)1 << 40; /* no overflow, but far more data than the file holds */
    expect_mutation(pa + 4, &big, 8, QD_ETRUNCATED, "past the end");
    /* offset past the end, misaligned, overlapping */
    uint64_t off = (uint64_t)1 << 40;
    expect_mutation(pb + 4 + 8 + 4, &off, 8, QD_ECORRUPT, "past the end");
    off = 36;
    expect_mutation(pb + 4 + 8 + 4, &off, 8, QD_ECORRUPT, "alignment");
    off = 32; /* a.weight is [0, 64): b at 32 overlaps */
    expect_mutation(pb + 4 + 8 + 4, &off, 8, QD_ECORRUPT, "overlap");
    /* duplicate tensor names */
    expect_mutation(pb - 8, "a", 1, QD_ECORRUPT, "duplicate tensor");
}

static void test_gguf__hostile_metadata_is_a_clear_error(void **state)
{
    (void)state;
    /* hand-built headers: GGUF v3, 0 tensors, 1 kv */
    uint8_t buf[256];
    size_t n;
#define HDR()                                                                                                      \
    do {                                                                                                           \
        n = 0;                                                                                                     \
        memcpy(buf, "GGUF", 4);                                                                                    \
        uint32_t ver_ = 3;                                                                                         \
        uint64_t nt_ = 0, nk_ = 1, kl_ = 3;                                                                        \
        memcpy(buf + 4, &ver_, 4);                                                                                 \
        memcpy(buf + 8, &nt_, 8);                                                                                  \
        memcpy(buf + 16, &nk_, 8);                                                                                 \
        memcpy(buf + 24, &kl_, 8);                                                                                 \
        memcpy(buf + 32, "k.x", 3);                                                                                \
        n = 35;                                                                                                    \
    } while (0)
#define PUT(v)                                                                                                     \
    do {                                                                                                           \
        memcpy(buf + n, &(v), sizeof(v));                                                                          \
        n += sizeof(v);                                                                                            \
    } while (0)
    uint32_t t;
    uint64_t c;
    /* unknown value type */
    HDR();
    t = 13;
    PUT(t);
    assert_int_equal(open_mem(buf, n), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "unknown value type"));
    /* array of arrays */
    HDR();
    t = QD_GGUF_ARRAY;
    PUT(t);
    PUT(t);
    c = 0;
    PUT(c);
    assert_int_equal(open_mem(buf, n), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "arrays of arrays"));
    /* huge array count */
    HDR();
    t = QD_GGUF_ARRAY;
    PUT(t);
    t = QD_GGUF_U64;
    PUT(t);
    c = (uint64_t)1 << 61;
    PUT(c);
    assert_int_equal(open_mem(buf, n), QD_ECORRUPT);
    /* huge string array count */
    HDR();
    t = QD_GGUF_ARRAY;
    PUT(t);
    t = QD_GGUF_STRING;
    PUT(t);
    c = (uint64_t)1 << 61;
    PUT(c);
    assert_int_equal(open_mem(buf, n), QD_ECORRUPT);
    /* bool that is not 0/1 */
    HDR();
    t = QD_GGUF_BOOL;
    PUT(t);
    uint8_t two = 2;
    PUT(two);
    assert_int_equal(open_mem(buf, n), QD_ECORRUPT);
    /* general.alignment not a power of two */
    n = 0;
    memcpy(buf, "GGUF", 4);
    uint32_t ver = 3;
    uint64_t nt = 0, nk = 1, kl = 17;
    memcpy(buf + 4, &ver, 4);
    memcpy(buf + 8, &nt, 8);
    memcpy(buf + 16, &nk, 8);
    memcpy(buf + 24, &kl, 8);
    memcpy(buf + 32, "general.alignment", 17);
    n = 49;
    t = QD_GGUF_U32;
    PUT(t);
    uint32_t al = 48;
    PUT(al);
    assert_int_equal(open_mem(buf, n), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "power of two"));
    al = 64;
    memcpy(buf + n - 4, &al, 4);
    assert_int_equal(open_mem(buf, n), QD_OK);
    /* duplicate keys */
    HDR();
    nk = 2;
    memcpy(buf + 16, &nk, 8);
    t = QD_GGUF_U8;
    PUT(t);
    PUT(two);
    memcpy(buf + n, buf + 24, 11);
    n += 11;
    PUT(t);
    PUT(two);
    assert_int_equal(open_mem(buf, n), QD_ECORRUPT);
    assert_non_null(strstr(qd_error_last()->message, "duplicate metadata key"));
#undef HDR
#undef PUT
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf__roundtrip_every_kv_type),
        cmocka_unit_test(test_gguf__roundtrip_every_tensor_type_aligned),
        cmocka_unit_test(test_gguf__file_writer_streams_and_renames),
        cmocka_unit_test(test_gguf__truncated_at_every_length_is_an_error),
        cmocka_unit_test(test_gguf__hostile_headers_are_clear_errors),
        cmocka_unit_test(test_gguf__hostile_metadata_is_a_clear_error),
    };
    tu_seed();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
