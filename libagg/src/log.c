/*
 * log.c: one-line log messages to stderr.
 */
#include "agg/log.h"

#include <stdarg.h>
#include <stdio.h>

static const char *log_program = "agg";
static enum agg_log_level log_level = AGG_LOG_WARN;
static agg_log_handler_fn log_handler;
static void *log_handler_arg;

/* Sets the program name printed before every message. */
void agg_log_set_program(const char *name)
{
	log_program = name;
}

/* Sets the most verbose level printed. */
void agg_log_set_level(enum agg_log_level level)
{
	log_level = level;
}

/* Sends the lines to fn instead of stderr (NULL: stderr again). */
void agg_log_set_handler(agg_log_handler_fn fn, void *arg)
{
	log_handler = fn;
	log_handler_arg = arg;
}

/* Current level. */
enum agg_log_level agg_log_get_level(void)
{
	return log_level;
}

/* Prints one line at level, as "program: message". */
void agg_log(enum agg_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (log_handler != NULL) {
		log_handler(level, line, log_handler_arg);
		return;
	}
	fprintf(stderr, "%s: %s\n", log_program, line);
}
