/*
 * test_replog.c - the signed log: RFC 6962 Merkle hashing and proofs (against known roots and a naive reference
 * written here), the persisted node files and their repair, C2SP signed notes (against the published
 * golang.org/x/mod/sumdb/note vectors), SSH signatures, append/verify of real logs, and the tamper cases: a wrong
 * key, rewritten and rolled-back history, expired and rolled-back timestamps, a policy refusing a bundle.
 */
#include "testutil.h"

#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

#include "qd/qd.h"
#include "qd/replog.h"
#include "qd/verify.h"

/* ------------------------------------------------------------------------------------- reference merkle --- */

/* MTH exactly as RFC 6962 section 2.1 writes it, over an array of leaf hashes. */
static void ref_mth(const uint8_t (*lh)[32], size_t a, size_t b, uint8_t out[32])
{
    size_t n = b - a, k = 1;
    uint8_t l[32], r[32];
    if (n == 1) {
        memcpy(out, lh[a], 32);
        return;
    }
    while (k * 2 < n)
        k *= 2;
    ref_mth(lh, a, a + k, l);
    ref_mth(lh, a + k, b, r);
    assert_int_equal(qd_merkle_node_hash(out, l, r), QD_OK);
}

static void from_hex(uint8_t *out, const char *hex)
{
    for (size_t i = 0; i < strlen(hex) / 2; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

/* The leaves and roots of the certificate-transparency reference tests (RFC 6962 hashing). */
static void test_merkle_known_roots(void **state)
{
    static const char *leaves[8] = {"", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                    "606162636465666768696a6b6c6d6e6f"};
    static const char *roots[8] = {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                                   "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                                   "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
                                   "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                                   "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
                                   "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
                                   "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
                                   "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};
    char *dir = tu_sandbox();
    qd_merkle *m = NULL;
    uint8_t leaf[32], root[32], want[32], data[16];
    (void)state;
    assert_int_equal(qd_merkle_open(&m, dir), QD_OK);
    assert_int_equal(qd_merkle_root(m, 0, root), QD_OK);
    from_hex(want, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_memory_equal(root, want, 32);
    for (int i = 0; i < 8; i++) {
        from_hex(data, leaves[i]);
        assert_int_equal(qd_merkle_leaf_hash(leaf, data, strlen(leaves[i]) / 2), QD_OK);
        assert_int_equal(qd_merkle_append(m, leaf), QD_OK);
        assert_int_equal(qd_merkle_root(m, (uint64_t)i + 1, root), QD_OK);
        from_hex(want, roots[i]);
        assert_memory_equal(root, want, 32);
    }
    /* earlier sizes are still answerable from the stored nodes */
    assert_int_equal(qd_merkle_root(m, 3, root), QD_OK);
    from_hex(want, roots[2]);
    assert_memory_equal(root, want, 32);
    assert_int_equal(qd_merkle_root(m, 9, root), QD_EINVAL);
    qd_merkle_free(m);
    tu_rmtree(dir);
    free(dir);
}

#define NMAX 37

/* Every size 1..NMAX: roots equal the reference, every inclusion and consistency proof verifies, and each
 * tampered proof, leaf, index or root is refused. */
static void test_merkle_proofs_all_sizes(void **state)
{
    static uint8_t lh[NMAX][32];
    char *dir = tu_sandbox();
    qd_merkle *m = NULL;
    tu_rng rng;
    uint8_t proof[QD_MERKLE_PROOF_MAX * 32], root[NMAX + 1][32], ref[32];
    size_t n;
    (void)state;
    tu_rng_seed(&rng, tu_seed());
    assert_int_equal(qd_merkle_open(&m, dir), QD_OK);
    for (size_t i = 0; i < NMAX; i++) {
        uint8_t data[24];
        tu_fill(&rng, data, sizeof(data));
        assert_int_equal(qd_merkle_leaf_hash(lh[i], data, sizeof(data)), QD_OK);
        assert_int_equal(qd_merkle_append(m, lh[i]), QD_OK);
    }
    assert_int_equal(qd_merkle_size(m), NMAX);
    for (uint64_t size = 1; size <= NMAX; size++) {
        assert_int_equal(qd_merkle_root(m, size, root[size]), QD_OK);
        ref_mth((const uint8_t(*)[32])lh, 0, size, ref);
        assert_memory_equal(root[size], ref, 32);
    }
    for (uint64_t size = 1; size <= NMAX; size++) {
        for (uint64_t i = 0; i < size; i++) {
            assert_int_equal(qd_merkle_inclusion_proof(m, i, size, proof, &n), QD_OK);
            assert_int_equal(qd_merkle_verify_inclusion(lh[i], i, size, proof, n, root[size]), QD_OK);
            /* another leaf, another index, another root, a flipped proof byte, a short proof */
            assert_int_not_equal(qd_merkle_verify_inclusion(lh[(i + 1) % NMAX], i, size, proof, n, root[size]),
                                 QD_OK);
            if (size > 1)
                assert_int_not_equal(qd_merkle_verify_inclusion(lh[i], (i + 1) % size, size, proof, n, root[size]),
                                     QD_OK);
            assert_int_not_equal(qd_merkle_verify_inclusion(lh[i], i, size, proof, n, root[size == 1 ? 2 : 1]),
                                 QD_OK);
            if (n > 0) {
                proof[(n - 1) * 32 + 5] ^= 1;
                assert_int_equal(qd_merkle_verify_inclusion(lh[i], i, size, proof, n, root[size]), QD_EBADSIG);
                proof[(n - 1) * 32 + 5] ^= 1;
                assert_int_not_equal(qd_merkle_verify_inclusion(lh[i], i, size, proof, n - 1, root[size]), QD_OK);
            }
            assert_int_equal(qd_merkle_verify_inclusion(lh[i], size, size, proof, n, root[size]), QD_EINVAL);
        }
        for (uint64_t s1 = 0; s1 <= size; s1++) {
            uint8_t r1[32];
            assert_int_equal(qd_merkle_root(m, s1, r1), QD_OK);
            assert_int_equal(qd_merkle_consistency_proof(m, s1, size, proof, &n), QD_OK);
            assert_int_equal(qd_merkle_verify_consistency(s1, size, proof, n, r1, root[size]), QD_OK);
            if (s1 > 0 && s1 < size) {
                assert_true(n > 0);
                proof[0] ^= 0x80;
                assert_int_not_equal(qd_merkle_verify_consistency(s1, size, proof, n, r1, root[size]), QD_OK);
                proof[0] ^= 0x80;
                /* a fork: the old root of another history */
                r1[3] ^= 1;
                assert_int_not_equal(qd_merkle_verify_consistency(s1, size, proof, n, r1, root[size]), QD_OK);
            }
        }
        assert_int_equal(qd_merkle_verify_consistency(size, size - 1, proof, 0, root[size], root[size - 1 ? size - 1 : 1]),
                         QD_EINVAL);
    }
    qd_merkle_free(m);
    tu_rmtree(dir);
    free(dir);
}

/* A crash between the leaf write and the upper nodes: open() recomputes what is missing. */
static void test_merkle_repair(void **state)
{
    char *dir = tu_sandbox(), path[600];
    qd_merkle *m = NULL;
    uint8_t leaf[32], before[32], after[32];
    (void)state;
    assert_int_equal(qd_merkle_open(&m, dir), QD_OK);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(qd_merkle_leaf_hash(leaf, &i, sizeof(i)), QD_OK);
        assert_int_equal(qd_merkle_append(m, leaf), QD_OK);
    }
    assert_int_equal(qd_merkle_root(m, 16, before), QD_OK);
    qd_merkle_free(m);
    snprintf(path, sizeof(path), "%s/level-02", dir);
    assert_int_equal(truncate(path, 32), 0); /* 4 nodes -> 1 */
    snprintf(path, sizeof(path), "%s/level-04", dir);
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(qd_merkle_open(&m, dir), QD_OK);
    assert_int_equal(qd_merkle_root(m, 16, after), QD_OK);
    assert_memory_equal(before, after, 32);
    qd_merkle_free(m);
    tu_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------------------------------ signed notes --- */

/* An Ed25519 private key from its 32-byte seed, through PKCS#8 PEM. */
static qd_key *key_from_seed(const uint8_t seed[32])
{
    static const uint8_t prefix[16] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                       0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
    uint8_t der[48];
    qd_buf pem = QD_BUF_INIT(0);
    qd_key *k = NULL;
    memcpy(der, prefix, 16);
    memcpy(der + 16, seed, 32);
    qd_buf_puts(&pem, "-----BEGIN PRIVATE KEY-----\n");
    qd_base64_encode(&pem, der, sizeof(der));
    qd_buf_puts(&pem, "\n-----END PRIVATE KEY-----\n");
    assert_int_equal(qd_key_parse(&k, pem.ptr, pem.len), QD_OK);
    qd_buf_dispose(&pem);
    return k;
}

#define PETER_TEXT "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
#define PETER_SIG                                                                                                 \
    "\xe2\x80\x94 PeterNeumann "                                                                                  \
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
#define ENOCH_SIG                                                                                                 \
    "\xe2\x80\x94 EnochRoot "                                                                                     \
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

/* The published vectors of golang.org/x/mod/sumdb/note (an independent implementation of the signed-note spec). */
static void test_note_go_vectors(void **state)
{
    qd_buf seed = QD_BUF_INIT(0), out = QD_BUF_INIT(0), vk = QD_BUF_INIT(0);
    qd_key *k = NULL, *peter = NULL, *enoch = NULL, *bad_key = NULL;
    char name[64];
    uint32_t h;
    size_t tl;
    const char *note = PETER_TEXT "\n" PETER_SIG ENOCH_SIG;
    (void)state;
    /* PRIVATE+KEY+PeterNeumann+c74f20a3+<base64(0x01 || seed)> */
    assert_int_equal(qd_base64_decode(&seed, "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", 44), QD_OK);
    assert_int_equal(seed.len, 33);
    k = key_from_seed((const uint8_t *)seed.ptr + 1);
    assert_int_equal(qd_note_key_hash(&h, "PeterNeumann", k), QD_OK);
    assert_int_equal(h, 0xc74f20a3u);
    assert_int_equal(qd_note_verifier_key(&vk, "PeterNeumann", k), QD_OK);
    assert_string_equal(vk.ptr, "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
    assert_int_equal(qd_note_sign(&out, PETER_TEXT, strlen(PETER_TEXT), "PeterNeumann", k), QD_OK);
    assert_string_equal(out.ptr, PETER_TEXT "\n" PETER_SIG); /* Ed25519 is deterministic: byte for byte */
    /* verification with keys given as verifier-key text */
    assert_int_equal(qd_note_verifier_parse(&peter, name, sizeof(name), vk.ptr), QD_OK);
    assert_string_equal(name, "PeterNeumann");
    assert_int_equal(qd_note_verifier_parse(&enoch, name, sizeof(name),
                                            "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"),
                     QD_OK);
    assert_int_equal(qd_note_verify(&tl, note, strlen(note), "PeterNeumann", peter), QD_OK);
    assert_int_equal(tl, strlen(PETER_TEXT));
    assert_int_equal(qd_note_verify(&tl, note, strlen(note), "EnochRoot", enoch), QD_OK);
    /* the wrong key for a name, a mangled key hash, a mangled signature, a changed text */
    assert_int_equal(qd_note_verify(&tl, note, strlen(note), "EnochRoot", peter), QD_EBADSIG);
    assert_int_equal(qd_note_verifier_parse(&bad_key, name, sizeof(name),
                                            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
                     QD_EINVAL);
    {
        char bad[512];
        snprintf(bad, sizeof(bad), "%s", note);
        bad[strlen(PETER_TEXT) + 1 + strlen("\xe2\x80\x94 PeterNeumann ") + 20] ^= 1;
        assert_int_not_equal(qd_note_verify(&tl, bad, strlen(bad), "PeterNeumann", peter), QD_OK);
        snprintf(bad, sizeof(bad), "%s", note);
        bad[3] = 'X';
        assert_int_equal(qd_note_verify(&tl, bad, strlen(bad), "PeterNeumann", peter), QD_EBADSIG);
        assert_int_equal(qd_note_verify(&tl, PETER_TEXT, strlen(PETER_TEXT), "PeterNeumann", peter), QD_EINVAL);
    }
    assert_false(qd_note_name_valid("a+b"));
    assert_false(qd_note_name_valid("a b"));
    assert_null(bad_key);
    assert_int_equal(qd_note_sign(&out, "no newline", 10, "PeterNeumann", k), QD_EINVAL);
    qd_key_free(k);
    qd_key_free(peter);
    qd_key_free(enoch);
    qd_buf_dispose(&seed);
    qd_buf_dispose(&out);
    qd_buf_dispose(&vk);
}

static void test_sshsig(void **state)
{
    qd_key *k = NULL, *other = NULL, *p256 = NULL;
    qd_buf sig = QD_BUF_INIT(0);
    const char *msg = "tree 0123\n\nhello\n";
    (void)state;
    assert_int_equal(qd_key_generate(&k, QD_KEY_ED25519), QD_OK);
    assert_int_equal(qd_key_generate(&other, QD_KEY_ED25519), QD_OK);
    assert_int_equal(qd_key_generate(&p256, QD_KEY_P256), QD_OK);
    assert_int_equal(qd_sshsig_sign(&sig, k, "git", msg, strlen(msg)), QD_OK);
    assert_true(strncmp(sig.ptr, "-----BEGIN SSH SIGNATURE-----\n", 30) == 0);
    assert_int_equal(qd_sshsig_verify(sig.ptr, sig.len, k, "git", msg, strlen(msg)), QD_OK);
    assert_int_equal(qd_sshsig_verify(sig.ptr, sig.len, other, "git", msg, strlen(msg)), QD_EBADSIG);
    assert_int_equal(qd_sshsig_verify(sig.ptr, sig.len, k, "file", msg, strlen(msg)), QD_EBADSIG);
    assert_int_equal(qd_sshsig_verify(sig.ptr, sig.len, k, "git", msg, strlen(msg) - 1), QD_EBADSIG);
    assert_int_equal(qd_sshsig_verify("garbage", 7, k, "git", msg, strlen(msg)), QD_EINVAL);
    assert_int_equal(qd_sshsig_sign(&sig, p256, "git", msg, strlen(msg)), QD_EINVAL);
    qd_key_free(k);
    qd_key_free(other);
    qd_key_free(p256);
    qd_buf_dispose(&sig);
}

/* ------------------------------------------------------------------------------------------------- logs --- */

typedef struct fx {
    char *dir;
    char logdir[600];
    qd_key *logkey, *signer, *stranger;
    qd_policy *policy;
} fx;

static int fx_setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    qd_buf pb = QD_BUF_INIT(0);
    qd_policy_build_options o = QD_POLICY_BUILD_OPTIONS_INIT;
    f->dir = tu_sandbox();
    snprintf(f->logdir, sizeof(f->logdir), "%s/log.git", f->dir);
    assert_int_equal(qd_key_generate(&f->logkey, QD_KEY_ED25519), QD_OK);
    assert_int_equal(qd_key_generate(&f->signer, QD_KEY_ED25519), QD_OK);
    assert_int_equal(qd_key_generate(&f->stranger, QD_KEY_ED25519), QD_OK);
    o.namespace_pattern = "*";
    assert_int_equal(qd_policy_build(&pb, (const qd_key *const *)&f->signer, 1, &o), QD_OK);
    assert_int_equal(qd_policy_parse(&f->policy, pb.ptr, pb.len), QD_OK);
    qd_buf_dispose(&pb);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    fx *f = *state;
    qd_key_free(f->logkey);
    qd_key_free(f->signer);
    qd_key_free(f->stranger);
    qd_policy_free(f->policy);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A variant bundle signed by key, whose predicate names source (NULL: a root checkpoint). */
static void bundle(qd_buf *out, const qd_key *key, const char *source, const char *method, int bits,
                   const char *converter_version)
{
    qd_buf st = QD_BUF_INIT(0), pred = QD_BUF_INIT(0);
    qd_envelope *e = NULL;
    qd_subject s;
    s.name = "model.gguf";
    memset(s.digest.bytes, bits, 32);
    qd_buf_printf(&pred,
                  "{\"source\":{\"digest\":%s%s%s},\"recipe\":{\"method\":\"%s\",\"format\":\"Q%d_K\",\"weight_bits\":%d},"
                  "\"calibration\":{\"class\":\"none\"},\"converter\":{\"name\":\"quantd\",\"version\":\"%s\"},"
                  "\"target_hardware\":[\"x86_64-avx2\",\"cuda-sm90\"],\"validation\":{\"verdict\":\"pass\"},"
                  "\"created_at\":\"2026-11-27T09:00:00Z\"}",
                  source ? "\"" : "", source ? source : "null", source ? "\"" : "", method, bits, bits,
                  converter_version);
    assert_int_equal(qd_statement_build(&st, &s, 1, QD_PREDICATE_VARIANT, pred.ptr), QD_OK);
    assert_int_equal(qd_envelope_new(&e, QD_INTOTO_PAYLOAD_TYPE, st.ptr, st.len), QD_OK);
    assert_int_equal(qd_envelope_sign(e, key), QD_OK);
    qd_buf_clear(out);
    assert_int_equal(qd_envelope_write_bundle(out, e), QD_OK);
    qd_envelope_free(e);
    qd_buf_dispose(&st);
    qd_buf_dispose(&pred);
}

static void digest_of(qd_digest *d, int fill)
{
    memset(d->bytes, fill, 32);
}

static void append_publish(fx *f, qd_replog *log, const char *name, int fill, const char *source, const char *method,
                           int bits, const char *cv)
{
    qd_buf b = QD_BUF_INIT(0);
    qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
    bundle(&b, f->signer, source, method, bits, cv);
    e.kind = QD_REPLOG_PUBLISH;
    e.name = name;
    digest_of(&e.manifest, fill);
    e.bundle = b.ptr;
    e.bundle_len = b.len;
    e.time = 1800000000 + fill;
    if (qd_replog_append(log, NULL, f->logkey, &e, f->policy) < 0)
        fail_msg("append: %s", qd_error_last()->message);
    qd_buf_dispose(&b);
}

static void append_tag(fx *f, qd_replog *log, const char *name, int fill)
{
    qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
    e.kind = QD_REPLOG_TAG;
    e.name = name;
    digest_of(&e.manifest, fill);
    e.time = 1800000100;
    if (qd_replog_append(log, NULL, f->logkey, &e, NULL) < 0)
        fail_msg("tag: %s", qd_error_last()->message);
}

static void test_log_append_verify(void **state)
{
    fx *f = *state;
    qd_replog *log = NULL;
    qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
    qd_replog_state st, st2;
    qd_verify_failure why;
    qd_buf cp = QD_BUF_INIT(0), ej = QD_BUF_INIT(0), b = QD_BUF_INIT(0);
    qd_checkpoint c4, c2;
    uint8_t proof[QD_MERKLE_PROOF_MAX * 32], leaf[32];
    size_t n, tl;
    uint64_t idx;
    char src[QD_DIGEST_STR_LEN + 1];
    qd_digest d;
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_OK);
    assert_int_equal(qd_replog_size(log), 0);
    assert_string_equal(qd_replog_head(log), "");
    digest_of(&d, 0x11);
    qd_digest_format(src, &d);
    append_publish(f, log, "acme/llama", 0x11, NULL, "none", 16, "0.1.0");
    append_publish(f, log, "acme/llama", 0x22, src, "k-quant", 4, "0.1.0");
    append_tag(f, log, "acme/llama:q4", 0x22);
    e.kind = QD_REPLOG_KEY_ADD;
    e.key = f->signer;
    e.time = 1800000200;
    assert_int_equal(qd_replog_append(log, &idx, f->logkey, &e, NULL), QD_OK);
    assert_int_equal(idx, 3);
    assert_int_equal(qd_replog_size(log), 4);

    /* bad input is refused before anything is written */
    e.kind = QD_REPLOG_TAG;
    e.name = "acme/llama"; /* no tag */
    assert_int_equal(qd_replog_append(log, NULL, f->logkey, &e, NULL), QD_EINVAL);
    e.name = "../etc:x";
    assert_int_equal(qd_replog_append(log, NULL, f->logkey, &e, NULL), QD_EINVAL);
    e.kind = QD_REPLOG_PUBLISH;
    e.name = "acme/evil";
    bundle(&b, f->stranger, NULL, "rtn", 8, "0.1.0"); /* signed by a key the policy does not trust */
    e.bundle = b.ptr;
    e.bundle_len = b.len;
    assert_int_equal(qd_replog_append(log, NULL, f->logkey, &e, f->policy), QD_EBADSIG);
    e.bundle = "not a bundle";
    e.bundle_len = 12;
    assert_int_equal(qd_replog_append(log, NULL, f->logkey, &e, NULL), QD_EINVAL); /* structure, even without policy */
    e.bundle = b.ptr;
    e.bundle_len = b.len;
    assert_int_equal(qd_replog_append(log, NULL, f->stranger, &e, NULL), QD_OK); /* the log does not vouch */
    assert_int_equal(qd_replog_size(log), 5);

    /* checkpoint: a signed note whose root includes every entry */
    assert_int_equal(qd_replog_checkpoint(&cp, log, f->logkey), QD_OK);
    assert_int_equal(qd_note_verify(&tl, cp.ptr, cp.len, "example.test/log", f->logkey), QD_OK);
    assert_int_equal(qd_checkpoint_parse(&c4, cp.ptr, tl), QD_OK);
    assert_int_equal(c4.size, 5);
    assert_string_equal(c4.origin, "example.test/log");
    for (uint64_t i = 0; i < 5; i++) {
        qd_buf_clear(&ej);
        assert_int_equal(qd_replog_entry_json(&ej, log, i), QD_OK);
        assert_int_equal(qd_merkle_leaf_hash(leaf, ej.ptr, ej.len), QD_OK);
        assert_int_equal(qd_merkle_inclusion_proof(qd_replog_merkle(log), i, c4.size, proof, &n), QD_OK);
        assert_int_equal(qd_merkle_verify_inclusion(leaf, i, c4.size, proof, n, c4.root), QD_OK);
    }
    assert_int_equal(qd_replog_entry_json(&ej, log, 5), QD_ENOTFOUND);
    c2.size = 2;
    assert_int_equal(qd_merkle_root(qd_replog_merkle(log), 2, c2.root), QD_OK);
    assert_int_equal(qd_merkle_consistency_proof(qd_replog_merkle(log), 2, 5, proof, &n), QD_OK);
    assert_int_equal(qd_merkle_verify_consistency(2, 5, proof, n, c2.root, c4.root), QD_OK);
    qd_replog_free(log);

    /* the verifier, from scratch: the stranger-signed commit is refused */
    assert_int_equal(qd_replog_verify(&st, &why, f->logdir, f->logkey, f->policy, NULL), QD_EBADSIG);
    assert_non_null(strstr(why.reason, "signature"));

    /* reopening finds the same size and root (node files persisted) */
    assert_int_equal(qd_replog_open(&log, f->logdir), QD_OK);
    assert_int_equal(qd_replog_size(log), 5);
    {
        uint8_t r[32];
        assert_int_equal(qd_merkle_root(qd_replog_merkle(log), 5, r), QD_OK);
        assert_memory_equal(r, c4.root, 32);
    }
    qd_replog_free(log);
    qd_buf_dispose(&cp);
    qd_buf_dispose(&ej);
    qd_buf_dispose(&b);
    (void)st2;
}

static void test_log_verify_fast_forward(void **state)
{
    fx *f = *state;
    qd_replog *log = NULL;
    qd_replog_state s2, s3, s_other;
    qd_verify_failure why;
    char path[700];
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_OK);
    append_publish(f, log, "acme/a", 0x31, NULL, "none", 16, "0.1.0");
    append_tag(f, log, "acme/a:latest", 0x31);
    assert_int_equal(qd_replog_verify(&s2, &why, f->logdir, f->logkey, f->policy, NULL), QD_OK);
    assert_int_equal(s2.size, 2);
    append_publish(f, log, "acme/a", 0x32, NULL, "rtn", 8, "0.2.0");
    qd_replog_free(log);
    /* a fast-forward of s2 verifies and advances; the same log checked against s3 again is fine */
    assert_int_equal(qd_replog_verify(&s3, &why, f->logdir, f->logkey, f->policy, &s2), QD_OK);
    assert_int_equal(s3.size, 3);
    assert_int_equal(qd_replog_verify(&s3, &why, f->logdir, f->logkey, f->policy, &s3), QD_OK);
    /* the wrong log key */
    assert_int_equal(qd_replog_verify(NULL, &why, f->logdir, f->stranger, f->policy, NULL), QD_EBADSIG);
    /* the state file round trip */
    snprintf(path, sizeof(path), "%s/state", f->dir);
    assert_int_equal(qd_replog_state_save(&s3, path), QD_OK);
    assert_int_equal(qd_replog_state_load(&s_other, path), QD_OK);
    assert_int_equal(s_other.size, 3);
    assert_string_equal(s_other.head, s3.head);
    assert_memory_equal(s_other.root, s3.root, 32);
    assert_true(qd_digest_equal(&s_other.tagmap, &s3.tagmap));

    /* rewritten history: the same log key signs a different history (other time) of the same length */
    tu_rmtree(f->logdir);
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_OK);
    append_publish(f, log, "acme/a", 0x31, NULL, "none", 16, "0.1.0");
    append_tag(f, log, "acme/a:latest", 0x33); /* the tag points elsewhere */
    append_publish(f, log, "acme/a", 0x32, NULL, "rtn", 8, "0.2.0");
    append_publish(f, log, "acme/a", 0x34, NULL, "rtn", 8, "0.2.0");
    assert_int_equal(qd_replog_verify(NULL, &why, f->logdir, f->logkey, f->policy, NULL), QD_OK);
    assert_int_equal(qd_replog_verify(NULL, &why, f->logdir, f->logkey, f->policy, &s3), QD_EBADSIG);
    assert_non_null(strstr(why.reason, "rewritten"));
    qd_replog_free(log);

    /* rollback: a log shorter than what was verified */
    tu_rmtree(f->logdir);
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_OK);
    append_publish(f, log, "acme/a", 0x31, NULL, "none", 16, "0.1.0");
    qd_replog_free(log);
    assert_int_equal(qd_replog_verify(NULL, &why, f->logdir, f->logkey, f->policy, &s3), QD_EBADSIG);
    assert_non_null(strstr(why.reason, "rollback"));
    /* the log key revoked in the log: nothing after the revocation is accepted */
    {
        qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
        assert_int_equal(qd_replog_open(&log, f->logdir), QD_OK);
        e.kind = QD_REPLOG_KEY_REVOKE;
        e.key = f->logkey;
        e.time = 1800000300;
        assert_int_equal(qd_replog_append(log, NULL, f->logkey, &e, NULL), QD_OK);
        assert_int_equal(qd_replog_verify(NULL, &why, f->logdir, f->logkey, f->policy, NULL), QD_OK);
        append_tag(f, log, "acme/a:latest", 0x35);
        qd_replog_free(log);
        assert_int_equal(qd_replog_verify(NULL, &why, f->logdir, f->logkey, f->policy, NULL), QD_EBADSIG);
        assert_non_null(strstr(why.reason, "revoked"));
    }
    /* not a log at all */
    assert_int_equal(qd_replog_verify(NULL, &why, f->dir, f->logkey, f->policy, NULL), QD_ENOTFOUND);
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_EEXISTS);
    assert_int_equal(qd_replog_init(&log, f->logdir, "bad origin"), QD_EINVAL);
}

/* A crash after the node files were written but before the ref moved: open() rebuilds from the commits. */
static void test_log_merkle_rebuild(void **state)
{
    fx *f = *state;
    qd_replog *log = NULL;
    uint8_t r1[32], r2[32], leaf[32];
    char path[700];
    qd_merkle *m = NULL;
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_OK);
    for (int i = 0; i < 5; i++)
        append_tag(f, log, "acme/a:t", 0x40 + i);
    assert_int_equal(qd_merkle_root(qd_replog_merkle(log), 5, r1), QD_OK);
    qd_replog_free(log);
    snprintf(path, sizeof(path), "%s/qd-merkle", f->logdir);
    assert_int_equal(qd_merkle_open(&m, path), QD_OK);
    memset(leaf, 7, 32);
    assert_int_equal(qd_merkle_append(m, leaf), QD_OK); /* a leaf with no commit */
    qd_merkle_free(m);
    assert_int_equal(qd_replog_open(&log, f->logdir), QD_OK);
    assert_int_equal(qd_merkle_size(qd_replog_merkle(log)), 5);
    assert_int_equal(qd_merkle_root(qd_replog_merkle(log), 5, r2), QD_OK);
    assert_memory_equal(r1, r2, 32);
    qd_replog_free(log);
}

