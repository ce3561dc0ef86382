/* dial.c - the agent's connections (edges, backends). Only the agent
 * links this file: the edge must never connect toward the inside, so it
 * does not contain this general dialler; its one connect(), for
 * outbound sessions, is in edge_out.c behind the policy check. */
#include "agent/dial.h"
#include "agent/bg.h"
#include "common/log.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

static void
dial_io(struct ev_io *io, uint32_t events)
{
	struct dial *d = (struct dial *)(void *)io;
	int err, fd = io->fd;

	(void)events;
	err = d->known ? d->err : net_sock_error(fd);
	ev_del(io);
	d->active = 0;
	if (err != 0) {
		close(fd);
		d->done(d, -1, err);
		return;
	}
	(void)net_set_nodelay(fd);
	d->done(d, fd, 0);
}

int
dial_start(struct dial *d, const struct net_addr *a, dial_cb *cb, void *arg)
{
	return dial_start_from(d, a, NULL, cb, arg);
}

/* Bind fd to src, a foreign address. 0 or -1 with errno. */
static int
bind_transparent(int fd, const struct net_addr *src)
{
	int one = 1, v4 = src->ss.ss_family == AF_INET;
	uint16_t port = v4 ?
	    ((const struct sockaddr_in *)(const void *)&src->ss)->sin_port :
	    ((const struct sockaddr_in6 *)(const void *)&src->ss)->sin6_port;

	if (setsockopt(fd, v4 ? SOL_IP : SOL_IPV6, v4 ? IP_TRANSPARENT :
	    IPV6_TRANSPARENT, &one, sizeof(one)) == -1)
		return -1;
	/* Without a port, take one at connect time, per destination: many
	 * sessions of one partner then never run out of ports. */
	if (port == 0)
		(void)setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
	return bind(fd, (const struct sockaddr *)&src->ss, src->len);
}

int
dial_start_from(struct dial *d, const struct net_addr *a,
    const struct net_addr *src, dial_cb *cb, void *arg)
{
	const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
	int fd, rc, saved;

	fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (src != NULL && bind_transparent(fd, src) == -1)
		goto fail;
	if ((rc = connect(fd, sa, a->len)) == -1 && errno != EINPROGRESS)
		goto fail;
	ev_io_init(&d->io, fd, dial_io);
	d->done = cb;
	d->arg = arg;
	d->known = 0;
	d->err = 0;
	/* On loopback and nearby hosts the handshake is often over by the
	 * time connect() returns: asking again says so (0, or the error it
	 * ended with) and saves waiting on epoll. EALREADY: still going. */
	if (rc == 0 || connect(fd, sa, a->len) == 0)
		d->known = 1;
	else if (errno != EALREADY && errno != EINPROGRESS) {
		d->known = 1;
		d->err = errno;
	}
	/* Even an immediate outcome reports through the loop, so callers
	 * never see done() re-enter them. */
	if (d->known && ev_defer(&d->io, EPOLLOUT) == 0) {
		d->active = 1;
		return 0;
	}
	if (d->known && d->err != 0) {
		errno = d->err;
		goto fail;
	}
	d->known = 0;
	if (ev_set(&d->io, EPOLLOUT) == -1)
		goto fail;
	d->active = 1;
	return 0;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

void
dial_cancel(struct dial *d)
{
	if (!d->active)
		return;
	ev_forget(&d->io);
	close(d->io.fd);
	d->active = 0;
}

int
dial_resolve(const char *host, const char *port, struct net_addr *a,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0 || res == NULL) {
		snprintf(err, errlen, "%s:%s: %s", host, port,
		    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	memset(a, 0, sizeof(*a));
	memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
	a->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* --- lookups off the loop ------------------------------------------------ */

struct dial_lookup {
	char		 host[NI_MAXHOST];
	char		 port[NI_MAXSERV];
	dial_lookup_cb	*cb;		/* NULL: cancelled */
	void		*arg;
	int		 rc;		/* the thread's answer */
	struct net_addr	 a;
	char		 err[256];
};

static void
lk_work(void *p)
{
	struct dial_lookup *l = p;

	l->rc = dial_resolve(l->host, l->port, &l->a, l->err, sizeof(l->err));
}

static void
lk_done(void *p)
{
	struct dial_lookup *l = p;

	if (l->cb != NULL)
		l->cb(l->arg, l->rc == 0 ? &l->a : NULL, l->err);
	free(l);
}

/* An address needs no DNS server: answered at once, without a thread. */
static int
lk_numeric(const char *host)
{
	struct in6_addr a;

	return inet_pton(AF_INET, host, &a) == 1 ||
	    inet_pton(AF_INET6, host, &a) == 1;
}

struct dial_lookup *
dial_lookup(const char *host, const char *port, dial_lookup_cb *cb,
    void *arg)
{
	struct dial_lookup *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	snprintf(l->host, sizeof(l->host), "%s", host);
	snprintf(l->port, sizeof(l->port), "%s", port);
	l->cb = cb;
	l->arg = arg;
	if (bg_run(lk_work, lk_done, l, lk_numeric(host)) == -1) {
		free(l);
		return NULL;
	}
	return l;
}

void
dial_lookup_cancel(struct dial_lookup *l)
{
	if (l != NULL)
		l->cb = NULL;
}
