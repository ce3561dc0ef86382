/* proxy_parse.c - PROXY protocol v1/v2 parser (the edge reads the headers
 * of front load balancers).
 *
 * The parser sees bytes from the internet (through a load balancer, but
 * the edge cannot know that a peer is honest), so it works on any prefix
 * of the stream, rejects as early as the bytes allow, and never looks
 * further than one maximal header. */
#include "edge/proxy_parse.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};
static const char v1_sig[6] = { 'P', 'R', 'O', 'X', 'Y', ' ' };

#define V2_CMD_LOCAL	0x0
#define V2_CMD_PROXY	0x1
#define V2_FAM_INET	0x1
#define V2_FAM_INET6	0x2
#define V2_FAM_UNIX	0x3
#define V2_PROTO_STREAM	0x1

/* Fail with reason r. */
static int
bad(const char **why, const char *r)
{
	*why = r;
	return -1;
}

/* A decimal port: 1 to 5 digits, at most 65535. */
static int
v1_port(const char *s, uint16_t *port)
{
	size_t n = strlen(s);
	unsigned long v;

	if (n == 0 || n > 5 || strspn(s, "0123456789") != n ||
	    (v = strtoul(s, NULL, 10)) > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* Split line at single spaces into exactly n fields. Two spaces in a
 * row, or a leading or trailing space, make an empty field: an error. */
static int
v1_fields(char *line, char **f, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if ((f[i] = strsep(&line, " ")) == NULL || f[i][0] == '\0')
			return -1;
	return line == NULL ? 0 : -1;
}

static int
parse_v1(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why)
{
	char line[PROXY_V1_MAX + 1], *f[5];
	size_t i, lim = MIN(n, PROXY_V1_MAX);
	int af;

	for (i = 0; i < lim && p[i] != '\r'; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return bad(why, "PROXY v1: control or non-ASCII byte");
	if (i == lim && n < PROXY_V1_MAX)
		return 0;
	if (i + 2 > PROXY_V1_MAX)
		return bad(why, "PROXY v1: no CRLF within 107 bytes");
	if (i + 1 >= n)
		return 0;
	if (p[i + 1] != '\n')
		return bad(why, "PROXY v1: CR not followed by LF");
	/* line = everything between "PROXY " and CRLF */
	memcpy(line, p + sizeof(v1_sig), i - sizeof(v1_sig));
	line[i - sizeof(v1_sig)] = '\0';
	memset(h, 0, sizeof(*h));
	h->version = 1;
	/* "UNKNOWN" may be followed by anything: the receiver ignores it. */
	if (strncmp(line, "UNKNOWN", 7) == 0 &&
	    (line[7] == '\0' || line[7] == ' ')) {
		h->local = 1;
		return (int)i + 2;
	}
	if (v1_fields(line, f, 5) == -1)
		return bad(why,
		    "PROXY v1: expected protocol, 2 addresses and 2 ports");
	af = strcmp(f[0], "TCP4") == 0 ? AF_INET :
	    strcmp(f[0], "TCP6") == 0 ? AF_INET6 : AF_UNSPEC;
	if (af == AF_UNSPEC)
		return bad(why,
		    "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
	if (inet_pton(af, f[1], h->src) != 1 ||
	    inet_pton(af, f[2], h->dst) != 1)
		return bad(why, "PROXY v1: bad address");
	if (v1_port(f[3], &h->sport) == -1 || v1_port(f[4], &h->dport) == -1)
		return bad(why, "PROXY v1: bad port");
	h->family = af;
	return (int)i + 2;
}

static int
parse_v2(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why)
{
	size_t len, alen, a;
	int cmd, fam;

	if (n > 12 && (p[12] >> 4) != 2)
		return bad(why, "PROXY v2: version is not 2");
	if (n > 12 && (p[12] & 0x0f) > V2_CMD_PROXY)
		return bad(why, "PROXY v2: unknown command");
	if (n < PROXY_V2_HDR)
		return 0;
	cmd = p[12] & 0x0f;
	fam = p[13] >> 4;
	len = ((size_t)p[14] << 8) | p[15];
	/* LOCAL (the proxy's own connection, e.g. a health check) and
	 * UNSPEC carry no client: keep the real peer. */
	alen = cmd == V2_CMD_LOCAL ? 0 : fam == V2_FAM_INET ? 12 :
	    fam == V2_FAM_INET6 ? 36 : 0;
	if (len > PROXY_V2_LEN_MAX)
		return bad(why, "PROXY v2: header longer than 1024 bytes");
	/* Check what the first 16 bytes tell before waiting for the rest:
	 * a bad family is refused without reading its addresses. */
	if (cmd == V2_CMD_PROXY && fam == V2_FAM_UNIX)
		return bad(why, "PROXY v2: UNIX addresses are not supported");
	if (cmd == V2_CMD_PROXY && fam > V2_FAM_INET6)
		return bad(why, "PROXY v2: unknown address family");
	if (alen > 0 && (p[13] & 0x0f) != V2_PROTO_STREAM)
		return bad(why, "PROXY v2: not a stream (TCP) connection");
	if (len < alen)
		return bad(why, "PROXY v2: length too short for the addresses");
	if (n < PROXY_V2_HDR + len)
		return 0;
	memset(h, 0, sizeof(*h));
	h->version = 2;
	h->local = alen == 0;
	/* Two addresses of a bytes, then two ports. TLVs after them are
	 * skipped: nothing here needs them. */
	if (alen > 0) {
		a = fam == V2_FAM_INET ? 4 : 16;
		h->family = a == 4 ? AF_INET : AF_INET6;
		p += PROXY_V2_HDR;
		memcpy(h->src, p, a);
		memcpy(h->dst, p + a, a);
		h->sport = (uint16_t)((p[2 * a] << 8) | p[2 * a + 1]);
		h->dport = (uint16_t)((p[2 * a + 2] << 8) | p[2 * a + 3]);
	}
	return (int)(PROXY_V2_HDR + len);
}

int
proxy_parse(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why)
{
	if (n == 0)
		return 0;
	if (memcmp(p, v1_sig, MIN(n, sizeof(v1_sig))) == 0)
		return parse_v1(p, n, h, why);
	if (memcmp(p, v2_sig, MIN(n, sizeof(v2_sig))) == 0)
		return parse_v2(p, n, h, why);
	return bad(why, "not a PROXY header");
}
