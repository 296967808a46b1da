// sigstore_verify.js - verify a quantd bundle with @sigstore/verify, a verifier we did not write.
//
//   node sigstore_verify.js BUNDLE KEY.pub [FILE...]
//
// The trusted material is only the public key, keyed by a hint this script computes itself with Node's crypto (hex
// SHA-256 of the SubjectPublicKeyInfo PEM text, as the OpenSSF model-signing verifier computes it), with no
// transparency log, CT log or timestamp authority required. When FILEs are given, each statement subject must match a file by base name and SHA-256.
// Exit 0 verified, 1 rejected (the reason on stderr), 2 usage.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');

const [bundlePath, keyPath, ...files] = process.argv.slice(2);
if (!bundlePath || !keyPath) {
  console.error('usage: node sigstore_verify.js BUNDLE KEY.pub [FILE...]');
  process.exit(2);
}
try {
  const key = crypto.createPublicKey(fs.readFileSync(keyPath, 'utf8'));
  const der = key.export({ type: 'spki', format: 'der' });
  const hint = crypto.createHash('sha256').update(key.export({ type: 'spki', format: 'pem' })).digest('hex');
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  const trust = toTrustMaterial(
    { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] },
    { [hint]: { rawBytes: der } }
  );
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, tsaThreshold: 0 });
  verifier.verify(toSignedEntity(bundle));
  if (files.length) {
    const st = JSON.parse(Buffer.from(bundle.content.dsseEnvelope.payload).toString('utf8'));
    for (const f of files) {
      const name = path.basename(f);
      const want = crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
      const s = st.subject.find((x) => x.name === name);
      if (!s) throw new Error(`no subject named ${name}`);
      if (s.digest.sha256 !== want) throw new Error(`subject ${name}: digest mismatch`);
    }
  }
  console.log(`ok: verified by @sigstore/verify with key ${hint}`);
} catch (e) {
  console.error(`rejected: ${e.code || e.name}: ${e.message}`);
  process.exit(1);
}
