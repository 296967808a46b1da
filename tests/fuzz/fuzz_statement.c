/*
 * fuzz_statement.c - the statement and policy checks behind a good signature: the input is a payload, signed here
 * with a key the policy trusts, so every input reaches the statement parser, the predicate requirements and the
 * subject/file matching (including the model-signing root). Oracle: success only when the verified bytes are the
 * input bytes and the input names exactly the one file given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qd/qd.h"
#include "qd/verify.h"

#include "fuzz.h"

static qd_policy *policy;
static qd_key *key;

static void setup(void)
{
    qd_buf b = QD_BUF_INIT(0);
    if (policy)
        return;
    if (qd_key_generate(&key, QD_KEY_ED25519) < 0 ||
        qd_policy_build(&b, (const qd_key *const *)&key, 1, NULL) < 0 || qd_policy_parse(&policy, b.ptr, b.len) < 0)
        abort();
    qd_buf_dispose(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qd_subject file = {"model.gguf", {{0}}};
    qd_envelope *e = NULL;
    qd_verified *v = NULL;
    qd_verify_failure why;
    size_t n;
    const uint8_t *p;

    setup();
    memset(file.digest.bytes, 0xab, QD_DIGEST_LEN);
    if (!size)
        return 0;
    if (qd_envelope_new(&e, QD_INTOTO_PAYLOAD_TYPE, data, size) < 0 || qd_envelope_sign(e, key) < 0)
        abort();
    if (qd_verify(&v, &why, policy, e, &file, 1, NULL) == QD_OK) {
        p = qd_verified_payload(v, &n);
        if (n != size || memcmp(p, data, size) || !strstr((const char *)p, "model.gguf"))
            abort();
    } else if (!why.reason[0]) {
        abort(); /* every failure says why */
    }
    qd_verified_free(v);
    qd_envelope_free(e);
    return 0;
}
