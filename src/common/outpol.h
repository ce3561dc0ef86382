/* outpol.h - outbound destination policy: which host:port an agent's
 * inside clients may reach through the edge (docs/protocol.md,
 * "Outbound"). The agent parses it from its configuration and pushes it;
 * the edge parses it again and enforces it.
 *
 * Pure functions over strings and socket addresses: no I/O, no
 * allocation, so they can be unit-tested and fuzzed on their own.
 *
 * Rule grammar (a policy is rules separated by commas):
 *   rule  = dest ":" ports
 *   dest  = "*" | NAME | "*." NAME | IPV4 [ "/" LEN ] | "[" IPV6 [ "/" LEN ] "]"
 *   ports = "*" | N | N "-" M
 *
 * Private, loopback, link-local and other special addresses are refused
 * even when a rule matches, unless a CIDR rule that lies wholly inside
 * such a block contains the address: "127.0.0.1/32:8443" or
 * "10.0.0.0/8:22" lift the ban for those addresses, "0.0.0.0/0:443" and
 * host-name rules never do. The check is made on every resolved address,
 * so a name that resolves to a private address is refused (no DNS
 * rebinding around a name rule). */
#ifndef SP_OUTPOL_H
#define SP_OUTPOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define OUTPOL_MAX_RULES	64
#define OUTPOL_HOST_MAX		254	/* a DNS name: 253 bytes + NUL */

enum outpol_kind { OUTPOL_ANY, OUTPOL_EXACT, OUTPOL_SUFFIX, OUTPOL_CIDR };

struct outpol_rule {
	enum outpol_kind kind;
	char		 host[OUTPOL_HOST_MAX];	/* EXACT: name; SUFFIX: ".name" */
	int		 family;		/* CIDR: AF_INET or AF_INET6 */
	uint8_t		 net[16];
	unsigned	 prefix;
	int		 lifts_ban;		/* CIDR inside a special block */
	uint16_t	 port_lo;
	uint16_t	 port_hi;
};

struct outpol {
	size_t		 n;
	struct outpol_rule r[OUTPOL_MAX_RULES];
};

/* Parse one rule from s[0..len). 0, or -1 with err filled. */
int	outpol_parse_rule(const char *s, size_t len, struct outpol_rule *r,
	    char *err, size_t errlen);
/* Parse a comma-separated list (blanks around rules are ignored; an
 * empty or all-blank string is a valid policy that allows nothing).
 * 0, or -1 with err filled; p is then empty. */
int	outpol_parse(const char *s, struct outpol *p, char *err, size_t errlen);
/* 1 if h is a destination host we accept at all: a DNS name of 1-253
 * bytes of [A-Za-z0-9._-] with labels of 1-63 bytes, or an IPv4 or IPv6
 * literal (no brackets). */
int	outpol_valid_host(const char *h);
/* Before resolving: 1 if host:port may be allowed once resolved (a name
 * rule matches, or a CIDR rule covers the port; for a literal the full
 * address check), 0 if not, with *why set. */
int	outpol_check_name(const struct outpol *p, const char *host,
	    uint16_t port, const char **why);
/* After resolving: 1 if connecting to sa (its port included) is allowed
 * for a request that named host (NULL when the request was a literal),
 * 0 if not, with *why set. IPv4-mapped IPv6 addresses are judged as the
 * IPv4 address they carry. */
int	outpol_check_addr(const struct outpol *p, const char *host,
	    const struct sockaddr *sa, const char **why);

#endif
