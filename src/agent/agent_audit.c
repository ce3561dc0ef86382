/* agent_audit.c - the audit trail: one JSON object per line for every
 * session and every client the edge refused. Written by the agent only:
 * the edge writes no file (nothing personal is kept in the DMZ).
 *
 * The file is opened with O_APPEND and each record is one write(), so
 * lines from one process never interleave and a reader (or logrotate's
 * copytruncate) never sees half a line from us. SIGHUP reopens the file
 * by name, so a rotated file is left to whoever moved it. */
#include "agent/agent_audit.h"
#include "agent/agent_cfg.h"
#include "agent/agent_out.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int audit_fd = -1;
static char audit_path[PATH_MAX];
static uint64_t audit_failed;		/* records lost to write errors */

uint64_t
audit_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ISO 8601 UTC with milliseconds: 2024-05-01T12:34:56.789Z */
static void
iso_time(uint64_t ms, char *out, size_t outlen)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
		snprintf(out, outlen, "1970-01-01T00:00:00");
	}
	snprintf(out + strlen(out), outlen - strlen(out), ".%03uZ",
	    (unsigned)(ms % 1000));
}

int
audit_open(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd == -1) {
		snprintf(err, errlen, "audit log %s: %s", path, strerror(errno));
		return -1;
	}
	if (audit_fd != -1)
		close(audit_fd);
	audit_fd = fd;
	snprintf(audit_path, sizeof(audit_path), "%s", path);
	return 0;
}

void
audit_reopen(const char *path)
{
	char err[PATH_MAX + 128];

	if (path == NULL || path[0] == '\0') {
		if (audit_fd != -1)
			log_info("audit log %s closed", audit_path);
		audit_close();
		return;
	}
	/* Keep writing to the old file if the new one cannot be opened:
	 * a record in a rotated file is better than a lost one. */
	if (audit_open(path, err, sizeof(err)) == -1)
		log_err("%s (still writing to the previous file)", err);
	else
		log_info("audit log %s reopened", path);
}

void
audit_close(void)
{
	if (audit_fd != -1)
		close(audit_fd);
	audit_fd = -1;
	audit_path[0] = '\0';
}

static void
audit_write(json_t *o)
{
	char *s;
	size_t n;
	ssize_t w;

	if (o == NULL) {
		log_err("audit: out of memory, record lost");
		return;
	}
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	json_decref(o);
	if (s == NULL) {
		log_err("audit: cannot encode record, record lost");
		return;
	}
	n = strlen(s);
	s[n] = '\n';	/* json_dumps leaves room: replace the NUL */
	w = write(audit_fd, s, n + 1);
	if (w != (ssize_t)(n + 1)) {
		/* Say so the first time and then every 1000th, not on every
		 * record of a full disk. */
		if (audit_failed++ % 1000 == 0)
			log_err("audit log %s: %s (%llu records lost so far)",
			    audit_path, w == -1 ? strerror(errno) : "short write",
			    (unsigned long long)audit_failed);
	}
	free(s);
}

void
audit_session(const struct audit_rec *r)
{
	char t0[40], t1[40];
	json_t *o;

	if (audit_fd == -1)
		return;
	iso_time(r->t_start_ms, t0, sizeof(t0));
	iso_time(r->t_end_ms, t1, sizeof(t1));
	o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:i, s:s?, s:s, s:s, s:I, s:I, "
	    "s:s, s:s?}",
	    "event", "session",
	    "session", (json_int_t)r->session,
	    "service", r->service,
	    "edge", r->edge,
	    "client_addr", r->client_addr,
	    "client_port", (int)r->client_port,
	    "backend", r->backend,
	    "start", t0,
	    "end", t1,
	    "bytes_in", (json_int_t)r->bytes_in,
	    "bytes_out", (json_int_t)r->bytes_out,
	    "reason", r->reason,
	    "detail", r->detail);
	audit_write(o);
}

void
audit_outbound(const struct aout_record *r)
{
	char t0[40], t1[40];
	uint64_t end;

	if (audit_fd == -1)
		return;
	end = audit_wall_ms();
	iso_time(end - r->duration_ms, t0, sizeof(t0));
	iso_time(end, t1, sizeof(t1));
	audit_write(json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
	    "s:I, s:I, s:I, s:s, s:i, s:s}",
	    "event", "outbound",
	    "session", (json_int_t)r->id,
	    "proto", r->proto,
	    "source", r->client,
	    "destination", r->dest,
	    "address", r->addr,
	    "edge", r->edge,
	    "start", t0,
	    "end", t1,
	    "bytes_out", (json_int_t)r->bytes_out,
	    "bytes_in", (json_int_t)r->bytes_in,
	    "duration_ms", (json_int_t)r->duration_ms,
	    "outcome", r->outcome,
	    "code", r->code,
	    "reason", r->reason));
}

void
audit_denied_summary(const char *service, const char *edge, uint32_t count)
{
	char t[40];

	if (audit_fd == -1)
		return;
	iso_time(audit_wall_ms(), t, sizeof(t));
	audit_write(json_pack("{s:s, s:s, s:s, s:s, s:I}",
	    "event", "denied-summary",
	    "time", t,
	    "service", service,
	    "edge", edge,
	    "count", (json_int_t)count));
}
