/*
 * note.c - C2SP signed notes (Ed25519), tlog checkpoints, freshness timestamps and the verifier state files.
 *
 * signed-note: the text (UTF-8, ending in "\n"), a blank line, then lines "\u2014 <name> <base64(keyhash(4) ||
 * signature(64))>\n". The Ed25519 key hash is the first 4 bytes (big-endian) of SHA-256(name || "\n" || 0x01 ||
 * public key), and the verifier key text is "<name>+<8 hex>+<base64(0x01 || public key)>".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log_int.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/replog.h"

#define DASH "\xe2\x80\x94" /* U+2014 EM DASH */
#define TS_MAGIC "quantd-timestamp/v1\n"

bool qd_note_name_valid(const char *name)
{
    const unsigned char *p;
    if (!name || !*name)
        return false;
    for (p = (const unsigned char *)name; *p; p++)
        if (*p <= ' ' || *p == '+' || *p == 0x7f)
            return false;
    return true;
}

int qd_note_key_hash(uint32_t *out, const char *name, const qd_key *key)
{
    qd_buf b = QD_BUF_INIT(0);
    uint8_t raw[32];
    qd_digest d;
    int error;
    if (!qd_note_name_valid(name))
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: bad key name \"%s\"", name ? name : "");
    if ((error = qd_log__ed25519_raw(raw, key)) < 0)
        return error;
    if ((error = qd_buf_puts(&b, name)) == QD_OK && (error = qd_buf_put(&b, "\n\x01", 2)) == QD_OK &&
        (error = qd_buf_put(&b, raw, 32)) == QD_OK && (error = qd_sha256_buf(&d, b.ptr, b.len)) == QD_OK)
        *out = (uint32_t)d.bytes[0] << 24 | (uint32_t)d.bytes[1] << 16 | (uint32_t)d.bytes[2] << 8 | d.bytes[3];
    qd_buf_dispose(&b);
    return error;
}

int qd_note_verifier_key(qd_buf *out, const char *name, const qd_key *key)
{
    uint8_t raw[33];
    uint32_t h;
    int error;
    if ((error = qd_note_key_hash(&h, name, key)) < 0 || (error = qd_log__ed25519_raw(raw + 1, key)) < 0)
        return error;
    raw[0] = 1;
    if ((error = qd_buf_printf(out, "%s+%08" PRIx32 "+", name, h)) < 0)
        return error;
    return qd_base64_encode(out, raw, sizeof(raw));
}

int qd_note_verifier_parse(qd_key **out, char *name, size_t name_cap, const char *vkey)
{
    const char *p1 = strchr(vkey, '+'), *p2 = p1 ? strchr(p1 + 1, '+') : NULL;
    qd_buf raw = QD_BUF_INIT(1024);
    qd_key *key = NULL;
    uint32_t h, want;
    char hex[9], *end;
    int error;
    *out = NULL;
    if (!p1 || !p2 || p2 - p1 != 9 || (size_t)(p1 - vkey) >= name_cap)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: verifier key is not name+hash+key");
    memcpy(name, vkey, (size_t)(p1 - vkey));
    name[p1 - vkey] = 0;
    memcpy(hex, p1 + 1, 8);
    hex[8] = 0;
    want = (uint32_t)strtoul(hex, &end, 16);
    if (*end || (error = qd_base64_decode(&raw, p2 + 1, strlen(p2 + 1))) < 0 || raw.len != 33 ||
        (uint8_t)raw.ptr[0] != 1) {
        error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: verifier key: bad hash or not an Ed25519 key");
        goto done;
    }
    if ((error = qd_log__ed25519_from_raw(&key, (const uint8_t *)raw.ptr + 1)) < 0 ||
        (error = qd_note_key_hash(&h, name, key)) < 0)
        goto done;
    if (h != want) {
        error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: verifier key hash %s does not match the key", hex);
        goto done;
    }
    *out = key;
    key = NULL;
done:
    qd_key_free(key);
    qd_buf_dispose(&raw);
    return error;
}

int qd_note_sign(qd_buf *out, const char *text, size_t text_len, const char *name, const qd_key *key)
{
    uint8_t sig[4 + QD_SIG_MAX];
    size_t sig_len = 0;
    uint32_t h;
    int error;
    if (text_len == 0 || text[text_len - 1] != '\n')
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: the text must end with a newline");
    if (memchr(text, 0, text_len))
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: NUL in text");
    if ((error = qd_note_key_hash(&h, name, key)) < 0 ||
        (error = qd_key_sign(sig + 4, &sig_len, key, text, text_len)) < 0)
        return error;
    sig[0] = (uint8_t)(h >> 24);
    sig[1] = (uint8_t)(h >> 16);
    sig[2] = (uint8_t)(h >> 8);
    sig[3] = (uint8_t)h;
    if ((error = qd_buf_put(out, text, text_len)) < 0 || (error = qd_buf_printf(out, "\n" DASH " %s ", name)) < 0 ||
        (error = qd_base64_encode(out, sig, 4 + sig_len)) < 0)
        return error;
    return qd_buf_puts(out, "\n");
}

