/*
 * cmd_store.c - `quant store ...`: work on a local store directly, without a daemon.
 *
 *   put FILE... [--expect sha256:<hex>]      store files, print one digest per file
 *   get DIGEST [-o FILE] [--range A-B]        stream a blob (or a byte range) to stdout or FILE
 *   stat DIGEST | ls | rm DIGEST... | fsck [--repair] | gc | info
 * Every subcommand takes --store DIR (default $QUANT_STORE, else ./var/quantd) and --json.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "client.h"
#include "qd/qd.h"

typedef struct store_opts {
    const char *dir;
    bool json;
    const char *expect;
    const char *out;
    const char *range;
    bool repair;
    bool no_verify;
} store_opts;

static const char *store_usage =
    "usage: quant store <subcommand> [--store DIR] [--json] ...\n"
    "\n"
    "  put FILE... [--expect sha256:<hex>]  store files ('-' is stdin); prints sha256:<hex> per file\n"
    "  get DIGEST [-o FILE] [--range A-B]   write a blob, or bytes A..B (inclusive; 'A-' to the end)\n"
    "                                       [--no-verify] skips re-hashing a whole-blob get\n"
    "  stat DIGEST                          size, chunks, stored bytes, references\n"
    "  ls                                   every blob\n"
    "  rm DIGEST...                         remove blobs (refused while referenced)\n"
    "  fsck [--repair]                      re-hash everything, check reference counts;\n"
    "                                       --repair drops unreferenced chunks\n"
    "  gc                                   drop chunks no blob references\n"
    "  info                                 totals for the whole store\n"
    "\n"
    "--store DIR defaults to $QUANT_STORE, else ./var/quantd. --json prints machine-readable output.\n";

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s) {
        puts(s);
        free(s); /* allocated by jansson */
    }
    json_decref(j);
}

static void human_size(char *out, size_t cap, uint64_t n)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%" PRIu64 " B", n);
    else
        snprintf(out, cap, "%.1f %s", v, units[u]);
}

static int open_store(qd_store **s, const store_opts *o, bool write, bool create)
{
    qd_store_options so = QD_STORE_OPTIONS_INIT;
    so.flags = (write ? 0 : QD_STORE_RDONLY) | (create ? QD_STORE_CREATE : 0);
    return qd_store_open(s, o->dir, &so);
}

static int parse_digest_arg(qd_digest *d, const char *s)
{
    int rc = qd_digest_parse(d, s);
    if (rc < 0)
        return qd_fail(rc, "bad digest");
    return 0;
}

/* ---- put ------------------------------------------------------------------------------------------------------- */

static int do_put(store_opts *o, int argc, char **argv)
{
    qd_store *s = NULL;
    qd_digest expect;
    json_t *arr = NULL;
    int rc, ret = 0;

    if (argc < 1) {
        fprintf(stderr, "quant store put: no file given\n%s", store_usage);
        return EXIT_USAGE;
    }
    if (o->expect) {
        if (argc != 1) {
            fprintf(stderr, "quant store put: --expect takes exactly one file\n");
            return EXIT_USAGE;
        }
        if ((ret = parse_digest_arg(&expect, o->expect)))
            return ret;
    }
    if ((rc = open_store(&s, o, true, true)) < 0)
        return qd_fail(rc, "open store");
    if (o->json)
        arr = json_array();
    for (int i = 0; i < argc; i++) {
        qd_put_options po = QD_PUT_OPTIONS_INIT;
        qd_digest d;
        progress pr;
        char ds[QD_DIGEST_STR_LEN + 1];
        int fd = strcmp(argv[i], "-") ? open(argv[i], O_RDONLY | O_CLOEXEC) : 0;
        off_t size;
        uint64_t t0 = now_ns();

        if (fd < 0) {
            fprintf(stderr, "quant: open %s: %s\n", argv[i], strerror(errno));
            ret = errno == ENOENT ? EXIT_NOTFOUND : EXIT_ERR;
            break;
        }
        size = lseek(fd, 0, SEEK_END);
        lseek(fd, 0, SEEK_SET);
        progress_start(&pr, argv[i], size > 0 ? (uint64_t)size : 0);
        po.expect = o->expect ? &expect : NULL;
        po.progress = progress_update;
        po.progress_payload = &pr;
        rc = qd_store_put_fd(s, fd, &po, &d);
        progress_end(&pr);
        if (fd)
            close(fd);
        if (rc < 0) {
            char ctx[PATH_MAX + 16];
            snprintf(ctx, sizeof(ctx), "put %s", argv[i]);
            ret = qd_fail(rc, ctx);
            break;
        }
        qd_digest_format(ds, &d);
        if (o->json) {
            qd_blob_info info;
            json_t *e = json_pack("{s:s, s:s}", "file", argv[i], "digest", ds);
            if (qd_store_stat(s, &d, &info) == 0) {
                json_object_set_new(e, "size", json_integer((json_int_t)info.size));
                json_object_set_new(e, "chunks", json_integer(info.n_chunks));
                json_object_set_new(e, "stored_bytes", json_integer((json_int_t)info.stored_bytes));
            }
            json_object_set_new(e, "seconds", json_real((double)(now_ns() - t0) / 1e9));
            json_array_append_new(arr, e);
        } else {
            printf("%s\n", ds);
            fflush(stdout);
        }
    }
    if (o->json)
        print_json(arr);
    qd_store_close(s);
    return ret;
}

