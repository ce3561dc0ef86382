/* edge_adm.h - admission: whether a client may start a session, by the
 * edge's own limits (its command line: sessions from one address) and the
 * client policy of the service (pushed by agents in SVC_OPEN: allow, deny,
 * sessions and new sessions per minute from one address), all counted in
 * one table of client addresses.
 *
 * The table is keyed by address with a per-process random seed (clients
 * choose their addresses, and must not be able to aim at one chain), and
 * bounded: an address holds an entry while it has a session, or while its
 * rate history has not expired; idle entries are forgotten oldest first
 * when the table is full. Only when every entry holds a session is a new
 * address refused. */
#ifndef SP_EDGE_ADM_H
#define SP_EDGE_ADM_H

#include <stddef.h>
#include <stdint.h>

#include "common/cidr.h"
#include "common/end.h"
#include "common/frame.h"

#define ADM_TABLE_MAX	65536	/* addresses, unless sessions need more */

/* A service's client policy, parsed from its SVC_OPEN. */
struct cpol {
	struct cidr_list allow;		/* empty: everyone */
	struct cidr_list deny;		/* wins over allow */
	struct cidr_list accept_proxy;	/* non-empty: only these peers, and
					 * each must send a PROXY header */
	uint32_t	 max_sess;	/* per address, 0: no limit */
	uint32_t	 max_rate;	/* new sessions per address per minute */
};

/* 0, or -1 with err naming the bad list. */
int	adm_policy_load(struct cpol *p, const struct msg *def, char *err,
	    size_t errlen);

struct adm_ip;
struct adm_svc;

/* The counts a session holds, given back with adm_release. */
struct adm_hold {
	struct adm_ip	*ip;
	struct adm_svc	*svc;		/* NULL: no per-service limit */
};

/* Admit a client at addr (16-byte form, cidr.h) to service svc under
 * policy p (NULL: an FTP data connection, whose control session was
 * admitted already: only the edge's own limit applies). 0 with *h
 * filled; -1 refused by the policy (*code SE_DENIED or SE_LIMIT, why
 * for the log and the agent); -2 refused by the edge's own limit
 * (logged and counted here, not reported). */
int	adm_admit(const uint8_t addr[16], const char *svc, const struct cpol *p,
	    struct adm_hold *h, enum sess_end *code, char *why, size_t whylen);
void	adm_release(struct adm_hold *h);
/* Forget idle addresses whose history has expired. */
void	adm_tick(uint64_t now_ms);
size_t	adm_tracked(void);

#endif
