/*
 * quantize.c - the whole-model quantize pipeline: recipe plan, GGUF metadata, then tensor by tensor, chunk by
 * chunk, threads over disjoint row ranges.
 *
 * Determinism: rows are independent in every ggml format and each thread writes only its own rows' bytes, so the
 * output is the same for any thread count (a test checks 1 vs 3 threads with cmp).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qd/alloc.h"
#include "qd/cuda.h"
#include "qd/err.h"
#include "qd/log.h"
#include "qd/model.h"
#include "qd/pipeline.h"
#include "qd/pool.h"
#include "qd/tokenizer.h"
#include "qd/version.h"

#define QD_MAX_THREADS 256

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- placeholder vocabulary ------------------------------------------------------------------------------------- */

static size_t utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

int qd_write_placeholder_vocab(struct qd_gguf_writer *w, int64_t n_vocab)
{
    qd_arena scratch = {0}; /* (a megabyte for 32000 tokens: whole huge pages, not 250 first touches) */
    int rc = QD_OK;
    if (n_vocab < 4 || n_vocab > (1 << 24))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "placeholder vocabulary: %lld tokens (need 4..16M)",
                            (long long)n_vocab);
    size_t n = (size_t)n_vocab;
    char **toks = qd_arena_alloc(&scratch, n * sizeof(char *)), *pool = qd_arena_alloc(&scratch, n * 16);
    float *scores = qd_arena_alloc(&scratch, n * sizeof(float));
    int32_t *types = qd_arena_alloc(&scratch, n * sizeof(int32_t));
    if (!toks || !pool || !scores || !types) {
        rc = QD_ENOMEM;
        goto done;
    }
    /* With room for them, all 256 byte tokens <0x00>..<0xFF> follow the specials (ids 3..258, as in llama's own
     * SentencePiece vocabulary): then any text can be tokenized by byte fallback, which llama.cpp does on some
     * paths (node-llama-cpp tokenizes text after loading) and aborts on a missing byte. Otherwise only <0x0A>. */
    size_t n_bytes = n >= 3 + 256 + 1 ? 256 : 1;
    for (size_t i = 0; i < n; i++) {
        char *s = pool + 16 * i;
        toks[i] = s;
        types[i] = 1; /* normal */
        if (i == 0) {
            strcpy(s, "<unk>");
            types[i] = 2;
        } else if (i == 1) {
            strcpy(s, "<s>");
            types[i] = 3;
        } else if (i == 2) {
            strcpy(s, "</s>");
            types[i] = 3;
        } else if (i < 3 + n_bytes) {
            snprintf(s, 16, "<0x%02X>", n_bytes == 256 ? (unsigned)(i - 3) : 0x0Au); /* llama.cpp needs \n */
            types[i] = 6;
        } else if (0x4E00u + i < 0xD800u) {
            s[utf8_put(s, 0x4E00u + (uint32_t)i)] = '\0'; /* one distinct CJK-range character per id */
        } else {
            snprintf(s, 16, "<qd%zu>", i);
        }
        scores[i] = -(float)i;
    }
    if ((rc = qd_gguf_set_str(w, "tokenizer.ggml.model", "llama")) ||
        (rc = qd_gguf_set_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)toks, n)) ||
        (rc = qd_gguf_set_arr(w, "tokenizer.ggml.scores", QD_GGUF_F32, scores, n)) ||
        (rc = qd_gguf_set_arr(w, "tokenizer.ggml.token_type", QD_GGUF_I32, types, n)) ||
        (rc = qd_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)) ||
        (rc = qd_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (rc = qd_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
        (rc = qd_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true)) ||
        (rc = qd_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", false)) ||
        (rc = qd_gguf_set_bool(w, "quantd.placeholder_vocab", true)))
        goto done;
done:
    qd_arena_free(&scratch);
    return rc;
}

/* ---- metadata ---------------------------------------------------------------------------------------------------- */

static const char *base_name(const char *path, char *buf, size_t cap)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, cap, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf)
        *dot = '\0';
    return buf;
}

/* A safetensors source's Hugging Face tokenizer (tokenizer.json / tokenizer.model beside the weights), padded to
 * the token embedding rows. QD_ENOTFOUND when the folder has none (the placeholder vocabulary is written then). */
