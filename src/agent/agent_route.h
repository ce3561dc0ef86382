/* agent_route.h - which admin API endpoint an HTTP request names, and the
 * bearer token it carries. Pure functions over strings from the network:
 * no allocation, bounded reads, unit-tested and fuzzed on their own. */
#ifndef SP_AGENT_ROUTE_H
#define SP_AGENT_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#define ROUTE_URL_MAX	256	/* longer paths are simply not found */

enum route_ep { RT_NONE, RT_STATUS, RT_SESSIONS, RT_SESSION, RT_RELOAD,
    RT_METRICS, RT_BANS, RT_UPGRADE };

struct route {
	enum route_ep	 ep;
	uint64_t	 id;		/* RT_SESSION: the session id */
	int		 status;	/* 0 found, 404 no such path, 405 wrong method */
	const char	*allow;		/* methods the path takes (for 405) */
};

/* Match method and url (the decoded path, no query). Returns 0 with r->ep
 * set, or -1 with r->status 404 or 405 (and r->allow for 405). */
int	route_parse(const char *method, const char *url, struct route *r);
/* Parse a decimal session id, 1..2^64-1, digits only. 0 or -1. */
int	route_parse_id(const char *s, size_t len, uint64_t *id);
/* Find the token in an Authorization header value "Bearer TOKEN" (the
 * scheme is case-insensitive, one or more spaces). Returns 0 with *tok
 * and *len set, or -1 if the header is absent or not a bearer token. */
int	route_bearer(const char *hdr, const char **tok, size_t *len);

#endif
