/*
 * upload.c - the server side of git's upload-pack over smart HTTP (protocol v0/v1, stateless RPC), read-only,
 * for the log repository; and the client side a mirror uses (git_remote_fetch into a staging ref).
 *
 * Why here: libgit2 has clients for the smart protocol but no server, so the server is written from git's
 * protocol documents (gitprotocol-pack, gitprotocol-http, gitprotocol-capabilities): pkt-lines, the ref
 * advertisement, want/have negotiation with multi_ack_detailed and no-done, and the pack (git_packbuilder fed by
 * a git_revwalk that hides what the client has) sent through side-band-64k. No HTTP here: the daemon wraps these
 * bodies (daemon/gitsrv.c), so the protocol logic is testable without a server.
 *
 * Negotiation, stateless (each POST carries the wants, then the client's haves, then either a flush, meaning
 * "tell me what you have in common", or "done"):
 *   have X, we have X:        multi_ack_detailed "ACK X common"; multi_ack "ACK X continue"; plain: "ACK X" once
 *   at a flush:               when something was common and every want descends from a common commit (ready):
 *                             multi_ack_detailed "ACK X ready"; then "NAK"; with no-done and ready: "ACK X" and
 *                             the pack follow in the same response
 *   done:                     "ACK X" (the last common) or "NAK", then the pack
 * The pack holds every object reachable from the wants and not from the common haves (no thin packs: we do not
 * advertise thin-pack). The log is linear, so "ready" is exact.
 */
#include <git2.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "log_int.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/replog.h"

#define BRANCH "refs/heads/main"
#define CAPS "multi_ack_detailed multi_ack side-band-64k side-band ofs-delta no-done no-progress " \
             "symref=HEAD:refs/heads/main agent=quantd/1"
#define MAX_WANTS 256
#define MAX_HAVES 100000
#define REQ_MAX (16u << 20)

int qd_log__err_git(int rc, const char *what);

/* ---- pkt-lines ------------------------------------------------------------------------------------------------ */

static int pkt(qd_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pkt(qd_buf *out, const char *fmt, ...)
{
    char line[65520];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n + 4 > 65520)
        return qd_error_set(QD_EINVAL, QD_EC_STORE, "pkt-line too long");
    return qd_buf_printf(out, "%04x", n + 4) == QD_OK ? qd_buf_put(out, line, (size_t)n) : QD_ENOMEM;
}

static int pkt_bytes(qd_buf *out, unsigned char band, const void *data, size_t len)
{
    int rc = qd_buf_printf(out, "%04zx", len + 5);
    if (rc == QD_OK)
        rc = qd_buf_put(out, &band, 1);
    return rc == QD_OK ? qd_buf_put(out, data, len) : rc;
}

static int flush_pkt(qd_buf *out) { return qd_buf_put(out, "0000", 4); }

int qd_replog_git_advertise(qd_buf *out, const char *dir)
{
    git_repository *repo = NULL;
    git_oid head;
    char hex[GIT_OID_HEXSZ + 1];
    int rc, error;
    git_libgit2_init();
    if ((rc = git_repository_open_bare(&repo, dir)) < 0) {
        error = qd_log__err_git(rc, dir);
        goto done;
    }
    if ((error = pkt(out, "# service=git-upload-pack\n")) < 0 || (error = flush_pkt(out)) < 0)
        goto done;
    rc = git_reference_name_to_id(&head, repo, BRANCH);
    if (rc == GIT_ENOTFOUND) {
        error = pkt(out, "%s capabilities^{}%c%s\n", "0000000000000000000000000000000000000000", 0, CAPS);
    } else if (rc < 0) {
        error = qd_log__err_git(rc, "resolve " BRANCH);
        goto done;
    } else {
        git_oid_tostr(hex, sizeof(hex), &head);
        if ((error = pkt(out, "%s HEAD%c%s\n", hex, 0, CAPS)) == QD_OK)
            error = pkt(out, "%s %s\n", hex, BRANCH);
    }
    if (error == QD_OK)
        error = flush_pkt(out);
done:
    git_repository_free(repo);
    git_libgit2_shutdown();
    return error;
}

/* ---- the request ------------------------------------------------------------------------------------------------- */

