/*
 * log.h - levelled logging through a sink.
 *
 * The library never writes to stdout or stderr itself: it logs through the sink set with qd_log_set_sink().
 * qd_log() checks the level before formatting, so disabled levels cost one comparison.
 */
#ifndef QD_LOG_H
#define QD_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_log_level { QD_LOG_ERROR = 0, QD_LOG_WARN, QD_LOG_INFO, QD_LOG_DEBUG } qd_log_level;

/** A sink receives one formatted line (no trailing newline). */
typedef void (*qd_log_sink)(int level, const char *module, const char *line, void *payload);

void qd_log_set_sink(qd_log_sink sink, void *payload);
void qd_log_set_level(int level);
int qd_log_level_get(void);
const char *qd_log_level_name(int level);
void qd_log_emit(int level, const char *module, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define qd_log(level, module, ...)                                                                          \
    do {                                                                                                    \
        if ((level) <= qd_log_level_get())                                                                  \
            qd_log_emit((level), (module), __VA_ARGS__);                                                    \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
