/*
 * check.c - qd_verify(): signatures against the policy, then the statement against the files.
 *
 * Order matters. Signatures are checked over the exact payload bytes before the payload is parsed at all, so a
 * forged statement never reaches the JSON parser on a verdict path. Only after the threshold is met is the
 * statement read, and the bytes handed back are the bytes that were verified.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <time.h>


#include "policy_int.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/verify.h"
#include "verify_int.h"
#include "vjson.h"

struct qd_verified {
    uint8_t *payload;       /* the verified payload bytes (NUL-terminated, not counted) */
    size_t payload_len;
    char *predicate_type;   /* statement predicateType */
    char (*key_ids)[QD_KEY_ID_LEN + 1]; /* distinct keys that counted */
    size_t n_keys;
};

const uint8_t *qd_verified_payload(const qd_verified *v, size_t *len_out)
{
    *len_out = v->payload_len;
    return v->payload;
}
const char *qd_verified_predicate_type(const qd_verified *v) { return v->predicate_type; }
size_t qd_verified_key_count(const qd_verified *v) { return v->n_keys; }
const char *qd_verified_key_id(const qd_verified *v, size_t i) { return i < v->n_keys ? v->key_ids[i] : ""; }

void qd_verified_free(qd_verified *v)
{
    if (!v)
        return;
    qd_free(v->payload);
    qd_free(v->predicate_type);
    qd_free(v->key_ids);
    qd_free(v);
}

