/* httpc.h - the HTTP CONNECT request (RFC 9110 section 9.3.6), proxy
 * side, as a pure bounded parser.
 *
 * httpc_parse looks at the bytes a client has sent so far, p[0..n), and
 * returns the length of the request through its empty line (> 0), 0 if
 * the empty line has not arrived (every byte so far then belongs to the
 * request), or -1 with *status set to the HTTP status to answer. Bytes
 * after the empty line are not looked at: a client may pipeline its
 * first TLS record after the request. */
#ifndef SP_HTTPC_H
#define SP_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#define HTTPC_MAX	8192		/* request line and headers */

struct httpc_req {
	char		host[256];	/* without brackets for IPv6 */
	uint16_t	port;
	int		has_auth;	/* a Proxy-Authorization: Basic header */
	char		auth[512];	/* its base64 credentials */
};

int	httpc_parse(const uint8_t *p, size_t n, struct httpc_req *r, int *status);
/* Write a complete response for status (200 for success) into out;
 * returns its length, 0 if out is too small. Errors carry
 * "Connection: close"; 407 asks for Basic credentials. */
size_t	httpc_reply(char *out, size_t outlen, int status, const char *text);
const char *httpc_reason(int status);

#endif
