/* log.c - timestamped single-line log records on stderr.
 * Each record goes out in one write() so that lines from concurrent
 * processes sharing a file never interleave. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "sallyport";
static int log_level = LOG_INFO;
static pid_t log_pid;		/* 0: not known yet (or after a fork) */

static const char *const log_names[] = { "error", "warn", "info", "debug" };

void
log_init(const char *progname, int verbosity)
{
	log_prog = progname;
	log_level = LOG_INFO + verbosity;
	log_pid = 0;
}

void
log_forked(void)
{
	log_pid = 0;
}

static void log_vmsg(int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
log_vmsg(int level, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int r;

	if (level > log_level)
		return;
	/* One system call less per line: sessions log several. */
	if (log_pid == 0)
		log_pid = getpid();
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	r = snprintf(line, sizeof(line),
	    "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld]: %s: ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000), log_prog,
	    (long)log_pid, log_names[level < 0 ? 0 : level > 3 ? 3 : level]);
	if (r < 0)
		return;
	n = (size_t)r < sizeof(line) ? (size_t)r : sizeof(line) - 1;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r < 0)
		return;
	n += (size_t)r;
	/* A truncated record still ends its line. */
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

void
log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}
