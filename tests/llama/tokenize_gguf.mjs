// tokenize_gguf.mjs MODEL.gguf TEXT [SPECIAL_TEXT] - load a GGUF in llama.cpp (node-llama-cpp's prebuilt binary,
// CPU only, no download or build), tokenize TEXT (plain, no BOS) and SPECIAL_TEXT (special tokens parsed), and
// print one JSON line:
//   {"vocab": n, "bos": id, "eos": id, "tokens": [...], "text": detokenized TEXT, "special": [...]}
// Run it in its own process: llama.cpp aborts the whole process on some malformed files.
import process from "node:process";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [modelPath, text, specialText] = process.argv.slice(2);
if (!modelPath || text == null) {
    console.error("usage: node tokenize_gguf.mjs MODEL.gguf TEXT [SPECIAL_TEXT]");
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
const tokens = model.tokenize(text, false);
const special = specialText != null ? model.tokenize(specialText, true) : [];
// llama.cpp's own log lines say what it loaded, but the logger may not have delivered them yet: then ask the model
// (its vocabulary type, and the token list it read from the file).
const mVocab = logs.join("\n").match(/n_vocab\s*=\s*(\d+)/);
const mType = logs.join("\n").match(/vocab type\s*=\s*(\S+)/);
const tokensKv = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens;
console.log(JSON.stringify({
    vocab: mVocab ? Number(mVocab[1]) : (tokensKv ? tokensKv.length : null),
    vocab_type: mType ? mType[1] : String(model.vocabularyType).toUpperCase(),
    bos: model.tokens.bos,
    eos: model.tokens.eos,
    tokens,
    text: model.detokenize(tokens),
    special,
}));
await model.dispose();
await llama.dispose();
