/* log.c - timestamped single-line log records on stderr.
 * Each record goes out whole in one write() so that lines from concurrent
 * processes sharing a file never interleave. While a loop turn dispatches
 * (log_hold), info and debug records wait in a per-thread queue and leave
 * together when the turn ends (log_flush): a session's set-up logs a few
 * lines, and writing them after its bytes have moved keeps the writes off
 * the path a client waits on. Errors and warnings, and any record that
 * would not fit, flush the queue and go out at once, in order. */
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

/* At most PIPE_BUF, so that one write of the queue stays atomic on a
 * pipe as well as on a file opened for appending. */
#define LOG_QUEUE	4096
#define LOG_LINE	2048
_Static_assert(LOG_LINE <= LOG_QUEUE, "a record must fit the queue");

static _Thread_local char log_q[LOG_QUEUE];
static _Thread_local size_t log_qlen;
static _Thread_local int log_held;

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
	/* The parent writes what it had queued; the child must not. */
	log_qlen = 0;
	log_held = 0;
}

void
log_hold(void)
{
	log_held = 1;
}

static void
log_write_queue(void)
{
	if (log_qlen > 0)
		(void)!write(STDERR_FILENO, log_q, log_qlen);
	log_qlen = 0;
}

void
log_flush(void)
{
	log_write_queue();
	log_held = 0;
}

static void log_vmsg(int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
log_vmsg(int level, const char *fmt, va_list ap)
{
	char line[LOG_LINE];
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
	/* A record is shorter than the queue, so it fits once it is empty. */
	if (log_held && level >= LOG_INFO) {
		if (log_qlen + n > sizeof(log_q))
			log_write_queue();
		memcpy(log_q + log_qlen, line, n);
		log_qlen += n;
		return;
	}
	log_write_queue();
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