int qd_note_verify(size_t *text_len, const char *note, size_t len, const char *name, const qd_key *key)
{
    const char *p, *end = note + len, *sigs = NULL;
    qd_buf sig = QD_BUF_INIT(1024);
    uint32_t h;
    bool found = false;
    int error;
    if (len == 0 || note[len - 1] != '\n' || memchr(note, 0, len))
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: must end with a newline and hold no NUL");
    for (p = note; p + 1 < end; p++)
        if (p[0] == '\n' && p[1] == '\n')
            sigs = p + 2; /* the last blank line */
    if (!sigs)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: no blank line before the signatures");
    *text_len = (size_t)(sigs - 1 - note);
    if ((error = qd_note_key_hash(&h, name, key)) < 0)
        return error;
    for (p = sigs; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *nm, *sp;
        size_t dl = strlen(DASH " ");
        if ((size_t)(nl - p) < dl || memcmp(p, DASH " ", dl) != 0) {
            error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: malformed signature line");
            goto done;
        }
        nm = p + dl;
        sp = memchr(nm, ' ', (size_t)(nl - nm));
        if (!sp) {
            error = qd_error_set(QD_EINVAL, QD_EC_VERIFY, "note: malformed signature line");
            goto done;
        }
        if ((size_t)(sp - nm) == strlen(name) && memcmp(nm, name, (size_t)(sp - nm)) == 0) {
            qd_buf_clear(&sig);
            if (qd_base64_decode(&sig, sp + 1, (size_t)(nl - sp - 1)) == QD_OK && sig.len > 4) {
                const uint8_t *s = (const uint8_t *)sig.ptr;
                uint32_t got = (uint32_t)s[0] << 24 | (uint32_t)s[1] << 16 | (uint32_t)s[2] << 8 | s[3];
                if (got == h) {
                    found = true;
                    if (qd_key_verify(key, note, *text_len, s + 4, sig.len - 4) != QD_OK) {
                        error = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "note: signature of %s does not verify",
                                             name);
                        goto done;
                    }
                }
            }
        }
        p = nl + 1;
    }
    error = found ? QD_OK : qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "note: no signature by %s with this key", name);
done:
    qd_buf_dispose(&sig);
    return error;
}

int qd_checkpoint_format(qd_buf *out, const qd_checkpoint *cp)
{
    int error;
    if (!qd_note_name_valid(cp->origin) && (!*cp->origin || strchr(cp->origin, '\n')))
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "checkpoint: bad origin");
    if ((error = qd_buf_printf(out, "%s\n%" PRIu64 "\n", cp->origin, cp->size)) < 0 ||
        (error = qd_base64_encode(out, cp->root, QD_HASH_LEN)) < 0)
        return error;
    return qd_buf_puts(out, "\n");
}

/* Next line of [*p, end) without its newline; -1 when there is no complete line. */
static int next_line(const char **p, const char *end, const char **line, size_t *n)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (!nl)
        return -1;
    *line = *p;
    *n = (size_t)(nl - *p);
    *p = nl + 1;
    return 0;
}

static int parse_u64(uint64_t *out, const char *s, size_t n)
{
    uint64_t v = 0;
    size_t i;
    if (n == 0 || n > 19 || (n > 1 && s[0] == '0'))
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

int qd_checkpoint_parse(qd_checkpoint *out, const char *text, size_t len)
{
    const char *p = text, *end = text + len, *l;
    size_t n;
    qd_buf root = QD_BUF_INIT(64);
    int error = QD_EINVAL;
    memset(out, 0, sizeof(*out));
    if (next_line(&p, end, &l, &n) || n == 0 || n >= sizeof(out->origin))
        goto bad;
    memcpy(out->origin, l, n);
    if (next_line(&p, end, &l, &n) || parse_u64(&out->size, l, n))
        goto bad;
    if (next_line(&p, end, &l, &n) || qd_base64_decode(&root, l, n) < 0 || root.len != QD_HASH_LEN)
        goto bad;
    memcpy(out->root, root.ptr, QD_HASH_LEN);
    error = QD_OK;
bad:
    qd_buf_dispose(&root);
    if (error < 0)
        return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "checkpoint: expected origin, size and base64 root lines");
    return QD_OK;
}