/* Two handles on one log (as two processes would be): each append catches up with the other's. */
static void test_log_two_writers(void **state)
{
    fx *f = *state;
    qd_replog *a = NULL, *b = NULL;
    qd_replog_state st;
    qd_verify_failure why;
    uint8_t ra[32], ref[32];
    qd_merkle *m = NULL;
    char path[700];
    assert_int_equal(qd_replog_init(&a, f->logdir, "example.test/log"), QD_OK);
    assert_int_equal(qd_replog_open(&b, f->logdir), QD_OK);
    append_tag(f, a, "acme/a:x", 1);
    append_tag(f, b, "acme/a:y", 2); /* b loaded an empty log */
    append_tag(f, a, "acme/a:z", 3);
    append_tag(f, b, "acme/a:w", 4);
    assert_int_equal(qd_replog_size(a), 3); /* a has not caught up with b's last append yet */
    assert_int_equal(qd_replog_size(b), 4);
    assert_int_equal(qd_replog_verify(&st, &why, f->logdir, f->logkey, NULL, NULL), QD_OK);
    assert_int_equal(st.size, 4);
    /* the node files hold the same tree the verifier computed from the commits */
    snprintf(path, sizeof(path), "%s/qd-merkle", f->logdir);
    assert_int_equal(qd_merkle_open(&m, path), QD_OK);
    assert_int_equal(qd_merkle_size(m), 4);
    assert_int_equal(qd_merkle_root(m, 4, ra), QD_OK);
    assert_memory_equal(ra, st.root, 32);
    assert_int_equal(qd_merkle_root(qd_replog_merkle(b), 4, ref), QD_OK);
    assert_memory_equal(ref, st.root, 32);
    qd_merkle_free(m);
    qd_replog_free(a);
    qd_replog_free(b);
}