static int hf_tokenizer(qd_gguf_writer *w, const qd_model *m, const qd_hparams *hp, const char *in_path)
{
    char dir[4096];
    struct stat st;
    const qd_tensor *te = qd_model_tensor_find(m, "token_embd.weight");
    int64_t n_vocab = te ? te->ne[1] : hp->n_vocab;
    snprintf(dir, sizeof(dir), "%s", in_path);
    if (stat(in_path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        char *sl = strrchr(dir, '/');
        if (sl && sl != dir)
            *sl = '\0';
        else
            snprintf(dir, sizeof(dir), "%s", sl ? "/" : ".");
    }
    return qd_tokenizer_from_hf(NULL, w, dir, n_vocab); /* it logs what it wrote, and warns */
}

static int write_metadata(qd_gguf_writer *w, const qd_model *m, const qd_hparams *hp, const char *in_path,
                          qd_ftype ft)
{
    char name[256];
    int rc;
    const qd_kv *gn = qd_model_kv_find(m, "general.name");
    for (size_t i = 0; i < qd_model_kv_count(m); i++) {
        const qd_kv *kv = qd_model_kv_at(m, i);
        /* like llama-quantize: copy every pair in source order; general.file_type and quantization_version are
         * then replaced in place (or appended). Source-private keys of converted formats are not copied. */
        if (!strncmp(kv->key, "llama2c.", 8) || !strncmp(kv->key, "safetensors.", 12))
            continue;
        if ((rc = qd_gguf_set_kv(w, kv)))
            return rc;
    }
    if (!gn && (rc = qd_gguf_set_str(w, "general.name", base_name(in_path, name, sizeof(name)))))
        return rc;
    if (!qd_model_kv_find(m, "general.base_model.count")) {
        const char *bn = gn && gn->type == QD_GGUF_STRING ? gn->str : base_name(in_path, name, sizeof(name));
        if ((rc = qd_gguf_set_u32(w, "general.base_model.count", 1)) ||
            (rc = qd_gguf_set_str(w, "general.base_model.0.name", bn)))
            return rc;
        if (qd_model_format_of(m) != QD_MODEL_GGUF &&
            (rc = qd_gguf_set_str(w, "general.base_model.0.description",
                                  qd_model_format_of(m) == QD_MODEL_LLAMA2C ? "llama2.c checkpoint"
                                                                            : "safetensors checkpoint")))
            return rc;
    }
    if ((rc = qd_gguf_set_u32(w, "general.file_type", (uint32_t)ft)) ||
        (rc = qd_gguf_set_u32(w, "general.quantization_version", 2)) ||
        (rc = qd_gguf_set_str(w, "general.quantized_by", "quantd " QD_VERSION)))
        return rc;
    if (!hp->has_tokenizer) {
        rc = QD_ENOTFOUND;
        if (qd_model_format_of(m) == QD_MODEL_SAFETENSORS)
            rc = hf_tokenizer(w, m, hp, in_path);
        if (rc == QD_ENOTFOUND)
            rc = qd_write_placeholder_vocab(w, hp->n_vocab);
        if (rc)
            return rc;
    }
    return QD_OK;
}

/* ---- threads ----------------------------------------------------------------------------------------------------- */

/*
 * A chunk of rows is cut into row blocks (each at most BLOCK_F32_BYTES of F32, unless one row is larger) that the
 * threads claim one at a time as they come free: a thread reads its block's source bytes with one pread, converts,
 * checks and quantizes them while the F32 values stay in its core's L2 cache, and a thread that lost its core for a
 * while (to the writer, or to another process) takes fewer blocks instead of holding the others at the end of the
 * chunk. Rows are independent in every format and each block has its place in the output, so the bytes are the
 * same for any block size, thread count and claiming order.
 */
#define BLOCK_F32_BYTES (256u << 10)

typedef struct task {
    const qd_tensor *t;
    qd_type type;
    const float *imatrix;
    int64_t row0, nrows;      /* the chunk's rows (absolute) */
    int64_t block_rows;       /* rows per block */
    uint8_t *out;             /* nrows * row size */
    atomic_llong next;        /* the next block to claim */
    atomic_int failed;        /* set by the first error: no more claims */
} task;

typedef struct job {
    task *k;
    float *f32;               /* scratch: block_rows * ne0 */
    uint8_t *stage;           /* scratch: block_rows source rows, read with pread (qd_tensor_read_f32_staged) */
    size_t stage_cap;
    qd_error_saved err;       /* its result (err.code 0: every block it claimed went well) */
    int64_t fail_block;       /* the block that failed (the lowest one's error is reported) */
} job;

/* Rows per block for a row of nc values: as many as fit BLOCK_F32_BYTES, at least one. */
static int64_t block_rows_for(int64_t nc)
{
    int64_t b = nc > 0 ? (int64_t)(BLOCK_F32_BYTES / ((size_t)nc * sizeof(float))) : 1;
    return b < 1 ? 1 : b;
}

static int check_values(const task *k, const float *x, int64_t row, int64_t n)
{
    int64_t nc = k->t->ne[0];
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        if (!isfinite(v) || (k->type == QD_TYPE_F16 && fabsf(v) >= 65520.0f))
            return qd_error_set(QD_EINVAL, QD_EC_ENGINE,
                                "tensor %s row %lld col %lld: value %g cannot be stored as %s", k->t->name,
                                (long long)(row + i / nc), (long long)(i % nc), (double)v,
                                qd_type_traits_get(k->type)->name);
    }
    return QD_OK;
}

