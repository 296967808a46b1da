// probs.mjs - llama.cpp (node-llama-cpp 3.21.1, prebuilt binaries, CPU) as an oracle for quantd's runtime.
//
//   node probs.mjs MODEL.gguf TOKENS [GREEDY_N]
//
// TOKENS is a comma-separated list of token ids (the first is usually BOS = 1). Prints one JSON object:
//   {"vocab": V, "tokens": [...], "probs": [[p_0 .. p_V-1] after each input token], "greedy": [GREEDY_N ids]}
// probs[i] is llama.cpp's next-token distribution after tokens[0..i], from sequence.controlledEvaluate with
// generateNext: {probabilities: true} and neutral sampling options (temperature 1, no top-k/top-p/min-p), i.e. the
// softmax of the logits. greedy continues from the end of TOKENS by argmax of those probabilities.
//
// The model is loaded in a CHILD process (llama.cpp aborts the whole process on some bad models, e.g. a vocabulary
// without a newline token); the parent relays the child's answer or reports its exit. No network: getLlama with
// build "never" and skipDownload, so only the prebuilt binaries in node_modules are used.
import {fork} from "node:child_process";
import {fileURLToPath} from "node:url";

const neutral = {temperature: 1, topK: 0, topP: 1, minP: 0};

async function child(modelPath, tokens, greedyN) {
    const {getLlama, LlamaLogLevel} = await import("node-llama-cpp");
    const llama = await getLlama({build: "never", skipDownload: true, gpu: false, logLevel: LlamaLogLevel.error});
    const model = await llama.loadModel({modelPath, gpuLayers: 0});
    let vocab = 0; /* the probabilities map covers the whole vocabulary: size rows by it */
    /* f32 KV cache and no flash attention: the plain f32 path that quantd's runtime computes (llama.cpp defaults to an
     * f16 cache; QD_ORACLE_KV=f16 selects it, to compare with `quant run --kv f16`) */
    const kv = (process.env.QD_ORACLE_KV || "f32").toUpperCase();
    const context = await model.createContext({
        contextSize: Math.max(64, tokens.length + greedyN + 1), threads: 2, flashAttention: false,
        experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv
    });
    const sequence = context.getSequence();
    const dense = (map) => {
        if (!vocab) vocab = map.size;
        const row = new Array(vocab).fill(0);
        for (const [tok, p] of map) row[tok] = p;
        return row;
    };
    const input = tokens.map((t) => [t, {generateNext: {probabilities: true, options: neutral}}]);
    const out = await sequence.controlledEvaluate(input);
    const probs = out.map((o, i) => {
        if (!o || !o.next || !o.next.probabilities) throw new Error(`no probabilities at position ${i}`);
        return dense(o.next.probabilities);
    });
    const argmax = (row) => row.reduce((b, p, i) => (p > row[b] ? i : b), 0);
    const greedy = [];
    let last = probs[probs.length - 1];
    for (let i = 0; i < greedyN; i++) {
        const t = argmax(last);
        greedy.push(t);
        if (i + 1 === greedyN) break;
        const [o] = await sequence.controlledEvaluate([[t, {generateNext: {probabilities: true, options: neutral}}]]);
        last = dense(o.next.probabilities);
    }
    await context.dispose();
    await model.dispose();
    await llama.dispose();
    return {vocab, tokens, probs, greedy};
}

if (process.env.QD_ORACLE_CHILD === "1") {
    process.on("message", async ({modelPath, tokens, greedyN}) => {
        try {
            const r = await child(modelPath, tokens, greedyN);
            process.send({ok: true, r}, () => process.exit(0));
        } catch (e) {
            process.send({ok: false, error: String(e && e.stack || e)}, () => process.exit(1));
        }
    });
} else {
    const [modelPath, tokArg, g] = process.argv.slice(2);
    if (!modelPath || !tokArg) {
        console.error("usage: node probs.mjs MODEL.gguf TOKENS(comma-separated ids) [GREEDY_N]");
        process.exit(2);
    }
    const tokens = tokArg.split(",").map((s) => Number.parseInt(s, 10));
    if (tokens.some((t) => !Number.isInteger(t) || t < 0)) {
        console.error("probs.mjs: TOKENS must be non-negative integers");
        process.exit(2);
    }
    const c = fork(fileURLToPath(import.meta.url), [], {env: {...process.env, QD_ORACLE_CHILD: "1"}});
    let answered = false;
    c.on("message", (m) => {
        answered = true;
        if (m.ok) process.stdout.write(JSON.stringify(m.r) + "\n");
        else console.error("probs.mjs: llama.cpp child failed: " + m.error);
        process.exitCode = m.ok ? 0 : 1;
    });
    c.on("exit", (code, sig) => {
        if (!answered) {
            console.error(`probs.mjs: llama.cpp child exited (${sig || code}) without an answer`);
            process.exitCode = 1;
        }
    });
    c.send({modelPath, tokens, greedyN: Number.parseInt(g || "0", 10)});
}
