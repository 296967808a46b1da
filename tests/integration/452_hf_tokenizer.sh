#!/usr/bin/env bash
# 452_hf_tokenizer.sh - a safetensors checkpoint with a Hugging Face tokenizer.json becomes a GGUF whose tokenizer
# llama.cpp itself loads and uses (node-llama-cpp 3.21.1's prebuilt binary, CPU only, never downloading).
#
# gen_ckpt writes a llama-shaped safetensors model with a byte-level BPE tokenizer.json (Llama-3 layout: 256 byte
# tokens, trained merges, 3 special tokens, the rest of the 320 ids undefined) and tokenizer_config.json;
# `quant quantize --type F16` converts the tokenizer (gpt2 / llama-bpe, padded to 320 with [PADn]). In a child
# process llama.cpp loads the file and tokenizes text; we check the vocabulary size, BOS/EOS, the special tokens,
# the detokenized round trip, and that the token ids equal a plain-Python BPE over the same tokenizer.json (the
# Llama-3 split regex on ASCII text, byte-level alphabet, merges by rank, whole-word lookup first as ignore_merges
# says). Then llama.cpp greedy-decodes 8 tokens from BOS.
# Then the two SentencePiece forms (a Llama-2 style tokenizer.json: BPE with byte_fallback; a tokenizer.model
# protobuf), written by a Python helper over the same weights: llama.cpp must load each as an SPM vocabulary of
# 320 tokens with BOS 1 / EOS 2 and round-trip a text with a newline and bytes outside the vocabulary.
# Skips (77) without node >= 20 or tests/llama/node_modules.
set -u
ROOT=${QD_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
QUANT=${QUANT:-$ROOT/build/release/quant}
TOOLS=${QD_TOOLS:-$ROOT/build/release/tools}
command -v node >/dev/null || { echo "skip: node is not installed"; exit 77; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || { echo "skip: node-llama-cpp 3.21.1 needs node >= 20 (have $(node --version))"; exit 77; }
[ -d "$ROOT/tests/llama/node_modules/node-llama-cpp" ] || { echo "skip: tests/llama/node_modules is absent (make deps)"; exit 77; }
export NODE_LLAMA_CPP_SKIP_DOWNLOAD=true

work=$(mktemp -d "${TMPDIR:-/tmp}/qd452.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$TOOLS/gen_ckpt" --format safetensors --vocab 320 --dim 64 --layers 2 --tokenizer --out "$work/model.safetensors" ||
    { echo "FAIL: gen_ckpt"; exit 1; }
"$QUANT" quantize --in "$work/model.safetensors" --type F16 --out "$work/m.gguf" -t 2 >"$work/q.log" 2>&1 ||
    { echo "FAIL: quant quantize:"; cat "$work/q.log"; exit 1; }
"$QUANT" inspect --json "$work/m.gguf" >"$work/inspect.json" || { echo "FAIL: quant inspect"; exit 1; }

text="Hello world! The little girl's mother said: 1234 times,
a village near the forest."
special="<|begin_of_text|>Hi<|eot_id|>"
if ! timeout 300 node "$ROOT/tests/llama/tokenize_gguf.mjs" "$work/m.gguf" "$text" "$special" >"$work/t.out" 2>"$work/t.err"; then
    echo "FAIL: llama.cpp could not load the file or tokenize:"; tail -n 20 "$work/t.err"; exit 1
fi
echo "llama.cpp: $(tail -n 1 "$work/t.out")"
python3 - "$work/model.safetensors" "$work/t.out" "$work/inspect.json" "$text" <<'PY' || exit 1
import json, os, re, sys
st, out, insp, text = sys.argv[1:5]
d = os.path.dirname(st)
tj = json.load(open(os.path.join(d, "tokenizer.json")))
got = json.loads(open(out).read().strip().splitlines()[-1])
kv = json.load(open(insp))
vocab = tj["model"]["vocab"]
added = {a["content"]: a["id"] for a in tj["added_tokens"]}
ranks = {tuple(m.split(" ")): i for i, m in enumerate(tj["model"]["merges"])}
# GPT-2 byte-level alphabet
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
b2u = {b: chr(c) for b, c in zip(bs, cs)}
# the Llama-3 split regex with \p{L} / \p{N} narrowed to ASCII (the text is ASCII)
pat = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]{1,3}| ?[^\sA-Za-z0-9]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
def bpe(word):
    if word in vocab:
        return [vocab[word]]
    parts = list(word)
    while len(parts) > 1:
        best = min(range(len(parts) - 1), key=lambda i: ranks.get((parts[i], parts[i + 1]), 1 << 30))
        if (parts[best], parts[best + 1]) not in ranks:
            break
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return [vocab[p] for p in parts]
want = []
for w in pat.findall(text):
    want += bpe("".join(b2u[b] for b in w.encode()))
fails = []
if got["vocab"] != 320: fails.append("vocab %r != 320" % got["vocab"])
if kv["hparams"]["n_vocab"] != 320: fails.append("quant inspect n_vocab %r" % kv["hparams"]["n_vocab"])
if got["bos"] != added["<|begin_of_text|>"]: fails.append("bos %r" % got["bos"])
if got["eos"] != added["<|end_of_text|>"]: fails.append("eos %r" % got["eos"])
if got["tokens"] != want: fails.append("tokens %r != reference %r" % (got["tokens"], want))
if got["text"] != text: fails.append("detokenized %r" % got["text"])
sp = [added["<|begin_of_text|>"], vocab["H"], vocab["i"], added["<|eot_id|>"]]
if got["special"] != sp: fails.append("special %r != %r" % (got["special"], sp))
if fails:
    print("FAIL: " + "; ".join(fails)); sys.exit(1)
print("ok   %d tokens, ids equal the Python BPE reference, round trip exact, bos %d eos %d, vocab %d (%s)"
      % (len(want), got["bos"], got["eos"], got["vocab"], got["vocab_type"]))
PY
if ! timeout 300 node "$ROOT/tests/llama/load_gguf.mjs" "$work/m.gguf" 8 >"$work/n.out" 2>"$work/n.err"; then
    echo "FAIL: llama.cpp could not decode:"; tail -n 20 "$work/n.err"; exit 1
fi
tail -n 1 "$work/n.out" | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert len(j["tokens"]) == 8 and all(0 <= t < 320 for t in j["tokens"]), j
print("ok   greedy decode from BOS:", j["tokens"])' || { echo "FAIL: decode result $(cat "$work/n.out")"; exit 1; }

cat >"$work/mk_spm.py" <<'PY'
import json, os, shutil, struct, sys
src, kind, out = sys.argv[1:4]   # src: folder with model.safetensors + config.json; kind: json | model
os.makedirs(out, exist_ok=True)
for f in ("model.safetensors", "config.json"):
    shutil.copy(os.path.join(src, f), out)
words = ["\u2581", "\u2581t", "he", "\u2581the", "\u2581a", "in", "er", "\u2581w", "or", "ld", "\u2581wor", "\u2581world",
         "el", "lo", "\u2581H", "ll", "\u2581He", "\u2581Hel", "\u2581Hell", "\u2581Hello"]
letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["H", "!"]
pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
pieces += [("<0x%02X>" % b, 0.0, 6) for b in range(256)]
pieces += [(w, -float(i), 1) for i, w in enumerate(words + letters)]
if kind == "model":
    def varint(v):
        o = b""
        while True:
            c = v & 0x7f; v >>= 7
            o += bytes([c | (0x80 if v else 0)])
            if not v: return o
    pb = b""
    for p, s, t in pieces:
        pe = p.encode()
        m = b"\x0a" + varint(len(pe)) + pe + b"\x15" + struct.pack("<f", s) + b"\x18" + varint(t)
        pb += b"\x0a" + varint(len(m)) + m
    open(os.path.join(out, "tokenizer.model"), "wb").write(pb)
else:
    vocab = {p: i for i, (p, s, t) in enumerate(pieces)}
    merges = []
    for w in words:
        # any split of w into two vocabulary pieces whose join is w
        for k in range(1, len(w)):
            if w[:k] in vocab and w[k:] in vocab:
                merges.append(w[:k] + " " + w[k:]); break
    tj = {"added_tokens": [{"id": i, "content": p, "special": True} for i, p in enumerate(["<unk>", "<s>", "</s>"])],
          "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                         {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
          "pre_tokenizer": None,
          "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                             {"Sequence": {"id": "A", "type_id": 0}}]},
          "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                      {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
          "model": {"type": "BPE", "byte_fallback": True, "fuse_unk": True, "unk_token": "<unk>", "vocab": vocab,
                    "merges": merges}}
    json.dump(tj, open(os.path.join(out, "tokenizer.json"), "w"))
json.dump({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False},
          open(os.path.join(out, "tokenizer_config.json"), "w"))
PY
for kind in json model; do
    python3 "$work/mk_spm.py" "$work" "$kind" "$work/$kind" || { echo "FAIL: writing the $kind SentencePiece tokenizer"; exit 1; }
    "$QUANT" quantize --in "$work/$kind/model.safetensors" --type F16 --out "$work/$kind.gguf" -t 2 >"$work/q.log" 2>&1 ||
        { echo "FAIL: quant quantize ($kind):"; cat "$work/q.log"; exit 1; }
    stext="Hello world! The weather
is fine, QUANTD."
    if ! timeout 300 node "$ROOT/tests/llama/tokenize_gguf.mjs" "$work/$kind.gguf" "$stext" "<s>Hi</s>" >"$work/s.out" 2>"$work/s.err"; then
        echo "FAIL: llama.cpp could not load or tokenize the $kind SentencePiece file:"; tail -n 20 "$work/s.err"; exit 1
    fi
    tail -n 1 "$work/s.out" | python3 -c '
import json, sys
kind, text = sys.argv[1:3]
j = json.load(sys.stdin)
bad = []
if j["vocab"] != 320: bad.append("vocab %r" % j["vocab"])
if j["vocab_type"] != "SPM": bad.append("vocab type %r" % j["vocab_type"])
if (j["bos"], j["eos"]) != (1, 2): bad.append("bos/eos %r/%r" % (j["bos"], j["eos"]))
if j["text"] != text: bad.append("detokenized %r" % j["text"])
if not j["special"] or j["special"][0] != 1 or j["special"][-1] != 2: bad.append("special %r" % j["special"])
if bad: print("FAIL %s: %s" % (kind, "; ".join(bad))); sys.exit(1)
print("ok   SentencePiece from tokenizer.%s: vocab %d (SPM), %d tokens, round trip exact" % (kind, j["vocab"], len(j["tokens"])))
' "$kind" "$stext" || exit 1
done