/* Map this job's source rows in one call instead of one fault per 4 KiB page (Linux 5.14+; best effort). */
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
static void prefault(const qd_tensor *t, int64_t row0, int64_t nrows)
{
    size_t irs = qd_row_size(t->type, t->ne[0]);
    uintptr_t b = (uintptr_t)t->data + (size_t)row0 * irs, e = b + (size_t)nrows * irs;
    if (!irs || !t->data)
        return;
    b &= ~(uintptr_t)4095;
    madvise((void *)b, e - b, MADV_POPULATE_READ);
}

/* Release the source pages of rows the threads have finished with (whole pages inside the range; the page cache
 * keeps them, so this only unmaps): peak RSS then holds a chunk of the source, not the largest tensor. */
static void drop_rows(const qd_tensor *t, int64_t row0, int64_t nrows)
{
    size_t irs = qd_row_size(t->type, t->ne[0]);
    uintptr_t b = (uintptr_t)t->data + (size_t)row0 * irs, e = b + (size_t)nrows * irs;
    if (!irs || !t->data || !t->file_mapped || t->file_readable || t->permute_heads > 0)
        return; /* (a file_readable tensor was read with pread: nothing of it is mapped in) */
    b = (b + 4095) & ~(uintptr_t)4095;
    e &= ~(uintptr_t)4095;
    if (e > b)
        madvise((void *)b, e - b, MADV_DONTNEED);
}

/* ---- write-behind: the output of chunk k is written while chunk k+1 is computed ---------------------------------- */

typedef struct writer_thread {
    qd_gguf_writer *w;
    pthread_t tid;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const void *data;  /* pending write (under mu) */
    size_t len;
    int busy, stop, rc;
    char msg[256];
} writer_thread;

static void *writer_main(void *arg)
{
    writer_thread *wt = arg;
    pthread_mutex_lock(&wt->mu);
    for (;;) {
        const void *d;
        size_t l;
        int rc;
        while (!wt->busy && !wt->stop)
            pthread_cond_wait(&wt->cv, &wt->mu);
        if (!wt->busy)
            break;
        d = wt->data;
        l = wt->len;
        pthread_mutex_unlock(&wt->mu);
        rc = wt->rc ? QD_OK : qd_gguf_writer_write(wt->w, d, l);
        pthread_mutex_lock(&wt->mu);
        if (rc && !wt->rc) {
            wt->rc = rc;
            snprintf(wt->msg, sizeof(wt->msg), "%s", qd_error_last()->message);
        }
        wt->busy = 0;
        pthread_cond_broadcast(&wt->cv);
    }
    pthread_mutex_unlock(&wt->mu);
    return NULL;
}

/* Wait for the pending write; report its error as this thread's. */
static int writer_wait(writer_thread *wt)
{
    int rc;
    if (!wt->started)
        return QD_OK;
    pthread_mutex_lock(&wt->mu);
    while (wt->busy)
        pthread_cond_wait(&wt->cv, &wt->mu);
    rc = wt->rc;
    pthread_mutex_unlock(&wt->mu);
    return rc ? qd_error_set(rc, QD_EC_ENGINE, "%s", wt->msg) : QD_OK;
}

/* Write data after everything queued before it; data must stay untouched until the next writer_wait. */
static int writer_queue(writer_thread *wt, const void *data, size_t len)
{
    int rc;
    if (!wt->started) {
        if (pthread_create(&wt->tid, NULL, writer_main, wt) != 0)
            return qd_gguf_writer_write(wt->w, data, len);
        wt->started = 1;
    }
    if ((rc = writer_wait(wt)))
        return rc;
    pthread_mutex_lock(&wt->mu);
    wt->data = data;
    wt->len = len;
    wt->busy = 1;
    pthread_cond_broadcast(&wt->cv);
    pthread_mutex_unlock(&wt->mu);
    return QD_OK;
}

