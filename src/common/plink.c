/* plink.c - a plain data link as a pump endpoint (plink.h). */
#include "common/plink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HDR	4

static struct plink *
plink_of(struct pend *e)
{
	return (struct plink *)(void *)e;
}

static ssize_t
fail(struct pend *e, const char *why)
{
	e->code = SE_ERROR;
	snprintf(e->err, sizeof(e->err), "%s", why);
	return PEND_ERR;
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* The peer broke the chunk protocol. */
static ssize_t
broken(struct plink *l, const char *why)
{
	l->broken = 1;
	return fail(&l->s.e, why);
}

/* The refusal chunk is whole: fail with what it says. */
static ssize_t
refused(struct plink *l)
{
	struct pend *e = &l->s.e;
	enum sess_end code;
	size_t i, n = l->refusal_len - 1u;

	if (end_from_wire(l->refusal[0], &code) == -1)
		code = SE_REFUSED;
	e->code = code;
	/* Text from the peer goes into logs: printable only. */
	if (n > sizeof(e->err) - 1)
		n = sizeof(e->err) - 1;
	for (i = 0; i < n; i++) {
		uint8_t c = l->refusal[1 + i];
		e->err[i] = (char)(c >= 0x20 && c <= 0x7e ? c : '?');
	}
	e->err[n] = '\0';
	free(l->refusal);
	l->refusal = NULL;
	return PEND_ERR;
}

/* Read what is left of the refusal chunk. */
static ssize_t
refusal_read(struct plink *l)
{
	size_t off = l->refusal_len - l->rx_left;
	ssize_t n;

	while (l->rx_left > 0) {
		n = recv(l->s.io.fd, l->refusal + off, l->rx_left, 0);
		if (n == 0)
			return fail(&l->s.e, "data link closed inside a refusal");
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return PEND_AGAIN;
			return fail(&l->s.e, strerror(errno));
		}
		off += (size_t)n;
		l->rx_left -= (uint32_t)n;
	}
	return refused(l);
}

/* Make sure a chunk is open for reading. 1: its payload is next (rx_left
 * > 0), PEND_AGAIN, PEND_EOF (the marker), PEND_ERR (a FIN before it). */
static ssize_t
chunk_rx(struct plink *l)
{
	struct psock *s = &l->s;
	uint32_t len;
	ssize_t n;

	if (l->rx_end)
		return PEND_EOF;	/* held from the read before */
	if (l->rx_refusal)
		return refusal_read(l);
	while (l->rx_left == 0) {
		/* Exact reads: not one byte of what follows the marker (the
		 * next session) is taken from the socket. */
		n = recv(s->io.fd, l->rx_hdr + l->rx_have, HDR - l->rx_have, 0);
		if (n == 0)
			return fail(&s->e, s->e.kept_err != 0 ?
			    strerror(s->e.kept_err) :
			    "data link closed before the session's end");
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return PEND_AGAIN;
			return fail(&s->e, strerror(errno));
		}
		l->rx_have += (uint8_t)n;
		if (l->rx_have < HDR)
			continue;
		l->rx_have = 0;
		len = get32(l->rx_hdr);
		if (len == PLINK_CHUNK_REFUSE && !l->rx_any && l->peer_refuses) {
			l->rx_any = 1;
			l->rx_refusal = 1;
			continue;	/* the refusal chunk's own header */
		}
		l->rx_any = 1;
		if (l->rx_refusal) {
			if (len == 0 || len > PLINK_REFUSAL_MAX)
				return broken(l, "data link sent a bad refusal");
			if ((l->refusal = malloc(len)) == NULL)
				return fail(&s->e, "out of memory");
			l->refusal_len = (uint16_t)len;
			l->rx_left = len;
			return refusal_read(l);
		}
		if (len == 0) {
			l->rx_end = 1;
			return PEND_EOF;
		}
		if (len > PLINK_CHUNK_MAX)
			return broken(l, "data link sent a chunk over 16 MiB");
		l->rx_left = len;
	}
	return 1;
}

/* Before reading up to *n bytes: the chunk's header, after which *n is
 * cut to what the chunk has left. */
static ssize_t
read_begin(struct plink *l, size_t *n)
{
	ssize_t r;

	if ((r = chunk_rx(l)) != 1)
		return r;
	if (*n > l->rx_left)
		*n = l->rx_left;
	return 1;
}

/* A read of r bytes (or PEND_*): count it against the open chunk; an EOF
 * inside a chunk is an error. */
static ssize_t
read_done(struct plink *l, ssize_t r)
{
	if (r > 0)
		l->rx_left -= (uint32_t)r;
	if (r == PEND_EOF)
		return fail(&l->s.e, "data link closed inside a chunk");
	return r;
}

/* Send what is left of the open header; more: its payload follows at
 * once (MSG_MORE: one segment for both). 1, PEND_AGAIN or PEND_ERR. */