/* ---------------------------------------------------------------------------------------------- freshness --- */

static int parse_i64(int64_t *out, const char *s, size_t n)
{
    uint64_t v;
    if (parse_u64(&v, s, n) || v > INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int timestamp_parse(qd_timestamp *out, const char *text, size_t len)
{
    const char *p = text, *end = text + len, *l;
    size_t n;
    char dg[QD_DIGEST_STR_LEN + 1];
    memset(out, 0, sizeof(*out));
    if (len < strlen(TS_MAGIC) || memcmp(text, TS_MAGIC, strlen(TS_MAGIC)) != 0)
        goto bad;
    p += strlen(TS_MAGIC);
    {
        const char *cp = p;
        int i;
        for (i = 0; i < 3; i++)
            if (next_line(&p, end, &l, &n))
                goto bad;
        if (qd_checkpoint_parse(&out->checkpoint, cp, (size_t)(p - cp)) < 0)
            goto bad;
    }
    if (next_line(&p, end, &l, &n) || n != QD_DIGEST_STR_LEN)
        goto bad;
    memcpy(dg, l, n);
    dg[n] = 0;
    if (qd_digest_parse(&out->tagmap, dg) < 0)
        goto bad;
    if (next_line(&p, end, &l, &n) || parse_i64(&out->issued, l, n))
        goto bad;
    if (next_line(&p, end, &l, &n) || parse_i64(&out->expires, l, n) || p != end)
        goto bad;
    return QD_OK;
bad:
    return qd_error_set(QD_EINVAL, QD_EC_VERIFY, "timestamp: malformed body");
}

int qd_replog_state_load(qd_replog_state *out, const char *path)
{
    qd_buf b = QD_BUF_INIT(4096), root = QD_BUF_INIT(64);
    char head[64] = "", rhex[128] = "", thex[128] = "";
    unsigned long long size;
    int error, nf;
    memset(out, 0, sizeof(*out));
    error = qd_log__read_file(&b, path, 4096);
    if (error == QD_ENOTFOUND) {
        qd_error_clear();
        return QD_OK;
    }
    if (error < 0)
        goto done;
    nf = sscanf(qd_buf_cstr(&b), "%llu %63s %127s %127s", &size, head, rhex, thex);
    if (nf < 3 || strlen(rhex) != 64 || (strlen(head) != 40 && strcmp(head, "-") != 0) ||
        (nf == 4 && strlen(thex) != 64)) {
        error = qd_error_set(QD_ECORRUPT, QD_EC_VERIFY, "state %s: malformed", path);
        goto done;
    }
    out->size = size;
    if (strcmp(head, "-") != 0)
        memcpy(out->head, head, 41);
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(rhex + 2 * i, "%2x", &v) != 1) {
            error = qd_error_set(QD_ECORRUPT, QD_EC_VERIFY, "state %s: malformed root", path);
            goto done;
        }
        out->root[i] = (uint8_t)v;
    }
    for (int i = 0; nf == 4 && i < 32; i++) {
        unsigned v;
        if (sscanf(thex + 2 * i, "%2x", &v) != 1) {
            error = qd_error_set(QD_ECORRUPT, QD_EC_VERIFY, "state %s: malformed tag map digest", path);
            goto done;
        }
        out->tagmap.bytes[i] = (uint8_t)v;
    }
done:
    qd_buf_dispose(&b);
    qd_buf_dispose(&root);
    return error;
}

int qd_replog_state_save(const qd_replog_state *st, const char *path)
{
    char line[256], root[65], tags[65];
    int n = snprintf(line, sizeof(line), "%" PRIu64 " %s %s %s\n", st->size, st->head[0] ? st->head : "-",
                     qd_hex(root, st->root, 32), qd_hex(tags, st->tagmap.bytes, 32));
    return qd_log__write_file(path, line, (size_t)n);
}

