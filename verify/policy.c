/*
 * policy.c - the trust policy: parse it strictly (schemas/policy.schema.json) and write new ones.
 *
 * Strict means: unknown fields, wrong types, a key id that does not match its public key, a private key where a
 * public one belongs, a threshold that can never be met, and a rule naming an unknown key are all errors, each
 * naming the field. A policy that loads is internally consistent, so qd_verify() need not check it again.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "policy_int.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/verify.h"
#include "verify_int.h"

#define POLICY_FILE_MAX (1u << 20)
#define POLICY_VERSION 1

static int pbad(const char *field, const char *what)
{
    return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s: %s", field, what);
}

static int only_fields(json_t *obj, const char *where, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        size_t i;
        (void)v;
        for (i = 0; allowed[i]; i++)
            if (!strcmp(k, allowed[i]))
                break;
        if (!allowed[i])
            return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s: unknown field '%.60s'", where, k);
    }
    return QD_OK;
}

static bool is_hex64(const char *s)
{
    size_t i;
    for (i = 0; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == QD_KEY_ID_LEN;
}

/* RFC 3339 in UTC, to the second: YYYY-MM-DDTHH:MM:SSZ. */
static int parse_time(int64_t *out, const char *s)
{
    struct tm tm;
    int y, mo, d, h, mi, se;
    char z = 0, extra;
    time_t t;

    memset(&tm, 0, sizeof(tm));
    if (strlen(s) != 20 || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%c", &y, &mo, &d, &h, &mi, &se, &z, &extra) != 7 ||
        z != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != d)
        return -1;
    *out = (int64_t)t;
    return 0;
}

static void format_time(char out[32], int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void qd_policy_free(qd_policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_keys; i++)
        qd_key_free(p->keys[i].key);
    qd_free(p->keys);
    for (size_t i = 0; i < p->n_rules; i++) {
        qd_free(p->rules[i].pattern);
        qd_free(p->rules[i].keys);
    }
    qd_free(p->rules);
    for (size_t i = 0; i < p->n_revoked; i++)
        qd_free(p->revoked[i]);
    qd_free(p->revoked);
    for (size_t i = 0; i < p->n_predicate_types; i++)
        qd_free(p->predicate_types[i]);
    qd_free(p->predicate_types);
    qd_free(p);
}

static int parse_key(pol_key *pk, json_t *j, size_t idx)
{
    static const char *const fields[] = {"id", "algorithm", "public_key", "valid_from", "valid_until", "comment",
                                         NULL};
    char where[48];
    json_t *id, *alg, *pub, *vf, *vu, *cm;
    qd_key_alg a;
    int rc;

    snprintf(where, sizeof(where), "keys[%zu]", idx);
    pk->valid_from = INT64_MIN;
    pk->valid_until = INT64_MAX;
    if (!json_is_object(j))
        return pbad(where, "not an object");
    if ((rc = only_fields(j, where, fields)) < 0)
        return rc;
    id = json_object_get(j, "id");
    alg = json_object_get(j, "algorithm");
    pub = json_object_get(j, "public_key");
    vf = json_object_get(j, "valid_from");
    vu = json_object_get(j, "valid_until");
    cm = json_object_get(j, "comment");
    if (!json_is_string(id) || !is_hex64(json_string_value(id)))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.id: %s", where,
                            id ? "not 64 lowercase hex digits" : "missing");
    if (!json_is_string(alg) || qd_key_alg_parse(&a, json_string_value(alg)) < 0)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.algorithm: %s", where,
                            alg ? "not \"ed25519\" or \"ecdsa-p256\"" : "missing");
    if (!json_is_string(pub))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.public_key: %s", where,
                            pub ? "not a string" : "missing");
    if (cm && !json_is_string(cm))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.comment: not a string", where);
    if (vf && (!json_is_string(vf) || parse_time(&pk->valid_from, json_string_value(vf)) < 0))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.valid_from: not a time like 2026-01-31T12:00:00Z",
                            where);
    if (vu && (!json_is_string(vu) || parse_time(&pk->valid_until, json_string_value(vu)) < 0))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG,
                            "policy: %s.valid_until: not a time like 2026-01-31T12:00:00Z", where);
    if (pk->valid_until < pk->valid_from)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s: valid_until is before valid_from", where);
    if ((rc = qd_key_parse(&pk->key, json_string_value(pub), json_string_length(pub))) < 0)
        return qd_error_prefix("policy: %s.public_key", where);
    if (qd_key_can_sign(pk->key))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG,
                            "policy: %s.public_key: holds a PRIVATE key; a policy lists public keys only", where);
    if (qd_key_algorithm(pk->key) != a)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s: algorithm says %s but the key is %s", where,
                            json_string_value(alg), qd_key_alg_name(qd_key_algorithm(pk->key)));
    if (strcmp(qd_key_id(pk->key), json_string_value(id)))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.id: %s does not match the key (its id is %s)", where,
                            json_string_value(id), qd_key_id(pk->key));
    memcpy(pk->id, qd_key_id(pk->key), QD_KEY_ID_LEN + 1);
    return QD_OK;
}

