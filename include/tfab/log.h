/* tfab/log.h - leveled logging to stderr (or a user sink), shared by every layer. */
#ifndef TFAB_LOG_H
#define TFAB_LOG_H

#include <stdarg.h>
#include <tfab/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tfab_log_level {
    TFAB_LOG_ERROR = 0,
    TFAB_LOG_WARN  = 1,
    TFAB_LOG_INFO  = 2,
    TFAB_LOG_DEBUG = 3,
    TFAB_LOG_TRACE = 4
} tfab_log_level_t;

/* A sink gets one formatted line (no trailing newline). It may be called from any thread. */
typedef void (*tfab_log_sink_t)(tfab_log_level_t level, const char *module, const char *line,
                                void *arg);

/* Set the most verbose level printed (default TFAB_LOG_WARN). Thread-safe. */
TFAB_API void tfab_log_set_level(tfab_log_level_t level);
TFAB_API tfab_log_level_t tfab_log_get_level(void);
/* Parse "error", "warn", "info", "debug", "trace" (or 0..4). Returns TFAB_ERR_INVALID otherwise. */
TFAB_API tfab_status_t tfab_log_level_parse(const char *s, tfab_log_level_t *level_p);
/* Route lines to sink instead of stderr; NULL restores stderr. Thread-safe: calls of the sink
 * are serialized, and none runs after this returns with another sink. */
TFAB_API void tfab_log_set_sink(tfab_log_sink_t sink, void *arg);

TFAB_API void tfab_log_write(tfab_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
TFAB_API void tfab_log_vwrite(tfab_log_level_t level, const char *module, const char *fmt,
                              va_list ap) __attribute__((format(printf, 3, 0)));

#define tfab_log_(lvl, mod, ...)                                                             \
    do {                                                                                     \
        if ((lvl) <= tfab_log_get_level())                                                   \
            tfab_log_write((lvl), (mod), __VA_ARGS__);                                       \
    } while (0)
#define TFAB_ERROR(mod, ...) tfab_log_(TFAB_LOG_ERROR, mod, __VA_ARGS__)
#define TFAB_WARN(mod, ...)  tfab_log_(TFAB_LOG_WARN, mod, __VA_ARGS__)
#define TFAB_INFO(mod, ...)  tfab_log_(TFAB_LOG_INFO, mod, __VA_ARGS__)
#define TFAB_DEBUG(mod, ...) tfab_log_(TFAB_LOG_DEBUG, mod, __VA_ARGS__)
#define TFAB_TRACE(mod, ...) tfab_log_(TFAB_LOG_TRACE, mod, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