/* The freshness state: "issued size hexroot". Reuses the state file format with issued in place of the head. */
int qd_fresh_verify(qd_timestamp *out, qd_fresh_verdict *verdict, const char *note, size_t note_len,
                    const char *origin, const qd_key *key, const char *state_path, int64_t now)
{
    qd_timestamp ts;
    qd_buf b = QD_BUF_INIT(4096);
    size_t text_len;
    int64_t last_issued = 0;
    uint64_t last_size = 0;
    uint8_t last_root[QD_HASH_LEN] = {0};
    bool have_last = false;
    int error;
    *verdict = QD_FRESH_BADSIG;
    if (now == 0)
        now = (int64_t)time(NULL);
    if ((error = qd_note_verify(&text_len, note, note_len, origin, key)) < 0 ||
        (error = timestamp_parse(&ts, note, text_len)) < 0) {
        error = qd_error_prefix("timestamp");
        error = error == QD_EINVAL ? QD_EBADSIG : error;
        goto done;
    }
    if (strcmp(ts.checkpoint.origin, origin) != 0) {
        error = qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "timestamp: origin %s, expected %s", ts.checkpoint.origin,
                             origin);
        goto done;
    }
    if (ts.expires <= now) {
        *verdict = QD_FRESH_EXPIRED;
        error = qd_error_set(QD_EBADSIG, QD_EC_VERIFY,
                             "timestamp expired %lld s ago (the log is frozen or the clock is wrong)",
                             (long long)(now - ts.expires));
        goto done;
    }
    error = qd_log__read_file(&b, state_path, 4096);
    if (error == QD_OK) {
        unsigned long long is, sz;
        char rhex[128];
        if (sscanf(qd_buf_cstr(&b), "%llu %llu %127s", &is, &sz, rhex) != 3 || strlen(rhex) != 64) {
            error = qd_error_set(QD_ECORRUPT, QD_EC_VERIFY, "freshness state %s: malformed", state_path);
            goto done;
        }
        for (int i = 0; i < 32; i++) {
            unsigned v = 0;
            sscanf(rhex + 2 * i, "%2x", &v);
            last_root[i] = (uint8_t)v;
        }
        last_issued = (int64_t)is;
        last_size = sz;
        have_last = true;
    } else if (error == QD_ENOTFOUND) {
        qd_error_clear();
    } else {
        goto done;
    }
    if (have_last && (ts.issued < last_issued || ts.checkpoint.size < last_size ||
                      (ts.checkpoint.size == last_size && memcmp(ts.checkpoint.root, last_root, 32) != 0))) {
        *verdict = QD_FRESH_ROLLBACK;
        error = qd_error_set(QD_EBADSIG, QD_EC_VERIFY,
                             "timestamp rolls back: issued %lld size %llu, last seen issued %lld size %llu%s",
                             (long long)ts.issued, (unsigned long long)ts.checkpoint.size, (long long)last_issued,
                             (unsigned long long)last_size,
                             ts.checkpoint.size == last_size && ts.issued >= last_issued ? " with another root" : "");
        goto done;
    }
    {
        char line[256], root[65];
        int n = snprintf(line, sizeof(line), "%lld %llu %s\n", (long long)ts.issued,
                         (unsigned long long)ts.checkpoint.size, qd_hex(root, ts.checkpoint.root, 32));
        if ((error = qd_log__write_file(state_path, line, (size_t)n)) < 0)
            goto done;
    }
    *verdict = QD_FRESH_OK;
    if (out)
        *out = ts;
    error = QD_OK;
done:
    qd_buf_dispose(&b);
    return error;
}

int qd_log__timestamp_text(qd_buf *out, const qd_checkpoint *cp, const qd_digest *tagmap, int64_t issued,
                           int64_t expires);
int qd_log__timestamp_text(qd_buf *out, const qd_checkpoint *cp, const qd_digest *tagmap, int64_t issued,
                           int64_t expires)
{
    char dg[QD_DIGEST_STR_LEN + 1];
    int error;
    if ((error = qd_buf_puts(out, TS_MAGIC)) < 0 || (error = qd_checkpoint_format(out, cp)) < 0)
        return error;
    return qd_buf_printf(out, "%s\n%lld\n%lld\n", qd_digest_format(dg, tagmap), (long long)issued,
                         (long long)expires);
}

int qd_fresh_match(const qd_timestamp *ts, const qd_replog_state *st)
{
    if (ts->checkpoint.size != st->size)
        return qd_error_set(QD_EBADSIG, QD_EC_VERIFY,
                            "timestamp covers %llu entries, the verified log has %llu: fetch again (%s)",
                            (unsigned long long)ts->checkpoint.size, (unsigned long long)st->size,
                            ts->checkpoint.size < st->size ? "the timestamp is stale" : "the log copy is behind");
    if (memcmp(ts->checkpoint.root, st->root, QD_HASH_LEN) != 0)
        return qd_error_set(QD_EBADSIG, QD_EC_VERIFY, "timestamp root differs from the verified log's (a fork)");
    if (!qd_digest_equal(&ts->tagmap, &st->tagmap))
        return qd_error_set(QD_EBADSIG, QD_EC_VERIFY,
                            "timestamp tag map differs from the verified log's (mix and match)");
    return QD_OK;
}
