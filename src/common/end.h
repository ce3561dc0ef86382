/* end.h - how a session ended, in one enum for every place that says it:
 * the daemons' logs, the agent's audit log and metrics, and the wire
 * (the END attribute of SESS_DENIED, and the code in a mux RST or REFUSE
 * and in a plain link's refusal).
 *
 * "client" is the side that opened the session, "server" the side it
 * reached: for a partner's session the partner and the backend, for an
 * outbound session the inside client and the destination outside. */
#ifndef SP_END_H
#define SP_END_H

#include <stdint.h>

enum sess_end {
	SE_NONE = 0,		/* still running */
	SE_CLIENT_CLOSED,	/* ended cleanly, the client first */
	SE_SERVER_CLOSED,	/* ended cleanly, the server first */
	SE_REFUSED,		/* the agent (or the edge, outbound) refused it */
	SE_DENIED,		/* the client policy or a ban refused it */
	SE_LIMIT,		/* a limit refused it */
	SE_TIMEOUT,		/* set-up, idle or PROXY-header time-out */
	SE_ERROR,		/* a side or the data link failed */
	SE_KILLED,		/* cut by the operator */
	SE_STOPPING,		/* cut because a daemon stopped */
	SE_COUNT
};

/* "client-closed", "server-closed", "refused", ...; "none" for SE_NONE,
 * "?" for a value out of range. */
const char *end_name(enum sess_end e);
/* A code from the wire: 0 with *e set if v names an end (SE_NONE is not
 * one), -1 otherwise. */
int	end_from_wire(uint8_t v, enum sess_end *e);

#endif
