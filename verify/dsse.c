/*
 * dsse.c - DSSE v1.0.2 envelopes (PAE, signatures) and their Sigstore bundle v0.3 packing, read and written.
 *
 * Reading is strict: the text goes through the verification path's JSON reader (vjson.c: UTF-8, no duplicate
 * members, nothing after the value), every object is checked for its type and for fields we do not know, and
 * every size is bounded before anything is decoded. A bundle's signatures
 * are not checked here; that is qd_verify()'s job, with keys from the policy and never from the bundle.
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/verify.h"
#include "verify_int.h"
#include "vjson.h"

#define KEYID_MAX 256     /* longest keyid we accept on input */
#define SIG_B64_MAX 1024  /* longest base64 signature we accept (our algorithms need at most 96) */
#define SIGS_MAX 64       /* most signatures in one envelope */

typedef struct env_sig {
    char *keyid;               /* DSSE keyid; "" when absent */
    uint8_t sig[SIG_B64_MAX];  /* decoded signature bytes */
    size_t sig_len;            /* bytes used in sig */
} env_sig;

struct qd_envelope {
    char *payload_type;  /* DSSE payloadType, non-empty */
    uint8_t *payload;    /* the payload bytes (NUL-terminated for convenience; not counted) */
    size_t payload_len;  /* bytes in payload */
    env_sig *sigs;       /* signatures, in envelope order */
    size_t n_sigs;       /* number of signatures */
    char *hint;          /* the bundle's publicKey.hint, "" for a bare envelope */
};

/* ===================================================================================================== PAE === */

int qd_dsse_pae(qd_buf *out, const char *payload_type, const void *payload, size_t payload_len)
{
    size_t tlen = strlen(payload_type);
    char head[64];
    int n, rc;
    /* "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body; LEN is ASCII decimal without leading zeros */
    n = snprintf(head, sizeof(head), "DSSEv1 %zu ", tlen);
    if ((rc = qd_buf_reserve(out, (size_t)n + tlen + 24 + payload_len)) < 0 || (rc = qd_buf_put(out, head, (size_t)n)) < 0 ||
        (rc = qd_buf_put(out, payload_type, tlen)) < 0)
        return rc;
    n = snprintf(head, sizeof(head), " %zu ", payload_len);
    if ((rc = qd_buf_put(out, head, (size_t)n)) < 0)
        return rc;
    return qd_buf_put(out, payload, payload_len);
}

/* ================================================================================================ envelope === */

int qd_envelope_new(qd_envelope **out, const char *payload_type, const void *payload, size_t payload_len)
{
    qd_envelope *e;
    *out = NULL;
    if (!payload_type || !*payload_type)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "empty payloadType");
    if (!(e = qd_calloc(1, sizeof(*e))))
        return QD_ENOMEM;
    e->payload_type = qd_strdup(payload_type);
    e->payload = qd_malloc(payload_len + 1);
    e->hint = qd_strdup("");
    if (!e->payload_type || !e->payload || !e->hint) {
        qd_envelope_free(e);
        return QD_ENOMEM;
    }
    if (payload_len)
        memcpy(e->payload, payload, payload_len);
    e->payload[payload_len] = 0;
    e->payload_len = payload_len;
    *out = e;
    return QD_OK;
}

void qd_envelope_free(qd_envelope *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_sigs; i++)
        qd_free(e->sigs[i].keyid);
    qd_free(e->sigs);
    qd_free(e->payload_type);
    qd_free(e->payload);
    qd_free(e->hint);
    qd_free(e);
}

static int add_sig(qd_envelope *e, const char *keyid, const uint8_t *sig, size_t sig_len)
{
    env_sig *s;
    if (e->n_sigs >= SIGS_MAX)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "more than %d signatures in one envelope", SIGS_MAX);
    if (sig_len > sizeof(s->sig))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "signature of %zu bytes is too long", sig_len);
    s = qd_reallocarray(e->sigs, e->n_sigs + 1, sizeof(*s));
    if (!s)
        return QD_ENOMEM;
    e->sigs = s;
    s = &e->sigs[e->n_sigs];
    memset(s, 0, sizeof(*s));
    if (!(s->keyid = qd_strdup(keyid ? keyid : "")))
        return QD_ENOMEM;
    memcpy(s->sig, sig, sig_len);
    s->sig_len = sig_len;
    e->n_sigs++;
    return QD_OK;
}