static ssize_t
chunk_tx_hdr(struct plink *l, int more)
{
	ssize_t n;

	while (l->tx_off < l->tx_len) {
		n = send(l->s.io.fd, l->tx_hdr + l->tx_off,
		    (size_t)(l->tx_len - l->tx_off),
		    MSG_NOSIGNAL | (more ? MSG_MORE : 0));
		if (n >= 0) {
			l->tx_off += (uint8_t)n;
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return PEND_AGAIN;
		return fail(&l->s.e, strerror(errno));
	}
	return 1;
}

static void
chunk_tx_open(struct plink *l, uint32_t len)
{
	put32(l->tx_hdr, len);
	l->tx_off = 0;
	l->tx_len = HDR;
	l->tx_left = len;
}

/* Before writing up to *n bytes: a pending socket error; then the header
 * of a chunk for all we have in hand (the pump offers what its buffer or
 * pipe holds, so a bulk transfer costs a header per pipe-full), after
 * which *n is cut to what the chunk has left. */
static ssize_t
write_begin(struct plink *l, size_t *n)
{
	ssize_t r;

	if (l->s.e.kept_err != 0)
		return fail(&l->s.e, strerror(l->s.e.kept_err));
	if (l->tx_left == 0 && l->tx_off >= l->tx_len)
		chunk_tx_open(l, *n > PLINK_CHUNK_MAX ? PLINK_CHUNK_MAX :
		    (uint32_t)*n);
	if ((r = chunk_tx_hdr(l, 1)) != 1)
		return r;
	if (*n > l->tx_left)
		*n = l->tx_left;
	return 1;
}

static ssize_t
write_done(struct plink *l, ssize_t r)
{
	if (r > 0)
		l->tx_left -= (uint32_t)r;
	return r;
}

/* Up to n bytes into p (a copy) or the pipe wfd (a splice), across
 * chunks: a chunk's end is not the socket's, and a short read tells the
 * pump that the socket is empty, so it would wait for epoll to say again
 * what is already there. What ends a read after some bytes (the end
 * marker, an error) is held for the next read, which epoll would not
 * announce (e->held). */
static ssize_t
pl_read(struct plink *l, uint8_t *p, int wfd, size_t n)
{
	struct pend *e = &l->s.e;
	size_t got = 0, want;
	ssize_t r = PEND_AGAIN;

	e->held = 0;
	if (l->rx_err)
		return PEND_ERR;
	while (got < n) {
		want = n - got;
		if ((r = read_begin(l, &want)) != 1)
			break;
		r = read_done(l, p != NULL ? psock_recv(e, p + got, want) :
		    psock_splice_in(e, wfd, want));
		if (r <= 0)
			break;
		got += (size_t)r;
		if ((size_t)r < want)
			break;		/* the socket is empty */
	}
	if (got == 0)
		return r;
	if (r == PEND_ERR)
		l->rx_err = 1;
	e->held = r == PEND_ERR || r == PEND_EOF;
	return (ssize_t)got;
}

static ssize_t
pl_recv(struct pend *e, uint8_t *p, size_t n)
{
	return pl_read(plink_of(e), p, -1, n);
}

static ssize_t
pl_splice_in(struct pend *e, int wfd, size_t n)
{
	return pl_read(plink_of(e), NULL, wfd, n);
}

static ssize_t
pl_send(struct pend *e, const struct iovec *iov, int cnt)
{
	struct plink *l = plink_of(e);
	struct iovec cut[8];
	size_t n = 0, left;
	ssize_t r;
	int i, k;

	for (i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	if ((r = write_begin(l, &n)) != 1)
		return r;
	/* No more than the open chunk has room for. */
	for (i = 0, k = 0, left = n; i < cnt && k < 8 && left > 0; i++, k++) {
		cut[k] = iov[i];
		if (cut[k].iov_len > left)
			cut[k].iov_len = left;
		left -= cut[k].iov_len;
	}
	return write_done(l, psock_send(e, cut, k));
}

static ssize_t
pl_splice_out(struct pend *e, int rfd, size_t n)
{
	struct plink *l = plink_of(e);
	ssize_t r;

	if ((r = write_begin(l, &n)) != 1)
		return r;
	return write_done(l, psock_splice_out(e, rfd, n));
}

static int
pl_shut(struct pend *e)
{
	struct plink *l = plink_of(e);
	ssize_t r;

	if (l->tx_end)
		return 1;
	/* Every chunk is out (nothing waits to be written): the marker
	 * opens no payload. */
	if (l->tx_off >= l->tx_len)
		chunk_tx_open(l, 0);
	if ((r = chunk_tx_hdr(l, 0)) != 1)
		return (int)r;
	l->tx_end = 1;
	return 1;
}

static void
pl_close(struct pend *e, int abort)
{
	struct plink *l = plink_of(e);

	free(l->refusal);
	l->refusal = NULL;
	psock_close(e, abort);
}

static const struct pend_ops plink_ops = {
	.recv = pl_recv,
	.send = pl_send,
	.splice_in = pl_splice_in,
	.splice_out = pl_splice_out,
	.shut = pl_shut,
	.watch = psock_watch,
	.close = pl_close,
};

void
plink_init(struct plink *l, int fd, int registered, int peer_refuses)
{
	memset(l, 0, sizeof(*l));
	psock_init(&l->s, fd, registered);
	l->s.e.ops = &plink_ops;
	l->s.e.rawfd = -1;	/* chunked: never read as it is */
	l->peer_refuses = peer_refuses != 0;
}

int
plink_take(struct plink *l, int *registered)
{
	int fd = l->s.io.fd;

	if (!l->rx_end || !l->tx_end || l->s.e.failed || l->s.e.wdead ||
	    fd == -1 || l->s.hup || l->s.e.kept_err != 0)
		return -1;
	*registered = ev_release(&l->s.io);
	l->s.io.fd = -1;
	return fd;
}

int
plink_refuse(int fd, enum sess_end code, const char *why)
{
	uint8_t b[HDR + HDR + PLINK_REFUSAL_MAX];
	size_t n = strnlen(why, PLINK_REFUSAL_MAX - 1);
	ssize_t w;

	put32(b, PLINK_CHUNK_REFUSE);
	put32(b + HDR, (uint32_t)(1 + n));
	b[2 * HDR] = (uint8_t)code;
	memcpy(b + 2 * HDR + 1, why, n);
	w = send(fd, b, 2 * HDR + 1 + n, MSG_NOSIGNAL);
	if (w != (ssize_t)(2 * HDR + 1 + n)) {
		if (w >= 0)
			errno = EAGAIN;
		return -1;
	}
	return shutdown(fd, SHUT_WR);
}
