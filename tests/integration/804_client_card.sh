#!/usr/bin/env bash
# quant card: a Markdown model card from the verified statement of a pushed variant (recipe, calibration,
# converter, hardware, validation verdict and metrics, file digests), from the registry and from a bundle file;
# an untrusted signer gives no card (exit 4).
. "$(dirname "$0")/daemon_lib.sh"
. "$(dirname "$0")/client_lib.sh"
client_setup
start_daemon --auth=false
PRED="$(dirname "$0")/../../schemas/examples/valid/variant-v1.q4_k_m.json"
head -c 5000 /dev/urandom >"$T/model.gguf"
qrun 0 push org/card:q4 "$T/model.gguf" --sign "$T/good" --predicate-type https://quantd.dev/variant/v1 \
    --predicate "$PRED" --registry "$URL"
MD=$(sed 's/.*@//' "$T/out")
qrun 0 card org/card:q4 --registry "$URL" --policy "$T/policy.json"
cp "$T/out" "$T/card.md"
grep -q '^# Model card: org/card:q4' "$T/card.md" || fail "title: $(head -3 "$T/card.md")"
grep -q "manifest: \`$MD\`" "$T/card.md" || fail "manifest digest missing"
grep -q "| model.gguf | \`$(sha256sum "$T/model.gguf" | cut -d' ' -f1)\` |" "$T/card.md" || fail "file digest row"
for h in '## Recipe' '## Converter' '## Validation' '**Validation verdict: '; do
    grep -qF "$h" "$T/card.md" || fail "card lacks $h: $(cat "$T/card.md")"
done
# every value of the recipe's method appears as signed
M=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['recipe']['method'])" "$PRED")
grep -qF -- "- **method**: $M" "$T/card.md" || fail "recipe method $M missing"
# the same from the bundle file (the referrer's layer)
req GET "/v2/org/card/referrers/$MD"; RD=$(jq_py "j['manifests'][0]['digest']")
req GET "/v2/org/card/manifests/$RD" -H 'Accept: application/vnd.oci.image.manifest.v1+json'
BD=$(jq_py "j['layers'][0]['digest']")
req GET "/v2/org/card/blobs/$BD"; cp "$T/body" "$T/bundle.json"
qrun 0 card --bundle "$T/bundle.json" --policy "$T/policy.json"
grep -qF -- "- **method**: $M" "$T/out" || fail "card from the bundle file"
# a policy that does not trust the signer: no card
"$QUANT" policy new --trust "$T/other.pub" --out "$T/p2.json" >/dev/null || fail "policy new"
qrun 4 card org/card:q4 --registry "$URL" --policy "$T/p2.json"
[ -s "$T/out" ] && fail "a card was printed for an untrusted statement"
stop_daemon
echo ok