int qd_envelope_sign(qd_envelope *e, const qd_key *key)
{
    qd_buf pae = QD_BUF_INIT(0);
    uint8_t sig[QD_SIG_MAX];
    size_t sig_len = 0;
    int rc;

    if ((rc = qd_dsse_pae(&pae, e->payload_type, e->payload, e->payload_len)) == QD_OK &&
        (rc = qd_key_sign(sig, &sig_len, key, pae.ptr, pae.len)) == QD_OK)
        rc = add_sig(e, qd_key_id(key), sig, sig_len);
    if (rc == QD_OK && !e->hint[0]) {
        char *h = qd_strdup(qd_key_id(key));
        if (!h)
            rc = QD_ENOMEM;
        else {
            qd_free(e->hint);
            e->hint = h;
        }
    }
    qd_buf_dispose(&pae);
    return rc;
}

int qd_envelope_merge(qd_envelope *dst, const qd_envelope *src)
{
    int rc;
    if (strcmp(dst->payload_type, src->payload_type) || dst->payload_len != src->payload_len ||
        memcmp(dst->payload, src->payload, dst->payload_len))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                            "the bundles sign different payloads: their signatures cannot be counted together");
    for (size_t i = 0; i < src->n_sigs; i++)
        if ((rc = add_sig(dst, src->sigs[i].keyid, src->sigs[i].sig, src->sigs[i].sig_len)) < 0)
            return rc;
    return QD_OK;
}

const char *qd_envelope_payload_type(const qd_envelope *e) { return e->payload_type; }
const uint8_t *qd_envelope_payload(const qd_envelope *e, size_t *len_out)
{
    *len_out = e->payload_len;
    return e->payload;
}
size_t qd_envelope_signature_count(const qd_envelope *e) { return e->n_sigs; }
const char *qd_envelope_signature_keyid(const qd_envelope *e, size_t i)
{
    return i < e->n_sigs ? e->sigs[i].keyid : "";
}
const char *qd_envelope_hint(const qd_envelope *e) { return e->hint; }

/* Semi-private accessor for check.c. */
int qd_verify__envelope_sig(const qd_envelope *e, size_t i, const uint8_t **sig, size_t *len)
{
    if (i >= e->n_sigs)
        return QD_EINVAL;
    *sig = e->sigs[i].sig;
    *len = e->sigs[i].sig_len;
    return QD_OK;
}

/* ================================================================================================= writing === */

static json_t *envelope_json(const qd_envelope *e, int *rc)
{
    qd_buf b64 = QD_BUF_INIT(0);
    json_t *env = NULL, *sigs;

    *rc = QD_ENOMEM;
    if (qd_base64_encode(&b64, e->payload, e->payload_len) < 0)
        goto fail;
    env = json_object();
    sigs = json_array();
    if (!env || !sigs || json_object_set_new(env, "payload", json_stringn(qd_buf_cstr(&b64), b64.len)) ||
        json_object_set_new(env, "payloadType", json_string(e->payload_type)) ||
        json_object_set_new(env, "signatures", sigs)) {
        if (!env)
            json_decref(sigs);
        goto fail;
    }
    for (size_t i = 0; i < e->n_sigs; i++) {
        json_t *s = json_object();
        qd_buf_clear(&b64);
        if (!s || qd_base64_encode(&b64, e->sigs[i].sig, e->sigs[i].sig_len) < 0 ||
            json_object_set_new(s, "sig", json_string(qd_buf_cstr(&b64))) ||
            (e->sigs[i].keyid[0] && json_object_set_new(s, "keyid", json_string(e->sigs[i].keyid))) ||
            json_array_append_new(sigs, s)) {
            json_decref(s);
            goto fail;
        }
    }
    qd_buf_dispose(&b64);
    *rc = QD_OK;
    return env;
fail:
    qd_buf_dispose(&b64);
    json_decref(env);
    qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory building JSON");
    return NULL;
}