static void test_freshness(void **state)
{
    fx *f = *state;
    qd_replog *log = NULL;
    qd_buf t1 = QD_BUF_INIT(0), t2 = QD_BUF_INIT(0), t3 = QD_BUF_INIT(0), fork = QD_BUF_INIT(0);
    qd_timestamp ts;
    qd_fresh_verdict v;
    qd_digest tm1, tm2;
    char sp[700];
    const int64_t T = 1800000000;
    snprintf(sp, sizeof(sp), "%s/fresh", f->dir);
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_OK);
    append_tag(f, log, "acme/a:latest", 0x51);
    assert_int_equal(qd_replog_tagmap_digest(&tm1, log), QD_OK);
    assert_int_equal(qd_replog_timestamp(&t1, log, f->logkey, T, 300), QD_OK);
    /* before expiry: accepted, state written */
    assert_int_equal(qd_fresh_verify(&ts, &v, t1.ptr, t1.len, "example.test/log", f->logkey, sp, T + 10), QD_OK);
    assert_int_equal(v, QD_FRESH_OK);
    assert_int_equal(ts.checkpoint.size, 1);
    assert_true(qd_digest_equal(&ts.tagmap, &tm1));
    /* freeze: the same timestamp after its expiry */
    assert_int_equal(qd_fresh_verify(&ts, &v, t1.ptr, t1.len, "example.test/log", f->logkey, sp, T + 300),
                     QD_EBADSIG);
    assert_int_equal(v, QD_FRESH_EXPIRED);
    /* a newer one moves the tag: the tag map digest changes */
    append_tag(f, log, "acme/a:latest", 0x52);
    assert_int_equal(qd_replog_tagmap_digest(&tm2, log), QD_OK);
    assert_false(qd_digest_equal(&tm1, &tm2));
    assert_int_equal(qd_replog_timestamp(&t2, log, f->logkey, T + 60, 300), QD_OK);
    assert_int_equal(qd_fresh_verify(&ts, &v, t2.ptr, t2.len, "example.test/log", f->logkey, sp, T + 70), QD_OK);
    /* rollback: the older (still unexpired) timestamp after the newer was seen */
    assert_int_equal(qd_fresh_verify(&ts, &v, t1.ptr, t1.len, "example.test/log", f->logkey, sp, T + 80),
                     QD_EBADSIG);
    assert_int_equal(v, QD_FRESH_ROLLBACK);
    /* wrong key, wrong origin, a modified body */
    assert_int_equal(qd_fresh_verify(&ts, &v, t2.ptr, t2.len, "example.test/log", f->stranger, sp, T + 80),
                     QD_EBADSIG);
    assert_int_equal(v, QD_FRESH_BADSIG);
    assert_int_equal(qd_fresh_verify(&ts, &v, t2.ptr, t2.len, "other/log", f->logkey, sp, T + 80), QD_EBADSIG);
    qd_buf_put(&t3, t2.ptr, t2.len);
    t3.ptr[strlen("quantd-timestamp/v1\nexample.test/log\n")] = '9';
    assert_int_equal(qd_fresh_verify(&ts, &v, t3.ptr, t3.len, "example.test/log", f->logkey, sp, T + 80),
                     QD_EBADSIG);
    /* a fork: another log with the same origin and key at the same size, issued later */
    qd_replog_free(log);
    tu_rmtree(f->logdir);
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_OK);
    append_tag(f, log, "acme/a:latest", 0x59);
    append_tag(f, log, "acme/a:latest", 0x5a);
    assert_int_equal(qd_replog_timestamp(&fork, log, f->logkey, T + 90, 300), QD_OK);
    assert_int_equal(qd_fresh_verify(&ts, &v, fork.ptr, fork.len, "example.test/log", f->logkey, sp, T + 95),
                     QD_EBADSIG);
    assert_int_equal(v, QD_FRESH_ROLLBACK);
    /* state unchanged by the refusals: t2 still verifies */
    (void)0;
    assert_int_equal(qd_fresh_verify(&ts, &v, t2.ptr, t2.len, "example.test/log", f->logkey, sp, T + 100), QD_OK);
    assert_int_equal(qd_replog_timestamp(&fork, log, f->logkey, T, 0), QD_EINVAL);
    /* mix and match: a timestamp matches only the verified log it describes */
    {
        qd_replog_state st;
        qd_verify_failure why;
        qd_buf t4 = QD_BUF_INIT(0);
        char sp2[700];
        snprintf(sp2, sizeof(sp2), "%s/fresh2", f->dir);
        assert_int_equal(qd_replog_timestamp(&t4, log, f->logkey, T + 200, 300), QD_OK);
        assert_int_equal(qd_fresh_verify(&ts, &v, t4.ptr, t4.len, "example.test/log", f->logkey, sp2, T + 201),
                         QD_OK);
        assert_int_equal(qd_replog_verify(&st, &why, f->logdir, f->logkey, NULL, NULL), QD_OK);
        assert_int_equal(qd_fresh_match(&ts, &st), QD_OK);
        st.tagmap.bytes[0] ^= 1;
        assert_int_equal(qd_fresh_match(&ts, &st), QD_EBADSIG);
        assert_non_null(strstr(qd_error_last()->message, "mix and match"));
        append_tag(f, log, "acme/a:latest", 0x5b);
        assert_int_equal(qd_replog_verify(&st, &why, f->logdir, f->logkey, NULL, NULL), QD_OK);
        assert_int_equal(qd_fresh_match(&ts, &st), QD_EBADSIG); /* the log moved on: the timestamp is stale */
        qd_buf_dispose(&t4);
    }
    qd_replog_free(log);
    qd_buf_dispose(&t1);
    qd_buf_dispose(&t2);
    qd_buf_dispose(&t3);
    qd_buf_dispose(&fork);
}