/* ---- get ------------------------------------------------------------------------------------------------------- */

typedef struct get_sink {
    int fd;
    qd_sha256 *h;
    uint64_t done, total;
    progress *pr;
} get_sink;

static int get_write(const void *data, size_t len, void *payload)
{
    get_sink *g = payload;
    int rc;
    if (g->h && (rc = qd_sha256_update(g->h, data, len)) < 0)
        return rc;
    if ((rc = qd_write_all(g->fd, data, len)) < 0)
        return rc;
    g->done += len;
    progress_update(g->done, g->total, g->pr);
    return QD_OK;
}

static int parse_range(const char *s, uint64_t size, uint64_t *off, uint64_t *len)
{
    char *end;
    unsigned long long a, b;
    errno = 0;
    if (!*s || *s == '-')
        return -1;
    a = strtoull(s, &end, 10);
    if (errno || *end != '-')
        return -1;
    if (end[1] == '\0') {
        b = size ? size - 1 : 0;
        if (a >= size)
            return -2;
    } else {
        char *e2;
        b = strtoull(end + 1, &e2, 10);
        if (errno || *e2 || b < a)
            return -1;
        if (a >= size)
            return -2;
        if (b >= size)
            b = size - 1;
    }
    *off = a;
    *len = b - a + 1;
    return 0;
}

static int do_get(store_opts *o, int argc, char **argv)
{
    qd_store *s = NULL;
    qd_digest d, got;
    qd_blob_info info;
    get_sink g = {1, NULL, 0, 0, NULL};
    progress pr;
    char tmp[PATH_MAX];
    uint64_t off = 0, len = UINT64_MAX;
    int rc, ret = 0;

    if (argc != 1) {
        fprintf(stderr, "quant store get: give exactly one digest\n%s", store_usage);
        return EXIT_USAGE;
    }
    if ((ret = parse_digest_arg(&d, argv[0])))
        return ret;
    if ((rc = open_store(&s, o, false, false)) < 0)
        return qd_fail(rc, "open store");
    if ((rc = qd_store_stat(s, &d, &info)) < 0) {
        ret = qd_fail(rc, "get");
        goto done;
    }
    if (o->range) {
        int pr_rc = parse_range(o->range, info.size, &off, &len);
        if (pr_rc == -1) {
            fprintf(stderr, "quant store get: bad --range '%s': expected A-B or A- (byte offsets, inclusive)\n",
                    o->range);
            ret = EXIT_USAGE;
            goto done;
        }
        if (pr_rc == -2) {
            fprintf(stderr, "quant store get: --range '%s' starts past the end of the blob (%" PRIu64 " bytes)\n",
                    o->range, info.size);
            ret = EXIT_USAGE;
            goto done;
        }
    }
    if (!o->range && !o->no_verify && (rc = qd_sha256_new(&g.h)) < 0) {
        ret = qd_fail(rc, "get");
        goto done;
    }
    tmp[0] = '\0';
    if (o->out && strcmp(o->out, "-")) {
        /* write beside the target and rename only once every byte checked out */
        snprintf(tmp, sizeof(tmp), "%s.part-%ld", o->out, (long)getpid());
        g.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (g.fd < 0) {
            fprintf(stderr, "quant: open %s: %s\n", tmp, strerror(errno));
            ret = EXIT_ERR;
            goto done;
        }
    }
    g.total = len == UINT64_MAX ? info.size - off : len;
    progress_start(&pr, "get", g.total);
    g.pr = &pr;
    rc = qd_store_get(s, &d, off, len, get_write, &g);
    progress_end(&pr);
    if (rc == QD_OK && g.h) {
        rc = qd_sha256_final(g.h, &got);
        if (rc == QD_OK && !qd_digest_equal(&got, &d))
            rc = qd_error_set(QD_ECORRUPT, QD_EC_STORE, "the bytes read back do not match %s: run quant store fsck",
                              argv[0]);
    }
    if (rc == QD_OK && tmp[0] && fsync(g.fd) < 0)
        rc = qd_error_set(QD_EIO, QD_EC_OS, "fsync %s: %s", tmp, strerror(errno));
    if (tmp[0]) {
        close(g.fd);
        if (rc == QD_OK && rename(tmp, o->out) < 0)
            rc = qd_error_set(QD_EIO, QD_EC_OS, "rename to %s: %s", o->out, strerror(errno));
        if (rc < 0)
            unlink(tmp);
    }
    if (rc < 0)
        ret = qd_fail(rc, "get");
done:
    qd_sha256_free(g.h);
    qd_store_close(s);
    return ret;
}

