/*
 * calibset.c - calibration sets: a QDVALSET file or "sample:N:LEN:SEED", checked against the model (and against a
 * validation set: calibration and validation must be disjoint).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/alloc.h"
#include "qd/digest.h"
#include "qd/err.h"
#include "qd/gptq.h"

static int read_all(void **out, size_t *len, const char *path)
{
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (!f)
        return qd_error_set(errno == ENOENT ? QD_ENOTFOUND : QD_EIO, QD_EC_OS, "calibration set %s: %s", path,
                            strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = qd_malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        uint8_t *nb = cap < SIZE_MAX / 2 ? qd_reallocarray(buf, cap, 2) : NULL;
        if (!nb) {
            qd_free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "calibration set %s: out of memory", path);
    if (err) {
        qd_free(buf);
        return qd_error_set(QD_EIO, QD_EC_OS, "calibration set %s: read failed", path);
    }
    *out = buf;
    *len = n;
    return QD_OK;
}

/* Decimal digits at *p (1 to 19, no sign or space) into *v; *p moves past them. */
static bool digits(const char **p, unsigned long long *v)
{
    int k = 0;
    *v = 0;
    for (; **p >= '0' && **p <= '9'; (*p)++, k++) {
        if (k == 19)
            return false;
        *v = *v * 10 + (unsigned long long)(**p - '0');
    }
    return k > 0;
}

int qd_calib_parse_sample(const char *spec, unsigned long long *n, unsigned long long *len, unsigned long long *seed)
{
    const char *p = spec + 7;
    if (strncmp(spec, "sample:", 7))
        return 0;
    if (!digits(&p, n) || *p++ != ':' || !digits(&p, len) || *p++ != ':' || !digits(&p, seed) || *p)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "calibration spec '%s': want sample:N:LEN:SEED (decimal "
                            "numbers)", spec);
    return 1;
}

bool qd_calib_class_valid(const char *c)
{
    static const char *const fixed[] = {"none", "generic-text", "code", "multilingual"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (!strcmp(c, fixed[i]))
            return true;
    if (strncmp(c, "domain:", 7) || !c[7])
        return false;
    for (const char *p = c + 7; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '_' || *p == '-'))
            return false;
    return true;
}

int qd_calibset_load_set(qd_valset **out, const char *spec, const qd_llama_model *m, int n_threads)
{
    unsigned long long n = 0, len = 0, seed = 0;
    *out = NULL;
    int rc = qd_calib_parse_sample(spec, &n, &len, &seed);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if (n < 1 || n > 1000000)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "calibration spec '%s': the set is empty (N must be 1 or "
                                "more)", spec);
        if (len < 2)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "calibration spec '%s': sequences of %llu tokens are too "
                                "short (at least 2)", spec, len);
        if (len > (unsigned long long)m->cfg.seq_len)
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "calibration spec '%s': sequences of %llu tokens exceed "
                                "the model's context of %d", spec, len, m->cfg.seq_len);
        return qd_valset_sample(out, m, (uint32_t)n, (uint32_t)len, seed, n_threads);
    }
    void *buf = NULL;
    size_t blen = 0;
    if ((rc = read_all(&buf, &blen, spec)) < 0)
        return rc;
    if (blen == 0) {
        qd_free(buf);
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "calibration set %s is empty (0 bytes)", spec);
    }
    rc = qd_valset_parse(out, buf, blen);
    qd_free(buf);
    if (rc < 0)
        qd_error_prefix("calibration set %s", spec);
    return rc;
}

void qd_calibset_free(qd_calibset *c)
{
    if (!c)
        return;
    qd_valset_free(c->set);
    memset(c, 0, sizeof(*c));
}

int qd_calibset_open(qd_calibset *out, const char *spec, const qd_llama_model *m, const qd_valset *val,
                     int n_threads)
{
    memset(out, 0, sizeof(*out));
    if (!spec || !*spec)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "no calibration set given (a QDVALSET file or "
                            "sample:N:LEN:SEED)");
    int rc = qd_calibset_load_set(&out->set, spec, m, n_threads);
    if (rc < 0)
        return rc;
    out->sampled = !strncmp(spec, "sample:", 7);
    const char *base = strrchr(spec, '/');
    snprintf(out->name, sizeof(out->name), "%s", base && !out->sampled ? base + 1 : spec);
    const qd_valset *s = out->set;
    if (s->n_seqs == 0 || s->n_tokens == 0) {
        rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "calibration set %s is empty", spec);
        goto fail;
    }
    for (uint32_t i = 0; i < s->n_seqs; i++)
        if (s->lens[i] < 2) {
            rc = qd_error_set(QD_EINVAL, QD_EC_INVALID, "calibration set %s: sequence %u has %u token(s), too "
                              "short (at least 2)", spec, i, s->lens[i]);
            goto fail;
        }
    if ((rc = qd_valset_check(s, m->cfg.vocab, m->cfg.seq_len)) < 0) {
        qd_error_prefix("calibration set %s (vocabulary %d, context %d)", spec, m->cfg.vocab, m->cfg.seq_len);
        goto fail;
    }
    if (val && (rc = qd_calib_check_disjoint(s, val)) < 0)
        goto fail;
    void *blob = NULL;
    size_t blen = 0;
    qd_digest d;
    if ((rc = qd_valset_serialize(&blob, &blen, s)) < 0)
        goto fail;
    rc = qd_sha256_buf(&d, blob, blen);
    qd_free(blob);
    if (rc < 0)
        goto fail;
    char ds[QD_DIGEST_STR_LEN + 1];
    snprintf(out->digest, sizeof(out->digest), "%s", qd_digest_format(ds, &d));
    return QD_OK;
fail:
    qd_calibset_free(out);
    return rc;
}
