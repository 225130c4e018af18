/* log.c - leveled logging; one line per call, written with a single write(2) so lines from
 * threads do not interleave. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tfab/log.h>

static _Atomic int     log_level = TFAB_LOG_WARN;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static tfab_log_sink_t log_sink;     /* guarded by sink_lock */
static void           *log_sink_arg;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void tfab_log_set_level(tfab_log_level_t level) { atomic_store(&log_level, (int)level); }

tfab_log_level_t tfab_log_get_level(void) { return (tfab_log_level_t)atomic_load(&log_level); }

tfab_status_t tfab_log_level_parse(const char *s, tfab_log_level_t *level_p)
{
    if (s == NULL)
        return TFAB_ERR_INVALID;
    for (int i = 0; i <= TFAB_LOG_TRACE; i++) {
        if (strcmp(s, level_names[i]) == 0 || (s[0] == '0' + i && s[1] == '\0')) {
            *level_p = (tfab_log_level_t)i;
            return TFAB_OK;
        }
    }
    return TFAB_ERR_INVALID;
}

void tfab_log_set_sink(tfab_log_sink_t sink, void *arg)
{
    pthread_mutex_lock(&sink_lock);
    log_sink     = sink;
    log_sink_arg = arg;
    pthread_mutex_unlock(&sink_lock);
}

__attribute__((format(printf, 3, 0))) void tfab_log_vwrite(tfab_log_level_t level, const char *module,
                                                         const char *fmt, va_list ap)
{
    char line[1024];
    int  n = vsnprintf(line, sizeof(line), fmt, ap);
    if (n < 0)
        return;
    pthread_mutex_lock(&sink_lock);
    if (log_sink != NULL) {
        log_sink(level, module, line, log_sink_arg); /* serialized: sinks need no lock */
        pthread_mutex_unlock(&sink_lock);
        return;
    }
    pthread_mutex_unlock(&sink_lock);
    char            out[1200];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    int lvl = level > TFAB_LOG_TRACE ? TFAB_LOG_TRACE : (int)level;
    int m   = snprintf(out, sizeof(out), "%02d:%02d:%02d.%03ld tfab %-5s %s: %s%s\n", tm.tm_hour,
                       tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[lvl],
                       module ? module : "-", line, (size_t)n >= sizeof(line) ? "..." : "");
    if (m > 0) {
        size_t len = (size_t)m < sizeof(out) ? (size_t)m : sizeof(out) - 1;
        ssize_t w  = write(STDERR_FILENO, out, len);
        (void)w;
    }
}

void tfab_log_write(tfab_log_level_t level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tfab_log_vwrite(level, module, fmt, ap);
    va_end(ap);
}