static int parse_rule(qd_policy *p, pol_rule *r, json_t *j, size_t idx)
{
    static const char *const fields[] = {"pattern", "keys", "threshold", NULL};
    char where[48];
    json_t *pat, *keys, *th, *k;
    size_t i;
    int rc;

    snprintf(where, sizeof(where), "namespaces[%zu]", idx);
    if (!json_is_object(j))
        return pbad(where, "not an object");
    if ((rc = only_fields(j, where, fields)) < 0)
        return rc;
    pat = json_object_get(j, "pattern");
    keys = json_object_get(j, "keys");
    th = json_object_get(j, "threshold");
    if (!json_is_string(pat) || !json_string_length(pat))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.pattern: %s", where,
                            pat ? "not a non-empty string" : "missing");
    if (!json_is_array(keys) || !json_array_size(keys))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.keys: %s", where,
                            keys ? "not a non-empty array of key ids" : "missing");
    if (!json_is_integer(th))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.threshold: %s", where,
                            th ? "not an integer" : "missing");
    if (!(r->pattern = qd_strdup(json_string_value(pat))) ||
        !(r->keys = qd_mallocarray(json_array_size(keys), sizeof(size_t))))
        return QD_ENOMEM;
    json_array_foreach(keys, i, k) {
        size_t ki;
        if (!json_is_string(k))
            return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.keys[%zu]: not a string", where, i);
        for (ki = 0; ki < p->n_keys; ki++)
            if (!strcmp(p->keys[ki].id, json_string_value(k)))
                break;
        if (ki == p->n_keys)
            return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.keys[%zu]: key %.64s is not listed in keys",
                                where, i, json_string_value(k));
        for (size_t m = 0; m < r->n_keys; m++)
            if (r->keys[m] == ki)
                return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s.keys[%zu]: key %.64s is listed twice",
                                    where, i, json_string_value(k));
        r->keys[r->n_keys++] = ki;
    }
    if (json_integer_value(th) < 1 || (json_int_t)r->n_keys < json_integer_value(th))
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG,
                            "policy: %s.threshold: %" JSON_INTEGER_FORMAT " cannot be met with %zu key(s)", where,
                            json_integer_value(th), r->n_keys);
    r->threshold = (unsigned)json_integer_value(th);
    return QD_OK;
}

static int parse_strings(char ***out, size_t *n_out, json_t *arr, const char *field, bool hex_ids)
{
    size_t i;
    json_t *v;
    if (!json_is_array(arr))
        return pbad(field, "not an array");
    if (!(*out = qd_calloc(json_array_size(arr) + 1, sizeof(char *))))
        return QD_ENOMEM;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v) || (hex_ids && !is_hex64(json_string_value(v))) ||
            (!hex_ids && !json_string_length(v)))
            return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %s[%zu]: %s", field, i,
                                hex_ids ? "not a key id (64 lowercase hex digits)" : "not a non-empty string");
        if (!((*out)[i] = qd_strdup(json_string_value(v))))
            return QD_ENOMEM;
        *n_out = i + 1;
    }
    return QD_OK;
}