/* Compact, like the bundles cosign and sigstore-js write: parsing whitespace is verification time spent for nothing. */
static int dump_json(qd_buf *out, json_t *j)
{
    int rc = qd_verify__json_dump(out, j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return rc;
}

int qd_envelope_write_dsse(qd_buf *out, const qd_envelope *e)
{
    int rc;
    json_t *env = envelope_json(e, &rc);
    return env ? dump_json(out, env) : rc;
}

int qd_envelope_write_bundle(qd_buf *out, const qd_envelope *e)
{
    json_t *b, *vm, *pk, *env;
    int rc;

    if (!e->n_sigs)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "the envelope has no signature: sign it before writing");
    if (!(env = envelope_json(e, &rc)))
        return rc;
    b = json_object();
    vm = json_object();
    pk = json_object();
    if (!b || !vm || !pk || json_object_set_new(pk, "hint", json_string(e->hint[0] ? e->hint : e->sigs[0].keyid)) ||
        json_object_set_new(vm, "publicKey", pk) || json_object_set_new(vm, "tlogEntries", json_array()) ||
        json_object_set_new(b, "mediaType", json_string(QD_BUNDLE_MEDIA_TYPE)) ||
        json_object_set_new(b, "verificationMaterial", vm) || json_object_set_new(b, "dsseEnvelope", env)) {
        /* json_object_set_new steals references even on failure; free what was never attached */
        json_decref(b);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory building the bundle");
    }
    return dump_json(out, b);
}

/* ================================================================================================= reading === */

static int bad(const char *field, const char *what)
{
    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "malformed bundle: %s: %s", field, what);
}

/* Refuse members other than the allowed ones (a NULL-terminated list). */
static int only_fields(const cJSON *obj, const char *where, const char *const *allowed)
{
    for (const cJSON *m = obj->child; m; m = m->next) {
        const char *k = m->string;
        size_t i;
        for (i = 0; allowed[i]; i++)
            if (!strcmp(k, allowed[i]))
                break;
        if (!allowed[i])
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "malformed bundle: %s: unknown field '%.60s'", where, k);
    }
    return QD_OK;
}

/* Bytes a base64 text decodes to (before it is checked). */
static size_t b64_decoded_len(const char *s, size_t n)
{
    while (n > 0 && s[n - 1] == '=')
        n--;
    return n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
}

