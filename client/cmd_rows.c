/*
 * cmd_rows.c - `quant rows`: quantize or dequantize raw rows with the engine's kernels.
 *
 *   quant rows quantize   --type T --cols N [--imatrix FILE] IN.f32 OUT.bin
 *   quant rows dequantize --type T --cols N IN.bin OUT.f32
 *
 * Raw little-endian data: IN.f32 is rows of N float32 values; OUT.bin is the rows exactly as they sit in a GGUF
 * tensor of type T. Type names are ggml's (q4_K, iq4_nl, ...), case-insensitive. The file is streamed in batches
 * of whole rows, so its size does not matter; it must hold a whole number of rows. '-' reads stdin / writes
 * stdout. The output is written to a temporary file and renamed into place only when everything succeeded.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "qd/qd.h"
#include "qd/quant.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "quant rows reads and writes little-endian rows; this host is big-endian"
#endif

static const char *rows_usage =
    "usage: quant rows quantize   --type T --cols N [--imatrix FILE] [-q] IN.f32 OUT.bin\n"
    "       quant rows dequantize --type T --cols N [-q] IN.bin OUT.f32\n"
    "\n"
    "  --type T        a ggml type name: f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K\n"
    "                  iq4_nl iq4_xs mxfp4 tq1_0 tq2_0 (case-insensitive)\n"
    "  --cols N        values per row (a multiple of the type's block size: 32 or 256)\n"
    "  --imatrix FILE  per-column importance, N float32 values (llama.cpp's imatrix for one tensor)\n"
    "  -q              no summary line\n"
    "  --json          the summary as one JSON object (schemas/client.schema.json#/$defs/rows)\n"
    "\n"
    "Files are raw little-endian rows; '-' is stdin or stdout.\n";

/* About 8 MiB of input per batch, at least one row. */
#define BATCH_BYTES (8u << 20)

static int read_full(int fd, void *buf, size_t len, size_t *got)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return qd_error_set(QD_EIO, QD_EC_OS, "read: %s", strerror(errno));
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *got = done;
    return QD_OK;
}

/* Read FILE, which must hold exactly n float32 values. */
static int load_imatrix(const char *path, int64_t n, float **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = QD_OK;
    float *w = NULL;
    if (fstat(fd, &st) < 0) {
        rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != (uint64_t)n * sizeof(float)) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: an importance matrix for rows of %" PRId64 " values must be "
                          "%" PRIu64 " bytes (%" PRId64 " float32), not %lld", path, n, (uint64_t)n * sizeof(float),
                          n, (long long)st.st_size);
        goto done;
    }
    if (!(w = qd_mallocarray((size_t)n, sizeof(float)))) {
        rc = QD_ENOMEM;
        goto done;
    }
    size_t got;
    if ((rc = read_full(fd, w, (size_t)n * sizeof(float), &got)) < 0)
        goto done;
    if (got != (size_t)n * sizeof(float))
        rc = qd_error_set(QD_ETRUNCATED, QD_EC_INVALID, "%s: short read", path);
done:
    close(fd);
    if (rc < 0) {
        qd_free(w);
        w = NULL;
    }
    *out = w;
    return rc;
}

typedef struct rows_opts {
    const char *type;
    const char *imatrix;
    int64_t cols;
    bool quiet;
    bool json; /* the summary as JSON (on stdout, or stderr when the data goes to stdout) */
} rows_opts;

