/*
 * cmd_card.c - `quant card NAME[:TAG|@DIGEST] [--policy P]` or `quant card --bundle FILE [--policy P]`: a Markdown
 * model card rendered from the signed statement only (never from unsigned metadata): the artifact's files and
 * digests, the signers, then the predicate: source, recipe, calibration, converter, target hardware, validation
 * (verdict, metrics, slices, worst tensors) for a variant; origin, license, precision for a checkpoint; any other
 * field as a nested list.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/verify.h"
#include "registry.h"

static const char card_usage[] =
    "usage: quant card NAME[:TAG|@DIGEST] [--policy POLICY] [--registry URL] [--cacert FILE] [--json]\n"
    "       quant card --bundle FILE --policy POLICY [--json]\n"
    "  Renders a Markdown model card from the statement of a bundle that verifies against the trust policy.\n"
    "  --json: the verified statement and its signers instead (schemas/client.schema.json#/$defs/card).\n";

static void md_value(FILE *o, json_t *v, int depth);

static void md_scalar(FILE *o, json_t *v)
{
    if (json_is_string(v))
        fprintf(o, "%s", json_string_value(v));
    else if (json_is_integer(v))
        fprintf(o, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        fprintf(o, "%.6g", json_real_value(v));
    else if (json_is_true(v))
        fprintf(o, "true");
    else if (json_is_false(v))
        fprintf(o, "false");
    else
        fprintf(o, "null");
}

static void md_value(FILE *o, json_t *v, int depth)
{
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, k, x) {
            fprintf(o, "%*s- **%s**:", depth * 2, "", k);
            if (json_is_object(x) || json_is_array(x)) {
                fprintf(o, "\n");
                md_value(o, x, depth + 1);
            } else {
                fprintf(o, " ");
                md_scalar(o, x);
                fprintf(o, "\n");
            }
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) {
            if (json_is_object(x) || json_is_array(x)) {
                fprintf(o, "%*s- item %zu\n", depth * 2, "", i + 1);
                md_value(o, x, depth + 1);
            } else {
                fprintf(o, "%*s- ", depth * 2, "");
                md_scalar(o, x);
                fprintf(o, "\n");
            }
        }
    } else {
        fprintf(o, "%*s- ", depth * 2, "");
        md_scalar(o, v);
        fprintf(o, "\n");
    }
}

static const struct {
    const char *key, *title;
} sections[] = {
    {"source", "Source"},           {"origin", "Origin"},       {"license", "License"},
    {"precision", "Precision"},     {"recipe", "Recipe"},       {"calibration", "Calibration"},
    {"converter", "Converter"},     {"target_hardware", "Target hardware"},
    {"validation", "Validation"},   {"files", "Files"},         {"created_at", "Created"},
    {"builder", "Builder"},
};

static int render(FILE *o, const char *title, const char *man_digest, const qd_verified *v)
{
    size_t len;
    const uint8_t *payload = qd_verified_payload(v, &len);
    json_t *st = json_loadb((const char *)payload, len, 0, NULL), *pred, *subs, *x;
    const char *k;
    size_t i;

    if (!st)
        return qd_error_set(QD_ECORRUPT, QD_EC_VERIFY, "the verified statement is not JSON");
    pred = json_object_get(st, "predicate");
    subs = json_object_get(st, "subject");
    fprintf(o, "# Model card: %s\n\n", title);
    fprintf(o, "Rendered from a signed in-toto statement (`%s`) that verified against the trust policy.\n\n",
            qd_verified_predicate_type(v));
    fprintf(o, "## Artifact\n\n");
    if (man_digest)
        fprintf(o, "- manifest: `%s`\n", man_digest);
    for (i = 0; i < qd_verified_key_count(v); i++)
        fprintf(o, "- signed by key `%s`\n", qd_verified_key_id(v, i));
    fprintf(o, "\n| file | sha256 |\n|------|--------|\n");
    json_array_foreach(subs, i, x) {
        fprintf(o, "| %s | `%s` |\n", json_string_value(json_object_get(x, "name")),
                json_string_value(json_object_get(json_object_get(x, "digest"), "sha256")));
    }
    json_t *val = json_object_get(pred, "validation");
    if (json_is_object(val)) {
        const char *verdict = json_string_value(json_object_get(val, "verdict"));
        fprintf(o, "\n**Validation verdict: %s**\n", verdict ? verdict : "none");
    }
    for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        x = json_object_get(pred, sections[i].key);
        if (!x)
            continue;
        fprintf(o, "\n## %s\n\n", sections[i].title);
        md_value(o, x, 0);
    }
    json_object_foreach(pred, k, x) {
        int known = 0;
        for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
            known |= !strcmp(k, sections[i].key);
        if (known)
            continue;
        fprintf(o, "\n## %s\n\n", k);
        md_value(o, x, 0);
    }
    json_decref(st);
    return QD_OK;
}

/* --json: the verified statement with who signed it, instead of Markdown. */
static int render_json(const char *title, const char *man_digest, const qd_verified *v)
{
    size_t len;
    const uint8_t *payload = qd_verified_payload(v, &len);
    json_t *st = json_loadb((const char *)payload, len, 0, NULL), *o, *keys;
    char *text;

    if (!st)
        return qd_error_set(QD_ECORRUPT, QD_EC_VERIFY, "the verified statement is not JSON");
    keys = json_array();
    for (size_t i = 0; i < qd_verified_key_count(v); i++)
        json_array_append_new(keys, json_string(qd_verified_key_id(v, i)));
    o = json_pack("{s:s,s:s?,s:s,s:o,s:o}", "title", title, "manifest", man_digest, "predicate_type",
                  qd_verified_predicate_type(v), "signed_by", keys, "statement", st);
    if (!o)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
    if (!man_digest)
        json_object_set_new(o, "manifest", json_null());
    text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    if (!text)
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
    printf("%s\n", text);
    free(text); /* jansson */
    return QD_OK;
}