typedef struct counter {
    int n;
    char last[QD_DIGEST_STR_LEN + 1];
} counter;

/* A key-revoke entry ends what that publisher key may publish: earlier publishes stay valid, a later one is refused
 * (also by a verifier that resumes from a state taken before it), and the offline audit marks it. */
static void test_log_publisher_revocation(void **state)
{
    fx *f = *state;
    qd_replog *log = NULL;
    qd_replog_entry e = QD_REPLOG_ENTRY_INIT;
    qd_replog_state s1, s2;
    qd_verify_failure why;
    qd_audit *a = NULL;
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_OK);
    e.kind = QD_REPLOG_KEY_ADD;
    e.key = f->signer;
    assert_int_equal(qd_replog_append(log, NULL, f->logkey, &e, NULL), QD_OK);
    append_publish(f, log, "org/m", 1, NULL, "rtn", 8, "0.1.0");
    e.kind = QD_REPLOG_KEY_REVOKE;
    assert_int_equal(qd_replog_append(log, NULL, f->logkey, &e, NULL), QD_OK);
    /* the publish before the revocation stays valid */
    assert_int_equal(qd_replog_verify(&s1, &why, f->logdir, f->logkey, f->policy, NULL), QD_OK);
    assert_int_equal(qd_replog_verify(NULL, &why, f->logdir, f->logkey, NULL, NULL), QD_OK);
    append_publish(f, log, "org/m", 2, NULL, "rtn", 4, "0.1.0");
    assert_int_equal(qd_replog_verify(NULL, &why, f->logdir, f->logkey, f->policy, NULL), QD_EBADSIG);
    assert_string_equal(why.key_id, qd_key_id(f->signer));
    assert_non_null(strstr(why.reason, "which the log revoked at entry 2"));
    assert_int_equal(qd_replog_verify(NULL, &why, f->logdir, f->logkey, NULL, NULL), QD_EBADSIG);
    /* resuming from the state before it: the revocation in the verified prefix still counts */
    s2 = s1;
    assert_int_equal(qd_replog_verify(&s2, &why, f->logdir, f->logkey, f->policy, &s2), QD_EBADSIG);
    assert_int_equal(s2.size, s1.size);
    assert_int_equal(qd_audit_load(&a, log), QD_OK);
    assert_int_equal(qd_audit_count(a), 2);
    assert_string_equal(qd_audit_get(a, 0)->revoked_key, "");
    assert_string_equal(qd_audit_get(a, 1)->revoked_key, qd_key_id(f->signer));
    assert_int_equal(qd_audit_get(a, 1)->revoked_at, 2);
    qd_audit_free(a);
    qd_replog_free(log);
}

