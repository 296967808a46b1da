/* registry.h - what push, pull and card share: the config file, the reference grammar, the HTTP client setup. */
#ifndef QUANT_REGISTRY_H
#define QUANT_REGISTRY_H

#include <stddef.h>

#include "http.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_MODEL_ARTIFACT "application/vnd.cncf.model.manifest.v1+json"
#define MT_MODEL_CONFIG "application/vnd.cncf.model.config.v1+json"
#define MT_MODEL_WEIGHT "application/vnd.cncf.model.weight.v1.raw"
#define MT_EMPTY "application/vnd.oci.empty.v1+json"
#define MT_BUNDLE "application/vnd.dev.sigstore.bundle.v0.3+json"
#define ANN_FILEPATH "org.cncf.model.filepath"

/* ~/.config/quant/config ($QUANT_CONFIG overrides the path): lines "key value"; '#' starts a comment. */
typedef struct quant_config {
    char registry[512];
    char token[256];
    char policy[1024];
    char cacert[1024];
} quant_config;

/* Read the config file (a missing file is an empty config), then the environment: QUANT_REGISTRY, QUANT_TOKEN,
 * QUANT_POLICY override it. @return QD_OK or QD_EINVAL (a malformed line, named in the message) */
int quant_config_load(quant_config *cfg);

/* NAME[:TAG|@DIGEST]: repository name (lowercase path components), and a tag or a digest (ref). */
typedef struct image_ref {
    char name[256];
    char ref[128]; /* tag or "sha256:..." ("latest" when none was given) */
    int by_digest;
} image_ref;

int image_ref_parse(image_ref *out, const char *s);

/* Open an HTTP client for the registry of cfg. */
int registry_open(http_client **out, const quant_config *cfg);

/* Shared by pull and card (cmd_pull.c). */
#include "qd/digest.h"
#include "qd/verify.h"
typedef struct layer {
    char name[256];
    char digest_str[QD_DIGEST_STR_LEN + 1];
    qd_digest digest;
    uint64_t size;
} layer;
/* GET a small body (at most max bytes) into out; with expect_digest its SHA-256 must match. */
int fetch_small(http_client *c, qd_buf *out, const char *path, const char *accept, const char *expect_digest,
                size_t max, const char *what);
/* The layers of an image manifest (digest, size, org.cncf.model.filepath). Free *out with qd_free. */
int parse_manifest(layer **out, size_t *n_out, const qd_buf *m);
/* Find a bundle among the manifest's referrers that verifies against the policy and the layers. When no bundle is
 * attached at all, *unsigned_out (if not NULL) is set to 1 (the error is QD_EBADSIG either way). */
int verify_referrers(qd_verified **out, int *unsigned_out, http_client *c, const image_ref *ref,
                     const char *man_digest, const qd_policy *pol, const layer *L, size_t n);

#endif
