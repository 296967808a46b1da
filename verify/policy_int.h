/* policy_int.h - private to verify/: the parsed trust policy, shared by policy.c and check.c. */
#ifndef QD_POLICY_INT_H
#define QD_POLICY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/verify.h"

/** A trusted key. Invariant: id equals qd_key_id(key). */
typedef struct pol_key {
    char id[QD_KEY_ID_LEN + 1]; /* hex SHA-256 of the DER SPKI */
    qd_key *key;                /* the public key (never a private one) */
    int64_t valid_from;         /* Unix seconds; INT64_MIN when unbounded */
    int64_t valid_until;        /* Unix seconds, inclusive; INT64_MAX when unbounded */
} pol_key;

/** Which keys may sign names matching a pattern. Invariant: 1 <= threshold <= n_keys. */
typedef struct pol_rule {
    char *pattern;     /* fnmatch(3) pattern, no flags: e.g. org/<star> */
    size_t *keys;      /* indexes into qd_policy.keys, distinct */
    size_t n_keys;     /* entries in keys */
    unsigned threshold; /* distinct good signatures needed */
} pol_rule;

struct qd_policy {
    pol_key *keys;            /* trusted keys, distinct ids */
    size_t n_keys;
    pol_rule *rules;          /* namespace rules, first match wins */
    size_t n_rules;
    char **revoked;           /* revoked key ids (need not be in keys) */
    size_t n_revoked;
    char **predicate_types;   /* accepted predicate types; none listed means any */
    size_t n_predicate_types;
    bool require_validation_pass; /* predicate.validation.verdict must be "pass" */
    size_t max_payload;       /* largest payload accepted, bytes */
};

#endif