static int parse_dsse(qd_envelope *e, const cJSON *env, const char *where, size_t max_payload)
{
    static const char *const fields[] = {"payload", "payloadType", "signatures", NULL};
    static const char *const sig_fields[] = {"sig", "keyid", NULL};
    const cJSON *pt, *pl, *sigs, *s;
    qd_buf b = QD_BUF_INIT(0);
    size_t i, plen;
    char field[96];
    int rc;

    if (!cJSON_IsObject(env))
        return bad(where, "not an object");
    if ((rc = only_fields(env, where, fields)) < 0)
        return rc;
    pt = vj_get(env, "payloadType");
    pl = vj_get(env, "payload");
    sigs = vj_get(env, "signatures");
    snprintf(field, sizeof(field), "%s.payloadType", where);
    if (!pt)
        return bad(field, "missing");
    if (!vj_str(pt) || !vj_strlen(pt))
        return bad(field, "not a non-empty string");
    if (vj_strlen(pt) > 256)
        return bad(field, "too long");
    snprintf(field, sizeof(field), "%s.payload", where);
    if (!pl)
        return bad(field, "missing");
    if (!vj_str(pl))
        return bad(field, "not a string");
    plen = vj_strlen(pl);
    if (b64_decoded_len(vj_str(pl), plen) > max_payload)
        return qd_error_set(QD_EFULL, QD_EC_INVALID, "malformed bundle: %s: payload over the limit of %zu bytes",
                            field, max_payload);
    qd_buf_init(&b, max_payload);
    if ((rc = qd_base64_decode(&b, vj_str(pl), plen)) < 0) {
        qd_error_prefix("malformed bundle: %s", field);
        goto done;
    }
    if (!b.len) {
        rc = bad(field, "empty");
        goto done;
    }
    snprintf(field, sizeof(field), "%s.signatures", where);
    if (!sigs) {
        rc = bad(field, "missing");
        goto done;
    }
    if (!cJSON_IsArray(sigs)) {
        rc = bad(field, "not an array");
        goto done;
    }
    if (vj_size(sigs) == 0) {
        rc = bad(field, "no signatures");
        goto done;
    }
    if (!(e->payload_type = qd_strdup(vj_str(pt)))) {
        rc = QD_ENOMEM;
        goto done;
    }
    e->payload_len = b.len;
    e->payload = (uint8_t *)qd_buf_detach(&b);
    i = 0;
    for (s = sigs->child; s; s = s->next, i++) {
        const cJSON *sig = vj_get(s, "sig"), *kid = vj_get(s, "keyid");
        qd_buf sb = QD_BUF_INIT(SIG_B64_MAX);
        snprintf(field, sizeof(field), "%s.signatures[%zu]", where, i);
        if (!cJSON_IsObject(s)) {
            rc = bad(field, "not an object");
            goto done;
        }
        if ((rc = only_fields(s, field, sig_fields)) < 0)
            goto done;
        if (kid && (!vj_str(kid) || vj_strlen(kid) > KEYID_MAX)) {
            rc = bad(field, "keyid is not a string of at most 256 characters");
            goto done;
        }
        if (!sig || !vj_str(sig)) {
            rc = bad(field, sig ? "sig is not a string" : "sig is missing");
            goto done;
        }
        if (vj_strlen(sig) > SIG_B64_MAX) {
            rc = bad(field, "sig is too long");
            goto done;
        }
        if ((rc = qd_base64_decode(&sb, vj_str(sig), vj_strlen(sig))) < 0) {
            qd_buf_dispose(&sb);
            qd_error_prefix("malformed bundle: %s.sig", field);
            goto done;
        }
        if (!sb.len) {
            qd_buf_dispose(&sb);
            rc = bad(field, "sig is empty");
            goto done;
        }
        rc = add_sig(e, kid ? vj_str(kid) : "", (const uint8_t *)sb.ptr, sb.len);
        qd_buf_dispose(&sb);
        if (rc < 0)
            goto done;
    }
    rc = QD_OK;
done:
    qd_buf_dispose(&b);
    return rc;
}

static bool known_media_type(const char *mt)
{
    return !strcmp(mt, QD_BUNDLE_MEDIA_TYPE) || !strcmp(mt, "application/vnd.dev.sigstore.bundle+json;version=0.3") ||
           !strcmp(mt, "application/vnd.dev.sigstore.bundle+json;version=0.2") ||
           !strcmp(mt, "application/vnd.dev.sigstore.bundle+json;version=0.1");
}