static void writer_stop(writer_thread *wt)
{
    if (!wt->started)
        return;
    pthread_mutex_lock(&wt->mu);
    while (wt->busy)
        pthread_cond_wait(&wt->cv, &wt->mu);
    wt->stop = 1;
    pthread_cond_broadcast(&wt->cv);
    pthread_mutex_unlock(&wt->mu);
    pthread_join(wt->tid, NULL);
    wt->started = 0;
}

/* The pool's item i (qd_pool_run): job i of the chunk. */
static void run_job(void *jobs, int i)
{
    job *j = (job *)jobs + i;
    task *k = j->k;
    int64_t nc = k->t->ne[0];
    size_t ors = qd_row_size(k->type, nc);
    /* block types: the kernels refuse NaN, Inf and values no block can hold, so only plain types are checked here */
    bool check = k->type != QD_TYPE_F32 && !qd_type_traits_get(k->type)->quantized;
    int rc = QD_OK;
    qd_error_save(&j->err, QD_OK);
    while (!atomic_load_explicit(&k->failed, memory_order_relaxed)) {
        int64_t b = atomic_fetch_add_explicit(&k->next, 1, memory_order_relaxed), r = b * k->block_rows;
        if (r >= k->nrows)
            break;
        int64_t nr = k->nrows - r < k->block_rows ? k->nrows - r : k->block_rows, row = k->row0 + r;
        if (!k->t->file_readable)
            prefault(k->t, row, nr);
        float amax; /* (measured on the way for F16 sources: then the input check is not made twice) */
        rc = qd_tensor_read_f32_staged(k->t, row, nr, j->f32, j->stage, j->stage_cap, &amax);
        if (!rc && check)
            rc = check_values(k, j->f32, row, nr * nc);
        if (!rc)
            rc = qd_quantize_rows_bounded(k->type, j->f32, k->out + (size_t)r * ors, nr, nc, k->imatrix, amax);
        if (rc) {
            j->fail_block = b;
            qd_error_save(&j->err, rc);
            atomic_store(&k->failed, 1);
            break;
        }
    }
}

/* buf grown to at least need bytes (a large anonymous buffer, qd_big_alloc; the old contents are not kept), *cap its
 * size; NULL (buf freed, *cap 0) when out of memory. */
static void *grow(void *buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return buf;
    qd_big_free(buf, *cap);
    buf = qd_big_alloc(need);
    *cap = buf ? need : 0;
    return buf;
}

/* An output buffer of at least need bytes (grow). With the GPU on (pin), it is also registered with it, so that the
 * copy engines write into it directly (else its results go through the GPU path's own pinned buffers); a buffer is
 * unregistered before grow frees it. */
static uint8_t *out_buf(uint8_t **buf, size_t *cap, const void **reg, qd_cuda *cuda, size_t need, bool pin)
{
    if (need > *cap && *reg) {
        qd_cuda_unregister(cuda, *reg);
        *reg = NULL;
    }
    *buf = grow(*buf, cap, need ? need : 1);
    if (*buf && pin && !*reg && qd_cuda_register(cuda, *buf, *cap, false) == QD_OK)
        *reg = *buf;
    return *buf;
}

/* ---- tensor order ---------------------------------------------------------------------------------------------- */

/* llama.cpp's loader keeps tensors in a map ordered by (layer of "blk.N.", -1 for others; then name), and
 * llama-quantize writes them in that order: we do the same, so our files line up with its files tensor by tensor. */
static long layer_of(const char *name)
{
    long l = -1;
    if (!strncmp(name, "blk.", 4)) {
        char *end;
        long v = strtol(name + 4, &end, 10);
        if (end != name + 4 && *end == '.')
            l = v;
    }
    return l;
}

static const qd_model *sort_model;