static int run_rows(bool quantize, const rows_opts *o, const char *in_path, const char *out_path)
{
    qd_type t;
    const qd_type_traits *tr;
    int rc, in_fd = -1, out_fd = -1;
    float *imatrix = NULL;
    void *inbuf = NULL, *outbuf = NULL;
    char tmp[PATH_MAX];
    bool tmp_made = false;
    uint64_t rows = 0, t0 = now_ns();

    tmp[0] = 0;
    if ((rc = qd_kernels_select()) < 0)
        return qd_fail(rc, "kernels");
    if ((rc = qd_type_from_name(o->type, &t)) < 0)
        return qd_fail(rc, "--type");
    tr = qd_type_traits_get(t);
    const size_t qrow = qd_row_size(t, o->cols);
    if (!qrow) {
        qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: --cols %" PRId64 " is not a multiple of the block size %" PRId64,
                     tr->name, o->cols, tr->block_size);
        return qd_fail(QD_EINVAL, NULL);
    }
    if (quantize && !tr->can_quantize) {
        qd_error_set(QD_EUNSUPPORTED, QD_EC_ENGINE, "this build cannot quantize to %s", tr->name);
        return qd_fail(QD_EUNSUPPORTED, NULL);
    }
    if (!quantize && o->imatrix) {
        fprintf(stderr, "quant rows dequantize: --imatrix applies to quantize only\n");
        return EXIT_USAGE;
    }
    const size_t frow = (size_t)o->cols * sizeof(float);
    const size_t in_row = quantize ? frow : qrow, out_row = quantize ? qrow : frow;
    if (o->imatrix && (rc = load_imatrix(o->imatrix, o->cols, &imatrix)) < 0)
        return qd_fail(rc, "--imatrix");

    in_fd = strcmp(in_path, "-") ? open(in_path, O_RDONLY | O_CLOEXEC) : 0;
    if (in_fd < 0) {
        rc = qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "%s: %s", in_path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (in_fd > 0 && fstat(in_fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size % in_row) {
        rc = qd_error_set(QD_ETRUNCATED, QD_EC_INVALID, "%s: %lld bytes is not a whole number of rows (%s rows of %"
                          PRId64 " values are %zu bytes each)", in_path, (long long)st.st_size,
                          quantize ? "f32" : tr->name, o->cols, in_row);
        goto fail;
    }
    size_t batch = in_row >= BATCH_BYTES ? 1 : BATCH_BYTES / in_row;
    if (!(inbuf = qd_mallocarray(batch, in_row)) || !(outbuf = qd_mallocarray(batch, out_row))) {
        rc = QD_ENOMEM;
        goto fail;
    }
    if (!strcmp(out_path, "-")) {
        out_fd = 1;
    } else {
        int n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", out_path);
        if (n < 0 || (size_t)n >= sizeof(tmp)) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "%s: path too long", out_path);
            goto fail;
        }
        out_fd = mkostemp(tmp, O_CLOEXEC);
        if (out_fd < 0) {
            rc = qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "%s: %s", out_path,
                              strerror(errno));
            goto fail;
        }
        tmp_made = true;
    }
    for (;;) {
        size_t got;
        if ((rc = read_full(in_fd, inbuf, batch * in_row, &got)) < 0)
            goto fail;
        if (got % in_row) {
            rc = qd_error_set(QD_ETRUNCATED, QD_EC_INVALID, "%s: input ends inside a row (%" PRIu64 " whole rows of "
                              "%zu bytes, then %zu bytes)", in_path, rows + got / in_row, in_row, got % in_row);
            goto fail;
        }
        size_t n = got / in_row;
        if (n) {
            if (quantize)
                rc = qd_quantize_rows(t, inbuf, outbuf, (int64_t)n, o->cols, imatrix);
            else
                rc = qd_dequantize_rows(t, inbuf, outbuf, (int64_t)n, o->cols);
            if (rc < 0) {
                if (rows)
                    qd_error_prefix("%s (batch from row %" PRIu64 "; the row below counts within it)", in_path, rows);
                else
                    qd_error_prefix("%s", in_path);
                goto fail;
            }
            if ((rc = qd_write_all(out_fd, outbuf, n * out_row)) < 0)
                goto fail;
            rows += n;
        }
        if (got < batch * in_row)
            break;
    }
    if (tmp_made) {
        if (fsync(out_fd) < 0 || close(out_fd) < 0) {
            out_fd = -1;
            rc = qd_error_set(QD_EIO, QD_EC_OS, "%s: %s", out_path, strerror(errno));
            goto fail;
        }
        out_fd = -1;
        if (rename(tmp, out_path) < 0) {
            rc = qd_error_set(QD_EIO, QD_EC_OS, "rename to %s: %s", out_path, strerror(errno));
            goto fail;
        }
        tmp_made = false;
    }
    if (o->json) {
        double secs = (double)(now_ns() - t0) / 1e9;
        fprintf(out_fd == 1 ? stderr : stdout,
                "{\"op\": \"%s\", \"rows\": %" PRIu64 ", \"cols\": %" PRId64 ", \"type\": \"%s\", "
                "\"bytes_in\": %" PRIu64 ", \"bytes_out\": %" PRIu64 ", \"bits_per_value\": %.6f, "
                "\"seconds\": %.6f, \"kernels\": \"%s\"}\n",
                quantize ? "quantize" : "dequantize", rows, o->cols, tr->name, rows * in_row, rows * out_row,
                8.0 * (double)qrow / (double)o->cols, secs, qd_kernels_name(qd_kernels_current()));
    } else if (!o->quiet) {
        double secs = (double)(now_ns() - t0) / 1e9;
        fprintf(out_fd == 1 ? stderr : stdout,
                "%s %" PRIu64 " rows x %" PRId64 " %s %s: %" PRIu64 " -> %" PRIu64 " bytes, %.4f bits/value, "
                "%.3f s, kernels %s\n",
                quantize ? "quantized" : "dequantized", rows, o->cols, quantize ? "to" : "from", tr->name,
                rows * in_row, rows * out_row, 8.0 * (double)qrow / (double)o->cols, secs,
                qd_kernels_name(qd_kernels_current()));
    }
    rc = QD_OK;