/* ---- stat / ls ------------------------------------------------------------------------------------------------- */

static json_t *info_json(const qd_blob_info *i)
{
    char ds[QD_DIGEST_STR_LEN + 1], ts[32];
    time_t t = (time_t)i->created;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_pack("{s:s, s:I, s:I, s:i, s:i, s:I, s:s}", "digest", qd_digest_format(ds, &i->digest), "size",
                     (json_int_t)i->size, "stored_bytes", (json_int_t)i->stored_bytes, "chunks", (int)i->n_chunks,
                     "compressed_chunks", (int)i->n_compressed, "referrers", (json_int_t)i->n_referrers,
                     "created", ts);
}

static int do_stat(store_opts *o, int argc, char **argv)
{
    qd_store *s;
    qd_digest d;
    qd_blob_info i;
    int rc, ret;

    if (argc != 1) {
        fprintf(stderr, "quant store stat: give exactly one digest\n");
        return EXIT_USAGE;
    }
    if ((ret = parse_digest_arg(&d, argv[0])))
        return ret;
    if ((rc = open_store(&s, o, false, false)) < 0)
        return qd_fail(rc, "open store");
    rc = qd_store_stat(s, &d, &i);
    qd_store_close(s);
    if (rc < 0)
        return qd_fail(rc, "stat");
    if (o->json) {
        print_json(info_json(&i));
    } else {
        char a[32], b[32], ds[QD_DIGEST_STR_LEN + 1], ts[32];
        time_t t = (time_t)i.created;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S UTC", &tm);
        human_size(a, sizeof(a), i.size);
        human_size(b, sizeof(b), i.stored_bytes);
        printf("digest     %s\n", qd_digest_format(ds, &i.digest));
        printf("size       %" PRIu64 " bytes (%s)\n", i.size, a);
        printf("chunks     %u (%u stored compressed)\n", i.n_chunks, i.n_compressed);
        printf("stored     %" PRIu64 " bytes (%s, %.1f%% of size)\n", i.stored_bytes, b,
               i.size ? 100.0 * (double)i.stored_bytes / (double)i.size : 100.0);
        printf("referrers  %" PRIu64 "\n", i.n_referrers);
        printf("created    %s\n", ts);
    }
    return 0;
}

static int ls_one(const qd_blob_info *i, void *payload)
{
    if (payload) {
        json_array_append_new(payload, info_json(i));
    } else {
        char ds[QD_DIGEST_STR_LEN + 1];
        printf("%s  %14" PRIu64 "  %14" PRIu64 "  %6u\n", qd_digest_format(ds, &i->digest), i->size, i->stored_bytes,
               i->n_chunks);
    }
    return 0;
}