static int gunzip(qd_buf *out, const void *in, size_t len)
{
    z_stream z;
    unsigned char chunk[65536];
    int zr, error = QD_OK;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return qd_error_set(QD_ENOMEM, QD_EC_STORE, "inflate init");
    z.next_in = (unsigned char *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    do {
        z.next_out = chunk;
        z.avail_out = sizeof(chunk);
        zr = inflate(&z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END) {
            error = qd_error_set(QD_EINVAL, QD_EC_STORE, "upload-pack: the gzip request body is corrupt");
            break;
        }
        if (out->len + (sizeof(chunk) - z.avail_out) > REQ_MAX) {
            error = qd_error_set(QD_EFULL, QD_EC_STORE, "upload-pack: the request is larger than %u bytes", REQ_MAX);
            break;
        }
        if ((error = qd_buf_put(out, chunk, sizeof(chunk) - z.avail_out)) < 0)
            break;
    } while (zr != Z_STREAM_END && (z.avail_in > 0 || z.avail_out == 0));
    if (error == QD_OK && zr != Z_STREAM_END)
        error = qd_error_set(QD_EINVAL, QD_EC_STORE, "upload-pack: the gzip request body is truncated");
    inflateEnd(&z);
    return error;
}

typedef struct neg {
    git_repository *repo;
    git_oid wants[MAX_WANTS];
    size_t n_wants;
    git_oid *common;
    size_t n_common, cap_common;
    bool multi_ack, multi_ack_detailed, sideband, sideband64k, no_done, no_progress;
    bool done;
} neg;

static bool has_cap(const char *caps, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = caps; p && *p;) {
        const char *sp = strchr(p, ' ');
        size_t len = sp ? (size_t)(sp - p) : strlen(p);
        while (len && (p[len - 1] == '\n'))
            len--;
        if (len == n && !memcmp(p, name, n))
            return true;
        p = sp ? sp + 1 : NULL;
    }
    return false;
}

/* Is every want a descendant (or equal) of some common commit? */
static bool ready(neg *g)
{
    if (g->n_common == 0)
        return false;
    for (size_t i = 0; i < g->n_wants; i++) {
        bool ok = false;
        for (size_t k = 0; k < g->n_common && !ok; k++)
            ok = git_oid_equal(&g->wants[i], &g->common[k]) ||
                 git_graph_descendant_of(g->repo, &g->wants[i], &g->common[k]) == 1;
        if (!ok)
            return false;
    }
    return true;
}

typedef struct pack_sink {
    qd_buf *out;
    bool sideband;
    size_t max_data;
    int error;
} pack_sink;

static int pack_cb(void *buf, size_t size, void *payload)
{
    pack_sink *s = payload;
    const unsigned char *p = buf;
    if (!s->sideband) {
        s->error = qd_buf_put(s->out, p, size);
        return s->error < 0 ? -1 : 0;
    }
    while (size > 0) {
        size_t n = size < s->max_data ? size : s->max_data;
        if ((s->error = pkt_bytes(s->out, 1, p, n)) < 0)
            return -1;
        p += n;
        size -= n;
    }
    return 0;
}

static int send_pack(qd_buf *out, neg *g)
{
    git_packbuilder *pb = NULL;
    git_revwalk *walk = NULL;
    pack_sink s = {out, g->sideband || g->sideband64k, g->sideband64k ? 65515 : 995, 0};
    int rc, error = QD_OK;
    if ((rc = git_packbuilder_new(&pb, g->repo)) < 0 || (rc = git_revwalk_new(&walk, g->repo)) < 0) {
        error = qd_log__err_git(rc, "packbuilder");
        goto done;
    }
    git_packbuilder_set_threads(pb, 1);
    for (size_t i = 0; i < g->n_wants; i++)
        if ((rc = git_revwalk_push(walk, &g->wants[i])) < 0) {
            error = qd_log__err_git(rc, "walk wants");
            goto done;
        }
    for (size_t i = 0; i < g->n_common; i++)
        if ((rc = git_revwalk_hide(walk, &g->common[i])) < 0) {
            error = qd_log__err_git(rc, "walk haves");
            goto done;
        }
    if ((rc = git_packbuilder_insert_walk(pb, walk)) < 0) {
        error = qd_log__err_git(rc, "pack objects");
        goto done;
    }
    if ((rc = git_packbuilder_foreach(pb, pack_cb, &s)) < 0) {
        error = s.error < 0 ? s.error : qd_log__err_git(rc, "write pack");
        goto done;
    }
    if (s.sideband)
        error = flush_pkt(out);
done:
    git_revwalk_free(walk);
    git_packbuilder_free(pb);
    return error;
}