static int cmp_llama_order(const void *a, const void *b)
{
    const qd_tensor *x = qd_model_tensor_at(sort_model, *(const size_t *)a);
    const qd_tensor *y = qd_model_tensor_at(sort_model, *(const size_t *)b);
    long lx = layer_of(x->name), ly = layer_of(y->name);
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* After each chunk of rows: the caller's progress hook, then its cancel hook. @return QD_OK or QD_ECANCELED */
static int rows_done(const qd_quantize_opts *o, size_t i, size_t n, const char *name, uint64_t in_done,
                     uint64_t in_total)
{
    if (o->progress) {
        qd_quantize_progress p = {i, n, name, in_done, in_total};
        o->progress(&p, o->payload);
    }
    if (o->cancel && o->cancel(o->payload))
        return qd_error_set(QD_ECANCELED, QD_EC_ENGINE, "quantization cancelled at tensor %s", name);
    return QD_OK;
}

/* ---- the GPU path ---------------------------------------------------------------------------------------------- */

/* The types whose scale search is the work (the rest run at memory bandwidth on the CPU). */
static bool search_bound(qd_type t, bool imatrix)
{
    switch (t) {
    case QD_TYPE_F32:
    case QD_TYPE_F16:
    case QD_TYPE_BF16:
    case QD_TYPE_Q8_0: return false;
    case QD_TYPE_Q4_0:
    case QD_TYPE_Q4_1:
    case QD_TYPE_Q5_0:
    case QD_TYPE_Q5_1: return imatrix;
    default: return true;
    }
}

/* Whether tensor t goes to the GPU as type. Forced (QD_DEVICE_CUDA), the device was opened before the run; with
 * AUTO it is opened at the first tensor that would use it (*cuda; *tried: once, a failure only logged). */
static bool gpu_for(qd_cuda **cuda, bool *tried, const qd_quantize_opts *o, const qd_tensor *t, qd_type type,
                    bool imatrix)
{
    /* (even when forced, a tensor the GPU path cannot take at all stays on the CPU: a source type it does not read,
     * rows reordered while read, a type it lacks) */
    if (o->device == QD_DEVICE_CPU || t->permute_heads > 0 || !qd_cuda_can_read(t->type) ||
        !qd_cuda_can_quantize(type, imatrix))
        return false;
    if (o->device == QD_DEVICE_AUTO &&
        (qd_tensor_nelements(t) < (o->cuda_min_elems > 0 ? o->cuda_min_elems : (1 << 20)) ||
         !search_bound(type, imatrix)))
        return false;
    if (!*cuda && !*tried) {
        *tried = true;
        if (qd_cuda_open(cuda, 0))
            qd_log(QD_LOG_DEBUG, "quantize", "GPU not used: %s", qd_error_last()->message);
        else
            qd_log(QD_LOG_INFO, "quantize", "GPU: %s (%s)", qd_cuda_device(*cuda)->name, qd_cuda_kernel_name(*cuda));
    }
    return *cuda != NULL;
}

/* ---- main loop ----------------------------------------------------------------------------------------------------- */

int qd_quantize_model(qd_quantize_stats *st, const char *in_path, const char *out_path, const qd_quantize_opts *o)
{
    qd_model *m = NULL;
    qd_imatrix *im = NULL;
    qd_gguf_writer *w = NULL;
    qd_recipe_tensor *rts = NULL;
    qd_recipe_choice *ch = NULL;
    size_t *order = NULL;
    qd_hparams hp;
    qd_recipe_opts ropts;
    float *f32 = NULL;
    uint8_t *stage = NULL;
    uint8_t *obufs[2] = {NULL, NULL};
    size_t f32_cap = 0, stage_cap = 0, obuf_caps[2] = {0, 0}, nf = 0; /* (bytes) */
    int cur = 0;
    writer_thread wt;
    double t0 = now_s();
    int rc, nth;
    job jobs[QD_MAX_THREADS];
    task tk;
    qd_pool *workers = NULL; /* nth - 1 helpers, started at the first quantized chunk */
    qd_cuda *cuda = NULL; /* opened at the first tensor for the GPU */
    bool cuda_tried = false;
    const void *obuf_reg[2] = {NULL, NULL}; /* the output buffers registered with it (the copy engines write them) */
    double t_gpu_open = 0, t_gpu = 0, t_gpu_queue = 0; /* where a GPU run's time goes (logged at the end) */

    memset(st, 0, sizeof(*st));
    memset(&wt, 0, sizeof(wt));
    pthread_mutex_init(&wt.mu, NULL);
    pthread_cond_init(&wt.cv, NULL);
    nth = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (nth < 1)
        nth = 1;
    if (nth > QD_MAX_THREADS)
        nth = QD_MAX_THREADS;
    st->threads = nth;
    /* 4 Mi elements: 8 MiB of F16 in, at most a few MiB out per chunk, so the two output buffers of the
     * write-behind stay small (fresh pages cost ~15 us each on these VMs) and the chunk the writer copies into the
     * page cache was written by the kernels moments before */
    size_t chunk = o->chunk_elems ? o->chunk_elems : (4u << 20);

    if ((rc = qd_model_open(&m, in_path)))
        goto done;
    if ((rc = qd_model_hparams(m, &hp))) {
        qd_error_prefix("%s", in_path);
        goto done;
    }
    if (strcmp(hp.arch, "llama")) {
        rc = qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "%s: architecture %s: only llama is supported", in_path,
                          hp.arch);
        goto done;
    }
    if (o->device == QD_DEVICE_CUDA) { /* forced: no GPU path or no device is an error before any work */
        double tg = now_s();
        cuda_tried = true;
        rc = qd_cuda_open(&cuda, 0);
        t_gpu_open += now_s() - tg;
        if (rc) {
            qd_error_prefix("quantize on the GPU");
            goto done;
        }
    }
    if (!o->imatrix && o->imatrix_path && (rc = qd_imatrix_load(&im, o->imatrix_path)))
        goto done;
    const qd_imatrix *imx = o->imatrix ? o->imatrix : im;
    ropts = o->recipe;
    ropts.has_imatrix = imx != NULL;

    size_t n = qd_model_tensor_count(m);
    rts = qd_calloc(n ? n : 1, sizeof(*rts));
    ch = qd_calloc(n ? n : 1, sizeof(*ch));
    order = qd_calloc(n ? n : 1, sizeof(*order));
    if (!rts || !ch || !order) {
        rc = QD_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    {
        static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER; /* qsort has no payload argument */
        pthread_mutex_lock(&sort_lock);
        sort_model = m;
        qsort(order, n, sizeof(*order), cmp_llama_order);
        sort_model = NULL;
        pthread_mutex_unlock(&sort_lock);
    }
    for (size_t i = 0; i < n; i++) {
        const qd_tensor *t = qd_model_tensor_at(m, order[i]);
        rts[i].name = t->name;
        rts[i].n_dims = t->n_dims;
        memcpy(rts[i].ne, t->ne, sizeof(t->ne));
        rts[i].src_type = t->type;
    }
    if ((rc = qd_recipe_plan(ch, &nf, &hp, o->ftype, &ropts, rts, n)))
        goto done;
    st->n_fallback = nf;

    for (size_t i = 0; i < n && !o->allow_requantize; i++) {
        const qd_type_traits *tr = qd_type_traits_get(rts[i].src_type);
        if (ch[i].quantize && tr && tr->quantized) {
            rc = qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE,
                              "tensor %s is already %s: requantizing loses quality (use --allow-requantize)",
                              rts[i].name, tr->name);
            goto done;
        }
    }
    /* keep a GGUF source's alignment (its general.alignment key is copied with the rest) */
    if ((rc = qd_gguf_writer_new(&w, qd_model_format_of(m) == QD_MODEL_GGUF ? qd_model_alignment(m) : 0)) ||
        (rc = write_metadata(w, m, &hp, in_path, o->ftype)))
        goto done;
    if (imx) { /* llama-quantize's record of the importance matrix */
        const char *ds;
        int32_t chunks;
        qd_imatrix_info(imx, &ds, &chunks);
        if ((rc = qd_gguf_set_str(w, "quantize.imatrix.file", o->imatrix_path ? o->imatrix_path : "(in memory)")) ||
            (rc = qd_gguf_set_i32(w, "quantize.imatrix.entries_count", (int32_t)qd_imatrix_count(imx))) ||
            (ds && (rc = qd_gguf_set_str(w, "quantize.imatrix.dataset", ds))) ||
            (chunks > 0 && (rc = qd_gguf_set_i32(w, "quantize.imatrix.chunks_count", chunks))))
            goto done;
    }
    if (o->meta_fn && (rc = o->meta_fn(o->method_payload, w)))
        goto done;
    for (size_t i = 0; i < n; i++) {
        const qd_tensor *t = qd_model_tensor_at(m, order[i]);
        if ((rc = qd_gguf_add_tensor(w, t->name, ch[i].type, t->n_dims, t->ne)))
            goto done;
        if (ch[i].beyond_llama)
            st->n_beyond_llama++;
        if (ch[i].fallback)
            qd_log(QD_LOG_WARN, "quantize", "%s: row of %lld: fallback to %s%s", t->name, (long long)t->ne[0],
                   qd_type_traits_get(ch[i].type)->name, ch[i].beyond_llama ? " (llama.cpp refuses this tensor)" : "");
    }
    qd_gguf_writer_set_durable(w, o->durable);
    if ((rc = qd_gguf_writer_begin(w, out_path)))
        goto done;
    wt.w = w;

    uint64_t in_total = 0, in_done = 0;
    for (size_t i = 0; i < n; i++)
        in_total += qd_model_tensor_at(m, i)->nbytes;

    for (size_t i = 0; i < n; i++) {
        const qd_tensor *t = qd_model_tensor_at(m, order[i]);
        int64_t nc = t->ne[0], rows = nc ? qd_tensor_nelements(t) / nc : 0;
        size_t ors = qd_row_size(ch[i].type, nc), irs = qd_row_size(t->type, nc);
        int64_t crows = nc ? (int64_t)(chunk / (size_t)nc) : rows;
        const float *imv = NULL;
        if (crows < 1)
            crows = 1;
        if (ch[i].quantize && o->tensor_fn) {
            const void *mb = o->tensor_fn(o->method_payload, t->name, ch[i].type, rows, nc);
            if (mb) {
                if ((rc = writer_queue(&wt, mb, (size_t)rows * ors)))
                    goto done;
                in_done += (uint64_t)rows * irs;
                if ((rc = rows_done(o, i, n, t->name, in_done, in_total)))
                    goto done;
                st->n_method++;
                st->n_quantized++;
                st->tensor_bytes += (uint64_t)rows * ors;
                st->type_bytes[ch[i].type] += (uint64_t)rows * ors;
                st->n_elements += (uint64_t)qd_tensor_nelements(t);
                continue;
            }
        }
        if (ch[i].quantize && imx) {
            int64_t nv;
            imv = qd_imatrix_find(imx, t->name, &nv);
            if (imv && nv != nc) {
                rc = qd_error_set(QD_EINVAL, QD_EC_ENGINE, "imatrix for %s has %lld values, the row %lld", t->name,
                                  (long long)nv, (long long)nc);
                goto done;
            }
            if (imv)
                st->n_imatrix++;
        }
        double tg = now_s();
        const bool on_gpu = ch[i].quantize && gpu_for(&cuda, &cuda_tried, o, t, ch[i].type, imv != NULL);
        t_gpu_open += now_s() - tg;
        if (on_gpu) {
            /* the whole tensor through the GPU's chunk pipeline (read with pread where the file allows it); the
             * writer writes it while the next tensor is on the GPU */
            size_t need_o = (size_t)rows * ors;
            uint8_t *obuf = out_buf(&obufs[cur], &obuf_caps[cur], &obuf_reg[cur], cuda, need_o, true);
            if (!obuf) {
                rc = QD_ENOMEM;
                goto done;
            }
            tg = now_s();
            rc = t->file_readable ? qd_cuda_quantize_file(cuda, ch[i].type, t->type, t->file_fd, t->file_pos, obuf,
                                                          rows, nc, imv)
                                  : qd_cuda_quantize(cuda, ch[i].type, t->type, t->data, obuf, rows, nc, imv);
            if (rc) {
                qd_error_prefix("tensor %s", t->name);
                goto done;
            }
            t_gpu += now_s() - tg;
            tg = now_s();
            if ((rc = writer_queue(&wt, obuf, need_o)))
                goto done;
            t_gpu_queue += now_s() - tg;
            cur ^= 1;
            in_done += (uint64_t)rows * irs;
            if ((rc = rows_done(o, i, n, t->name, in_done, in_total)))
                goto done;
            st->n_cuda++;
        }
        for (int64_t r0 = 0; !on_gpu && r0 < rows; r0 += crows) {
            int64_t nr = rows - r0 < crows ? rows - r0 : crows;
            size_t need_o = (size_t)nr * (ch[i].quantize ? ors : irs);
            if (!ch[i].quantize && t->permute_heads <= 0) {
                if ((rc = writer_queue(&wt, t->data + (size_t)r0 * irs, (size_t)nr * irs)))
                    goto done;
            } else {
                /* two output buffers: this chunk's is computed while the previous one is being written; large
                 * anonymous buffers with MADV_HUGEPAGE, reused across tensors (qd_big_alloc) */
                uint8_t *obuf = out_buf(&obufs[cur], &obuf_caps[cur], &obuf_reg[cur], cuda, need_o, false);
                if (!obuf) {
                    rc = QD_ENOMEM;
                    goto done;
                }
                if (!ch[i].quantize) {
                    if ((rc = qd_tensor_read_rows(t, r0, nr, obuf)))
                        goto done;
                } else {
                    int64_t brows = block_rows_for(nc);
                    size_t per_thread = (size_t)brows * (size_t)nc, need_f = per_thread * (size_t)nth;
                    size_t stage_per = (size_t)brows * irs, need_s = stage_per * (size_t)nth;
                    if (need_f > SIZE_MAX / sizeof(float) || !(f32 = grow(f32, &f32_cap, need_f * sizeof(float))) ||
                        !(stage = grow(stage, &stage_cap, need_s))) {
                        rc = QD_ENOMEM;
                        goto done;
                    }
                    int64_t nblocks = (nr + brows - 1) / brows;
                    int k = nth < nblocks ? nth : (int)nblocks, bad = -1;
                    tk.t = t;
                    tk.type = ch[i].type;
                    tk.imatrix = imv;
                    tk.row0 = r0;
                    tk.nrows = nr;
                    tk.block_rows = brows;
                    tk.out = obuf;
                    atomic_init(&tk.next, 0);
                    atomic_init(&tk.failed, 0);
                    for (int j = 0; j < k; j++)
                        jobs[j] = (job){&tk, f32 + (size_t)j * per_thread, stage + (size_t)j * stage_per, stage_per,
                                        {0}, 0};
                    if (!workers && (rc = qd_pool_start(&workers, nth - 1)))
                        goto done;
                    /* (when fewer helpers started, those that did and this thread claim every block between them) */
                    qd_pool_run(workers, k, run_job, jobs);
                    for (int j = 0; j < k; j++)
                        if (jobs[j].err.code && (bad < 0 || jobs[j].fail_block < jobs[bad].fail_block))
                            bad = j;
                    if (bad >= 0) {
                        rc = qd_error_restore(&jobs[bad].err);
                        qd_error_prefix("tensor %s", t->name);
                        goto done;
                    }
                    drop_rows(t, r0, nr);
                }
                if ((rc = writer_queue(&wt, obuf, need_o)))
                    goto done;
                cur ^= 1;
            }
            in_done += (uint64_t)nr * irs;
            if ((rc = rows_done(o, i, n, t->name, in_done, in_total)))
                goto done;
        }
        qd_tensor_drop_pages(t);
        st->tensor_bytes += (uint64_t)rows * ors;
        st->type_bytes[ch[i].type] += (uint64_t)rows * ors;
        st->n_elements += (uint64_t)qd_tensor_nelements(t);
        if (ch[i].quantize)
            st->n_quantized++;
    }
    if ((rc = writer_wait(&wt)))
        goto done;
    writer_stop(&wt);
    if ((rc = qd_gguf_writer_finish(w)))
        goto done;
    st->n_tensors = n;
    st->file_bytes = qd_gguf_writer_file_size(w);
    if (st->n_cuda)
        qd_log(QD_LOG_INFO, "quantize", "GPU: %zu tensors; opening it %.3f s, in its calls %.3f s, waiting for the "
               "writer %.3f s, of %.3f s", st->n_cuda, t_gpu_open, t_gpu, t_gpu_queue, now_s() - t0);
    {
        const char *cpu_k = qd_kernels_name(qd_kernels_current());
        if (!st->n_cuda)
            snprintf(st->kernel, sizeof(st->kernel), "%s", cpu_k);
        else if (st->n_cuda == st->n_quantized)
            snprintf(st->kernel, sizeof(st->kernel), "%s", qd_cuda_kernel_name(cuda));
        else
            snprintf(st->kernel, sizeof(st->kernel), "%s+%s", qd_cuda_kernel_name(cuda), cpu_k);
    }
    st->seconds = now_s() - t0;
done:
    qd_cuda_close(cuda);
    qd_pool_stop(workers);
    writer_stop(&wt);
    pthread_mutex_destroy(&wt.mu);
    pthread_cond_destroy(&wt.cv);
    qd_big_free(f32, f32_cap);
    qd_big_free(stage, stage_cap);
    qd_big_free(obufs[0], obuf_caps[0]);
    qd_big_free(obufs[1], obuf_caps[1]);
    qd_free(rts);
    qd_free(ch);
    qd_free(order);
    qd_gguf_writer_free(w);
    qd_imatrix_free(im);
    qd_model_free(m);
    return rc;
}