static int do_ls(store_opts *o, int argc, char **argv)
{
    qd_store *s;
    json_t *arr = NULL;
    int rc;
    (void)argv;
    if (argc) {
        fprintf(stderr, "quant store ls: takes no arguments\n");
        return EXIT_USAGE;
    }
    if ((rc = open_store(&s, o, false, false)) < 0)
        return qd_fail(rc, "open store");
    if (o->json)
        arr = json_array();
    else
        printf("%-71s  %14s  %14s  %6s\n", "DIGEST", "SIZE", "STORED", "CHUNKS");
    rc = qd_store_list(s, ls_one, arr);
    qd_store_close(s);
    if (rc < 0) {
        json_decref(arr);
        return qd_fail(rc, "ls");
    }
    if (arr)
        print_json(arr);
    return 0;
}

/* ---- rm / gc / fsck / info ------------------------------------------------------------------------------------- */

static int do_rm(store_opts *o, int argc, char **argv)
{
    qd_store *s;
    int rc, ret = 0;
    if (argc < 1) {
        fprintf(stderr, "quant store rm: give at least one digest\n");
        return EXIT_USAGE;
    }
    for (int i = 0; i < argc; i++) {
        qd_digest d;
        if ((ret = parse_digest_arg(&d, argv[i])))
            return ret;
    }
    if ((rc = open_store(&s, o, true, false)) < 0)
        return qd_fail(rc, "open store");
    for (int i = 0; i < argc; i++) {
        qd_digest d;
        qd_digest_parse(&d, argv[i]);
        if ((rc = qd_store_remove(s, &d)) < 0) {
            ret = qd_fail(rc, "rm");
            break;
        }
        if (!o->json)
            printf("removed %s\n", argv[i]);
    }
    qd_store_close(s);
    return ret;
}

static int do_gc(store_opts *o, int argc, char **argv)
{
    qd_store *s;
    qd_gc_stats g;
    int rc;
    (void)argv;
    if (argc) {
        fprintf(stderr, "quant store gc: takes no arguments\n");
        return EXIT_USAGE;
    }
    if ((rc = open_store(&s, o, true, false)) < 0)
        return qd_fail(rc, "open store");
    rc = qd_store_gc(s, &g);
    qd_store_close(s);
    if (rc < 0)
        return qd_fail(rc, "gc");
    if (o->json)
        print_json(json_pack("{s:I, s:I}", "chunks_freed", (json_int_t)g.chunks_freed, "bytes_freed",
                             (json_int_t)g.bytes_freed));
    else
        printf("gc: freed %" PRIu64 " chunk(s), %" PRIu64 " bytes\n", g.chunks_freed, g.bytes_freed);
    return 0;
}

typedef struct fsck_out {
    json_t *findings;
} fsck_out;

static void fsck_report(qd_fsck_kind kind, const qd_digest *obj, const char *what, void *payload)
{
    fsck_out *fo = payload;
    char ds[QD_DIGEST_STR_LEN + 1] = "-";
    if (obj)
        qd_digest_format(ds, obj);
    if (fo->findings)
        json_array_append_new(fo->findings, json_pack("{s:s, s:s, s:s}", "kind",
                                                      kind == QD_FSCK_PROBLEM ? "problem" : "garbage", "object", ds,
                                                      "what", what));
    else
        printf("%s: %s: %s\n", kind == QD_FSCK_PROBLEM ? "problem" : "garbage", ds, what);
}

static int do_fsck(store_opts *o, int argc, char **argv)
{
    qd_store *s;
    qd_fsck_stats st;
    fsck_out fo = {NULL};
    int rc;
    (void)argv;
    if (argc) {
        fprintf(stderr, "quant store fsck: takes no arguments\n");
        return EXIT_USAGE;
    }
    if ((rc = open_store(&s, o, o->repair, false)) < 0)
        return qd_fail(rc, "open store");
    if (o->json)
        fo.findings = json_array();
    rc = qd_store_fsck(s, o->repair ? QD_FSCK_REPAIR : 0, fsck_report, &fo, &st);
    qd_store_close(s);
    if (rc < 0 && rc != QD_ECORRUPT) {
        json_decref(fo.findings);
        return qd_fail(rc, "fsck");
    }
    if (o->json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "chunks", (json_int_t)st.chunks,
                              "blobs", (json_int_t)st.blobs, "references", (json_int_t)st.references, "bytes_hashed",
                              (json_int_t)st.bytes_hashed, "problems", (json_int_t)st.problems, "garbage_chunks",
                              (json_int_t)st.garbage_chunks, "garbage_bytes", (json_int_t)st.garbage_bytes,
                              "repaired", (json_int_t)st.repaired, "clean", st.problems == 0);
        json_object_set_new(j, "findings", fo.findings);
        print_json(j);
    } else {
        printf("fsck: %" PRIu64 " chunk(s) and %" PRIu64 " blob(s) re-hashed (%" PRIu64 " bytes), %" PRIu64
               " reference(s) checked: %" PRIu64 " problem(s), %" PRIu64 " unreferenced chunk(s)%s\n",
               st.chunks, st.blobs, st.bytes_hashed, st.references, st.problems, st.garbage_chunks,
               st.problems ? "" : " - clean");
        if (st.repaired)
            printf("fsck: repaired: dropped %" PRIu64 " unreferenced chunk(s)\n", st.repaired);
    }
    return st.problems ? EXIT_VERIFY : 0;
}

