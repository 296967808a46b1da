/*
 * fuzz_bundle.c - the Sigstore bundle / DSSE envelope parser, with a round-trip oracle: whatever parses is written
 * back, parsed again, and must come back with the same payload type, payload bytes and signatures. Then it is
 * verified against a policy trusting only a key generated in this process, after every input was written, so
 * verification must fail for every input (it exercises the signature, threshold and statement paths).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qd/qd.h"
#include "qd/verify.h"

#include "fuzz.h"

static qd_policy *policy;

static void setup(void)
{
    qd_key *k = NULL;
    qd_buf b = QD_BUF_INIT(0);
    if (policy)
        return;
    if (qd_key_generate(&k, QD_KEY_ED25519) < 0 || qd_policy_build(&b, (const qd_key *const *)&k, 1, NULL) < 0 ||
        qd_policy_parse(&policy, b.ptr, b.len) < 0)
        abort();
    qd_key_free(k);
    qd_buf_dispose(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qd_envelope *e = NULL, *e2 = NULL;
    qd_buf out = QD_BUF_INIT(0);
    qd_subject file = {"model.gguf", {{0}}};
    qd_verify_failure why;
    size_t n1, n2;
    const uint8_t *p1, *p2;

    setup();
    if (qd_envelope_parse(&e, data, size, 64 * 1024) < 0)
        return 0;
    /* round trip: write as a bundle, read again, compare */
    if (qd_envelope_write_bundle(&out, e) < 0 || qd_envelope_parse(&e2, out.ptr, out.len, 64 * 1024) < 0)
        abort();
    p1 = qd_envelope_payload(e, &n1);
    p2 = qd_envelope_payload(e2, &n2);
    if (n1 != n2 || memcmp(p1, p2, n1) || strcmp(qd_envelope_payload_type(e), qd_envelope_payload_type(e2)) ||
        qd_envelope_signature_count(e) != qd_envelope_signature_count(e2))
        abort();
    for (size_t i = 0; i < qd_envelope_signature_count(e); i++)
        if (strcmp(qd_envelope_signature_keyid(e, i), qd_envelope_signature_keyid(e2, i)))
            abort();
    /* no input can carry a signature by a key generated after it was written */
    if (qd_verify(NULL, &why, policy, e, &file, 1, NULL) == QD_OK)
        abort();
    qd_envelope_free(e);
    qd_envelope_free(e2);
    qd_buf_dispose(&out);
    return 0;
}
