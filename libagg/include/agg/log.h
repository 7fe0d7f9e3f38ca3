/*
 * agg/log.h: one-line log messages to stderr, prefixed with the program name.
 */
#ifndef AGG_LOG_H
#define AGG_LOG_H

enum agg_log_level {
	AGG_LOG_ERROR = 0,
	AGG_LOG_WARN = 1,
	AGG_LOG_INFO = 2,
	AGG_LOG_DEBUG = 3,
};

/* Sets the program name printed before every message. */
void agg_log_set_program(const char *name);
/* Sets the most verbose level printed (default AGG_LOG_WARN). */
void agg_log_set_level(enum agg_log_level level);
/* Current level. */
enum agg_log_level agg_log_get_level(void);
/* Receives each printed line (without the program name) instead of
 * stderr, e.g. for a full-screen view; NULL restores stderr. */
typedef void (*agg_log_handler_fn)(enum agg_log_level level,
    const char *line, void *arg);
void agg_log_set_handler(agg_log_handler_fn fn, void *arg);
/* Prints one line at level. */
void agg_log(enum agg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define agg_log_error(...) agg_log(AGG_LOG_ERROR, __VA_ARGS__)
#define agg_log_warn(...) agg_log(AGG_LOG_WARN, __VA_ARGS__)
#define agg_log_info(...) agg_log(AGG_LOG_INFO, __VA_ARGS__)
#define agg_log_debug(...) agg_log(AGG_LOG_DEBUG, __VA_ARGS__)

#endif
