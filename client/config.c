/* config.c - the client's config file, the environment, and NAME[:TAG|@DIGEST] references. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/digest.h"
#include "qd/err.h"
#include "registry.h"

static int set_field(char *dst, size_t cap, const char *v, const char *path, int line)
{
    size_t n = strlen(v);
    if (n >= cap)
        return qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s:%d: value too long", path, line);
    memcpy(dst, v, n + 1);
    return QD_OK;
}

int quant_config_load(quant_config *cfg)
{
    char path[1024], line[2048];
    const char *env;
    FILE *f;
    int rc = QD_OK, lineno = 0;

    memset(cfg, 0, sizeof(*cfg));
    if ((env = getenv("QUANT_CONFIG")) && *env)
        snprintf(path, sizeof(path), "%s", env);
    else if ((env = getenv("XDG_CONFIG_HOME")) && *env)
        snprintf(path, sizeof(path), "%s/quant/config", env);
    else if ((env = getenv("HOME")) && *env)
        snprintf(path, sizeof(path), "%s/.config/quant/config", env);
    else
        path[0] = 0;
    f = path[0] ? fopen(path, "r") : NULL;
    while (f && fgets(line, sizeof(line), f)) {
        char *p = line, *key, *val, *end;
        lineno++;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p || *p == '#')
            continue;
        key = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (*p)
            *p++ = 0;
        while (isspace((unsigned char)*p))
            p++;
        val = p;
        end = val + strlen(val);
        while (end > val && isspace((unsigned char)end[-1]))
            *--end = 0;
        if (!*val) {
            rc = qd_error_set(QD_EINVAL, QD_EC_CONFIG, "%s:%d: '%s' has no value", path, lineno, key);
            break;
        }
        if (!strcmp(key, "registry"))
            rc = set_field(cfg->registry, sizeof(cfg->registry), val, path, lineno);
        else if (!strcmp(key, "token"))
            rc = set_field(cfg->token, sizeof(cfg->token), val, path, lineno);
        else if (!strcmp(key, "policy"))
            rc = set_field(cfg->policy, sizeof(cfg->policy), val, path, lineno);
        else if (!strcmp(key, "cacert"))
            rc = set_field(cfg->cacert, sizeof(cfg->cacert), val, path, lineno);
        else
            rc = qd_error_set(QD_EINVAL, QD_EC_CONFIG,
                              "%s:%d: unknown key '%s' (known: registry, token, policy, cacert)", path, lineno, key);
        if (rc)
            break;
    }
    if (f)
        fclose(f);
    if (rc)
        return rc;
    if ((env = getenv("QUANT_REGISTRY")) && *env)
        snprintf(cfg->registry, sizeof(cfg->registry), "%s", env);
    if ((env = getenv("QUANT_TOKEN")) && *env)
        snprintf(cfg->token, sizeof(cfg->token), "%s", env);
    if ((env = getenv("QUANT_POLICY")) && *env)
        snprintf(cfg->policy, sizeof(cfg->policy), "%s", env);
    return QD_OK;
}

static int name_ok(const char *s, size_t n)
{
    /* OCI: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)* (checked loosely) */
    if (!n || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(islower(ch) || isdigit(ch) || ch == '.' || ch == '_' || ch == '-' || ch == '/'))
            return 0;
        if (ch == '/' && (i + 1 == n || !isalnum((unsigned char)s[i + 1]) || !isalnum((unsigned char)s[i - 1])))
            return 0;
    }
    return 1;
}

int image_ref_parse(image_ref *out, const char *s)
{
    const char *at = strchr(s, '@'), *slash = strrchr(s, '/'), *colon;
    size_t n;

    memset(out, 0, sizeof(*out));
    if (at) {
        qd_digest d;
        if (qd_digest_parse(&d, at + 1))
            return qd_error_prefix("reference %s", s);
        n = (size_t)(at - s);
        snprintf(out->ref, sizeof(out->ref), "%s", at + 1);
        out->by_digest = 1;
    } else {
        colon = strrchr(s, ':');
        if (colon && (!slash || colon > slash)) {
            const char *t = colon + 1;
            size_t tl = strlen(t);
            if (!tl || tl >= sizeof(out->ref) || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
                return qd_error_set(QD_EINVAL, QD_EC_INVALID, "reference %s: bad tag", s);
            for (size_t i = 0; i < tl; i++)
                if (!(isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
                    return qd_error_set(QD_EINVAL, QD_EC_INVALID, "reference %s: bad tag", s);
            memcpy(out->ref, t, tl + 1);
            n = (size_t)(colon - s);
        } else {
            snprintf(out->ref, sizeof(out->ref), "latest");
            n = strlen(s);
        }
    }
    if (n >= sizeof(out->name) || !name_ok(s, n))
        return qd_error_set(QD_EINVAL, QD_EC_INVALID,
                            "reference %s: the name must be lowercase letters, digits, '.', '_', '-' and '/'", s);
    memcpy(out->name, s, n);
    out->name[n] = 0;
    return QD_OK;
}

int registry_open(http_client **out, const quant_config *cfg)
{
    http_options o = {cfg->registry, cfg->token[0] ? cfg->token : NULL, cfg->cacert[0] ? cfg->cacert : NULL, 0};
    return http_open(out, &o);
}