fail:
    if (in_fd > 0)
        close(in_fd);
    if (out_fd > 1)
        close(out_fd);
    if (tmp_made)
        unlink(tmp);
    qd_free(inbuf);
    qd_free(outbuf);
    qd_free(imatrix);
    return rc < 0 ? qd_fail(rc, quantize ? "rows quantize" : "rows dequantize") : 0;
}

int cmd_rows(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"type", required_argument, NULL, 't'}, {"cols", required_argument, NULL, 'n'},
        {"imatrix", required_argument, NULL, 'i'}, {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, 'J'},       {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    rows_opts o = {0};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(rows_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    const char *sub = argv[1];
    bool quantize;
    if (!strcmp(sub, "quantize"))
        quantize = true;
    else if (!strcmp(sub, "dequantize"))
        quantize = false;
    else {
        fprintf(stderr, "quant rows: unknown subcommand '%s'\n%s", sub, rows_usage);
        return EXIT_USAGE;
    }
    argc--;
    argv++;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "t:n:i:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            o.type = optarg;
            break;
        case 'n': {
            char *end;
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (errno || *end || end == optarg || v <= 0 || v > (1ll << 40)) {
                fprintf(stderr, "quant rows: --cols takes a positive number of values, not '%s'\n", optarg);
                return EXIT_USAGE;
            }
            o.cols = v;
            break;
        }
        case 'i':
            o.imatrix = optarg;
            break;
        case 'q':
            o.quiet = true;
            break;
        case 'J':
            o.json = true;
            break;
        case 'h':
            fputs(rows_usage, stdout);
            return 0;
        default:
            fputs(rows_usage, stderr);
            return EXIT_USAGE;
        }
    }
    if (!o.type || !o.cols) {
        fprintf(stderr, "quant rows %s: --type and --cols are required\n%s", sub, rows_usage);
        return EXIT_USAGE;
    }
    if (argc - optind != 2) {
        fprintf(stderr, "quant rows %s: give exactly IN and OUT\n%s", sub, rows_usage);
        return EXIT_USAGE;
    }
    return run_rows(quantize, &o, argv[optind], argv[optind + 1]);
}
