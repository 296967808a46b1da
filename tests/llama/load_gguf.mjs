// load_gguf.mjs MODEL.gguf [N_TOKENS] - load a GGUF in llama.cpp (node-llama-cpp's prebuilt binary, CPU only, no
// download or build), greedy-decode N tokens (default 32) from BOS, and print one JSON line:
//   {"vocab": <n_vocab llama.cpp reports>, "tensors": <tensor count llama.cpp's loader reports>, "tokens": [...]}
// Run it in its own process: llama.cpp aborts the whole process on some malformed files.
import process from "node:process";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const modelPath = process.argv[2];
const nTokens = Number(process.argv[3] ?? 32);
if (!modelPath) {
    console.error("usage: node load_gguf.mjs MODEL.gguf [N_TOKENS]");
    process.exit(2);
}

const logs = [];
const llama = await getLlama({
    gpu: false,
    build: "never",
    usePrebuiltBinaries: true,
    skipDownload: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.info,
    logger: (level, message) => { logs.push(String(message)); if (process.env.QD_LLAMA_DEBUG) process.stderr.write(String(message) + "\n"); },
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0, useMmap: true });
const context = await model.createContext({ contextSize: 128, batchSize: 64, threads: 1 });
const sequence = context.getSequence();
const bos = model.tokens.bos;
if (bos == null)
    throw new Error("the model has no BOS token");

const out = [];
for await (const token of sequence.evaluate([bos], { temperature: 0 })) {
    out.push(token);
    if (out.length >= nTokens)
        break;
}

const text = logs.join("\n");
const mTensors = text.match(/loaded meta data with (\d+) key-value pairs and (\d+) tensors/);
const mVocab = text.match(/n_vocab\s*=\s*(\d+)/);
const tokensKv = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens;
const result = {
    vocab: mVocab ? Number(mVocab[1]) : (tokensKv ? tokensKv.length : null),
    vocab_from: mVocab ? "llama.cpp" : "gguf",
    tensors: mTensors ? Number(mTensors[2]) : Number(model.fileInfo.tensorCount),
    tensors_from: mTensors ? "llama.cpp" : "gguf",
    kv: mTensors ? Number(mTensors[1]) : null,
    tokens: out,
};
console.log(JSON.stringify(result));
await context.dispose();
await model.dispose();
await llama.dispose();
