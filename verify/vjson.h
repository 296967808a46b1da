/* vjson.h - private to verify/: the strict cJSON reader of the verification path (vjson.c) and small accessors. */
#ifndef QD_VJSON_H
#define QD_VJSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

/* Memory for one parse tree (a bundle or a statement fits; a larger tree goes on in qd_malloc). */
typedef struct qd_vjson_arena {
    size_t used;
    _Alignas(16) uint8_t mem[24 * 1024];
} qd_vjson_arena;

/**
 * Parse a JSON text of the verification path (what names it in errors) into arena. Refuses what vjson.c lists:
 * bad UTF-8, control characters, \u0000, a byte-order mark, text after the value, a member name twice in one
 * object. Free *out with qd_vjson_free and the same arena. @return QD_OK, QD_EINVAL (with the reason) or QD_ENOMEM
 */
int qd_vjson_parse(cJSON **out, qd_vjson_arena *arena, const void *text, size_t len, const char *what);
void qd_vjson_free(cJSON *root, qd_vjson_arena *arena);

/* Member name of an object (case-sensitive), or NULL. */
static inline cJSON *vj_get(const cJSON *o, const char *name)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
}

/* The string of v, or NULL when v is not a string. (qd_vjson_parse leaves no NUL inside a string.) */
static inline const char *vj_str(const cJSON *v) { return cJSON_IsString(v) ? v->valuestring : NULL; }

static inline size_t vj_strlen(const cJSON *v) { return cJSON_IsString(v) ? strlen(v->valuestring) : 0; }

/* Elements of an array or members of an object. */
static inline size_t vj_size(const cJSON *v)
{
    size_t n = 0;
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        for (const cJSON *c = v->child; c; c = c->next)
            n++;
    return n;
}

#endif