static int add_common(neg *g, const git_oid *oid)
{
    for (size_t i = 0; i < g->n_common; i++)
        if (git_oid_equal(&g->common[i], oid))
            return QD_OK;
    if (g->n_common == g->cap_common) {
        size_t nc = g->cap_common ? g->cap_common * 2 : 64;
        git_oid *n = qd_reallocarray(g->common, nc, sizeof(*n));
        if (!n)
            return QD_ENOMEM;
        g->common = n;
        g->cap_common = nc;
    }
    g->common[g->n_common++] = *oid;
    return QD_OK;
}

int qd_replog_git_upload_pack(qd_buf *out, const char *dir, const void *body, size_t len, bool gzipped)
{
    qd_buf plain = QD_BUF_INIT(0);
    const char *p, *end;
    neg g;
    git_oid last;
    bool got_common = false, sent_ready = false, acked_plain = false, in_haves = false;
    size_t n_haves = 0;
    int rc, error = QD_OK;

    memset(&g, 0, sizeof(g));
    git_libgit2_init();
    if (gzipped) {
        if ((error = gunzip(&plain, body, len)) < 0)
            goto done;
        body = plain.ptr;
        len = plain.len;
    }
    if ((rc = git_repository_open_bare(&g.repo, dir)) < 0) {
        error = qd_log__err_git(rc, dir);
        goto done;
    }
    p = body;
    end = p + len;
    while (p < end) {
        char lenhex[5], line[1024];
        unsigned long n;
        char *e;
        if (end - p < 4) {
            error = qd_error_set(QD_EINVAL, QD_EC_STORE, "upload-pack: truncated pkt-line");
            goto done;
        }
        memcpy(lenhex, p, 4);
        lenhex[4] = 0;
        n = strtoul(lenhex, &e, 16);
        if (*e || (n > 0 && n < 4) || n > (unsigned long)(end - p)) {
            error = qd_error_set(QD_EINVAL, QD_EC_STORE, "upload-pack: bad pkt-line length '%s'", lenhex);
            goto done;
        }
        if (n == 0 || n == 1) { /* flush (or a v2 delimiter) */
            p += 4;
            if (!in_haves) {
                in_haves = true; /* the end of the wants */
                continue;
            }
            if (g.multi_ack_detailed && got_common && ready(&g)) {
                char hex[GIT_OID_HEXSZ + 1];
                sent_ready = true;
                if ((error = pkt(out, "ACK %s ready\n", git_oid_tostr(hex, sizeof(hex), &last))) < 0)
                    goto done;
            }
            if ((g.n_common == 0 || g.multi_ack || g.multi_ack_detailed) && (error = pkt(out, "NAK\n")) < 0)
                goto done;
            if (g.no_done && sent_ready) {
                char hex[GIT_OID_HEXSZ + 1];
                if ((error = pkt(out, "ACK %s\n", git_oid_tostr(hex, sizeof(hex), &last))) < 0)
                    goto done;
                error = send_pack(out, &g);
                goto done;
            }
            got_common = false;
            continue;
        }
        if (n - 4 >= sizeof(line)) {
            error = qd_error_set(QD_EINVAL, QD_EC_STORE, "upload-pack: pkt-line too long");
            goto done;
        }
        memcpy(line, p + 4, n - 4);
        line[n - 4] = 0;
        p += n;
        if (!strncmp(line, "want ", 5) && !in_haves) {
            git_object *obj = NULL;
            if (g.n_wants == MAX_WANTS || strlen(line) < 5 + GIT_OID_HEXSZ ||
                git_oid_fromstrn(&g.wants[g.n_wants], line + 5, GIT_OID_HEXSZ) < 0) {
                error = qd_error_set(QD_EINVAL, QD_EC_STORE, "upload-pack: bad want line");
                goto done;
            }
            if (git_object_lookup(&obj, g.repo, &g.wants[g.n_wants], GIT_OBJECT_COMMIT) < 0) {
                error = qd_error_set(QD_ENOTFOUND, QD_EC_STORE, "upload-pack: not our ref %.40s", line + 5);
                goto done;
            }
            git_object_free(obj);
            if (g.n_wants == 0) {
                const char *caps = line + 5 + GIT_OID_HEXSZ;
                g.multi_ack_detailed = has_cap(caps, "multi_ack_detailed");
                g.multi_ack = has_cap(caps, "multi_ack");
                g.sideband64k = has_cap(caps, "side-band-64k");
                g.sideband = has_cap(caps, "side-band");
                g.no_done = has_cap(caps, "no-done");
                g.no_progress = has_cap(caps, "no-progress");
            }
            g.n_wants++;
        } else if (!strncmp(line, "have ", 5)) {
            git_oid oid;
            git_object *obj = NULL;
            char hex[GIT_OID_HEXSZ + 1];
            in_haves = true;
            if (++n_haves > MAX_HAVES || git_oid_fromstrn(&oid, line + 5, GIT_OID_HEXSZ) < 0) {
                error = qd_error_set(QD_EINVAL, QD_EC_STORE, "upload-pack: bad have line");
                goto done;
            }
            if (git_object_lookup(&obj, g.repo, &oid, GIT_OBJECT_COMMIT) < 0) {
                git_error_clear();
                continue; /* not ours */
            }
            git_object_free(obj);
            if ((error = add_common(&g, &oid)) < 0)
                goto done;
            got_common = true;
            last = oid;
            git_oid_tostr(hex, sizeof(hex), &oid);
            if (g.multi_ack_detailed)
                error = pkt(out, "ACK %s common\n", hex);
            else if (g.multi_ack)
                error = pkt(out, "ACK %s continue\n", hex);
            else if (!acked_plain) {
                acked_plain = true;
                error = pkt(out, "ACK %s\n", hex);
            }
            if (error < 0)
                goto done;
        } else if (!strcmp(line, "done\n") || !strcmp(line, "done")) {
            g.done = true;
            break;
        } else if (!strncmp(line, "shallow ", 8) || !strncmp(line, "deepen", 6) || !strncmp(line, "filter ", 7)) {
            error = qd_error_set(QD_EUNSUPPORTED, QD_EC_STORE, "upload-pack: shallow and partial clones are not "
                                                               "supported");
            goto done;
        } else {
            error = qd_error_set(QD_EINVAL, QD_EC_STORE, "upload-pack: unexpected line '%.60s'", line);
            goto done;
        }
    }
    if (g.n_wants == 0) {
        error = qd_error_set(QD_EINVAL, QD_EC_STORE, "upload-pack: no want line");
        goto done;
    }
    if (!g.done)
        goto done; /* a negotiation round: the ACKs/NAK written at its flush are the whole answer */
    if (g.n_common > 0 && (g.multi_ack || g.multi_ack_detailed)) {
        char hex[GIT_OID_HEXSZ + 1];
        error = pkt(out, "ACK %s\n", git_oid_tostr(hex, sizeof(hex), &last));
    } else if (g.n_common == 0) {
        error = pkt(out, "NAK\n");
    }
    if (error == QD_OK)
        error = send_pack(out, &g);
done:
    qd_free(g.common);
    git_repository_free(g.repo);
    git_libgit2_shutdown();
    qd_buf_dispose(&plain);
    return error;
}

