/*
 * bench/verify.c - verifications per second of whole Sigstore bundles (Ed25519 and ECDSA P-256).
 *
 * One verification = what `quant verify` does after hashing the files: parse the bundle JSON (base64, structure),
 * check the signature over PAE with the policy's key, parse the statement, apply the policy and match the
 * subjects against the given file digests. The file hashing itself is excluded (it is SHA-256 throughput, which
 * depends on file size, not on signatures). Also printed: the bare signature check (qd_key_verify over PAE).
 *
 *   bench_verify [seconds per case, default 2]   prints "name ops/s" lines, parsed by bench/verify.sh
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd/qd.h"
#include "qd/verify.h"

static const char *predicate =
    "{\"source\":{\"digest\":\"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},"
    "\"recipe\":{\"method\":\"k-quant\",\"format\":\"Q4_K_M\",\"weight_bits\":4,\"group_size\":256,"
    "\"symmetric\":false,\"seed\":0},\"calibration\":{\"class\":\"none\"},"
    "\"converter\":{\"name\":\"quantd\",\"version\":\"0.1.0\",\"build\":\"abc\",\"kernel\":\"avx2\"},"
    "\"target_hardware\":[\"x86_64-avx2\"],\"validation\":{\"reference_digest\":\"sha256:aaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"set_digest\":\"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    "bbbbbbbbbbbbbbbbbbbb\",\"metrics\":{\"kld_mean\":0.01,\"kld_p99\":0.08,\"top1_agreement\":0.97,"
    "\"ppl_ratio\":1.02},\"thresholds\":{\"kld_mean_max\":0.05},\"verdict\":\"pass\"},"
    "\"created_at\":\"2026-11-27T09:00:00Z\",\"builder\":{\"id\":\"quantd@bench\"}}";

/* CPU time of this process: `openssl speed` also counts CPU time (not wall time) unless given -elapsed, and on
 * a shared machine CPU time is what stays comparable between the two. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_verify: %s: %s\n", what, qd_error_last()->message);
    exit(1);
}

static void bench_alg(qd_key_alg alg, double seconds)
{
    qd_subject files[2];
    qd_key *k = NULL;
    qd_policy *pol = NULL;
    qd_envelope *env = NULL;
    qd_buf st = QD_BUF_INIT(0), bundle = QD_BUF_INIT(0), pol_json = QD_BUF_INIT(0), pae = QD_BUF_INIT(0);
    qd_policy_build_options po = QD_POLICY_BUILD_OPTIONS_INIT;
    uint8_t sig[QD_SIG_MAX];
    size_t sig_len, payload_len;
    const uint8_t *payload;
    unsigned long n;
    double t0, t;

    files[0].name = "model.gguf";
    files[1].name = "tokenizer.json";
    memset(files[0].digest.bytes, 0x11, QD_DIGEST_LEN);
    memset(files[1].digest.bytes, 0x22, QD_DIGEST_LEN);
    po.require_validation_pass = true;
    if (qd_key_generate(&k, alg) < 0 || qd_statement_build(&st, files, 2, QD_PREDICATE_VARIANT, predicate) < 0 ||
        qd_envelope_new(&env, QD_INTOTO_PAYLOAD_TYPE, st.ptr, st.len) < 0 || qd_envelope_sign(env, k) < 0 ||
        qd_envelope_write_bundle(&bundle, env) < 0 ||
        qd_policy_build(&pol_json, (const qd_key *const *)&k, 1, &po) < 0 ||
        qd_policy_parse(&pol, pol_json.ptr, pol_json.len) < 0)
        die("setup");
    payload = qd_envelope_payload(env, &payload_len);
    if (qd_dsse_pae(&pae, QD_INTOTO_PAYLOAD_TYPE, payload, payload_len) < 0 ||
        qd_key_sign(sig, &sig_len, k, pae.ptr, pae.len) < 0)
        die("sign");

    /* warm up, and check that what we time succeeds */
    for (int i = 0; i < 50; i++) {
        qd_envelope *e = NULL;
        if (qd_envelope_parse(&e, bundle.ptr, bundle.len, 0) < 0 || qd_verify(NULL, NULL, pol, e, files, 2, NULL) < 0)
            die("verify");
        qd_envelope_free(e);
    }
    n = 0;
    t0 = now_s();
    do {
        for (int i = 0; i < 64; i++) {
            qd_envelope *e = NULL;
            if (qd_envelope_parse(&e, bundle.ptr, bundle.len, 0) < 0 ||
                qd_verify(NULL, NULL, pol, e, files, 2, NULL) < 0)
                die("verify");
            qd_envelope_free(e);
        }
        n += 64;
        t = now_s() - t0;
    } while (t < seconds);
    printf("bundle_%s %.1f\n", alg == QD_KEY_ED25519 ? "ed25519" : "p256", (double)n / t);

    n = 0;
    t0 = now_s();
    do {
        for (int i = 0; i < 64; i++)
            if (qd_key_verify(k, pae.ptr, pae.len, sig, sig_len) < 0)
                die("qd_key_verify");
        n += 64;
        t = now_s() - t0;
    } while (t < seconds);
    printf("sigonly_%s %.1f\n", alg == QD_KEY_ED25519 ? "ed25519" : "p256", (double)n / t);
    n = 0;
    t0 = now_s();
    do {
        for (int i = 0; i < 64; i++) {
            qd_envelope *e = NULL;
            if (qd_envelope_parse(&e, bundle.ptr, bundle.len, 0) < 0)
                die("parse");
            qd_envelope_free(e);
        }
        n += 64;
        t = now_s() - t0;
    } while (t < seconds / 2);
    printf("parseonly_%s %.1f\n", alg == QD_KEY_ED25519 ? "ed25519" : "p256", (double)n / t);
    printf("bundle_bytes_%s %zu\n", alg == QD_KEY_ED25519 ? "ed25519" : "p256", bundle.len);
    fflush(stdout);

    qd_envelope_free(env);
    qd_policy_free(pol);
    qd_key_free(k);
    qd_buf_dispose(&st);
    qd_buf_dispose(&bundle);
    qd_buf_dispose(&pol_json);
    qd_buf_dispose(&pae);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    if (seconds <= 0)
        seconds = 2.0;
    bench_alg(QD_KEY_ED25519, seconds);
    bench_alg(QD_KEY_P256, seconds);
    return 0;
}