static int policy_from_json(qd_policy *p, json_t *root)
{
    static const char *const fields[] = {"version", "keys", "namespaces", "revoked", "predicate_types",
                                         "require_validation_pass", "max_payload_bytes", "comment", NULL};
    json_t *ver, *keys, *rules, *rev, *pts, *rvp, *mpb, *v;
    size_t i;
    int rc;

    if (!json_is_object(root))
        return pbad("top level", "not a JSON object");
    if ((rc = only_fields(root, "top level", fields)) < 0)
        return rc;
    ver = json_object_get(root, "version");
    if (!json_is_integer(ver))
        return pbad("version", ver ? "not an integer" : "missing");
    if (json_integer_value(ver) != POLICY_VERSION)
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_CONFIG, "policy: version %" JSON_INTEGER_FORMAT
                            " is not supported (this build reads version %d)", json_integer_value(ver),
                            POLICY_VERSION);
    keys = json_object_get(root, "keys");
    if (!json_is_array(keys))
        return pbad("keys", keys ? "not an array" : "missing");
    if (!(p->keys = qd_calloc(json_array_size(keys) + 1, sizeof(pol_key))))
        return QD_ENOMEM;
    json_array_foreach(keys, i, v) {
        rc = parse_key(&p->keys[i], v, i);
        p->n_keys = i + 1; /* so that free releases what was parsed */
        if (rc < 0)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(p->keys[j].id, p->keys[i].id))
                return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: keys[%zu]: key %s is listed twice", i,
                                    p->keys[i].id);
    }
    rules = json_object_get(root, "namespaces");
    if (!json_is_array(rules))
        return pbad("namespaces", rules ? "not an array" : "missing");
    if (!(p->rules = qd_calloc(json_array_size(rules) + 1, sizeof(pol_rule))))
        return QD_ENOMEM;
    json_array_foreach(rules, i, v) {
        p->n_rules = i + 1;
        if ((rc = parse_rule(p, &p->rules[i], v, i)) < 0)
            return rc;
    }
    if ((rev = json_object_get(root, "revoked")) && (rc = parse_strings(&p->revoked, &p->n_revoked, rev,
                                                                        "revoked", true)) < 0)
        return rc;
    if ((pts = json_object_get(root, "predicate_types")) &&
        (rc = parse_strings(&p->predicate_types, &p->n_predicate_types, pts, "predicate_types", false)) < 0)
        return rc;
    rvp = json_object_get(root, "require_validation_pass");
    if (rvp && !json_is_boolean(rvp))
        return pbad("require_validation_pass", "not true or false");
    p->require_validation_pass = rvp && json_is_true(rvp);
    mpb = json_object_get(root, "max_payload_bytes");
    p->max_payload = QD_PAYLOAD_MAX_DEFAULT;
    if (mpb) {
        if (!json_is_integer(mpb) || json_integer_value(mpb) < 1 || json_integer_value(mpb) > (1 << 30))
            return pbad("max_payload_bytes", "not an integer between 1 and 1073741824");
        p->max_payload = (size_t)json_integer_value(mpb);
    }
    v = json_object_get(root, "comment");
    if (v && !json_is_string(v))
        return pbad("comment", "not a string");
    return QD_OK;
}

int qd_policy_parse(qd_policy **out, const void *json, size_t len)
{
    json_error_t jerr;
    json_t *root;
    qd_policy *p;
    int rc;

    *out = NULL;
    if (len > POLICY_FILE_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: %zu bytes, over the limit of %u", len,
                            POLICY_FILE_MAX);
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "policy: invalid JSON at line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    if (!(p = qd_calloc(1, sizeof(*p)))) {
        json_decref(root);
        return QD_ENOMEM;
    }
    rc = policy_from_json(p, root);
    json_decref(root);
    if (rc < 0) {
        qd_policy_free(p);
        return rc;
    }
    *out = p;
    return QD_OK;
}

