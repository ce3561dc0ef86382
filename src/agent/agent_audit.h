/* agent_audit.h - the audit log: one JSON object per line, written by the
 * agent only (never on the edge). Every function is a no-op while no log
 * is open. */
#ifndef SP_AGENT_AUDIT_H
#define SP_AGENT_AUDIT_H

#include <stddef.h>
#include <stdint.h>

struct aout_record;

struct audit_rec {
	uint64_t	 session;
	const char	*service;
	const char	*edge;
	const char	*client_addr;
	uint16_t	 client_port;
	const char	*backend;	/* NULL: none was reached */
	uint64_t	 t_start_ms;	/* wall clock, ms since the epoch */
	uint64_t	 t_end_ms;
	uint64_t	 bytes_in;	/* client to backend */
	uint64_t	 bytes_out;	/* backend to client */
	const char	*reason;	/* end_name() of how it ended */
	const char	*detail;	/* NULL or more words on the reason */
};

/* Open path for appending (created 0640 if missing). 0, or -1 with err. */
int	audit_open(const char *path, char *err, size_t errlen);
/* Close and open path again (SIGHUP: logrotate has moved the file away,
 * or a reload named another file; "" stops the audit log). */
void	audit_reopen(const char *path);
void	audit_close(void);
void	audit_session(const struct audit_rec *r);
/* count refusals the edge did not report one by one */
void	audit_denied_summary(const char *service, const char *edge,
	    uint32_t count);
/* The record of one outbound session. */
void	audit_outbound(const struct aout_record *r);
uint64_t audit_wall_ms(void);

#endif