int cmd_card(int argc, char **argv)
{
    static const struct option opts[] = {{"policy", required_argument, NULL, 'P'},
                                         {"bundle", required_argument, NULL, 'b'},
                                         {"registry", required_argument, NULL, 'r'},
                                         {"cacert", required_argument, NULL, 'C'},
                                         {"json", no_argument, NULL, 'J'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *bundle = NULL;
    quant_config cfg;
    image_ref ref;
    qd_policy *pol = NULL;
    qd_verified *ver = NULL;
    qd_envelope *env = NULL;
    http_client *c = NULL;
    layer *L = NULL;
    size_t n = 0;
    qd_buf man;
    char path[1024], man_digest[QD_DIGEST_STR_LEN + 1];
    int rc, ch, ex = EXIT_OK_, json = 0;

    qd_buf_init(&man, 4u << 20);
    if ((rc = quant_config_load(&cfg)))
        return qd_fail(rc, "card");
    optind = 1;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'P': snprintf(cfg.policy, sizeof(cfg.policy), "%s", optarg); break;
        case 'b': bundle = optarg; break;
        case 'J': json = 1; break;
        case 'r': snprintf(cfg.registry, sizeof(cfg.registry), "%s", optarg); break;
        case 'C': snprintf(cfg.cacert, sizeof(cfg.cacert), "%s", optarg); break;
        case 'h': fputs(card_usage, stdout); return EXIT_OK_;
        default: fputs(card_usage, stderr); return EXIT_USAGE;
        }
    }
    if ((bundle ? argc - optind != 0 : argc - optind != 1) || !cfg.policy[0]) {
        fputs(card_usage, stderr);
        return EXIT_USAGE;
    }
    if ((rc = qd_policy_load(&pol, cfg.policy)))
        goto cleanup;
    if (bundle) {
        qd_verify_options vo = QD_VERIFY_OPTIONS_INIT;
        qd_verify_failure why;
        vo.skip_subjects = true;
        memset(&why, 0, sizeof(why));
        if ((rc = qd_envelope_load(&env, bundle, qd_policy_max_payload(pol))))
            goto cleanup;
        if ((rc = qd_verify(&ver, &why, pol, env, NULL, 0, &vo))) {
            if (why.reason[0])
                qd_error_set(rc, QD_EC_VERIFY, "%s: %s", bundle, why.reason);
            goto cleanup;
        }
        rc = json ? render_json(bundle, NULL, ver) : render(stdout, bundle, NULL, ver);
        goto cleanup;
    }
    if ((rc = image_ref_parse(&ref, argv[optind])) || (rc = registry_open(&c, &cfg)))
        goto cleanup;
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", ref.name, ref.ref);
    if ((rc = fetch_small(c, &man, path, MT_MANIFEST, ref.by_digest ? ref.ref : NULL, 4u << 20, "manifest")))
        goto cleanup;
    {
        qd_digest d;
        qd_sha256_buf(&d, man.ptr, man.len);
        qd_digest_format(man_digest, &d);
    }
    if ((rc = parse_manifest(&L, &n, &man)) || (rc = verify_referrers(&ver, NULL, c, &ref, man_digest, pol, L, n)))
        goto cleanup;
    {
        char title[400];
        snprintf(title, sizeof(title), "%s:%s", ref.name, ref.by_digest ? man_digest : ref.ref);
        rc = json ? render_json(title, man_digest, ver) : render(stdout, title, man_digest, ver);
    }
cleanup:
    if (rc)
        ex = qd_fail(rc, "card");
    qd_verified_free(ver);
    qd_envelope_free(env);
    qd_policy_free(pol);
    qd_buf_dispose(&man);
    qd_free(L);
    http_close(c);
    return ex;
}
