/*
 * log.c - levelled logging; the sink decides where lines go.
 */
#include <stdarg.h>
#include <stdio.h>

#include "qd/log.h"

static qd_log_sink g_sink;
static void *g_sink_payload;
static int g_level = QD_LOG_WARN;

void qd_log_set_sink(qd_log_sink sink, void *payload)
{
    g_sink = sink;
    g_sink_payload = payload;
}

void qd_log_set_level(int level) { g_level = level; }
int qd_log_level_get(void) { return g_sink ? g_level : -1; }

const char *qd_log_level_name(int level)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    return (level >= 0 && level <= QD_LOG_DEBUG) ? names[level] : "?";
}

void qd_log_emit(int level, const char *module, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    if (!g_sink)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    g_sink(level, module, line, g_sink_payload);
}