/* ---- the client side: libgit2's fetch into a staging ref ------------------------------------------------------ */

int qd_replog_git_fetch(char head[41], const char *dir, const char *url, const char *staging_ref)
{
    git_repository *repo = NULL;
    git_remote *remote = NULL;
    git_fetch_options fo;
    git_oid oid;
    char spec[512];
    char *specs[1] = {spec};
    git_strarray arr = {specs, 1};
    int rc, error = QD_OK;

    head[0] = 0;
    git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
    snprintf(spec, sizeof(spec), "+" BRANCH ":%s", staging_ref);
    git_libgit2_init();
    rc = git_repository_open_bare(&repo, dir);
    if (rc == GIT_ENOTFOUND)
        rc = git_repository_init(&repo, dir, 1);
    if (rc < 0 || (rc = git_remote_create_anonymous(&remote, repo, url)) < 0) {
        error = qd_log__err_git(rc, dir);
        goto done;
    }
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    fo.update_fetchhead = 0;
    fo.prune = GIT_FETCH_NO_PRUNE;
    if ((rc = git_remote_fetch(remote, &arr, &fo, "quantd mirror: fetch")) < 0) {
        const git_error *e = git_error_last();
        error = qd_error_set(QD_EIO, QD_EC_NET, "fetch %s: %s", url, e && e->message ? e->message : "failed");
        goto done;
    }
    if ((rc = git_reference_name_to_id(&oid, repo, staging_ref)) < 0) {
        error = qd_error_set(QD_ENOTFOUND, QD_EC_NET, "fetch %s: the upstream has no %s", url, BRANCH);
        goto done;
    }
    git_oid_tostr(head, 41, &oid);
done:
    git_remote_free(remote);
    git_repository_free(repo);
    git_libgit2_shutdown();
    return error;
}
