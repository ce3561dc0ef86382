/* httpc.c - HTTP CONNECT request parser (see httpc.h). Strict on
 * purpose: CRLF line ends only, no obsolete line folding, bounded size;
 * anything else is a 400, never a guess. */
#include "agent/httpc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Offset just past the first CRLFCRLF in p[0..n), or 0. */
static size_t
find_end(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 3; i < n; i++)
		if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' &&
		    p[i - 3] == '\r')
			return i + 1;
	return 0;
}

static int
is_tchar(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static int
parse_target(const uint8_t *t, size_t n, struct httpc_req *r)
{
	const uint8_t *colon, *hs;
	size_t hn, i, pn;
	unsigned long port = 0;

	if (n == 0)
		return -1;
	if (t[0] == '[') {
		const uint8_t *close = memchr(t, ']', n);
		if (close == NULL || (size_t)(close - t) + 1 >= n || close[1] != ':')
			return -1;
		hs = t + 1;
		hn = (size_t)(close - t) - 1;
		colon = close + 1;
	} else {
		colon = NULL;
		for (i = 0; i < n; i++)
			if (t[i] == ':') {
				if (colon != NULL)
					return -1;	/* bare IPv6 is ambiguous */
				colon = t + i;
			}
		if (colon == NULL)
			return -1;
		hs = t;
		hn = (size_t)(colon - t);
	}
	if (hn == 0 || hn >= sizeof(r->host))
		return -1;
	for (i = 0; i < hn; i++)
		if (hs[i] <= 0x20 || hs[i] > 0x7e || hs[i] == '/' || hs[i] == '@')
			return -1;
	pn = n - (size_t)(colon - t) - 1;
	if (pn == 0 || pn > 5)
		return -1;
	for (i = 0; i < pn; i++) {
		if (colon[1 + i] < '0' || colon[1 + i] > '9')
			return -1;
		port = port * 10 + (unsigned long)(colon[1 + i] - '0');
	}
	if (port == 0 || port > 65535)
		return -1;
	memcpy(r->host, hs, hn);
	r->host[hn] = '\0';
	r->port = (uint16_t)port;
	return 0;
}

/* One header line p[0..n) without its CRLF. */
static int
parse_header(const uint8_t *p, size_t n, struct httpc_req *r)
{
	static const char pa[] = "proxy-authorization";
	size_t i, name_n, vs, ve;

	for (name_n = 0; name_n < n && p[name_n] != ':'; name_n++)
		if (!is_tchar(p[name_n]))
			return -1;
	if (name_n == 0 || name_n == n)
		return -1;
	for (i = name_n + 1; i < n; i++)
		if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
			return -1;
	vs = name_n + 1;
	while (vs < n && (p[vs] == ' ' || p[vs] == '\t'))
		vs++;
	ve = n;
	while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
		ve--;
	if (name_n != sizeof(pa) - 1 || strncasecmp((const char *)p, pa, name_n) != 0)
		return 0;
	if (r->has_auth)
		return -1;		/* two credentials: which one? */
	if (ve - vs < 6 || strncasecmp((const char *)p + vs, "basic ", 6) != 0)
		return 0;		/* another scheme: treated as absent */
	vs += 6;
	while (vs < ve && p[vs] == ' ')
		vs++;
	if (ve - vs == 0 || ve - vs >= sizeof(r->auth))
		return -1;
	memcpy(r->auth, p + vs, ve - vs);
	r->auth[ve - vs] = '\0';
	r->has_auth = 1;
	return 0;
}

int
httpc_parse(const uint8_t *p, size_t n, struct httpc_req *r, int *status)
{
	const uint8_t *line, *sp1, *sp2, *eol;
	size_t end, len, i;

	memset(r, 0, sizeof(*r));
	*status = 400;
	if (n > HTTPC_MAX)
		n = HTTPC_MAX;
	end = find_end(p, n);
	if (end == 0) {
		if (n >= HTTPC_MAX) {
			*status = 431;
			return -1;
		}
		return 0;
	}
	/* Lines are CRLF-terminated; a lone CR or LF anywhere is refused
	 * (it is how requests are smuggled past a stricter parser). */
	for (i = 0; i < end; i++)
		if ((p[i] == '\r' && (i + 1 >= end || p[i + 1] != '\n')) ||
		    (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')))
			return -1;
	eol = memchr(p, '\r', end);
	len = (size_t)(eol - p);
	sp1 = memchr(p, ' ', len);
	if (sp1 == NULL)
		return -1;
	sp2 = memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - p));
	if (sp2 == NULL || memchr(sp2 + 1, ' ', len - (size_t)(sp2 + 1 - p)) != NULL)
		return -1;
	if ((size_t)(p + len - (sp2 + 1)) != 8 ||
	    (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 &&
	    memcmp(sp2 + 1, "HTTP/1.0", 8) != 0)) {
		if ((size_t)(p + len - (sp2 + 1)) >= 5 &&
		    memcmp(sp2 + 1, "HTTP/", 5) == 0)
			*status = 505;
		return -1;
	}
	if ((size_t)(sp1 - p) != 7 || memcmp(p, "CONNECT", 7) != 0) {
		for (i = 0; i < (size_t)(sp1 - p); i++)
			if (!is_tchar(p[i]))
				return -1;
		*status = 405;
		return -1;
	}
	if (parse_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), r) == -1)
		return -1;
	for (line = eol + 2; line < p + end - 2; line = eol + 2) {
		eol = memchr(line, '\r', (size_t)(p + end - line));
		if (eol == NULL)
			return -1;	/* cannot happen: the request ends in CRLF */
		if (line[0] == ' ' || line[0] == '\t')
			return -1;	/* obsolete line folding */
		if (parse_header(line, (size_t)(eol - line), r) == -1)
			return -1;
	}
	return (int)end;
}

const char *
httpc_reason(int status)
{
	switch (status) {
	case 200: return "Connection established";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 405: return "Method Not Allowed";
	case 407: return "Proxy Authentication Required";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

size_t
httpc_reply(char *out, size_t outlen, int status, const char *text)
{
	char body[300];
	int n, bn;

	if (status == 200)
		n = snprintf(out, outlen, "HTTP/1.1 200 %s\r\n\r\n",
		    httpc_reason(200));
	else {
		bn = snprintf(body, sizeof(body), "%s\n", text != NULL ? text :
		    httpc_reason(status));
		if (bn < 0)
			return 0;
		if ((size_t)bn >= sizeof(body))
			bn = (int)sizeof(body) - 1;
		n = snprintf(out, outlen, "HTTP/1.1 %d %s\r\n%s"
		    "Content-Type: text/plain\r\nContent-Length: %d\r\n"
		    "Connection: close\r\n\r\n%.*s", status, httpc_reason(status),
		    status == 407 ? "Proxy-Authenticate: Basic realm=\"sallyport\"\r\n" : "",
		    bn, bn, body);
	}
	if (n < 0 || (size_t)n >= outlen)
		return 0;
	return (size_t)n;
}