int qd_policy_load(qd_policy **out, const char *path)
{
    qd_buf b = QD_BUF_INIT(POLICY_FILE_MAX);
    int rc;
    *out = NULL;
    rc = qd_verify__read_file(&b, path, POLICY_FILE_MAX);
    if (rc == QD_OK)
        rc = qd_policy_parse(out, b.ptr, b.len);
    qd_buf_dispose(&b);
    if (rc < 0)
        qd_error_prefix("%s", path);
    return rc;
}

size_t qd_policy_max_payload(const qd_policy *p) { return p->max_payload; }

int qd_policy_build(qd_buf *out, const qd_key *const *keys, size_t n, const qd_policy_build_options *o)
{
    qd_policy_build_options def = QD_POLICY_BUILD_OPTIONS_INIT;
    json_t *root = NULL, *jkeys, *ids, *rule, *rules;
    qd_buf pem = QD_BUF_INIT(0);
    char tbuf[32];
    int rc = QD_OK;

    if (!o)
        o = &def;
    if (!n)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "a policy needs at least one trusted key");
    if ((o->threshold ? o->threshold : 1) > n)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "threshold %u cannot be met with %zu key(s)", o->threshold, n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(qd_key_id(keys[i]), qd_key_id(keys[j])))
                return qd_error_set(QD_EINVAL, QD_EC_INVALID, "key %s is given twice", qd_key_id(keys[i]));
    root = json_object();
    jkeys = json_array();
    ids = json_array();
    rules = json_array();
    rule = json_object();
    if (!root || json_object_set_new(root, "version", json_integer(POLICY_VERSION)) ||
        json_object_set_new(root, "keys", jkeys) || json_object_set_new(root, "namespaces", rules) ||
        json_array_append_new(rules, rule) ||
        json_object_set_new(rule, "pattern", json_string(o->namespace_pattern ? o->namespace_pattern : "*")) ||
        json_object_set_new(rule, "keys", ids) ||
        json_object_set_new(rule, "threshold", json_integer(o->threshold ? o->threshold : 1)))
        goto oom;
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_object();
        qd_buf_clear(&pem);
        if (qd_key_public_pem(&pem, keys[i]) < 0 || !k ||
            json_object_set_new(k, "id", json_string(qd_key_id(keys[i]))) ||
            json_object_set_new(k, "algorithm", json_string(qd_key_alg_name(qd_key_algorithm(keys[i])))) ||
            json_object_set_new(k, "public_key", json_string(qd_buf_cstr(&pem))) ||
            json_array_append_new(jkeys, k) ||
            json_array_append_new(ids, json_string(qd_key_id(keys[i]))))
            goto oom;
        if (o->valid_from) {
            format_time(tbuf, o->valid_from);
            if (json_object_set_new(k, "valid_from", json_string(tbuf)))
                goto oom;
        }
        if (o->valid_until) {
            char ubuf[32];
            format_time(ubuf, o->valid_until);
            if (json_object_set_new(k, "valid_until", json_string(ubuf)))
                goto oom;
        }
    }
    if (json_object_set_new(root, "revoked", json_array()))
        goto oom;
    if (o->predicate_types) {
        json_t *pts = json_array();
        if (json_object_set_new(root, "predicate_types", pts))
            goto oom;
        for (size_t i = 0; o->predicate_types[i]; i++)
            if (json_array_append_new(pts, json_string(o->predicate_types[i])))
                goto oom;
    }
    if (json_object_set_new(root, "require_validation_pass", json_boolean(o->require_validation_pass)))
        goto oom;
    rc = qd_verify__json_dump(out, root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (rc == QD_OK)
        rc = qd_buf_puts(out, "\n");
    json_decref(root);
    qd_buf_dispose(&pem);
    return rc;
oom:
    json_decref(root);
    qd_buf_dispose(&pem);
    return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory building the policy");
}

/* For check.c: format a time for messages. */
void qd_verify__format_time(char out[32], int64_t t) { format_time(out, t); }
