/* proxy_parse.h - the PROXY protocol (versions 1 and 2), as specified by
 * the HAProxy project: a header a proxy sends before any other byte to say
 * who the real client is. The edge parses the headers of front load
 * balancers (accept_proxy_from).
 *
 * Pure functions over byte arrays: no I/O, no allocation, so the parser
 * can be unit-tested and fuzzed on its own. */
#ifndef SP_PROXY_PARSE_H
#define SP_PROXY_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_V1_MAX	107	/* whole v1 line, CRLF included (spec) */
#define PROXY_V2_HDR	16	/* signature, ver/cmd, fam/proto, length */
/* The v2 length field allows 65535 bytes of addresses and TLVs; we accept
 * what a load balancer really sends (addresses plus a few TLVs) and no
 * more, so a pending header costs a small fixed buffer. */
#define PROXY_V2_LEN_MAX 1008
#define PROXY_MAX	(PROXY_V2_HDR + PROXY_V2_LEN_MAX)	/* 1024 */

struct proxy_hdr {
	int		version;	/* 1 or 2 */
	/* 1 when the header carries no address to use (v2 LOCAL, v2
	 * UNSPEC, v1 UNKNOWN): the receiver keeps the real peer address. */
	int		local;
	int		family;		/* AF_INET or AF_INET6 unless local */
	uint8_t		src[16];	/* network order; 4 bytes for AF_INET */
	uint8_t		dst[16];
	uint16_t	sport;
	uint16_t	dport;
};

/* Parse the PROXY header at the start of p[0, n).
 * Returns the header's length (> 0) when a whole, valid header is there
 * (bytes after it are not looked at), 0 when p is a valid beginning of a
 * header but more bytes are needed, or -1 with *why set when p cannot be
 * the beginning of a valid header (wrong signature, bad syntax, header
 * too long, unsupported family). Never reads past n or past PROXY_MAX. */
int	proxy_parse(const uint8_t *p, size_t n, struct proxy_hdr *h,
	    const char **why);

#endif