static int parse_bundle(qd_envelope *e, const cJSON *root, size_t max_payload)
{
    static const char *const fields[] = {"mediaType", "verificationMaterial", "dsseEnvelope", "messageSignature",
                                         NULL};
    static const char *const vm_fields[] = {"publicKey", "x509CertificateChain", "certificate", "tlogEntries",
                                            "timestampVerificationData", NULL};
    const cJSON *mt = vj_get(root, "mediaType"), *vm, *pk, *hint, *tl;
    int rc;

    if ((rc = only_fields(root, "bundle", fields)) < 0)
        return rc;
    if (!vj_str(mt))
        return bad("mediaType", "not a string");
    if (!known_media_type(vj_str(mt)))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY, "unsupported bundle mediaType '%.80s' (expected %s)",
                            vj_str(mt), QD_BUNDLE_MEDIA_TYPE);
    if (vj_get(root, "messageSignature"))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY,
                            "bundle holds a messageSignature: only DSSE envelopes (dsseEnvelope) are supported");
    vm = vj_get(root, "verificationMaterial");
    if (!vm)
        return bad("verificationMaterial", "missing");
    if (!cJSON_IsObject(vm))
        return bad("verificationMaterial", "not an object");
    if ((rc = only_fields(vm, "verificationMaterial", vm_fields)) < 0)
        return rc;
    if (vj_get(vm, "x509CertificateChain") || vj_get(vm, "certificate"))
        return qd_error_set(QD_EUNSUPPORTED, QD_EC_VERIFY,
                            "certificate-based bundles are not supported: quantd trusts keys named by publicKey.hint");
    pk = vj_get(vm, "publicKey");
    if (!pk)
        return bad("verificationMaterial.publicKey", "missing");
    if (!cJSON_IsObject(pk))
        return bad("verificationMaterial.publicKey", "not an object");
    hint = vj_get(pk, "hint");
    if (hint && (!vj_str(hint) || vj_strlen(hint) > KEYID_MAX))
        return bad("verificationMaterial.publicKey.hint", "not a string of at most 256 characters");
    tl = vj_get(vm, "tlogEntries");
    if (tl && !cJSON_IsArray(tl))
        return bad("verificationMaterial.tlogEntries", "not an array");
    if (!vj_get(root, "dsseEnvelope"))
        return bad("dsseEnvelope", "missing");
    if ((rc = parse_dsse(e, vj_get(root, "dsseEnvelope"), "dsseEnvelope", max_payload)) < 0)
        return rc;
    qd_free(e->hint);
    e->hint = qd_strdup(hint ? vj_str(hint) : "");
    if (!e->hint)
        return QD_ENOMEM;
    /* The hint is unauthenticated, but one that contradicts the signature's own keyid is a broken bundle. */
    if (e->hint[0] && e->n_sigs && e->sigs[0].keyid[0] && strcmp(e->hint, e->sigs[0].keyid))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                            "malformed bundle: publicKey.hint %.64s does not match the signature's keyid %.64s",
                            e->hint, e->sigs[0].keyid);
    return QD_OK;
}

int qd_envelope_parse(qd_envelope **out, const void *json, size_t len, size_t max_payload)
{
    cJSON *root;
    qd_vjson_arena arena;
    qd_envelope *e;
    int rc;

    *out = NULL;
    if (!max_payload)
        max_payload = QD_PAYLOAD_MAX_DEFAULT;
    if (len > max_payload / 3 * 4 + 64 * 1024)
        return qd_error_set(QD_EFULL, QD_EC_INVALID, "bundle of %zu bytes is over the limit for %zu-byte payloads",
                            len, max_payload);
    if (!len)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "malformed bundle: empty input");
    if ((rc = qd_vjson_parse(&root, &arena, json, len, "malformed bundle")))
        return rc;
    if (!cJSON_IsObject(root)) {
        qd_vjson_free(root, &arena);
        return bad("top level", "not a JSON object");
    }
    if (!(e = qd_calloc(1, sizeof(*e)))) {
        qd_vjson_free(root, &arena);
        return QD_ENOMEM;
    }
    if (vj_get(root, "mediaType")) {
        rc = parse_bundle(e, root, max_payload);
    } else if (vj_get(root, "payloadType") || vj_get(root, "payload")) {
        rc = parse_dsse(e, root, "envelope", max_payload);
        if (rc == QD_OK && !(e->hint = qd_strdup("")))
            rc = QD_ENOMEM;
    } else {
        rc = bad("top level", "neither a Sigstore bundle (mediaType) nor a DSSE envelope (payloadType)");
    }
    qd_vjson_free(root, &arena);
    if (rc < 0) {
        qd_envelope_free(e);
        return rc;
    }
    *out = e;
    return QD_OK;
}

int qd_envelope_load(qd_envelope **out, const char *path, size_t max_payload)
{
    qd_buf b = QD_BUF_INIT(0);
    size_t limit;
    int rc;

    *out = NULL;
    if (!max_payload)
        max_payload = QD_PAYLOAD_MAX_DEFAULT;
    limit = max_payload / 3 * 4 + 64 * 1024;
    qd_buf_init(&b, limit + 1);
    rc = qd_verify__read_file(&b, path, limit);
    if (rc == QD_OK)
        rc = qd_envelope_parse(out, b.ptr, b.len, max_payload);
    qd_buf_dispose(&b);
    if (rc < 0)
        qd_error_prefix("%s", path);
    return rc;
}