static int do_info(store_opts *o, int argc, char **argv)
{
    qd_store *s;
    qd_store_stats st;
    int rc;
    (void)argv;
    if (argc) {
        fprintf(stderr, "quant store info: takes no arguments\n");
        return EXIT_USAGE;
    }
    if ((rc = open_store(&s, o, false, false)) < 0)
        return qd_fail(rc, "open store");
    rc = qd_store_stats_get(s, &st);
    qd_store_close(s);
    if (rc < 0)
        return qd_fail(rc, "info");
    if (o->json) {
        print_json(json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I}", "store", o->dir, "schema_version",
                             (int)st.schema_version, "blobs", (json_int_t)st.blobs, "chunks", (json_int_t)st.chunks,
                             "logical_bytes", (json_int_t)st.logical_bytes, "chunk_bytes",
                             (json_int_t)st.chunk_bytes, "map_size", (json_int_t)st.map_size, "file_bytes",
                             (json_int_t)st.file_bytes));
    } else {
        char a[32], b[32], c[32];
        human_size(a, sizeof(a), st.logical_bytes);
        human_size(b, sizeof(b), st.chunk_bytes);
        human_size(c, sizeof(c), st.file_bytes);
        printf("store      %s (schema %u)\n", o->dir, st.schema_version);
        printf("blobs      %" PRIu64 " (%s of content)\n", st.blobs, a);
        printf("chunks     %" PRIu64 " distinct (%s stored, %.1f%% of content)\n", st.chunks, b,
               st.logical_bytes ? 100.0 * (double)st.chunk_bytes / (double)st.logical_bytes : 100.0);
        printf("file       data.mdb %s\n", c);
    }
    return 0;
}

typedef struct subcommand {
    const char *name;
    int (*fn)(store_opts *o, int argc, char **argv);
} subcommand;

static const subcommand subs[] = {
    {"put", do_put}, {"get", do_get}, {"stat", do_stat}, {"ls", do_ls},
    {"rm", do_rm},   {"gc", do_gc},   {"fsck", do_fsck}, {"info", do_info},
};

int cmd_store(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
        {"expect", required_argument, NULL, 'e'}, {"out", required_argument, NULL, 'o'},
        {"range", required_argument, NULL, 'r'}, {"repair", no_argument, NULL, 'R'},
        {"no-verify", no_argument, NULL, 'N'},   {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    store_opts o = {0};
    const subcommand *sub = NULL;
    int c;

    o.dir = getenv("QUANT_STORE");
    if (!o.dir || !*o.dir)
        o.dir = "var/quantd";
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(store_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (!strcmp(argv[1], subs[i].name))
            sub = &subs[i];
    if (!sub) {
        fprintf(stderr, "quant store: unknown subcommand '%s'\n%s", argv[1], store_usage);
        return EXIT_USAGE;
    }
    argc--;
    argv++;
    optind = 1;
    opterr = 1;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 's': o.dir = optarg; break;
        case 'j': o.json = true; break;
        case 'e': o.expect = optarg; break;
        case 'o': o.out = optarg; break;
        case 'r': o.range = optarg; break;
        case 'R': o.repair = true; break;
        case 'N': o.no_verify = true; break;
        case 'h': fputs(store_usage, stdout); return 0;
        default: fputs(store_usage, stderr); return EXIT_USAGE;
        }
    }
    return sub->fn(&o, argc - optind, argv + optind);
}
