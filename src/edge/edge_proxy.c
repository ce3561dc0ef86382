/* edge_proxy.c - reading the PROXY header of a front load balancer
 * (edge_proxy.h). */
#include "edge/edge_proxy.h"
#include "edge/edge_lis.h"
#include "edge/proxy_parse.h"
#include "common/ev.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>

/* A connection whose PROXY header is being read; it becomes a session (or
 * is refused) once the header is whole. */
struct eproxy {
	struct ev_io	 io;
	struct esvc	*svc;
	struct net_addr	 peer;
	uint8_t		 hdr[PROXY_MAX];
	size_t		 have;
	uint64_t	 deadline;
	TAILQ_ENTRY(eproxy) q;		/* FIFO: deadline order */
};

static TAILQ_HEAD(, eproxy) proxies = TAILQ_HEAD_INITIALIZER(proxies);
static size_t proxy_n;

static void
proxy_unlink(struct eproxy *x)
{
	TAILQ_REMOVE(&proxies, x, q);
	proxy_n--;
	ev_del(&x->io);
}

/* Close a waiting connection without a word: its service went away. */
static void
proxy_drop(struct eproxy *x)
{
	proxy_unlink(x);
	close(x->io.fd);
	free(x);
}

static void
proxy_fail(struct eproxy *x, enum sess_end end, const char *why)
{
	proxy_unlink(x);
	esvc_deny(x->svc, x->io.fd, (struct sockaddr *)&x->peer.ss, end, why);
	free(x);
}

static void
sockaddr_of(struct sockaddr_storage *ss, int family, const uint8_t *addr,
    uint16_t port)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;

	memset(ss, 0, sizeof(*ss));
	ss->ss_family = (sa_family_t)family;
	if (family == AF_INET) {
		memcpy(&s4->sin_addr, addr, 4);
		s4->sin_port = htons(port);
	} else {
		memcpy(&s6->sin6_addr, addr, 16);
		s6->sin6_port = htons(port);
	}
}

/* The header is whole and valid: it names the client, or (LOCAL, as in
 * a health check) says to keep the peer. */
static void
proxy_done(struct eproxy *x, const struct proxy_hdr *h)
{
	struct sockaddr_storage client = x->peer.ss, local;
	socklen_t sl = sizeof(local);

	if (!h->local) {
		sockaddr_of(&client, h->family, h->src, h->sport);
		sockaddr_of(&local, h->family, h->dst, h->dport);
	} else if (getsockname(x->io.fd, (struct sockaddr *)&local,
	    &sl) == -1) {
		memset(&local, 0, sizeof(local));
		local.ss_family = client.ss_family;
	}
	proxy_unlink(x);
	esvc_client(x->svc, x->io.fd, (struct sockaddr *)&client,
	    (struct sockaddr *)&local);
	free(x);
}

/* Read the header without taking a byte of what follows it: peek, let
 * the parser say how long the header is, then consume exactly that. A
 * header still incomplete is consumed as far as it goes (every byte
 * peeked is header), so a slow sender cannot make epoll spin on bytes
 * we keep peeking at. */
static void
proxy_read(struct ev_io *io, uint32_t events)
{
	struct eproxy *x = (struct eproxy *)(void *)io;
	struct proxy_hdr h;
	const char *perr;
	char why[160];
	ssize_t n, want;
	int r;

	(void)events;
	n = recv(io->fd, x->hdr + x->have, sizeof(x->hdr) - x->have, MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		proxy_fail(x, SE_ERROR, n == 0 ?
		    "closed before the PROXY header" :
		    "reset before the PROXY header");
		return;
	}
	r = proxy_parse(x->hdr, x->have + (size_t)n, &h, &perr);
	if (r == -1) {
		snprintf(why, sizeof(why), "bad PROXY header: %s", perr);
		proxy_fail(x, SE_ERROR, why);
		return;
	}
	want = r > 0 ? (ssize_t)((size_t)r - x->have) : n;
	if (recv(io->fd, x->hdr + x->have, (size_t)want, 0) != want) {
		proxy_fail(x, SE_ERROR, "PROXY header: short read");
		return;
	}
	x->have += (size_t)want;
	if (r > 0)
		proxy_done(x, &h);
}

void
proxy_start(struct esvc *svc, int fd, const struct net_addr *peer)
{
	struct eproxy *x;

	if (proxy_n >= EDGE_PROXY_PENDING_MAX) {
		esvc_deny(svc, fd, (const struct sockaddr *)&peer->ss, SE_LIMIT,
		    "too many connections waiting for a PROXY header");
		return;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		log_warn("PROXY header: out of memory");
		close(fd);
		return;
	}
	ev_io_init(&x->io, fd, proxy_read);
	x->svc = svc;
	x->peer = *peer;
	x->deadline = ev_now() + EDGE_PROXY_MS;
	if (ev_set(&x->io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	TAILQ_INSERT_TAIL(&proxies, x, q);
	proxy_n++;
}

void
proxy_svc_gone(const struct esvc *svc)
{
	struct eproxy *x, *xn;

	for (x = TAILQ_FIRST(&proxies); x != NULL; x = xn) {
		xn = TAILQ_NEXT(x, q);
		if (x->svc == svc)
			proxy_drop(x);
	}
}

int
proxy_busy(void)
{
	return !TAILQ_EMPTY(&proxies);
}

void
proxy_tick(uint64_t now)
{
	struct eproxy *x;

	while ((x = TAILQ_FIRST(&proxies)) != NULL && now >= x->deadline)
		proxy_fail(x, SE_TIMEOUT, "no PROXY header within 5 s");
}

void
proxy_shutdown(void)
{
	struct eproxy *x;

	while ((x = TAILQ_FIRST(&proxies)) != NULL)
		proxy_drop(x);
}
