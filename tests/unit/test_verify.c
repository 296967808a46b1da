/*
 * test_verify.c - verify/: base64, PAE, keys, envelopes and bundles, policies, and qd_verify()'s decisions.
 *
 * Oracles that do not come from the code under test: RFC 4648 base64 vectors, the DSSE v1.0.2 PAE example, the
 * key id recomputed from the PEM body decoded here, signatures checked across keys and after single-bit flips.
 * The cross-checks with tools we did not write (openssl CLI, @sigstore/verify, jsonschema) are in
 * tests/integration/20[1-3]_*.sh.
 */
#include "testutil.h"

#include <pthread.h>

#include <jansson.h>

#include "qd/qd.h"
#include "qd/verify.h"

#define VT QD_PREDICATE_VARIANT

/* ------------------------------------------------------------------------------------------------ helpers --- */

typedef struct fixture {
    qd_key *ed[3];   /* three Ed25519 keys */
    qd_key *ec;      /* one P-256 key */
    char *dir;       /* sandbox */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    for (int i = 0; i < 3; i++)
        if (qd_key_generate(&f->ed[i], QD_KEY_ED25519) < 0)
            return -1;
    if (qd_key_generate(&f->ec, QD_KEY_P256) < 0)
        return -1;
    f->dir = tu_sandbox();
    *state = f;
    return f->dir ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    for (int i = 0; i < 3; i++)
        qd_key_free(f->ed[i]);
    qd_key_free(f->ec);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static qd_subject subj(const char *name, uint8_t fill)
{
    qd_subject s;
    s.name = name;
    memset(s.digest.bytes, fill, sizeof(s.digest.bytes));
    return s;
}

/* A signed envelope over a statement of the given subjects and predicate. */
static qd_envelope *signed_env(const qd_subject *subs, size_t n, const char *ptype, const char *pred,
                               qd_key *const *keys, size_t n_keys)
{
    qd_buf st = QD_BUF_INIT(0);
    qd_envelope *e = NULL;
    assert_int_equal(qd_statement_build(&st, subs, n, ptype, pred), QD_OK);
    assert_int_equal(qd_envelope_new(&e, QD_INTOTO_PAYLOAD_TYPE, st.ptr, st.len), QD_OK);
    for (size_t i = 0; i < n_keys; i++)
        assert_int_equal(qd_envelope_sign(e, keys[i]), QD_OK);
    qd_buf_dispose(&st);
    return e;
}

/* A policy trusting keys with a threshold; edit (a JSON-patch-ish callback) may change the JSON before parsing. */
static qd_policy *policy_of(qd_key *const *keys, size_t n, unsigned threshold, const char *pattern,
                            void (*edit)(json_t *root, void *arg), void *arg)
{
    qd_policy_build_options o = QD_POLICY_BUILD_OPTIONS_INIT;
    qd_buf b = QD_BUF_INIT(0);
    qd_policy *p = NULL;
    json_t *root;
    char *s;

    o.threshold = threshold;
    o.namespace_pattern = pattern;
    o.valid_from = 1000;
    assert_int_equal(qd_policy_build(&b, (const qd_key *const *)keys, n, &o), QD_OK);
    root = json_loads(b.ptr, 0, NULL);
    assert_non_null(root);
    if (edit)
        edit(root, arg);
    s = json_dumps(root, 0);
    if (qd_policy_parse(&p, s, strlen(s)) < 0)
        fail_msg("policy: %s", qd_error_last()->message);
    free(s);
    json_decref(root);
    qd_buf_dispose(&b);
    return p;
}

static int parse_policy_text(const char *text, qd_policy **out)
{
    return qd_policy_parse(out, text, strlen(text));
}

#define assert_err_contains(s) assert_non_null(strstr(qd_error_last()->message, (s)))

/* ---------------------------------------------------------------------------------------------- base64 --- */

static void test_verify__base64_rfc4648_vectors(void **state)
{
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    (void)state;
    for (int i = 0; i < 7; i++) {
        qd_buf b = QD_BUF_INIT(0), d = QD_BUF_INIT(0);
        assert_int_equal(qd_base64_encode(&b, in[i], strlen(in[i])), QD_OK);
        assert_string_equal(qd_buf_cstr(&b), out[i]);
        assert_int_equal(qd_base64_decode(&d, out[i], strlen(out[i])), QD_OK);
        assert_int_equal(d.len, strlen(in[i]));
        assert_memory_equal(qd_buf_cstr(&d), in[i], d.len);
        qd_buf_dispose(&b);
        qd_buf_dispose(&d);
    }
}

static void test_verify__base64_both_alphabets_and_errors(void **state)
{
    const uint8_t bytes[] = {0xfb, 0xff, 0xbf};
    qd_buf d = QD_BUF_INIT(0);
    (void)state;
    assert_int_equal(qd_base64_decode(&d, "+/+/", 4), QD_OK);
    assert_memory_equal(d.ptr, bytes, 3);
    qd_buf_clear(&d);
    assert_int_equal(qd_base64_decode(&d, "-_-_", 4), QD_OK);
    assert_memory_equal(d.ptr, bytes, 3);
    qd_buf_clear(&d);
    assert_int_equal(qd_base64_decode(&d, "Zm8", 3), QD_OK); /* unpadded */
    assert_memory_equal(d.ptr, "fo", 2);
    qd_buf_clear(&d);
    assert_int_equal(qd_base64_decode(&d, "+_AA", 4), QD_EINVAL);
    assert_err_contains("mixes the standard and URL-safe");
    assert_int_equal(qd_base64_decode(&d, "Zm!v", 4), QD_EINVAL);
    assert_err_contains("character 2");
    assert_int_equal(qd_base64_decode(&d, "Zm9=v", 5), QD_EINVAL);
    assert_int_equal(qd_base64_decode(&d, "Zh==", 4), QD_EINVAL); /* non-canonical trailing bits */
    assert_err_contains("trailing bits");
    assert_int_equal(qd_base64_decode(&d, "Zm9vY", 5), QD_EINVAL);
    assert_int_equal(qd_base64_decode(&d, "Zm8 ", 4), QD_EINVAL); /* whitespace is not base64 */
    qd_buf_dispose(&d);
}

/* ------------------------------------------------------------------------------------------------- PAE --- */

static void test_verify__pae_matches_dsse_spec_example(void **state)
{
    qd_buf b = QD_BUF_INIT(0);
    (void)state;
    assert_int_equal(qd_dsse_pae(&b, "http://example.com/HelloWorld", "hello world", 11), QD_OK);
    assert_string_equal(qd_buf_cstr(&b), "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
    qd_buf_clear(&b);
    assert_int_equal(qd_dsse_pae(&b, "t", "", 0), QD_OK);
    assert_string_equal(qd_buf_cstr(&b), "DSSEv1 1 t 0 ");
    qd_buf_dispose(&b);
}

/* ------------------------------------------------------------------------------------------------ keys --- */

/* The key id: SHA-256 of the PEM text, which must be the canonical RFC 7468 layout (64-column lines, LF). The
 * independent recomputations (openssl CLI, Node's crypto) are in 200_verify_cli.sh and 201_sigstore_js.sh. */
static void check_key_id(const qd_key *k)
{
    qd_buf pem = QD_BUF_INIT(0);
    const char *line;
    char hex[65];
    qd_digest d;

    assert_int_equal(qd_key_public_pem(&pem, k), QD_OK);
    assert_true(!strncmp(pem.ptr, "-----BEGIN PUBLIC KEY-----\n", 27));
    assert_int_equal(pem.ptr[pem.len - 1], '\n');
    for (line = pem.ptr + 27; strncmp(line, "-----END", 8); line = strchr(line, '\n') + 1)
        assert_true(strchr(line, '\n') - line <= 64);
    assert_int_equal(qd_sha256_buf(&d, pem.ptr, pem.len), QD_OK);
    assert_string_equal(qd_key_id(k), qd_digest_hex(hex, &d));
    qd_buf_dispose(&pem);
}

static void test_verify__sign_and_verify_both_algorithms(void **state)
{
    fixture *f = *state;
    qd_key *keys[2] = {f->ed[0], f->ec};
    uint8_t msg[300], sig[QD_SIG_MAX];
    tu_rng r;
    tu_rng_seed(&r, tu_seed());
    tu_fill(&r, msg, sizeof(msg));
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        check_key_id(keys[i]);
        assert_int_equal(qd_key_sign(sig, &len, keys[i], msg, sizeof(msg)), QD_OK);
        if (i == 0)
            assert_int_equal(len, 64); /* raw Ed25519 */
        else
            assert_int_equal(sig[0], 0x30); /* DER SEQUENCE */
        assert_int_equal(qd_key_verify(keys[i], msg, sizeof(msg), sig, len), QD_OK);
        assert_int_equal(qd_key_verify(keys[1 - i], msg, sizeof(msg), sig, len), QD_EBADSIG);
        for (size_t bit = 0; bit < len * 8; bit += 37) {
            sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            assert_int_equal(qd_key_verify(keys[i], msg, sizeof(msg), sig, len), QD_EBADSIG);
            sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        msg[7] ^= 1;
        assert_int_equal(qd_key_verify(keys[i], msg, sizeof(msg), sig, len), QD_EBADSIG);
        msg[7] ^= 1;
        /* good again after failures (the cached verification context must not keep a bad state) */
        assert_int_equal(qd_key_verify(keys[i], msg, sizeof(msg), sig, len), QD_OK);
        assert_int_equal(qd_key_verify(keys[i], msg, sizeof(msg), sig, len), QD_OK);
        assert_int_equal(qd_key_verify(keys[i], msg, sizeof(msg), sig, len - 1), QD_EBADSIG);
        assert_int_equal(qd_key_verify(keys[i], msg, sizeof(msg), sig, len), QD_OK);
    }
}

static void test_verify__key_files_pem_and_openssh_round_trip(void **state)
{
    fixture *f = *state;
    qd_key *keys[2] = {f->ed[1], f->ec};
    char path[600];
    for (int i = 0; i < 2; i++) {
        qd_buf pem = QD_BUF_INIT(0), ssh = QD_BUF_INIT(0);
        qd_key *a = NULL, *b = NULL, *c = NULL;
        struct stat st;
        uint8_t sig[QD_SIG_MAX];
        size_t len;

        snprintf(path, sizeof(path), "%s/key%d", f->dir, i);
        assert_int_equal(qd_key_save_private(keys[i], path), QD_OK);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(qd_key_save_private(keys[i], path), QD_EEXISTS);
        assert_int_equal(qd_key_load(&a, path), QD_OK);
        assert_true(qd_key_can_sign(a));
        assert_string_equal(qd_key_id(a), qd_key_id(keys[i]));
        /* the reloaded private key signs what the original verifies */
        assert_int_equal(qd_key_sign(sig, &len, a, "m", 1), QD_OK);
        assert_int_equal(qd_key_verify(keys[i], "m", 1, sig, len), QD_OK);

        assert_int_equal(qd_key_public_pem(&pem, keys[i]), QD_OK);
        assert_non_null(strstr(pem.ptr, "-----BEGIN PUBLIC KEY-----"));
        assert_int_equal(qd_key_parse(&b, pem.ptr, pem.len), QD_OK);
        assert_false(qd_key_can_sign(b));
        assert_int_equal(qd_key_sign(sig, &len, b, "m", 1), QD_EINVAL);

        assert_int_equal(qd_key_public_openssh(&ssh, keys[i], "me@host"), QD_OK);
        assert_true(!strncmp(ssh.ptr, i ? "ecdsa-sha2-nistp256 AAAAE2VjZHNh" : "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", 30));
        assert_non_null(strstr(ssh.ptr, " me@host"));
        assert_int_equal(qd_key_parse(&c, ssh.ptr, ssh.len), QD_OK);
        assert_string_equal(qd_key_id(c), qd_key_id(keys[i]));
        assert_int_equal(qd_key_algorithm(c), qd_key_algorithm(keys[i]));
        qd_key_free(a);
        qd_key_free(b);
        qd_key_free(c);
        qd_buf_dispose(&pem);
        qd_buf_dispose(&ssh);
    }
}

static void test_verify__bad_keys_are_refused_clearly(void **state)
{
    qd_key *k = NULL;
    const char *t;
    (void)state;
    t = "hello";
    assert_int_equal(qd_key_parse(&k, t, strlen(t)), QD_EINVAL);
    assert_err_contains("not a key");
    t = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== x";
    assert_int_equal(qd_key_parse(&k, t, strlen(t)), QD_EUNSUPPORTED);
    /* type on the line says ed25519, the blob says something else */
    t = "ssh-ed25519 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=";
    assert_int_equal(qd_key_parse(&k, t, strlen(t)), QD_EINVAL);
    assert_err_contains("does not match");
    t = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==";
    assert_int_equal(qd_key_parse(&k, t, strlen(t)), QD_EINVAL);
    t = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n";
    assert_int_equal(qd_key_parse(&k, t, strlen(t)), QD_EINVAL);
    assert_err_contains("malformed SPKI");
    t = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_int_equal(qd_key_parse(&k, t, strlen(t)), QD_EUNSUPPORTED);
    assert_null(k);
    assert_int_equal(qd_key_load(&k, "/nonexistent/key"), QD_ENOTFOUND);
}

typedef struct thread_arg {
    const qd_key *key;       /* shared by all threads */
    const uint8_t *sig;      /* a good signature over "shared" */
    size_t sig_len;
    int good, bad_rejected;  /* results, checked by the main thread */
} thread_arg;

static void *verify_many(void *p)
{
    thread_arg *a = p;
    uint8_t bad[QD_SIG_MAX];
    memcpy(bad, a->sig, a->sig_len);
    bad[3] ^= 4;
    for (int i = 0; i < 200; i++) {
        a->good += qd_key_verify(a->key, "shared", 6, a->sig, a->sig_len) == QD_OK;
        a->bad_rejected += qd_key_verify(a->key, "shared", 6, bad, a->sig_len) == QD_EBADSIG;
    }
    return NULL;
}

static void test_verify__one_key_shared_by_threads(void **state)
{
    fixture *f = *state;
    qd_key *keys[2] = {f->ed[2], f->ec};
    for (int k = 0; k < 2; k++) {
        uint8_t sig[QD_SIG_MAX];
        size_t len;
        pthread_t t[4];
        thread_arg a[4];
        assert_int_equal(qd_key_sign(sig, &len, keys[k], "shared", 6), QD_OK);
        for (int i = 0; i < 4; i++) {
            a[i] = (thread_arg){keys[k], sig, len, 0, 0};
            assert_int_equal(pthread_create(&t[i], NULL, verify_many, &a[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            assert_int_equal(a[i].good, 200);
            assert_int_equal(a[i].bad_rejected, 200);
        }
    }
}

/* ------------------------------------------------------------------------------------- envelopes/bundles --- */

static void test_verify__bundle_write_parse_round_trip(void **state)
{
    fixture *f = *state;
    qd_subject s[2] = {subj("a.gguf", 1), subj("b.json", 2)};
    qd_key *keys[2] = {f->ed[0], f->ec};
    qd_envelope *e = signed_env(s, 2, VT, "{\"x\":1}", keys, 2), *e2 = NULL, *e3 = NULL;
    qd_buf b = QD_BUF_INIT(0), d = QD_BUF_INIT(0);
    size_t n1, n2;
    const uint8_t *p1 = qd_envelope_payload(e, &n1), *p2;

    assert_int_equal(qd_envelope_write_bundle(&b, e), QD_OK);
    assert_non_null(strstr(b.ptr, "\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\""));
    assert_non_null(strstr(b.ptr, "\"tlogEntries\":[]"));
    assert_int_equal(qd_envelope_parse(&e2, b.ptr, b.len, 0), QD_OK);
    p2 = qd_envelope_payload(e2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(p1, p2, n1);
    assert_int_equal(qd_envelope_signature_count(e2), 2);
    assert_string_equal(qd_envelope_signature_keyid(e2, 0), qd_key_id(f->ed[0]));
    assert_string_equal(qd_envelope_signature_keyid(e2, 1), qd_key_id(f->ec));
    assert_string_equal(qd_envelope_hint(e2), qd_key_id(f->ed[0]));
    assert_int_equal(qd_envelope_write_dsse(&d, e), QD_OK);
    assert_int_equal(qd_envelope_parse(&e3, d.ptr, d.len, 0), QD_OK);
    assert_string_equal(qd_envelope_hint(e3), "");
    assert_int_equal(qd_envelope_signature_count(e3), 2);
    qd_envelope_free(e);
    qd_envelope_free(e2);
    qd_envelope_free(e3);
    qd_buf_dispose(&b);
    qd_buf_dispose(&d);
}

typedef struct bad_case {
    const char *json;  /* input */
    int code;          /* expected error */
    const char *words; /* expected in the message */
} bad_case;

static void test_verify__malformed_bundles_each_get_a_clear_error(void **state)
{
    static const bad_case cases[] = {
        {"", QD_EINVAL, "empty input"},
        {"{\"mediaType\": ", QD_EINVAL, "invalid JSON"},
        {"\x01\x02garbage", QD_EINVAL, "invalid JSON"},
        {"[]", QD_EINVAL, "not a JSON object"},
        {"{}", QD_EINVAL, "neither a Sigstore bundle"},
        {"{\"payloadType\":\"t\",\"payloadType\":\"u\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]}",
         QD_EINVAL, "duplicate"},
        {"{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[]}", QD_EINVAL, "no signatures"},
        {"{\"payloadType\":\"t\",\"payload\":\"Y$==\",\"signatures\":[{\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "envelope.payload: bad base64"},
        {"{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"*\"}]}", QD_EINVAL,
         "signatures[0].sig: bad base64"},
        {"{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\",\"keyid\":7}]}", QD_EINVAL,
         "keyid is not a string"},
        {"{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\",\"x\":1}]}", QD_EINVAL,
         "unknown field 'x'"},
        {"{\"payloadType\":\"\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "payloadType: not a non-empty string"},
        {"{\"payloadType\":\"t\",\"payload\":\"\",\"signatures\":[{\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "envelope.payload: empty"},
        {"{\"mediaType\":\"application/json\"}", QD_EUNSUPPORTED, "unsupported bundle mediaType"},
        {"{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\",\"verificationMaterial\":{\"publicKey\":"
         "{\"hint\":\"a\"}}}",
         QD_EINVAL, "dsseEnvelope: missing"},
        {"{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\",\"verificationMaterial\":{\"certificate\":"
         "{}},\"dsseEnvelope\":{}}",
         QD_EUNSUPPORTED, "certificate-based"},
        {"{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\",\"messageSignature\":{}}", QD_EUNSUPPORTED,
         "messageSignature"},
        {"{\"mediaType\":\"application/vnd.dev.sigstore.bundle.v0.3+json\",\"verificationMaterial\":{\"publicKey\":"
         "{\"hint\":\"aa\"}},\"dsseEnvelope\":{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":"
         "\"YQ==\",\"keyid\":\"bb\"}]}}",
         QD_EINVAL, "hint aa does not match the signature's keyid bb"},
        /* what the verification path's JSON reader (verify/vjson.c) refuses on top of cJSON */
        {"{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]} x", QD_EINVAL,
         "text after the value"},
        {"\xEF\xBB\xBF{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "byte-order mark"},
        {"{\"payloadType\":\"t\\u0000x\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "\\u0000"},
        {"{\"payloadType\":\"t\x01\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "control character"},
        {"{\"payloadType\":\"t\xC0\x80\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "not UTF-8"},
        {"{\"payloadType\":\"t\xED\xA0\x80\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "not UTF-8"},
        {"{\"payloadType\":\"t\xF5\x80\x80\x80\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]}",
         QD_EINVAL, "not UTF-8"},
        {"{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\",\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "duplicate member 'sig'"},
        {"{\"PayloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}]}", QD_EINVAL,
         "unknown field 'PayloadType'"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        qd_envelope *e = NULL;
        int rc = qd_envelope_parse(&e, cases[i].json, strlen(cases[i].json), 0);
        if (rc != cases[i].code || !strstr(qd_error_last()->message, cases[i].words))
            fail_msg("case %zu: rc %d (want %d), message '%s' (want '%s')", i, rc, cases[i].code,
                     qd_error_last()->message, cases[i].words);
        assert_null(e);
    }
}

/* The reader's limits are exact: an escaped backslash before "u0000" is not the NUL escape, white space may
 * follow the value, member names are case-sensitive, and a duplicate is found in a large object too. */
static void test_verify__json_reader_edges(void **state)
{
    static const char ok[] = "{\"payloadType\":\"t\\\\u0000\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":"
                             "\"YQ==\"}]} \n\t\r";
    qd_envelope *e = NULL;
    qd_buf big = QD_BUF_INIT(0);
    (void)state;
    assert_int_equal(qd_envelope_parse(&e, ok, strlen(ok), 0), QD_OK);
    assert_string_equal(qd_envelope_payload_type(e), "t\\u0000");
    qd_envelope_free(e);
    e = NULL;
    /* 40 members, the last one repeating the third: found by the sorted check, not only the pairwise one */
    assert_int_equal(qd_buf_put(&big, "{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}],"
                                      "\"x\":{",
                                strlen("{\"payloadType\":\"t\",\"payload\":\"YQ==\",\"signatures\":[{\"sig\":\"YQ==\"}],"
                                       "\"x\":{")),
                     QD_OK);
    for (int i = 0; i < 40; i++) {
        char m[32];
        snprintf(m, sizeof(m), "%s\"k%d\":%d", i ? "," : "", i == 39 ? 2 : i, i);
        assert_int_equal(qd_buf_put(&big, m, strlen(m)), QD_OK);
    }
    assert_int_equal(qd_buf_put(&big, "}}", 2), QD_OK);
    assert_int_equal(qd_envelope_parse(&e, big.ptr, big.len, 0), QD_EINVAL);
    assert_err_contains("duplicate member 'k2'");
    assert_null(e);
    qd_buf_dispose(&big);
}

static void test_verify__payload_size_limit(void **state)
{
    fixture *f = *state;
    qd_subject s = subj("a", 1);
    qd_envelope *e = signed_env(&s, 1, VT, "{}", &f->ed[0], 1), *e2 = NULL;
    qd_buf b = QD_BUF_INIT(0);
    size_t n;
    qd_envelope_payload(e, &n);
    assert_int_equal(qd_envelope_write_bundle(&b, e), QD_OK);
    assert_int_equal(qd_envelope_parse(&e2, b.ptr, b.len, n - 10), QD_EFULL);
    assert_err_contains("over the limit");
    assert_int_equal(qd_envelope_parse(&e2, b.ptr, b.len, n), QD_OK);
    qd_envelope_free(e);
    qd_envelope_free(e2);
    qd_buf_dispose(&b);
}

/* ------------------------------------------------------------------------------------------ statements --- */

static void test_verify__statement_build_rules(void **state)
{
    qd_subject s[2] = {subj("a", 1), subj("a", 2)};
    qd_buf b = QD_BUF_INIT(0);
    (void)state;
    assert_int_equal(qd_statement_build(&b, s, 0, VT, "{}"), QD_EINVAL);
    assert_err_contains("at least one subject");
    assert_int_equal(qd_statement_build(&b, s, 2, VT, "{}"), QD_EINVAL);
    assert_err_contains("two subjects are named 'a'");
    assert_int_equal(qd_statement_build(&b, s, 1, VT, "[1]"), QD_EINVAL);
    assert_err_contains("not a JSON object");
    assert_int_equal(qd_statement_build(&b, s, 1, "nouri", "{}"), QD_EINVAL);
    assert_int_equal(qd_statement_build(&b, s, 1, VT, "{\"k\":true}"), QD_OK);
    assert_string_equal(qd_buf_cstr(&b), "{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{\"name\":\"a\","
                                         "\"digest\":{\"sha256\":\"01010101010101010101010101010101010101010101010101"
                                         "01010101010101\"}}],\"predicateType\":\"https://quantd.dev/variant/v1\","
                                         "\"predicate\":{\"k\":true}}");
    qd_buf_dispose(&b);
}

static void test_verify__model_signing_root_over_sorted_digests(void **state)
{
    qd_subject s[3] = {subj("z.bin", 3), subj("a.bin", 1), subj("m.bin", 2)};
    uint8_t cat[3 * QD_DIGEST_LEN];
    char hex[65], want[200];
    qd_buf b = QD_BUF_INIT(0);
    qd_digest root;
    (void)state;
    /* sorted by name: a (1), m (2), z (3) */
    for (int i = 0; i < 3; i++)
        memset(cat + i * QD_DIGEST_LEN, i + 1, QD_DIGEST_LEN);
    assert_int_equal(qd_sha256_buf(&root, cat, sizeof(cat)), QD_OK);
    assert_int_equal(qd_statement_build_model_signing(&b, "tiny", s, 3), QD_OK);
    snprintf(want, sizeof(want), "\"subject\":[{\"name\":\"tiny\",\"digest\":{\"sha256\":\"%s\"}}]",
             qd_digest_hex(hex, &root));
    assert_non_null(strstr(b.ptr, want));
    assert_true(strstr(b.ptr, "\"name\":\"a.bin\"") < strstr(b.ptr, "\"name\":\"m.bin\""));
    assert_true(strstr(b.ptr, "\"name\":\"m.bin\"") < strstr(b.ptr, "\"name\":\"z.bin\""));
    assert_non_null(strstr(b.ptr, "\"predicateType\":\"https://model_signing/signature/v1.0\""));
    qd_buf_dispose(&b);
}

/* ------------------------------------------------------------------------------------------- policies --- */

static void test_verify__malformed_policies_name_the_field(void **state)
{
    static const bad_case cases[] = {
        {"{", QD_EINVAL, "invalid JSON"},
        {"[]", QD_EINVAL, "not a JSON object"},
        {"{\"version\":1,\"keys\":[],\"namespaces\":[],\"extra\":1}", QD_EINVAL, "unknown field 'extra'"},
        {"{\"version\":\"1\",\"keys\":[],\"namespaces\":[]}", QD_EINVAL, "version: not an integer"},
        {"{\"version\":2,\"keys\":[],\"namespaces\":[]}", QD_EUNSUPPORTED, "version 2 is not supported"},
        {"{\"version\":1,\"namespaces\":[]}", QD_EINVAL, "keys: missing"},
        {"{\"version\":1,\"keys\":{},\"namespaces\":[]}", QD_EINVAL, "keys: not an array"},
        {"{\"version\":1,\"keys\":[{\"id\":\"x\"}],\"namespaces\":[]}", QD_EINVAL, "keys[0].id: not 64"},
        {"{\"version\":1,\"keys\":[],\"namespaces\":[{\"pattern\":\"*\",\"keys\":[],\"threshold\":1}]}", QD_EINVAL,
         "namespaces[0].keys"},
        {"{\"version\":1,\"keys\":[],\"namespaces\":[],\"revoked\":[\"ab\"]}", QD_EINVAL, "revoked[0]: not a key id"},
        {"{\"version\":1,\"keys\":[],\"namespaces\":[],\"require_validation_pass\":1}", QD_EINVAL,
         "require_validation_pass: not true or false"},
        {"{\"version\":1,\"keys\":[],\"namespaces\":[],\"max_payload_bytes\":0}", QD_EINVAL, "max_payload_bytes"},
    };
    qd_policy *p = NULL;
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse_policy_text(cases[i].json, &p);
        if (rc != cases[i].code || !strstr(qd_error_last()->message, cases[i].words))
            fail_msg("case %zu: rc %d (want %d), message '%s' (want '%s')", i, rc, cases[i].code,
                     qd_error_last()->message, cases[i].words);
        assert_null(p);
    }
}

static void set_id(json_t *root, void *arg)
{
    json_object_set_new(json_array_get(json_object_get(root, "keys"), 0), "id", json_string(arg));
}

static void test_verify__policy_key_checks(void **state)
{
    fixture *f = *state;
    qd_policy_build_options o = QD_POLICY_BUILD_OPTIONS_INIT;
    qd_key *two[2] = {f->ed[0], f->ed[0]};
    qd_buf b = QD_BUF_INIT(0);
    json_t *root;
    char *s;
    qd_policy *p = NULL;

    assert_int_equal(qd_policy_build(&b, (const qd_key *const *)two, 2, &o), QD_EINVAL);
    assert_err_contains("given twice");
    o.threshold = 2;
    assert_int_equal(qd_policy_build(&b, (const qd_key *const *)&f->ed[0], 1, &o), QD_EINVAL);
    o.threshold = 1;
    assert_int_equal(qd_policy_build(&b, (const qd_key *const *)&f->ec, 1, &o), QD_OK);
    root = json_loads(b.ptr, 0, NULL);
    /* a key id that does not match the key */
    set_id(root, (void *)qd_key_id(f->ed[1]));
    s = json_dumps(root, 0);
    assert_int_equal(parse_policy_text(s, &p), QD_EINVAL);
    assert_err_contains("does not match the key");
    free(s);
    /* an algorithm that does not match the key */
    set_id(root, (void *)qd_key_id(f->ec));
    json_object_set_new(json_array_get(json_object_get(root, "keys"), 0), "algorithm", json_string("ed25519"));
    s = json_dumps(root, 0);
    assert_int_equal(parse_policy_text(s, &p), QD_EINVAL);
    assert_err_contains("algorithm says ed25519 but the key is ecdsa-p256");
    free(s);
    json_decref(root);
    qd_buf_dispose(&b);
}

/* ------------------------------------------------------------------------------------------- qd_verify --- */

static int verify_now(const qd_policy *p, const qd_envelope *e, const qd_subject *files, size_t n, const char *ns,
                      int64_t now, qd_verify_failure *why)
{
    qd_verify_options o = QD_VERIFY_OPTIONS_INIT;
    o.namespace_name = ns;
    o.now = now;
    return qd_verify(NULL, why, p, e, files, n, &o);
}

static void test_verify__threshold_counts_distinct_keys(void **state)
{
    fixture *f = *state;
    qd_subject s = subj("m.gguf", 9);
    qd_key *trusted[3] = {f->ed[0], f->ed[1], f->ec};
    qd_policy *p = policy_of(trusted, 3, 2, NULL, NULL, NULL);
    qd_key *one[1] = {f->ed[0]}, *same[2] = {f->ed[0], f->ed[0]}, *pair[2] = {f->ed[1], f->ec},
           *outsider[2] = {f->ed[0], f->ed[2]};
    qd_envelope *e1 = signed_env(&s, 1, VT, "{}", one, 1), *e2 = signed_env(&s, 1, VT, "{}", same, 2),
                *e3 = signed_env(&s, 1, VT, "{}", pair, 2), *e4 = signed_env(&s, 1, VT, "{}", outsider, 2);
    qd_verified *v = NULL;
    qd_verify_failure why;
    size_t n1, n2;

    assert_int_equal(verify_now(p, e1, &s, 1, NULL, 0, &why), QD_EBADSIG);
    assert_non_null(strstr(why.reason, "threshold not met: 1 of 2"));
    assert_string_equal(why.subject, "m.gguf (unverified)"); /* named for the message, marked as unverified */
    assert_int_equal(verify_now(p, e2, &s, 1, NULL, 0, &why), QD_EBADSIG);
    assert_string_equal(why.key_id, qd_key_id(f->ed[0]));
    assert_non_null(strstr(why.reason, "signed more than once and counts once"));
    assert_int_equal(verify_now(p, e4, &s, 1, NULL, 0, &why), QD_EBADSIG);
    assert_string_equal(why.key_id, qd_key_id(f->ed[2]));
    assert_non_null(strstr(why.reason, "the key is not in the policy"));
    assert_int_equal(qd_verify(&v, &why, p, e3, &s, 1, NULL), QD_OK);
    assert_int_equal(qd_verified_key_count(v), 2);
    assert_string_equal(qd_verified_key_id(v, 0), qd_key_id(f->ed[1]));
    assert_string_equal(qd_verified_key_id(v, 1), qd_key_id(f->ec));
    assert_string_equal(qd_verified_predicate_type(v), VT);
    /* the bytes handed back are exactly the signed payload */
    {
        const uint8_t *vp = qd_verified_payload(v, &n1), *ep = qd_envelope_payload(e3, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(vp, ep, n2);
    }
    /* merging two single-signature envelopes reaches the threshold too */
    assert_int_equal(qd_envelope_merge(e1, e3), QD_OK);
    assert_int_equal(verify_now(p, e1, &s, 1, NULL, 0, &why), QD_OK);
    qd_verified_free(v);
    qd_envelope_free(e1);
    qd_envelope_free(e2);
    qd_envelope_free(e3);
    qd_envelope_free(e4);
    qd_policy_free(p);
}

static void window(json_t *root, void *arg)
{
    json_t *k = json_array_get(json_object_get(root, "keys"), 0);
    (void)arg;
    json_object_set_new(k, "valid_from", json_string("2026-01-01T00:00:00Z"));
    json_object_set_new(k, "valid_until", json_string("2026-12-31T23:59:59Z"));
}

static void revoke_first(json_t *root, void *arg)
{
    json_array_append_new(json_object_get(root, "revoked"), json_string(arg));
}

static void test_verify__validity_window_and_revocation(void **state)
{
    fixture *f = *state;
    qd_subject s = subj("m.gguf", 9);
    qd_policy *p = policy_of(&f->ed[0], 1, 1, NULL, window, NULL);
    qd_policy *r = policy_of(&f->ed[0], 1, 1, NULL, revoke_first, (void *)qd_key_id(f->ed[0]));
    qd_envelope *e = signed_env(&s, 1, VT, "{}", &f->ed[0], 1);
    qd_verify_failure why;

    assert_int_equal(verify_now(p, e, &s, 1, NULL, 1780000000 /* 2026-05 */, &why), QD_OK);
    assert_int_equal(verify_now(p, e, &s, 1, NULL, 1767225599 /* 2025-12-31T23:59:59Z */, &why), QD_EBADSIG);
    assert_non_null(strstr(why.reason, "not yet valid (valid from 2026-01-01T00:00:00Z)"));
    assert_int_equal(verify_now(p, e, &s, 1, NULL, 1767225600, &why), QD_OK); /* first valid second */
    assert_int_equal(verify_now(p, e, &s, 1, NULL, 1798761599, &why), QD_OK); /* last valid second */
    assert_int_equal(verify_now(p, e, &s, 1, NULL, 1798761600, &why), QD_EBADSIG);
    assert_non_null(strstr(why.reason, "expired at 2026-12-31T23:59:59Z"));
    assert_int_equal(verify_now(r, e, &s, 1, NULL, 0, &why), QD_EBADSIG);
    assert_string_equal(why.key_id, qd_key_id(f->ed[0]));
    assert_non_null(strstr(why.reason, "the key is revoked"));
    qd_envelope_free(e);
    qd_policy_free(p);
    qd_policy_free(r);
}

static void second_rule(json_t *root, void *arg)
{
    json_t *rules = json_object_get(root, "namespaces");
    json_array_append_new(rules, json_pack("{s:s, s:[s], s:i}", "pattern", "*", "keys", (const char *)arg,
                                           "threshold", 1));
}

static void test_verify__namespace_rules_first_match_wins(void **state)
{
    fixture *f = *state;
    qd_subject s = subj("m.gguf", 9);
    qd_key *both[2] = {f->ed[0], f->ed[1]};
    /* acme/ needs ed[0]; everything else may be signed by ed[0] too (rule 2 lists it again) */
    qd_policy *p = policy_of(both, 2, 2, "acme/*", second_rule, (void *)qd_key_id(f->ed[0]));
    qd_envelope *e = signed_env(&s, 1, VT, "{}", &f->ed[0], 1);
    qd_verify_failure why;

    assert_int_equal(verify_now(p, e, &s, 1, "acme/llama", 0, &why), QD_EBADSIG); /* 2 of 2 there */
    assert_non_null(strstr(why.reason, "rule 'acme/*'"));
    assert_int_equal(verify_now(p, e, &s, 1, "other/llama", 0, &why), QD_OK);
    qd_envelope_free(e);
    qd_policy_free(p);
}

static void require(json_t *root, void *arg)
{
    (void)arg;
    json_object_set_new(root, "predicate_types", json_pack("[s]", VT));
    json_object_set_new(root, "require_validation_pass", json_true());
}

static void test_verify__predicate_type_and_validation_requirements(void **state)
{
    fixture *f = *state;
    qd_subject s = subj("m.gguf", 9);
    qd_policy *p = policy_of(&f->ed[0], 1, 1, NULL, require, NULL);
    qd_envelope *ok = signed_env(&s, 1, VT, "{\"validation\":{\"verdict\":\"pass\"}}", &f->ed[0], 1),
                *bad = signed_env(&s, 1, VT, "{\"validation\":{\"verdict\":\"fail\"}}", &f->ed[0], 1),
                *none = signed_env(&s, 1, VT, "{}", &f->ed[0], 1),
                *ck = signed_env(&s, 1, QD_PREDICATE_CHECKPOINT, "{}", &f->ed[0], 1);
    qd_verify_failure why;

    assert_int_equal(verify_now(p, ok, &s, 1, NULL, 0, &why), QD_OK);
    assert_int_equal(verify_now(p, bad, &s, 1, NULL, 0, &why), QD_EBADSIG);
    assert_string_equal(why.subject, "m.gguf");
    assert_non_null(strstr(why.reason, "verdict is 'fail'"));
    assert_int_equal(verify_now(p, none, &s, 1, NULL, 0, &why), QD_EBADSIG);
    assert_non_null(strstr(why.reason, "has none"));
    assert_int_equal(verify_now(p, ck, &s, 1, NULL, 0, &why), QD_EBADSIG);
    assert_non_null(strstr(why.reason, "checkpoint/v1 is not one the policy accepts"));
    qd_envelope_free(ok);
    qd_envelope_free(bad);
    qd_envelope_free(none);
    qd_envelope_free(ck);
    qd_policy_free(p);
}

static void test_verify__subjects_must_match_files_both_ways(void **state)
{
    fixture *f = *state;
    qd_subject s[2] = {subj("a.gguf", 1), subj("b.json", 2)};
    qd_subject files[3] = {subj("a.gguf", 1), subj("b.json", 2), subj("c.txt", 3)};
    qd_policy *p = policy_of(&f->ed[0], 1, 1, NULL, NULL, NULL);
    qd_envelope *e = signed_env(s, 2, VT, "{}", &f->ed[0], 1);
    qd_verify_failure why;

    assert_int_equal(verify_now(p, e, files, 2, NULL, 0, &why), QD_OK);
    assert_int_equal(verify_now(p, e, files, 1, NULL, 0, &why), QD_EDIGEST);
    assert_string_equal(why.subject, "b.json");
    assert_int_equal(verify_now(p, e, files, 3, NULL, 0, &why), QD_EDIGEST);
    assert_string_equal(why.subject, "c.txt");
    files[1].digest.bytes[31] ^= 1;
    assert_int_equal(verify_now(p, e, files, 2, NULL, 0, &why), QD_EDIGEST);
    assert_string_equal(why.key_id, qd_key_id(f->ed[0]));
    assert_string_equal(why.subject, "b.json");
    assert_non_null(strstr(why.reason, "digest mismatch: signed sha256:0202"));
    qd_envelope_free(e);
    qd_policy_free(p);
}

static void test_verify__model_signing_statements_verify_by_resources(void **state)
{
    fixture *f = *state;
    qd_subject files[2] = {subj("w.bin", 5), subj("c.json", 6)};
    qd_policy *p = policy_of(&f->ed[0], 1, 1, NULL, NULL, NULL);
    qd_buf st = QD_BUF_INIT(0);
    qd_envelope *e = NULL;
    qd_verify_failure why;

    assert_int_equal(qd_statement_build_model_signing(&st, "tiny", files, 2), QD_OK);
    assert_int_equal(qd_envelope_new(&e, QD_INTOTO_PAYLOAD_TYPE, st.ptr, st.len), QD_OK);
    assert_int_equal(qd_envelope_sign(e, f->ed[0]), QD_OK);
    assert_int_equal(verify_now(p, e, files, 2, NULL, 0, &why), QD_OK);
    files[0].digest.bytes[0] ^= 1;
    assert_int_equal(verify_now(p, e, files, 2, NULL, 0, &why), QD_EDIGEST);
    assert_string_equal(why.subject, "w.bin");
    qd_envelope_free(e);
    qd_buf_dispose(&st);
    qd_policy_free(p);
}

/* A correctly signed envelope over arbitrary payload bytes. */
static qd_envelope *signed_raw(const char *type, const char *payload, qd_key *k)
{
    qd_envelope *e = NULL;
    assert_int_equal(qd_envelope_new(&e, type, payload, strlen(payload)), QD_OK);
    assert_int_equal(qd_envelope_sign(e, k), QD_OK);
    return e;
}

static void test_verify__bad_statements_under_good_signatures(void **state)
{
    static const bad_case cases[] = {
        {"not json", QD_ECORRUPT, "not valid JSON"},
        {"{\"_type\":\"https://in-toto.io/Statement/v0.1\",\"subject\":[]}", QD_ECORRUPT, "not an in-toto Statement v1"},
        {"{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[],\"predicateType\":\"x:y\"}", QD_ECORRUPT,
         "has no subjects"},
        {"{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{\"name\":\"m\",\"digest\":{\"sha512\":\"ab\"}}]"
         ",\"predicateType\":\"x:y\"}",
         QD_ECORRUPT, "unsupported digest algorithm 'sha512'"},
        {"{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{\"name\":\"m\",\"digest\":{\"sha256\":\"AB\"}}]"
         ",\"predicateType\":\"x:y\"}",
         QD_ECORRUPT, "not 64 lowercase hex"},
        {"{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{\"digest\":{}}],\"predicateType\":\"x:y\"}",
         QD_ECORRUPT, "has no name"},
        {"{\"_type\":\"https://in-toto.io/Statement/v1\",\"subject\":[{\"name\":\"m\",\"digest\":{\"sha256\":\"" 
         "0000000000000000000000000000000000000000000000000000000000000000\"}}]}",
         QD_ECORRUPT, "no predicateType"},
    };
    fixture *f = *state;
    qd_policy *p = policy_of(&f->ed[0], 1, 1, NULL, NULL, NULL);
    qd_subject file = subj("m", 0);
    qd_verify_failure why;
    qd_envelope *e;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc;
        e = signed_raw(QD_INTOTO_PAYLOAD_TYPE, cases[i].json, f->ed[0]);
        rc = verify_now(p, e, &file, 1, NULL, 0, &why);
        if (rc != cases[i].code || !strstr(why.reason, cases[i].words))
            fail_msg("case %zu: rc %d (want %d), reason '%s' (want '%s')", i, rc, cases[i].code, why.reason,
                     cases[i].words);
        assert_string_equal(why.key_id, qd_key_id(f->ed[0]));
        qd_envelope_free(e);
    }
    e = signed_raw("application/json", "{}", f->ed[0]);
    assert_int_equal(verify_now(p, e, &file, 1, NULL, 0, &why), QD_EBADSIG);
    assert_non_null(strstr(why.reason, "payloadType is 'application/json'"));
    qd_envelope_free(e);
    qd_policy_free(p);
}

static void test_verify__signature_without_keyid_is_tried_against_rule_keys(void **state)
{
    fixture *f = *state;
    qd_subject s = subj("m.gguf", 9);
    qd_key *trusted[2] = {f->ed[1], f->ec};
    qd_policy *p = policy_of(trusted, 2, 1, NULL, NULL, NULL);
    qd_envelope *e = signed_env(&s, 1, VT, "{}", &f->ec, 1), *bare = NULL;
    qd_buf b = QD_BUF_INIT(0);
    qd_verify_failure why;
    char *kid;

    /* strip the keyid from the written envelope */
    assert_int_equal(qd_envelope_write_dsse(&b, e), QD_OK);
    {
        json_t *j = json_loads(b.ptr, 0, NULL);
        assert_non_null(j);
        assert_int_equal(json_object_del(json_array_get(json_object_get(j, "signatures"), 0), "keyid"), 0);
        kid = json_dumps(j, 0);
        qd_buf_clear(&b);
        qd_buf_puts(&b, kid);
        free(kid);
        json_decref(j);
    }
    assert_int_equal(qd_envelope_parse(&bare, b.ptr, b.len, 0), QD_OK);
    assert_string_equal(qd_envelope_signature_keyid(bare, 0), "");
    assert_int_equal(verify_now(p, bare, &s, 1, NULL, 0, &why), QD_OK);
    qd_envelope_free(e);
    qd_envelope_free(bare);
    qd_buf_dispose(&b);
    qd_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify__base64_rfc4648_vectors),
        cmocka_unit_test(test_verify__base64_both_alphabets_and_errors),
        cmocka_unit_test(test_verify__pae_matches_dsse_spec_example),
        cmocka_unit_test(test_verify__sign_and_verify_both_algorithms),
        cmocka_unit_test(test_verify__key_files_pem_and_openssh_round_trip),
        cmocka_unit_test(test_verify__bad_keys_are_refused_clearly),
        cmocka_unit_test(test_verify__one_key_shared_by_threads),
        cmocka_unit_test(test_verify__bundle_write_parse_round_trip),
        cmocka_unit_test(test_verify__malformed_bundles_each_get_a_clear_error),
        cmocka_unit_test(test_verify__json_reader_edges),
        cmocka_unit_test(test_verify__payload_size_limit),
        cmocka_unit_test(test_verify__statement_build_rules),
        cmocka_unit_test(test_verify__model_signing_root_over_sorted_digests),
        cmocka_unit_test(test_verify__malformed_policies_name_the_field),
        cmocka_unit_test(test_verify__policy_key_checks),
        cmocka_unit_test(test_verify__threshold_counts_distinct_keys),
        cmocka_unit_test(test_verify__validity_window_and_revocation),
        cmocka_unit_test(test_verify__namespace_rules_first_match_wins),
        cmocka_unit_test(test_verify__predicate_type_and_validation_requirements),
        cmocka_unit_test(test_verify__subjects_must_match_files_both_ways),
        cmocka_unit_test(test_verify__model_signing_statements_verify_by_resources),
        cmocka_unit_test(test_verify__bad_statements_under_good_signatures),
        cmocka_unit_test(test_verify__signature_without_keyid_is_tried_against_rule_keys),
    };
    tu_seed();
    return cmocka_run_group_tests_name("verify", tests, setup, teardown);
}