static int count_cb(const qd_audit_record *r, void *payload)
{
    counter *c = payload;
    c->n++;
    snprintf(c->last, sizeof(c->last), "%s", r->manifest);
    return 0;
}

static void test_audit(void **state)
{
    fx *f = *state;
    qd_replog *log = NULL;
    qd_audit *a = NULL;
    qd_audit_query q;
    counter c;
    qd_buf out = QD_BUF_INIT(0);
    char d1[QD_DIGEST_STR_LEN + 1], d2[QD_DIGEST_STR_LEN + 1], d3[QD_DIGEST_STR_LEN + 1];
    qd_digest x;
    assert_int_equal(qd_replog_init(&log, f->logdir, "example.test/log"), QD_OK);
    digest_of(&x, 0x61);
    qd_digest_format(d1, &x);
    digest_of(&x, 0x62);
    qd_digest_format(d2, &x);
    digest_of(&x, 0x63);
    qd_digest_format(d3, &x);
    append_publish(f, log, "acme/base", 0x61, NULL, "none", 16, "0.1.0");       /* the checkpoint */
    append_publish(f, log, "acme/base", 0x62, d1, "k-quant", 4, "0.1.0");       /* d1 -> d2 */
    append_publish(f, log, "acme/base", 0x63, d2, "gptq", 3, "0.2.0");          /* d2 -> d3 */
    append_publish(f, log, "other/m", 0x64, d1, "k-quant", 8, "0.2.0");         /* d1 -> d4 */
    append_tag(f, log, "acme/base:q4", 0x62);
    assert_int_equal(qd_audit_load(&a, log), QD_OK);
    assert_int_equal(qd_audit_count(a), 4);
    memset(&q, 0, sizeof(q));
    q.method = "k-quant";
    memset(&c, 0, sizeof(c));
    assert_int_equal(qd_audit_query_run(a, &q, count_cb, &c), QD_OK);
    assert_int_equal(c.n, 2);
    q.converter_version = "0.2.0"; /* "which variants did converter version V make?" */
    memset(&c, 0, sizeof(c));
    qd_audit_query_run(a, &q, count_cb, &c);
    assert_int_equal(c.n, 1);
    memset(&q, 0, sizeof(q));
    q.key = qd_key_id(f->signer); /* "what did key K sign?" */
    memset(&c, 0, sizeof(c));
    qd_audit_query_run(a, &q, count_cb, &c);
    assert_int_equal(c.n, 4);
    q.key = qd_key_id(f->stranger);
    memset(&c, 0, sizeof(c));
    qd_audit_query_run(a, &q, count_cb, &c);
    assert_int_equal(c.n, 0);
    memset(&q, 0, sizeof(q));
    q.bits = 3;
    q.hardware = "cuda-sm90";
    q.namespace_name = "acme";
    memset(&c, 0, sizeof(c));
    qd_audit_query_run(a, &q, count_cb, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.last, d3);
    q.hardware = "cuda"; /* whole list items only */
    memset(&c, 0, sizeof(c));
    qd_audit_query_run(a, &q, count_cb, &c);
    assert_int_equal(c.n, 0);
    memset(&q, 0, sizeof(q));
    q.since = 1800000000 + 0x63;
    memset(&c, 0, sizeof(c));
    qd_audit_query_run(a, &q, count_cb, &c);
    assert_int_equal(c.n, 2);

    /* lineage up from d3: d3, d2, d1 */
    digest_of(&x, 0x63);
    assert_int_equal(qd_audit_lineage(&out, a, &x, false, 0, QD_AUDIT_JSON), QD_OK);
    {
        json_t *j = json_loads(out.ptr, 0, NULL);
        json_t *nodes = json_object_get(j, "nodes");
        assert_non_null(j);
        assert_int_equal(json_array_size(nodes), 3);
        assert_string_equal(json_string_value(json_object_get(json_array_get(nodes, 2), "digest")), d1);
        json_decref(j);
    }
    qd_buf_clear(&out);
    assert_int_equal(qd_audit_lineage(&out, a, &x, false, 1, QD_AUDIT_JSON), QD_OK); /* depth 1 */
    {
        json_t *j = json_loads(out.ptr, 0, NULL);
        assert_int_equal(json_array_size(json_object_get(j, "nodes")), 2);
        json_decref(j);
    }
    /* lineage down from d1 as DOT: three edges into d1's subtree */
    digest_of(&x, 0x61);
    qd_buf_clear(&out);
    assert_int_equal(qd_audit_lineage(&out, a, &x, true, 0, QD_AUDIT_DOT), QD_OK);
    {
        int edges = 0;
        for (const char *p = out.ptr; (p = strstr(p, "->")) != NULL; p += 2)
            edges++;
        assert_int_equal(edges, 3);
        assert_true(strncmp(out.ptr, "digraph lineage {", 17) == 0);
    }
    digest_of(&x, 0x7f);
    assert_int_equal(qd_audit_lineage(&out, a, &x, true, 0, QD_AUDIT_TREE), QD_ENOTFOUND);
    qd_audit_free(a);
    qd_replog_free(log);
    qd_buf_dispose(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merkle_known_roots),
        cmocka_unit_test(test_merkle_proofs_all_sizes),
        cmocka_unit_test(test_merkle_repair),
        cmocka_unit_test(test_note_go_vectors),
        cmocka_unit_test(test_sshsig),
        cmocka_unit_test_setup_teardown(test_log_append_verify, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_log_verify_fast_forward, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_log_merkle_rebuild, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_log_two_writers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_freshness, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_audit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_log_publisher_revocation, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
