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
/* " prog[pid]: ", made again when log_pid is: formatting it and the
 * date with printf for every record was most of a record's cost. */
static char log_who[128];
static size_t log_wholen;
/* The date and time of the last record's second, "YYYY-MM-DDTHH:MM:SS". */
static _Thread_local time_t log_sec = -1;
static _Thread_local char log_date[32];

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

/* Append len bytes of s to line at n; the header's parts are short and
 * bounded (a date, a program name, a level), far below LOG_LINE. */
static size_t
hdr_put(char *line, size_t n, const char *s, size_t len)
{
	memcpy(line + n, s, len);
	return n + len;
}

static void log_vmsg(int level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
log_vmsg(int level, const char *fmt, va_list ap)
{
	char line[LOG_LINE];
	const char *name;
	struct timeval tv;
	struct tm tm;
	unsigned ms;
	size_t n;
	int r;

	if (level > log_level)
		return;
	/* One system call less per line: sessions log several. */
	if (log_pid == 0) {
		log_pid = getpid();
		r = snprintf(log_who, sizeof(log_who), "Z %s[%ld]: ", log_prog,
		    (long)log_pid);
		log_wholen = r < 0 ? 0 : (size_t)r < sizeof(log_who) ?
		    (size_t)r : sizeof(log_who) - 1;
	}
	gettimeofday(&tv, NULL);
	if (tv.tv_sec != log_sec) {
		gmtime_r(&tv.tv_sec, &tm);
		(void)strftime(log_date, sizeof(log_date), "%Y-%m-%dT%H:%M:%S.",
		    &tm);
		log_sec = tv.tv_sec;
	}
	ms = (unsigned)(tv.tv_usec / 1000);
	name = log_names[level < 0 ? 0 : level > 3 ? 3 : level];
	n = hdr_put(line, 0, log_date, strlen(log_date));
	line[n++] = (char)('0' + ms / 100);
	line[n++] = (char)('0' + ms / 10 % 10);
	line[n++] = (char)('0' + ms % 10);
	n = hdr_put(line, n, log_who, log_wholen);
	n = hdr_put(line, n, name, strlen(name));
	n = hdr_put(line, n, ": ", 2);
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
