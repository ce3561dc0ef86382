/* agent_route.c - admin API routing (see agent_route.h). */
#include "agent/agent_route.h"

#include <string.h>
#include <strings.h>

#define SESS_PREFIX "/api/v1/sessions/"

int
route_parse_id(const char *s, size_t len, uint64_t *id)
{
	uint64_t x = 0, d;
	size_t i;

	if (len == 0 || len > 20 || s[0] == '0')
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		d = (uint64_t)(s[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*id = x;
	return 0;
}

static int
is_get(const char *m)
{
	/* HEAD is a GET without a body; libmicrohttpd drops the body. */
	return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

int
route_parse(const char *method, const char *url, struct route *r)
{
	size_t n = strnlen(url, ROUTE_URL_MAX + 1);
	const size_t plen = sizeof(SESS_PREFIX) - 1;
	int ok;

	memset(r, 0, sizeof(*r));
	if (n > ROUTE_URL_MAX)
		goto not_found;
	if (strcmp(url, "/api/v1/status") == 0) {
		r->ep = RT_STATUS;
		r->allow = "GET, HEAD";
		ok = is_get(method);
	} else if (strcmp(url, "/api/v1/sessions") == 0) {
		r->ep = RT_SESSIONS;
		r->allow = "GET, HEAD";
		ok = is_get(method);
	} else if (strcmp(url, "/metrics") == 0) {
		r->ep = RT_METRICS;
		r->allow = "GET, HEAD";
		ok = is_get(method);
	} else if (strcmp(url, "/api/v1/bans") == 0) {
		r->ep = RT_BANS;
		r->allow = "GET, HEAD, POST, DELETE";
		ok = is_get(method) || strcmp(method, "POST") == 0 ||
		    strcmp(method, "DELETE") == 0;
	} else if (strcmp(url, "/api/v1/reload") == 0 ||
	    strcmp(url, "/api/v1/upgrade") == 0) {
		r->ep = strcmp(url, "/api/v1/reload") == 0 ? RT_RELOAD :
		    RT_UPGRADE;
		r->allow = "POST";
		ok = strcmp(method, "POST") == 0;
	} else if (n > plen && strncmp(url, SESS_PREFIX, plen) == 0) {
		if (route_parse_id(url + plen, n - plen, &r->id) == -1)
			goto not_found;
		r->ep = RT_SESSION;
		r->allow = "DELETE";
		ok = strcmp(method, "DELETE") == 0;
	} else
		goto not_found;
	if (!ok) {
		r->ep = RT_NONE;
		r->status = 405;
		return -1;
	}
	return 0;
not_found:
	r->ep = RT_NONE;
	r->id = 0;
	r->allow = NULL;
	r->status = 404;
	return -1;
}

int
route_bearer(const char *hdr, const char **tok, size_t *len)
{
	size_t i = 6, n;

	if (hdr == NULL || strncasecmp(hdr, "Bearer", 6) != 0 || hdr[6] != ' ')
		return -1;
	while (hdr[i] == ' ')
		i++;
	n = strnlen(hdr + i, 4096);
	while (n > 0 && (hdr[i + n - 1] == ' ' || hdr[i + n - 1] == '\t'))
		n--;
	if (n == 0 || n >= 4096)
		return -1;
	*tok = hdr + i;
	*len = n;
	return 0;
}
