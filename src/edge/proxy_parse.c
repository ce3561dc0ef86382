/* proxy_parse.c - PROXY protocol v1/v2 parser (the edge reads the headers
 * of front load balancers).
 *
 * The parser sees bytes from the internet (through a load balancer, but
 * the edge cannot know that a peer is honest), so it works on any prefix
 * of the stream, rejects as early as the bytes allow, and never looks
 * further than one maximal header. */
#include "edge/proxy_parse.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};
static const char v1_sig[6] = { 'P', 'R', 'O', 'X', 'Y', ' ' };

#define V2_CMD_LOCAL	0x0
#define V2_CMD_PROXY	0x1
#define V2_FAM_UNSPEC	0x0
#define V2_FAM_INET	0x1
#define V2_FAM_INET6	0x2
#define V2_FAM_UNIX	0x3
#define V2_PROTO_STREAM	0x1

static size_t
min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* A decimal port: 1 to 5 digits, at most 65535. */
static int
v1_port(const char *s, uint16_t *port)
{
	size_t i, n = strlen(s);
	uint32_t v = 0;

	if (n == 0 || n > 5)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint32_t)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* Split line at single spaces into at most max fields. Two spaces in a
 * row, or a leading or trailing space, make an empty field: an error. */
static int
v1_fields(char *line, char **f, int max)
{
	int n = 0;
	char *p = line, *sp;

	for (;;) {
		if (n == max)
			return -1;
		f[n++] = p;
		if ((sp = strchr(p, ' ')) == NULL)
			break;
		*sp = '\0';
		p = sp + 1;
	}
	for (int i = 0; i < n; i++)
		if (f[i][0] == '\0')
			return -1;
	return n;
}

static int
parse_v1(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why)
{
	char line[PROXY_V1_MAX + 1], *f[6];
	size_t i, end = 0, lim = min_sz(n, PROXY_V1_MAX);
	int nf, af;

	if (memcmp(p, v1_sig, min_sz(n, sizeof(v1_sig))) != 0) {
		*why = "not a PROXY header";
		return -1;
	}
	for (i = 0; i < lim; i++) {
		if (p[i] == '\r') {
			if (i + 2 > PROXY_V1_MAX) {
				*why = "PROXY v1: no CRLF within 107 bytes";
				return -1;
			}
			if (i + 1 >= n)
				return 0;
			if (p[i + 1] != '\n') {
				*why = "PROXY v1: CR not followed by LF";
				return -1;
			}
			end = i + 2;
			break;
		}
		if (p[i] < 0x20 || p[i] > 0x7e) {
			*why = "PROXY v1: control or non-ASCII byte";
			return -1;
		}
	}
	if (end == 0) {
		if (n >= PROXY_V1_MAX) {
			*why = "PROXY v1: no CRLF within 107 bytes";
			return -1;
		}
		return 0;
	}
	/* line = everything between "PROXY " and CRLF */
	memcpy(line, p + sizeof(v1_sig), end - 2 - sizeof(v1_sig));
	line[end - 2 - sizeof(v1_sig)] = '\0';
	memset(h, 0, sizeof(*h));
	h->version = 1;
	/* "UNKNOWN" may be followed by anything: the receiver ignores it. */
	if (strncmp(line, "UNKNOWN", 7) == 0 &&
	    (line[7] == '\0' || line[7] == ' ')) {
		h->local = 1;
		return (int)end;
	}
	if ((nf = v1_fields(line, f, 6)) != 5) {
		*why = "PROXY v1: expected protocol, 2 addresses and 2 ports";
		return -1;
	}
	if (strcmp(f[0], "TCP4") == 0)
		af = AF_INET;
	else if (strcmp(f[0], "TCP6") == 0)
		af = AF_INET6;
	else {
		*why = "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN";
		return -1;
	}
	if (inet_pton(af, f[1], h->src) != 1 || inet_pton(af, f[2], h->dst) != 1) {
		*why = "PROXY v1: bad address";
		return -1;
	}
	if (v1_port(f[3], &h->sport) == -1 || v1_port(f[4], &h->dport) == -1) {
		*why = "PROXY v1: bad port";
		return -1;
	}
	h->family = af;
	return (int)end;
}

static int
parse_v2(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why)
{
	size_t len, alen;
	int cmd, fam, proto;

	if (memcmp(p, v2_sig, min_sz(n, sizeof(v2_sig))) != 0) {
		*why = "not a PROXY header";
		return -1;
	}
	if (n > 12) {
		if ((p[12] >> 4) != 2) {
			*why = "PROXY v2: version is not 2";
			return -1;
		}
		if ((p[12] & 0x0f) > V2_CMD_PROXY) {
			*why = "PROXY v2: unknown command";
			return -1;
		}
	}
	if (n < PROXY_V2_HDR)
		return 0;
	cmd = p[12] & 0x0f;
	fam = p[13] >> 4;
	proto = p[13] & 0x0f;
	len = ((size_t)p[14] << 8) | p[15];
	if (len > PROXY_V2_LEN_MAX) {
		*why = "PROXY v2: header longer than 1024 bytes";
		return -1;
	}
	/* Check what the first 16 bytes tell before waiting for the rest:
	 * a bad family is refused without reading its addresses. */
	if (cmd == V2_CMD_PROXY) {
		if (fam == V2_FAM_UNIX) {
			*why = "PROXY v2: UNIX addresses are not supported";
			return -1;
		}
		if (fam > V2_FAM_INET6) {
			*why = "PROXY v2: unknown address family";
			return -1;
		}
		if (fam != V2_FAM_UNSPEC && proto != V2_PROTO_STREAM) {
			*why = "PROXY v2: not a stream (TCP) connection";
			return -1;
		}
		alen = fam == V2_FAM_INET ? 12 : fam == V2_FAM_INET6 ? 36 : 0;
		if (len < alen) {
			*why = "PROXY v2: length too short for the addresses";
			return -1;
		}
	}
	if (n < PROXY_V2_HDR + len)
		return 0;
	memset(h, 0, sizeof(*h));
	h->version = 2;
	/* LOCAL (the proxy's own connection, e.g. a health check) and
	 * UNSPEC carry no client: keep the real peer. TLVs after the
	 * addresses are skipped: nothing here needs them. */
	if (cmd == V2_CMD_LOCAL || fam == V2_FAM_UNSPEC) {
		h->local = 1;
		return (int)(PROXY_V2_HDR + len);
	}
	p += PROXY_V2_HDR;
	if (fam == V2_FAM_INET) {
		h->family = AF_INET;
		memcpy(h->src, p, 4);
		memcpy(h->dst, p + 4, 4);
		h->sport = (uint16_t)((p[8] << 8) | p[9]);
		h->dport = (uint16_t)((p[10] << 8) | p[11]);
	} else {
		h->family = AF_INET6;
		memcpy(h->src, p, 16);
		memcpy(h->dst, p + 16, 16);
		h->sport = (uint16_t)((p[32] << 8) | p[33]);
		h->dport = (uint16_t)((p[34] << 8) | p[35]);
	}
	return (int)(PROXY_V2_HDR + len);
}

int
proxy_parse(const uint8_t *p, size_t n, struct proxy_hdr *h, const char **why)
{
	if (n == 0)
		return 0;
	if (p[0] == 'P')
		return parse_v1(p, n, h, why);
	if (p[0] == 0x0d)
		return parse_v2(p, n, h, why);
	*why = "not a PROXY header";
	return -1;
}
