/*
 * fuzz_replog.c - the parsers of the signed log that read what a remote log or mirror serves: signed notes
 * (checkpoints, timestamps), checkpoint bodies, note verifier keys, armored SSH signatures, and Merkle proof
 * verification with arbitrary sizes and proofs. Oracles: nothing verifies under a key generated in this process
 * after the inputs were written; a checkpoint that parses formats back to text that parses to the same values.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qd/qd.h"
#include "qd/replog.h"

#include "fuzz.h"

static qd_key *key;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char *z, name[128];
    size_t tl;
    qd_checkpoint cp, cp2;
    qd_buf b = QD_BUF_INIT(0);
    qd_key *vk = NULL;
    qd_timestamp ts;
    qd_fresh_verdict v;
    uint8_t root[QD_HASH_LEN] = {0};

    if (!key && qd_key_generate(&key, QD_KEY_ED25519) < 0)
        abort();
    if (qd_note_verify(&tl, text, size, "example.test/log", key) == QD_OK)
        abort();
    if (qd_sshsig_verify(text, size, key, "git", "x", 1) == QD_OK)
        abort();
    if (qd_fresh_verify(&ts, &v, text, size, "example.test/log", key, "/nonexistent/qd-fuzz-state", 1) == QD_OK)
        abort();
    if (qd_checkpoint_parse(&cp, text, size) == QD_OK) {
        if (qd_checkpoint_format(&b, &cp) == QD_OK) {
            if (qd_checkpoint_parse(&cp2, b.ptr, b.len) != QD_OK || strcmp(cp.origin, cp2.origin) != 0 ||
                cp.size != cp2.size || memcmp(cp.root, cp2.root, QD_HASH_LEN) != 0)
                abort();
        }
    }
    if ((z = malloc(size + 1)) != NULL) {
        memcpy(z, data, size);
        z[size] = 0;
        if (qd_note_verifier_parse(&vk, name, sizeof(name), z) == QD_OK)
            qd_key_free(vk);
        free(z);
    }
    if (size >= 16) {
        uint64_t a, n;
        memcpy(&a, data, 8);
        memcpy(&n, data + 8, 8);
        (void)qd_merkle_verify_inclusion(root, a % 4096, n % 4096, data + 16, (size - 16) / QD_HASH_LEN, root);
        (void)qd_merkle_verify_consistency(a % 4096, n % 4096, data + 16, (size - 16) / QD_HASH_LEN, root, root);
        (void)qd_merkle_verify_inclusion(root, a, n, data + 16, (size - 16) / QD_HASH_LEN, root);
        (void)qd_merkle_verify_consistency(a, n, data + 16, (size - 16) / QD_HASH_LEN, root, root);
    }
    qd_buf_dispose(&b);
    return 0;
}
