/*
 * statement.c - in-toto Statement v1 writers: ours (any predicate) and the OpenSSF model-signing v1.0 layout.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "qd/alloc.h"
#include "qd/err.h"
#include "qd/verify.h"
#include "verify_int.h"

static int dump_compact(qd_buf *out, json_t *j)
{
    int rc = qd_verify__json_dump(out, j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return rc;
}

static json_t *subject_json(const char *name, const qd_digest *d)
{
    char hex[2 * QD_DIGEST_LEN + 1];
    json_t *s = json_object(), *dig = json_object();
    if (!s || !dig || json_object_set_new(dig, "sha256", json_string(qd_digest_hex(hex, d))) ||
        json_object_set_new(s, "name", json_string(name)) || json_object_set_new(s, "digest", dig)) {
        json_decref(s);
        return NULL;
    }
    return s;
}

static int check_names(const qd_subject *subjects, size_t n)
{
    if (!n)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "a statement needs at least one subject");
    for (size_t i = 0; i < n; i++) {
        if (!subjects[i].name || !subjects[i].name[0])
            return qd_error_set(QD_EINVAL, QD_EC_INVALID, "subject %zu has an empty name", i);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(subjects[i].name, subjects[j].name))
                return qd_error_set(QD_EINVAL, QD_EC_INVALID, "two subjects are named '%.200s'", subjects[i].name);
    }
    return QD_OK;
}

static json_t *statement_json(json_t *subjects, const char *predicate_type, json_t *predicate)
{
    json_t *st = json_object();
    if (!st || json_object_set_new(st, "_type", json_string(QD_STATEMENT_TYPE)) ||
        json_object_set_new(st, "subject", subjects) ||
        json_object_set_new(st, "predicateType", json_string(predicate_type)) ||
        json_object_set_new(st, "predicate", predicate)) {
        json_decref(st);
        return NULL;
    }
    return st;
}

int qd_statement_build(qd_buf *out, const qd_subject *subjects, size_t n, const char *predicate_type,
                       const char *predicate_json)
{
    json_error_t jerr;
    json_t *pred, *subs, *st;
    int rc;

    if ((rc = check_names(subjects, n)) < 0)
        return rc;
    if (!predicate_type || !strchr(predicate_type, ':'))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate type '%.100s' is not a URI",
                            predicate_type ? predicate_type : "");
    pred = json_loads(predicate_json ? predicate_json : "{}", JSON_REJECT_DUPLICATES, &jerr);
    if (!pred)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate: invalid JSON at line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    if (!json_is_object(pred)) {
        json_decref(pred);
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "predicate: not a JSON object");
    }
    if (!(subs = json_array())) {
        json_decref(pred);
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(subs, subject_json(subjects[i].name, &subjects[i].digest))) {
            json_decref(subs);
            json_decref(pred);
            return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        }
    }
    if (!(st = statement_json(subs, predicate_type, pred)))
        return qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
    return dump_compact(out, st);
}

static int by_name(const void *a, const void *b)
{
    const qd_subject *x = *(const qd_subject *const *)a, *y = *(const qd_subject *const *)b;
    return strcmp(x->name, y->name);
}

int qd_statement_build_model_signing(qd_buf *out, const char *model_name, const qd_subject *files, size_t n)
{
    const qd_subject **sorted = NULL;
    json_t *pred = NULL, *ser, *res, *subs, *st;
    qd_sha256 *h = NULL;
    qd_digest root;
    int rc;

    if ((rc = check_names(files, n)) < 0)
        return rc;
    if (!model_name || !*model_name)
        return qd_error_set(QD_EINVAL, QD_EC_INVALID, "model-signing statement: empty model name");
    if (!(sorted = qd_mallocarray(n, sizeof(*sorted))))
        return QD_ENOMEM;
    for (size_t i = 0; i < n; i++)
        sorted[i] = &files[i];
    qsort(sorted, n, sizeof(*sorted), by_name);
    if ((rc = qd_sha256_new(&h)) < 0)
        goto done;
    rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
    pred = json_object();
    ser = json_pack("{s:s, s:s, s:b, s:[]}", "method", "files", "hash_type", "sha256", "allow_symlinks", 0,
                    "ignore_paths");
    res = json_array();
    if (!pred || json_object_set_new(pred, "serialization", ser) || json_object_set_new(pred, "resources", res))
        goto done;
    for (size_t i = 0; i < n; i++) {
        char hex[2 * QD_DIGEST_LEN + 1];
        if ((rc = qd_sha256_update(h, sorted[i]->digest.bytes, QD_DIGEST_LEN)) < 0)
            goto done;
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        if (json_array_append_new(res, json_pack("{s:s, s:s, s:s}", "name", sorted[i]->name, "algorithm", "sha256",
                                                 "digest", qd_digest_hex(hex, &sorted[i]->digest))))
            goto done;
    }
    if ((rc = qd_sha256_final(h, &root)) < 0)
        goto done;
    subs = json_array();
    if (!subs || json_array_append_new(subs, subject_json(model_name, &root))) {
        json_decref(subs);
        rc = qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
        goto done;
    }
    st = statement_json(subs, QD_PREDICATE_MODEL_SIGNING, pred);
    pred = NULL;
    rc = st ? dump_compact(out, st) : qd_error_set(QD_ENOMEM, QD_EC_NOMEM, "out of memory");
done:
    json_decref(pred);
    qd_sha256_free(h);
    qd_free(sorted);
    return rc;
}
