#!/usr/bin/env bash
# bench/verify.sh - `make bench-verify`: whole-bundle verifications per second (bench/verify.c) against
# `openssl speed ed25519 ecdsap256` (bare signature verifications of OpenSSL itself), in the same run.
#
# The two are interleaved ROUNDS times and the best of each is kept, so that load from other processes on a
# shared machine hurts both sides alike. Target: ratio >= 0.8 (bundle parse + policy + statement + subjects cost
# at most a fifth of a signature check).
set -eu
cd "$(dirname "$0")/.."
B=${B:-build/release}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-2}
command -v openssl >/dev/null || { echo "bench-verify: no openssl command"; exit 1; }

best() { # current new -> max
    awk -v a="$1" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'
}
q_ed=0 q_ec=0 s_ed=0 s_ec=0 o_ed=0 o_ec=0 p_ed=0
for r in $(seq "$ROUNDS"); do
    out=$("$B/bench/verify" "$SECS")
    q_ed=$(best "$q_ed" "$(awk '$1 == "bundle_ed25519" { print $2 }' <<<"$out")")
    q_ec=$(best "$q_ec" "$(awk '$1 == "bundle_p256" { print $2 }' <<<"$out")")
    s_ed=$(best "$s_ed" "$(awk '$1 == "sigonly_ed25519" { print $2 }' <<<"$out")")
    s_ec=$(best "$s_ec" "$(awk '$1 == "sigonly_p256" { print $2 }' <<<"$out")")
    p_ed=$(best "$p_ed" "$(awk '$1 == "parseonly_ed25519" { print $2 }' <<<"$out")")
    sp=$(openssl speed -seconds "$SECS" ed25519 ecdsap256 2>/dev/null)
    o_ed=$(best "$o_ed" "$(awk '/EdDSA \(Ed25519\)/ { print $NF }' <<<"$sp")")
    o_ec=$(best "$o_ec" "$(awk '/ecdsa \(nistp256\)/ { print $NF }' <<<"$sp")")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
echo "bench-verify: best of $ROUNDS interleaved rounds of ${SECS}s, $(nproc) CPU(s), $(openssl version | cut -d' ' -f1-2)"
printf '%-10s %16s %16s %16s %8s %8s\n' alg "bundles/s" "qd sig-only/s" "openssl speed/s" ratio "sig-only"
printf '%-10s %16.0f %16.0f %16.0f %7sx %7sx\n' ed25519 "$q_ed" "$s_ed" "$o_ed" "$(ratio "$q_ed" "$o_ed")" "$(ratio "$s_ed" "$o_ed")"
printf '%-10s %16.0f %16.0f %16.0f %7sx %7sx\n' p256 "$q_ec" "$s_ec" "$o_ec" "$(ratio "$q_ec" "$o_ec")" "$(ratio "$s_ec" "$o_ec")"
echo "ratio = whole-bundle verifications/s over openssl speed verify/s (target >= 0.8x)"
awk -v p="$p_ed" -v q="$q_ed" -v s="$s_ed" 'BEGIN { if (p > 0 && q > 0 && s > 0)
    printf "where the time goes (ed25519): %.0f us per bundle = %.0f us signature + %.0f us bundle parse + %.0f us rest (statement, policy)\n",
        1e6 / q, 1e6 / s, 1e6 / p, 1e6 / q - 1e6 / s - 1e6 / p }'
