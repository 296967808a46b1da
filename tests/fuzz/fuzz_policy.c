/*
 * fuzz_policy.c - the trust policy parser. Whatever parses must be internally consistent: a positive payload
 * limit; the parse must also be deterministic (a second parse of the same bytes succeeds too).
 */
#include <stdint.h>
#include <stdlib.h>

#include "qd/qd.h"
#include "qd/verify.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qd_policy *p = NULL, *p2 = NULL;
    if (qd_policy_parse(&p, data, size) < 0)
        return 0;
    if (qd_policy_max_payload(p) == 0 || qd_policy_parse(&p2, data, size) < 0)
        abort();
    qd_policy_free(p);
    qd_policy_free(p2);
    return 0;
}
