/* proxy_enc.c - PROXY protocol v1/v2 headers for backends (the agent
 * writes one before a client's bytes, with proxy_protocol = v1 | v2). */
#include "agent/proxy_enc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

#define V2_HDR		16
#define V2_CMD_PROXY	0x1
#define V2_FAM_INET	0x1
#define V2_FAM_INET6	0x2
#define V2_PROTO_STREAM	0x1

/* The 16-byte form of sa (IPv4 as IPv4-mapped) or its 4-byte form. */
static int
addr_bytes(const struct sockaddr *sa, int want6, uint8_t *out, uint16_t *port)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;

	if (sa->sa_family == AF_INET) {
		*port = ntohs(s4->sin_port);
		if (!want6) {
			memcpy(out, &s4->sin_addr, 4);
			return 0;
		}
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &s4->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && want6) {
		*port = ntohs(s6->sin6_port);
		memcpy(out, &s6->sin6_addr, 16);
		return 0;
	}
	return -1;
}

int
proxy_encode(int version, const struct sockaddr *src,
    const struct sockaddr *dst, uint8_t *out, size_t outlen)
{
	uint8_t a[16], b[16];
	char as[INET6_ADDRSTRLEN], bs[INET6_ADDRSTRLEN];
	uint16_t sport, dport;
	size_t alen;
	int six, n;

	if ((src->sa_family != AF_INET && src->sa_family != AF_INET6) ||
	    (dst->sa_family != AF_INET && dst->sa_family != AF_INET6))
		return -1;
	six = src->sa_family == AF_INET6 || dst->sa_family == AF_INET6;
	alen = six ? 16 : 4;
	if (addr_bytes(src, six, a, &sport) == -1 ||
	    addr_bytes(dst, six, b, &dport) == -1)
		return -1;
	if (version == 1) {
		if (inet_ntop(six ? AF_INET6 : AF_INET, a, as, sizeof(as)) == NULL ||
		    inet_ntop(six ? AF_INET6 : AF_INET, b, bs, sizeof(bs)) == NULL)
			return -1;
		n = snprintf((char *)out, outlen, "PROXY %s %s %s %u %u\r\n",
		    six ? "TCP6" : "TCP4", as, bs, sport, dport);
		if (n < 0 || (size_t)n >= outlen)
			return -1;
		return n;
	}
	if (version != 2 || outlen < V2_HDR + 2 * alen + 4)
		return -1;
	memcpy(out, v2_sig, sizeof(v2_sig));
	out[12] = 0x20 | V2_CMD_PROXY;
	out[13] = (uint8_t)(((six ? V2_FAM_INET6 : V2_FAM_INET) << 4) |
	    V2_PROTO_STREAM);
	out[14] = 0;
	out[15] = (uint8_t)(2 * alen + 4);
	memcpy(out + 16, a, alen);
	memcpy(out + 16 + alen, b, alen);
	out[16 + 2 * alen] = (uint8_t)(sport >> 8);
	out[17 + 2 * alen] = (uint8_t)sport;
	out[18 + 2 * alen] = (uint8_t)(dport >> 8);
	out[19 + 2 * alen] = (uint8_t)dport;
	return (int)(V2_HDR + 2 * alen + 4);
}
