#!/usr/bin/env python3
"""model_signing_check.py - check a bundle the way the OpenSSF model-signing verifier does for EC keys, using
python3-cryptography (a library we did not write), written from model-signing's published behaviour:

  model_signing_check.py BUNDLE KEY.pub MODEL_DIR

1. the bundle's publicKey.hint must equal hex SHA-256 of the key's SubjectPublicKeyInfo PEM (as cryptography
   writes it), 2. the ECDSA-SHA256 signature[0] must verify over DSSE PAE(payloadType, payload), 3. the payload
   is an in-toto Statement v1 with predicateType https://model_signing/signature/v1.0 and one subject, whose sha256
   is the SHA-256 over the resource digests in order, 4. serialization method "files" with hash_type and
   allow_symlinks, 5. the files of MODEL_DIR (recursively, by POSIX relative path), hashed here, equal the resources.
Exit 0 accepted, 1 rejected (reason on stdout).
"""
import base64
import hashlib
import json
import os
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def pae(payload_type: bytes, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)


def main():
    bundle_path, key_path, model_dir = sys.argv[1:4]
    b = json.load(open(bundle_path))
    key = serialization.load_pem_public_key(open(key_path, "rb").read())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return "rejected: only elliptic curve keys are supported"
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    hint = b["verificationMaterial"]["publicKey"]["hint"]
    if hint != hashlib.sha256(pem).hexdigest():
        return "rejected: key mismatch: hint is not sha256 of the SPKI PEM"
    if b["mediaType"] != "application/vnd.dev.sigstore.bundle.v0.3+json":
        return "rejected: media type"
    env = b["dsseEnvelope"]
    payload = base64.b64decode(env["payload"])
    try:
        key.verify(base64.b64decode(env["signatures"][0]["sig"]), pae(env["payloadType"].encode(), payload),
                   ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "rejected: signature"
    if env["payloadType"] != "application/vnd.in-toto+json":
        return "rejected: payload type"
    st = json.loads(payload)
    if st["_type"] != "https://in-toto.io/Statement/v1":
        return "rejected: statement type"
    if st["predicateType"] != "https://model_signing/signature/v1.0":
        return "rejected: predicate type"
    if len(st["subject"]) != 1:
        return "rejected: expected one subject"
    ser = st["predicate"]["serialization"]
    if ser["method"] != "files" or ser["hash_type"] != "sha256" or "allow_symlinks" not in ser:
        return "rejected: serialization"
    root = hashlib.sha256()
    signed = {}
    for r in st["predicate"]["resources"]:
        if r["algorithm"] != "sha256":
            return "rejected: algorithm"
        root.update(bytes.fromhex(r["digest"]))
        signed[r["name"]] = r["digest"]
    if root.hexdigest() != st["subject"][0]["digest"]["sha256"]:
        return "rejected: manifest is inconsistent (root digest)"
    names = [r["name"] for r in st["predicate"]["resources"]]
    if names != sorted(names):
        return "rejected: resources not in name order"
    local = {}
    for top, _, files in os.walk(model_dir):
        for f in files:
            path = os.path.join(top, f)
            local[os.path.relpath(path, model_dir).replace(os.sep, "/")] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if local != signed:
        return "rejected: model files do not match the signed manifest"
    return None


if __name__ == "__main__":
    why = main()
    print(why or "ok: accepted")
    sys.exit(1 if why else 0)
