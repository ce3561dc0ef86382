/* net.c - numeric addresses and listening sockets. */
#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int
net_split(const char *s, char *host, size_t hostlen, char *port,
    size_t portlen)
{
	const char *colon, *hs, *he;
	size_t n;

	if (s[0] == '[') {
		he = strchr(s, ']');
		if (he == NULL || he[1] != ':')
			return -1;
		hs = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hs = s;
		he = colon;
		/* An unbracketed IPv6 literal is ambiguous. */
		if (memchr(hs, ':', (size_t)(he - hs)) != NULL)
			return -1;
	}
	n = (size_t)(he - hs);
	if (n == 0 || n >= hostlen)
		return -1;
	memcpy(host, hs, n);
	host[n] = '\0';
	n = strlen(colon + 1);
	if (n == 0 || n >= portlen)
		return -1;
	memcpy(port, colon + 1, n + 1);
	return 0;
}

int
net_from_ip(const char *ip, uint16_t port, struct net_addr *a)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;

	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		a->len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		a->len = sizeof(*s6);
		return 0;
	}
	return -1;
}

static int
net_parse_port(const char *p, uint16_t *port)
{
	char *end;
	long v;

	if (*p < '0' || *p > '9')
		return -1;
	errno = 0;
	v = strtol(p, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int
net_parse(const char *s, struct net_addr *a, char *err, size_t errlen)
{
	char host[NET_ADDRSTR], port[16];
	struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
	uint16_t p;

	memset(a, 0, sizeof(*a));
	if (net_split(s, host, sizeof(host), port, sizeof(port)) == -1) {
		snprintf(err, errlen, "'%s' is not ADDRESS:PORT", s);
		return -1;
	}
	if (net_parse_port(port, &p) == -1) {
		snprintf(err, errlen, "'%s': bad port", s);
		return -1;
	}
	if (strcmp(host, "*") == 0) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons(p);
		a->len = sizeof(*sin);
	} else if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(p);
		a->len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(p);
		a->len = sizeof(*sin6);
	} else {
		snprintf(err, errlen, "'%s': not a numeric IP address", s);
		return -1;
	}
	return 0;
}

void
net_fmt_ip(const struct sockaddr *sa, char *out, size_t outlen,
    uint16_t *port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

	*port = 0;
	if (sa->sa_family == AF_INET) {
		if (inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)outlen) == NULL)
			snprintf(out, outlen, "?");
		*port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		if (inet_ntop(AF_INET6, &sin6->sin6_addr, out, (socklen_t)outlen) == NULL)
			snprintf(out, outlen, "?");
		*port = ntohs(sin6->sin6_port);
	} else
		snprintf(out, outlen, "?");
}

void
net_fmt(const struct sockaddr *sa, char *out, size_t outlen)
{
	char ip[NET_ADDRSTR];
	uint16_t port;

	net_fmt_ip(sa, ip, sizeof(ip), &port);
	if (sa->sa_family == AF_INET6)
		snprintf(out, outlen, "[%s]:%u", ip, port);
	else
		snprintf(out, outlen, "%s:%u", ip, port);
}

int
net_listen(const struct net_addr *a, int backlog, char *err, size_t errlen)
{
	int fd, one = 1;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		goto fail;
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1)
		goto fail;
	/* Linux copies TCP_NODELAY to each accepted socket: one system
	 * call here instead of one per connection. Small frames and replies
	 * go out at once (set-up latency is a round trip or two of them). */
	if (net_set_nodelay(fd) == -1)
		goto fail;
	if (listen(fd, backlog) == -1)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "%s", strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

int
net_accept(int lfd, struct net_addr *peer)
{
	peer->len = sizeof(peer->ss);
	return accept4(lfd, (struct sockaddr *)&peer->ss, &peer->len,
	    SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int
net_is_any(const struct net_addr *a)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;

	if (a->ss.ss_family == AF_INET)
		return sin->sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr);
	return 1;
}

int
net_sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		return errno;
	return err;
}

int
net_set_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