/* Record the failure (first one wins for key/subject/reason) and set the thread's error. */
static int fail(qd_verify_failure *why, int code, const char *key, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(qd_verify_failure *why, int code, const char *key, const char *subject, const char *fmt, ...)
{
    qd_verify_failure local;
    va_list ap;
    if (!why)
        why = &local;
    snprintf(why->key_id, sizeof(why->key_id), "%s", key && *key ? key : "-");
    snprintf(why->subject, sizeof(why->subject), "%s", subject && *subject ? subject : "-");
    va_start(ap, fmt);
    vsnprintf(why->reason, sizeof(why->reason), fmt, ap);
    va_end(ap);
    return qd_error_set(code, QD_EC_VERIFY, "key %s: subject %s: %s", why->key_id, why->subject, why->reason);
}

static const pol_key *find_key(const qd_policy *p, const char *id, size_t *idx)
{
    for (size_t i = 0; i < p->n_keys; i++)
        if (!strcmp(p->keys[i].id, id)) {
            *idx = i;
            return &p->keys[i];
        }
    return NULL;
}

static bool in_rule(const pol_rule *r, size_t ki)
{
    for (size_t i = 0; i < r->n_keys; i++)
        if (r->keys[i] == ki)
            return true;
    return false;
}

static bool revoked(const qd_policy *p, const char *id)
{
    for (size_t i = 0; i < p->n_revoked; i++)
        if (!strcmp(p->revoked[i], id))
            return true;
    return false;
}

/* Why a policy key cannot count now, or NULL when it can. */
static const char *key_unusable(const qd_policy *p, const pol_key *k, int64_t now, char *buf, size_t cap)
{
    char t[32];
    if (revoked(p, k->id))
        return "the key is revoked";
    if (now < k->valid_from) {
        qd_verify__format_time(t, k->valid_from);
        snprintf(buf, cap, "the key is not yet valid (valid from %s)", t);
        return buf;
    }
    if (now > k->valid_until) {
        qd_verify__format_time(t, k->valid_until);
        snprintf(buf, cap, "the key expired at %s", t);
        return buf;
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------------------- statement --- */

static int hex_digest(qd_digest *d, const char *hex)
{
    char text[QD_DIGEST_STR_LEN + 1];
    if (strlen(hex) != 2 * QD_DIGEST_LEN)
        return -1;
    memcpy(text, "sha256:", 7);
    memcpy(text + 7, hex, 2 * QD_DIGEST_LEN + 1);
    return qd_digest_parse(d, text) < 0 ? -1 : 0;
}

/* Read a subject-like entry {name, digest{sha256}} (statement subject) into name/digest. */
static int read_subject(qd_verify_failure *why, const cJSON *s, size_t i, const char **name, qd_digest *d,
                        const char *key)
{
    const cJSON *n = vj_get(s, "name"), *dig = vj_get(s, "digest"), *sha;
    if (!cJSON_IsObject(s))
        return fail(why, QD_ECORRUPT, key, "-", "statement subject[%zu] is not an object", i);
    if (!vj_str(n) || !vj_strlen(n))
        return fail(why, QD_ECORRUPT, key, "-", "statement subject[%zu] has no name", i);
    *name = vj_str(n);
    if (!cJSON_IsObject(dig) || !vj_size(dig))
        return fail(why, QD_ECORRUPT, key, *name, "subject has no digest");
    sha = vj_get(dig, "sha256");
    if (!sha) {
        const char *alg = dig->child->string;
        return fail(why, QD_ECORRUPT, key, *name, "unsupported digest algorithm '%.40s' (only sha256 is accepted)",
                    alg ? alg : "?");
    }
    if (!vj_str(sha) || hex_digest(d, vj_str(sha)) < 0)
        return fail(why, QD_ECORRUPT, key, *name, "subject sha256 is not 64 lowercase hex digits");
    return QD_OK;
}

/* Match signed (name, digest) pairs against the files, both ways. */
static int match_files(qd_verify_failure *why, const char *key, const char **names, const qd_digest *digests,
                       size_t n, const qd_subject *files, size_t n_files)
{
    for (size_t i = 0; i < n; i++) {
        size_t j;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(names[k], names[i]))
                return fail(why, QD_ECORRUPT, key, names[i], "the statement names this subject twice");
        for (j = 0; j < n_files; j++)
            if (!strcmp(files[j].name, names[i]))
                break;
        if (j == n_files)
            return fail(why, QD_EDIGEST, key, names[i], "no file of that name was given to check it against");
        if (!qd_digest_equal(&files[j].digest, &digests[i])) {
            char want[QD_DIGEST_STR_LEN + 1], got[QD_DIGEST_STR_LEN + 1];
            return fail(why, QD_EDIGEST, key, names[i], "digest mismatch: signed %s, file has %s",
                        qd_digest_format(want, &digests[i]), qd_digest_format(got, &files[j].digest));
        }
    }
    for (size_t j = 0; j < n_files; j++) {
        size_t i;
        for (i = 0; i < n; i++)
            if (!strcmp(files[j].name, names[i]))
                break;
        if (i == n)
            return fail(why, QD_EDIGEST, key, files[j].name, "this file is not a subject of the signed statement");
    }
    return QD_OK;
}

static int check_model_signing(qd_verify_failure *why, const char *key, const cJSON *pred, const char *name,
                               const qd_digest *root, const qd_subject *files, size_t n_files, bool skip)
{
    const cJSON *res = vj_get(pred, "resources"), *r;
    size_t n_res = cJSON_IsArray(res) ? vj_size(res) : 0;
    const char **names = NULL;
    qd_digest *digests = NULL;
    qd_sha256 *h = NULL;
    qd_digest got;
    size_t i;
    int rc;

    if (!n_res)
        return fail(why, QD_ECORRUPT, key, name, "model-signing predicate has no resources");
    if (!(names = qd_calloc(n_res, sizeof(*names))) || !(digests = qd_calloc(n_res, sizeof(*digests)))) {
        rc = QD_ENOMEM;
        goto done;
    }
    if ((rc = qd_sha256_new(&h)) < 0)
        goto done;
    i = 0;
    for (r = res->child; r; r = r->next, i++) {
        const cJSON *n = vj_get(r, "name"), *alg = vj_get(r, "algorithm"), *d = vj_get(r, "digest");
        if (!vj_str(n) || !vj_str(d)) {
            rc = fail(why, QD_ECORRUPT, key, name, "resources[%zu] lacks a name or digest", i);
            goto done;
        }
        if (!vj_str(alg) || strcmp(vj_str(alg), "sha256")) {
            rc = fail(why, QD_ECORRUPT, key, vj_str(n), "unsupported digest algorithm '%.40s' (only sha256 is accepted)",
                      vj_str(alg) ? vj_str(alg) : "?");
            goto done;
        }
        if (hex_digest(&digests[i], vj_str(d)) < 0) {
            rc = fail(why, QD_ECORRUPT, key, vj_str(n), "resource digest is not 64 lowercase hex digits");
            goto done;
        }
        names[i] = vj_str(n);
        if ((rc = qd_sha256_update(h, digests[i].bytes, QD_DIGEST_LEN)) < 0)
            goto done;
    }
    if ((rc = qd_sha256_final(h, &got)) < 0)
        goto done;
    if (!qd_digest_equal(&got, root)) {
        rc = fail(why, QD_ECORRUPT, key, name, "the resources do not hash to the subject's root digest");
        goto done;
    }
    rc = skip ? QD_OK : match_files(why, key, names, digests, n_res, files, n_files);
done:
    qd_sha256_free(h);
    qd_free(names);
    qd_free(digests);
    return rc;
}

static int check_statement(qd_verify_failure *why, const char *key, const qd_policy *p, const cJSON *st,
                           const qd_subject *files, size_t n_files, bool skip, const char **ptype_out)
{
    const cJSON *t = vj_get(st, "_type"), *subs = vj_get(st, "subject"), *pt = vj_get(st, "predicateType"),
                *pred = vj_get(st, "predicate"), *s;
    const char **names = NULL, *ptype;
    qd_digest *digests = NULL;
    size_t i, n;
    int rc;

    if (!cJSON_IsObject(st))
        return fail(why, QD_ECORRUPT, key, "-", "the payload is not a JSON object");
    if (!vj_str(t) || strcmp(vj_str(t), QD_STATEMENT_TYPE))
        return fail(why, QD_ECORRUPT, key, "-", "the payload is not an in-toto Statement v1 (_type %.80s)",
                    vj_str(t) ? vj_str(t) : "missing");
    if (!cJSON_IsArray(subs) || !(n = vj_size(subs)))
        return fail(why, QD_ECORRUPT, key, "-", "the statement has no subjects");
    if (!vj_str(pt) || !vj_strlen(pt))
        return fail(why, QD_ECORRUPT, key, "-", "the statement has no predicateType");
    ptype = vj_str(pt);
    *ptype_out = ptype;
    if (pred && !cJSON_IsObject(pred))
        return fail(why, QD_ECORRUPT, key, "-", "the statement's predicate is not an object");
    if (!(names = qd_calloc(n, sizeof(*names))) || !(digests = qd_calloc(n, sizeof(*digests)))) {
        rc = QD_ENOMEM;
        goto done;
    }
    i = 0;
    for (s = subs->child; s; s = s->next, i++)
        if ((rc = read_subject(why, s, i, &names[i], &digests[i], key)) < 0)
            goto done;
    if (p->n_predicate_types) {
        for (i = 0; i < p->n_predicate_types; i++)
            if (!strcmp(p->predicate_types[i], ptype))
                break;
        if (i == p->n_predicate_types) {
            rc = fail(why, QD_EBADSIG, key, names[0], "predicate type %.120s is not one the policy accepts", ptype);
            goto done;
        }
    }
    if (p->require_validation_pass) {
        const cJSON *verdict = vj_get(vj_get(pred, "validation"), "verdict");
        if (!vj_str(verdict)) {
            rc = fail(why, QD_EBADSIG, key, names[0], "the policy requires a passing validation verdict and the "
                                                      "predicate has none");
            goto done;
        }
        if (strcmp(vj_str(verdict), "pass")) {
            rc = fail(why, QD_EBADSIG, key, names[0], "validation verdict is '%.40s'; the policy requires 'pass'",
                      vj_str(verdict));
            goto done;
        }
    }
    if (!strcmp(ptype, QD_PREDICATE_MODEL_SIGNING)) {
        if (n != 1) {
            rc = fail(why, QD_ECORRUPT, key, names[0], "a model-signing statement must have exactly one subject");
            goto done;
        }
        rc = check_model_signing(why, key, pred, names[0], &digests[0], files, n_files, skip);
        goto done;
    }
    rc = skip ? QD_OK : match_files(why, key, names, digests, n, files, n_files);
done:
    qd_free(names);
    qd_free(digests);
    return rc;
}

/* For a message only, after the signatures failed: the first subject name of the (unverified) statement, so that
 * the failure line can say which subject the bundle claims to cover. Never used for a decision. */
static void claimed_subject(char *out, size_t cap, const uint8_t *payload, size_t len)
{
    qd_vjson_arena *arena = qd_malloc(sizeof(*arena)); /* (a failure path: off the stack of the verifier) */
    cJSON *st = NULL;
    const cJSON *subs;
    const char *name;
    size_t n;
    if (!arena || qd_vjson_parse(&st, arena, payload, len, "statement"))
        qd_error_clear();
    subs = vj_get(st, "subject");
    name = cJSON_IsArray(subs) && subs->child ? vj_str(vj_get(subs->child, "name")) : NULL;
    n = cJSON_IsArray(subs) ? vj_size(subs) : 0;
    if (name && n > 1)
        snprintf(out, cap, "%.120s (+%zu more, unverified)", name, n - 1);
    else if (name)
        snprintf(out, cap, "%.120s (unverified)", name);
    else
        snprintf(out, cap, "-");
    if (st)
        qd_vjson_free(st, arena);
    qd_free(arena);
}

/* ------------------------------------------------------------------------------------------------- verify --- */

int qd_verify(qd_verified **out, qd_verify_failure *why, const qd_policy *p, const qd_envelope *env,
              const qd_subject *files, size_t n_files, const qd_verify_options *opts)
{
    qd_verify_options def = QD_VERIFY_OPTIONS_INIT;
    const char *ns, *ptype = NULL;
    const pol_rule *rule = NULL;
    qd_buf pae = QD_BUF_INIT(0);
    size_t n_sigs = qd_envelope_signature_count(env), n_good = 0, payload_len;
    const uint8_t *payload = qd_envelope_payload(env, &payload_len);
    char first_key[QD_KEY_ID_LEN + 1] = "", first_why[200] = "";
    size_t *good = NULL; /* policy key indexes that counted */
    qd_verified *v = NULL;
    cJSON *st = NULL;
    qd_vjson_arena arena;
    int64_t now;
    int rc;

    if (out)
        *out = NULL;
    if (why) {
        strcpy(why->key_id, "-");
        strcpy(why->subject, "-");
        why->reason[0] = '\0';
    }
    if (!opts)
        opts = &def;
    ns = opts->namespace_name ? opts->namespace_name : "";
    now = opts->now ? opts->now : (int64_t)time(NULL);

    if (strcmp(qd_envelope_payload_type(env), QD_INTOTO_PAYLOAD_TYPE))
        return fail(why, QD_EBADSIG, qd_envelope_hint(env), "-", "payloadType is '%.80s', expected %s",
                    qd_envelope_payload_type(env), QD_INTOTO_PAYLOAD_TYPE);
    if (payload_len > p->max_payload)
        return fail(why, QD_EBADSIG, qd_envelope_hint(env), "-",
                    "payload of %zu bytes is over the policy's limit of %zu", payload_len, p->max_payload);
    if (!n_sigs)
        return fail(why, QD_EBADSIG, "-", "-", "the envelope has no signatures");
    for (size_t i = 0; i < p->n_rules && !rule; i++)
        if (fnmatch(p->rules[i].pattern, ns, 0) == 0)
            rule = &p->rules[i];
    if (!rule)
        return fail(why, QD_EBADSIG, qd_envelope_hint(env), "-", "no namespace rule of the policy matches '%.100s'",
                    ns);
    if ((rc = qd_dsse_pae(&pae, QD_INTOTO_PAYLOAD_TYPE, payload, payload_len)) < 0)
        return rc;
    if (!(good = qd_calloc(n_sigs, sizeof(*good)))) {
        rc = QD_ENOMEM;
        goto done;
    }

    /* 1. signatures: count distinct policy keys of this rule whose signature verifies */
    for (size_t i = 0; i < n_sigs; i++) {
        const char *kid = qd_envelope_signature_keyid(env, i), *problem = NULL;
        const uint8_t *sig;
        size_t sig_len, ki = 0, m;
        char buf[128];
        bool counted = false;

        qd_verify__envelope_sig(env, i, &sig, &sig_len);
        if (kid[0]) {
            const pol_key *k = find_key(p, kid, &ki);
            if (!k)
                problem = "the key is not in the policy";
            else if (!in_rule(rule, ki))
                problem = "the key is not trusted for this namespace";
            else if (!(problem = key_unusable(p, k, now, buf, sizeof(buf)))) {
                if (qd_key_verify(k->key, pae.ptr, pae.len, sig, sig_len) == QD_OK)
                    counted = true;
                else
                    problem = "the signature does not verify";
            }
        } else {
            /* no keyid: try every usable key of the rule */
            problem = "no trusted key of this namespace verifies the signature";
            for (m = 0; m < rule->n_keys && !counted; m++) {
                const pol_key *k = &p->keys[rule->keys[m]];
                if (key_unusable(p, k, now, buf, sizeof(buf)))
                    continue;
                if (qd_key_verify(k->key, pae.ptr, pae.len, sig, sig_len) == QD_OK) {
                    ki = rule->keys[m];
                    counted = true;
                }
            }
        }
        if (counted) {
            for (m = 0; m < n_good; m++)
                if (good[m] == ki)
                    break;
            if (m == n_good)
                good[n_good++] = ki;
            else if (!first_why[0]) {
                snprintf(first_key, sizeof(first_key), "%s", p->keys[ki].id);
                snprintf(first_why, sizeof(first_why), "the key signed more than once and counts once");
            }
        } else if (!first_why[0]) {
            snprintf(first_key, sizeof(first_key), "%.64s", kid[0] ? kid : "-");
            snprintf(first_why, sizeof(first_why), "%s", problem);
        }
    }
    if (n_good < rule->threshold) {
        char claimed[200];
        claimed_subject(claimed, sizeof(claimed), payload, payload_len);
        rc = fail(why, QD_EBADSIG, first_key[0] ? first_key : "-", claimed,
                  "%s%sthreshold not met: %zu of %u required distinct trusted key(s) signed (namespace rule '%s')",
                  first_why, first_why[0] ? "; " : "", n_good, rule->threshold, rule->pattern);
        goto done;
    }

    /* 2. the statement, read from the verified bytes */
    if ((rc = qd_vjson_parse(&st, &arena, payload, payload_len, "statement"))) {
        if (rc == QD_ENOMEM)
            goto done;
        char msg[200];
        snprintf(msg, sizeof(msg), "%s", qd_error_last()->message);
        rc = fail(why, QD_ECORRUPT, p->keys[good[0]].id, "-", "the signed payload is not valid JSON (%s)", msg);
        goto done;
    }
    if ((rc = check_statement(why, p->keys[good[0]].id, p, st, files, n_files, opts->skip_subjects, &ptype)) < 0)
        goto done;

    /* 3. hand back the verified bytes */
    if (out) {
        rc = QD_ENOMEM;
        if (!(v = qd_calloc(1, sizeof(*v))) || !(v->payload = qd_malloc(payload_len + 1)) ||
            !(v->predicate_type = qd_strdup(ptype)) || !(v->key_ids = qd_calloc(n_good, sizeof(*v->key_ids))))
            goto done;
        memcpy(v->payload, payload, payload_len);
        v->payload[payload_len] = 0;
        v->payload_len = payload_len;
        for (size_t i = 0; i < n_good; i++)
            memcpy(v->key_ids[i], p->keys[good[i]].id, QD_KEY_ID_LEN + 1);
        v->n_keys = n_good;
        *out = v;
        v = NULL;
    }
    rc = QD_OK;
done:
    qd_verified_free(v);
    if (st)
        qd_vjson_free(st, &arena);
    qd_free(good);
    qd_buf_dispose(&pae);
    return rc;
}
