/* proxy_enc.h - the PROXY protocol header (versions 1 and 2, as specified
 * by the HAProxy project) that the agent sends a backend before any byte
 * of the client's, to say who the client is. A pure function over byte
 * arrays, unit-tested. */
#ifndef SP_PROXY_ENC_H
#define SP_PROXY_ENC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_ENC_MAX	108	/* the longest header written (v1) */

/* Encode a header of the given version (1 or 2) saying that src (the
 * client) connected to dst; src and dst are sockaddr_in or sockaddr_in6.
 * If the families differ, an IPv4 address is written as IPv4-mapped
 * IPv6. Returns the number of bytes written to out, or -1 if out is too
 * small or an argument is bad. */
int	proxy_encode(int version, const struct sockaddr *src,
	    const struct sockaddr *dst, uint8_t *out, size_t outlen);

#endif
