/* relay.c - the byte pump between a client and a data link, or a data
 * link and a backend. */
#include "common/relay.h"
#include "common/relay_mt.h"
#include "common/net.h"
#include "common/log.h"
#include "common/tlsx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <unistd.h>
#include <openssl/err.h>

/* A pipe this large lets one splice move what a fast socket has, without
 * pinning much: it holds pages only while bytes are in flight. */
#define RELAY_PIPE_SIZE	(256 * 1024)
/* Empty pipes kept for the next burst: creating one is two descriptors
 * and a system call, and busy relays take and give back on every drain. */
#define RELAY_PIPE_POOL	32

int relay_splice = 1;

/* Per thread, as relay threads (relay_mt.c) splice too. */
static _Thread_local struct relay_pipe pipe_pool[RELAY_PIPE_POOL];
static _Thread_local size_t pipe_pool_n;

static void relay_io(struct ev_io *io, uint32_t events);

/* Counters the main thread reads while a relay thread may write them:
 * one writer, so a relaxed load and store is enough. */
static void
count(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n,
	    __ATOMIC_RELAXED);
}

uint64_t
relay_bytes(const struct relay *r, int i)
{
	return __atomic_load_n(&r->bytes[i], __ATOMIC_RELAXED);
}

uint64_t
relay_spliced(const struct relay *r, int i)
{
	return __atomic_load_n(&r->spliced[i], __ATOMIC_RELAXED);
}

uint64_t
relay_last_active(const struct relay *r)
{
	return __atomic_load_n(&r->last_active, __ATOMIC_RELAXED);
}

/* The relay ended: done() runs on the main thread. */
static void
relay_end(struct relay *r, int first, const char *err)
{
	if (relay_mt_here())
		relay_mt_finish(r, first, err);
	else
		r->done(r, first, err);
}

#define RESET_DRAIN_MS	5000	/* longest wait for a reset's bytes to leave */
#define RESET_LINGER_MAX 4096	/* sockets waiting to be reset */

/* A plain socket to be reset once the kernel has sent what was written
 * to it (see end_close). */
struct rlinger {
	int		 fd;
	uint64_t	 deadline;
	struct rlinger	*next;
};

static struct rlinger *lingering;
static size_t nlingering;

void
relay_reset_now(int fd)
{
	struct linger lg = { 1, 0 };

	/* A reset tells the peer the stream was cut, not complete. */
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static int
unsent(int fd)
{
	int q = 0;

	/* SIOCOUTQ: bytes not yet acknowledged by the peer. Where ioctl is
	 * not allowed (the edge's seccomp filter) this fails: reset now. */
	return ioctl(fd, SIOCOUTQ, &q) == -1 ? 0 : q;
}

/* Reset fd, but only after the bytes already written to it have reached
 * the peer: a reset throws away the socket's send queue, and the peer
 * must get every byte the other side sent before it failed, then the
 * reset, as it would have without a relay in between. */
void
relay_reset_after_drain(int fd)
{
	struct rlinger *l;

	if (unsent(fd) == 0 || nlingering >= RESET_LINGER_MAX ||
	    (l = malloc(sizeof(*l))) == NULL) {
		relay_reset_now(fd);
		return;
	}
	l->fd = fd;
	l->deadline = ev_now() + RESET_DRAIN_MS;
	l->next = lingering;
	lingering = l;
	nlingering++;
}

void
relay_tick(uint64_t now)
{
	struct rlinger **pp = &lingering, *l;

	while ((l = *pp) != NULL) {
		if (now < l->deadline && unsent(l->fd) > 0) {
			pp = &l->next;
			continue;
		}
		*pp = l->next;
		nlingering--;
		relay_reset_now(l->fd);
		free(l);
	}
}

/* --- pipes -------------------------------------------------------------- */

/* Give p a pipe if it has none. 0, or -1 (out of descriptors, say). */
static int
pipe_take(struct relay_pipe *p)
{
	int fds[2], sz;

	if (p->fd[0] != -1)
		return 0;
	if (pipe_pool_n > 0) {
		*p = pipe_pool[--pipe_pool_n];
		return 0;
	}
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
		return -1;
	/* Bigger where the system lets us; the default is 64 KiB. */
	(void)fcntl(fds[1], F_SETPIPE_SZ, RELAY_PIPE_SIZE);
	sz = fcntl(fds[1], F_GETPIPE_SZ);
	p->fd[0] = fds[0];
	p->fd[1] = fds[1];
	p->cap = sz > 0 ? (size_t)sz : 65536;
	p->len = 0;
	p->full = 0;
	return 0;
}

/* Give p's pipe back (or close it if it still holds bytes). */
static void
pipe_release(struct relay_pipe *p)
{
	if (p->fd[0] == -1)
		return;
	if (p->len == 0 && pipe_pool_n < RELAY_PIPE_POOL) {
		p->full = 0;
		pipe_pool[pipe_pool_n++] = *p;
	} else {
		close(p->fd[0]);
		close(p->fd[1]);
	}
	p->fd[0] = p->fd[1] = -1;
	p->len = 0;
	p->full = 0;
}

/* The kernel cannot splice out of p after all: move its bytes into b,
 * which is empty, so the copy path writes them. 0 or -1. */
static int
pipe_to_buf(struct relay_pipe *p, struct buf *b)
{
	ssize_t n;

	if (p->len > BUF_RELAY_SIZE) {
		if ((b->data = malloc(p->len)) == NULL)
			return -1;
		b->size = p->len;
		b->rpos = b->wpos = 0;
	} else if (buf_take(b) == -1)
		return -1;
	while (p->len > 0) {
		n = read(p->fd[0], b->data + b->wpos, p->len);
		if (n <= 0)
			return -1;
		b->wpos += (size_t)n;
		p->len -= (size_t)n;
	}
	pipe_release(p);
	return 0;
}

/* --- one side ----------------------------------------------------------- */

#define CHUNK_HDR	4

/* A framed side: make sure a chunk is open for reading. Returns 1 (its
 * payload is next: rx_left > 0, or the rest is raw: rx_raw), 0 would
 * block, -1 the peer ended its direction (a marker, or a FIN between
 * chunks), -2 error. */
static int
chunk_rx(struct relay_end *e, char *err, size_t errlen)
{
	const uint8_t *h = e->rx_hdr;
	uint32_t len;
	ssize_t n;

	while (e->rx_left == 0) {
		/* Exact reads: not one byte of what follows the marker (the
		 * next session's greeting) is taken from the socket. */
		n = recv(e->io.fd, e->rx_hdr + e->rx_have,
		    CHUNK_HDR - e->rx_have, 0);
		if (n == 0 && e->rx_have == 0 && e->soerr == 0)
			return -1;
		if (n == 0) {
			snprintf(err, errlen, "%s", e->soerr != 0 ?
			    strerror(e->soerr) : "data link closed inside a "
			    "chunk header");
			return -2;
		}
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR) {
				e->rd_want = EPOLLIN;
				return 0;
			}
			snprintf(err, errlen, "%s", strerror(errno));
			return -2;
		}
		e->rx_have += (uint8_t)n;
		if (e->rx_have < CHUNK_HDR)
			continue;
		e->rx_have = 0;
		len = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
		    (uint32_t)h[2] << 8 | h[3];
		if (len == 0) {
			e->rx_end = 1;
			return -1;
		}
		if (len == RELAY_CHUNK_RAW) {
			e->rx_raw = 1;
			return 1;
		}
		if (len > RELAY_CHUNK_MAX) {
			snprintf(err, errlen, "data link sent a chunk of %u "
			    "bytes (at most %u)", len, RELAY_CHUNK_MAX);
			return -2;
		}
		e->rx_left = len;
	}
	return 1;
}

/* A framed side: open a chunk of len payload bytes (0: the end marker)
 * unless one is open already. */
static void
chunk_tx_open(struct relay_end *e, size_t len)
{
	if (e->tx_left > 0 || e->tx_off < e->tx_len)
		return;
	if (len > RELAY_CHUNK_MAX)
		len = RELAY_CHUNK_MAX;
	e->tx_hdr[0] = (uint8_t)(len >> 24);
	e->tx_hdr[1] = (uint8_t)(len >> 16);
	e->tx_hdr[2] = (uint8_t)(len >> 8);
	e->tx_hdr[3] = (uint8_t)len;
	e->tx_off = 0;
	e->tx_len = CHUNK_HDR;
	e->tx_left = (uint32_t)len;
}

/* Send what is left of the open chunk's header; more says its payload
 * follows at once (MSG_MORE: one segment for both). 1 sent, 0 would
 * block, -2 error. */
static int
chunk_tx_hdr(struct relay_end *e, int more, char *err, size_t errlen)
{
	ssize_t n;

	while (e->tx_off < e->tx_len) {
		n = send(e->io.fd, e->tx_hdr + e->tx_off,
		    (size_t)(e->tx_len - e->tx_off),
		    MSG_NOSIGNAL | (more ? MSG_MORE : 0));
		if (n >= 0) {
			e->tx_off += (uint8_t)n;
			continue;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			e->wr_want = EPOLLOUT;
			return 0;
		}
		snprintf(err, errlen, "%s", strerror(errno));
		return -2;
	}
	return 1;
}

/* Whether framed side e reads (rx) or writes chunks now. */
static int
chunked_rx(const struct relay_end *e)
{
	return e->framed && !e->rx_raw;
}

static int
chunked_tx(const struct relay_end *e)
{
	return e->framed && !e->tx_raw;
}

/* Before reading up to *len bytes from plain side e: on a framed side,
 * the chunk's header, after which *len is cut to what the chunk has left
 * (not once the rest of the direction is raw). 1 to read, 0 would block,
 * -1 the peer ended its direction, -2 error. */
static int
read_begin(struct relay_end *e, size_t *len, char *err, size_t errlen)
{
	int r;

	if (!chunked_rx(e))
		return 1;
	if ((r = chunk_rx(e, err, errlen)) != 1)
		return r;
	if (chunked_rx(e) && *len > e->rx_left)
		*len = e->rx_left;
	return 1;
}

/* A read of n >= 0 bytes from plain side e, by recv or splice: count the
 * bytes against the open chunk and return n, or say what a read of 0
 * means: -1 the peer ended its direction, -2 an error (a link closed
 * inside a chunk; or a socket error, which reading SO_ERROR cleared, so
 * it follows the queued bytes instead of an EOF). */
static ssize_t
read_done(struct relay_end *e, ssize_t n, char *err, size_t errlen)
{
	if (n > 0) {
		if (chunked_rx(e))
			e->rx_left -= (uint32_t)n;
		return n;
	}
	if (chunked_rx(e) && e->soerr == 0) {
		snprintf(err, errlen, "data link closed inside a chunk");
		return -2;
	}
	if (e->soerr != 0) {
		snprintf(err, errlen, "%s", strerror(e->soerr));
		return -2;
	}
	return -1;
}

/* Before writing up to *len bytes to plain side e: its pending socket
 * error, and on a framed side the chunk's header, after which *len is cut
 * to what the chunk has left. A bulk direction goes raw instead (see
 * relay.h). 1 to write, 0 would block, -2 error. */
static int
write_begin(struct relay_end *e, size_t *len, char *err, size_t errlen)
{
	int r;

	if (e->soerr != 0) {
		snprintf(err, errlen, "%s", strerror(e->soerr));
		return -2;
	}
	if (!chunked_tx(e))
		return 1;
	if (e->tx_left == 0 && e->tx_off >= e->tx_len &&
	    relay_bytes(e->r, 1 - (int)(e - e->r->e)) >= RELAY_MT_BYTES) {
		memset(e->tx_hdr, 0xff, sizeof(e->tx_hdr));
		e->tx_off = 0;
		e->tx_len = CHUNK_HDR;
		e->tx_to_raw = 1;
	}
	if (e->tx_to_raw) {
		if ((r = chunk_tx_hdr(e, 1, err, errlen)) != 1)
			return r;
		e->tx_raw = 1;
		e->keep = 0;
		return 1;
	}
	chunk_tx_open(e, *len);
	if ((r = chunk_tx_hdr(e, 1, err, errlen)) != 1)
		return r;
	if (*len > e->tx_left)
		*len = e->tx_left;
	return 1;
}

/* n bytes were written to plain side e, by send or splice: count them
 * against the open chunk. Returns n. */
static ssize_t
write_done(struct relay_end *e, ssize_t n)
{
	if (n > 0 && chunked_tx(e))
		e->tx_left -= (uint32_t)n;
	return n;
}

/* Read into b from end e. Returns >0 bytes, 0 would block, -1 EOF,
 * -2 error (err filled). */
static ssize_t
end_read(struct relay_end *e, struct buf *b, char *err, size_t errlen)
{
	ssize_t n;
	uint32_t want;
	int eof, r;

	if (e->ssl == NULL) {
		size_t room = buf_room(b);

		if ((r = read_begin(e, &room, err, errlen)) != 1)
			return r;
		n = recv(e->io.fd, b->data + b->wpos, room, 0);
		if (n >= 0)
			return read_done(e, n, err, errlen);
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			e->rd_want = EPOLLIN;
			return 0;
		}
		snprintf(err, errlen, "%s", strerror(errno));
		return -2;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_read(e->ssl, b->data + b->wpos,
	    buf_room(b) > INT32_MAX ? INT32_MAX : (int)buf_room(b));
	if (r > 0) {
		e->rd_want = EPOLLIN;
		return r;
	}
	switch (tlsx_result(e->ssl, r, &want, &eof, err, errlen)) {
	case TLSX_AGAIN:
		e->rd_want = want;
		return 0;
	case TLSX_DONE:
		return -1;
	default:
		return -2;
	}
}

/* Write from b to end e. Returns >0 bytes, 0 would block, -2 error. */
static ssize_t
end_write(struct relay_end *e, struct buf *b, char *err, size_t errlen)
{
	ssize_t n;
	uint32_t want;
	int eof, r;

	if (e->ssl == NULL) {
		size_t len = buf_len(b);

		if ((r = write_begin(e, &len, err, errlen)) != 1)
			return r;
		n = send(e->io.fd, b->data + b->rpos, len, MSG_NOSIGNAL);
		if (n >= 0)
			return write_done(e, n);
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			e->wr_want = EPOLLOUT;
			return 0;
		}
		snprintf(err, errlen, "%s", strerror(errno));
		return -2;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_write(e->ssl, b->data + b->rpos,
	    buf_len(b) > INT32_MAX ? INT32_MAX : (int)buf_len(b));
	if (r > 0) {
		e->wr_want = EPOLLOUT;
		return r;
	}
	if (tlsx_result(e->ssl, r, &want, &eof, err, errlen) == TLSX_AGAIN) {
		e->wr_want = want;
		return 0;
	}
	if (eof)
		snprintf(err, errlen, "peer closed while we were writing");
	return -2;
}

/* Shut down the write side of e. 1 done, 0 would block, -2 error. */
static int
end_shutdown(struct relay_end *e, char *err, size_t errlen)
{
	uint32_t want;
	int eof, r;

	if (e->ssl == NULL && chunked_tx(e) && e->keep) {
		/* Every chunk is out (nothing waits to be written): the
		 * marker opens no payload. */
		chunk_tx_open(e, 0);
		if ((r = chunk_tx_hdr(e, 0, err, errlen)) != 1)
			return r;
		e->tx_end = 1;
		return 1;
	}
	if (e->ssl == NULL) {
		if (shutdown(e->io.fd, SHUT_WR) == -1 && errno != ENOTCONN) {
			snprintf(err, errlen, "%s", strerror(errno));
			return -2;
		}
		return 1;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_shutdown(e->ssl);
	if (r >= 0)
		return 1;
	if (tlsx_result(e->ssl, r, &want, &eof, err, errlen) == TLSX_AGAIN) {
		e->wr_want = want;
		return 0;
	}
	return -2;
}

/* --- the pump ----------------------------------------------------------- */

static void
end_wdead(struct relay_end *e, const char *err)
{
	e->wdead = 1;
	snprintf(e->werr, sizeof(e->werr), "%s", err);
}

/* Whether direction d (e[d] to e[1-d]) wants to read e[d] now. */
static int
dir_reading(const struct relay *r, int d)
{
	const struct buf *b = &r->b[d];
	const struct relay_pipe *p = &r->p[d];

	if (r->e[d].eof || r->e[1 - d].wdead)
		return 0;
	if (buf_len(b) > 0)
		return buf_room(b) > 0;
	if (p->len > 0)
		return !p->full;
	return 1;
}

/* Whether the next read of direction d goes through a pipe. */
static int
dir_splices(const struct relay *r, int d)
{
	const struct relay_end *src = &r->e[d];

	if (r->p[d].len > 0)
		return 1;		/* already: keep the order */
	if (buf_len(&r->b[d]) > 0 || r->nosplice[d] || r->copy_next[d] ||
	    !src->splice_in || !r->e[1 - d].splice_out)
		return 0;
	/* Bytes OpenSSL has already taken from the socket go first. */
	return src->ssl == NULL || !SSL_has_pending(src->ssl);
}

static void
relay_update(struct relay *r)
{
	struct relay_end *e;
	uint32_t mask;
	int i;

	for (i = 0; i < 2; i++) {
		e = &r->e[i];
		if (e->hup)
			continue;
		mask = 0;
		if (dir_reading(r, i))
			mask |= e->rd_want;
		if (!e->wdead && (buf_len(&r->b[1 - i]) > 0 ||
		    r->p[1 - i].len > 0 || (r->e[1 - i].eof && !e->shut)))
			mask |= e->wr_want;
		if (ev_set(&e->io, mask) == -1)
			log_fatal("epoll_ctl: %s", strerror(errno));
	}
}

/* Splice from the pipe of direction d to its destination. >0 bytes,
 * 0 would block, -2 error. On EINVAL/ENOSYS the direction falls back to
 * copying, with the pipe's bytes moved into its buffer (returns 0 with
 * *again set). */
static ssize_t
dir_splice_out(struct relay *r, int d, int *again, char *err, size_t errlen)
{
	struct relay_end *dst = &r->e[1 - d];
	struct relay_pipe *p = &r->p[d];
	size_t len = p->len;
	ssize_t n;
	int h;

	if ((h = write_begin(dst, &len, err, errlen)) != 1)
		return h;
	n = splice(p->fd[0], NULL, dst->io.fd, NULL, len,
	    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0) {
		p->len -= (size_t)n;
		p->full = 0;
		return write_done(dst, n);
	}
	if (n == 0 || errno == EAGAIN || errno == EINTR) {
		dst->wr_want = EPOLLOUT;
		return 0;
	}
	if (errno == EINVAL || errno == ENOSYS) {
		r->nosplice[d] = 1;
		if (pipe_to_buf(p, &r->b[d]) == -1) {
			snprintf(err, errlen, "cannot copy out of a pipe");
			return -2;
		}
		*again = 1;
		return 0;
	}
	snprintf(err, errlen, "%s", strerror(errno));
	return -2;
}

/* Splice from the source of direction d into its pipe. >0 bytes, 0 would
 * block or fell back to copying (*copy set: read by copy now), -1 EOF,
 * -2 error. */
static ssize_t
dir_splice_in(struct relay *r, int d, int *copy, char *err, size_t errlen)
{
	struct relay_end *src = &r->e[d];
	struct relay_pipe *p = &r->p[d];
	size_t want;
	ssize_t n;
	int h;

	if (pipe_take(p) == -1) {
		/* Out of descriptors: this relay copies instead. */
		r->nosplice[d] = 1;
		*copy = 1;
		return 0;
	}
	want = p->cap - p->len;
	if ((h = read_begin(src, &want, err, errlen)) != 1)
		return h;
	n = splice(src->io.fd, NULL, p->fd[1], NULL, want,
	    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n > 0) {
		p->len += (size_t)n;
		if (p->len >= p->cap)
			p->full = 1;
	}
	if (n >= 0)
		return read_done(src, n, err, errlen);
	if (errno == EAGAIN || errno == EINTR) {
		/* Either the socket is empty or the pipe is full; with bytes
		 * in the pipe, wait for them to drain before asking again. */
		if (p->len > 0)
			p->full = 1;
		else
			src->rd_want = EPOLLIN;
		return 0;
	}
	if (errno == EINVAL || errno == ENOSYS) {
		/* A kTLS record that is not data (alert, ticket, key update)
		 * is for OpenSSL to read; a plain socket the kernel cannot
		 * splice means copying from now on. */
		if (src->ssl != NULL)
			r->copy_next[d] = 1;
		else
			r->nosplice[d] = 1;
		if (p->len > 0)
			p->full = 1;
		else {
			pipe_release(p);
			*copy = 1;
		}
		return 0;
	}
	snprintf(err, errlen, "%s", strerror(errno));
	return -2;
}

/* Whether r should move to a relay thread: a bulk transfer between two
 * plain sockets, every byte spliced, nothing in user-space buffers. */
static int
mt_wanted(const struct relay *r)
{
	int i;

	/* On a relay thread r->mt is not this thread's to read. */
	if (relay_mt_here() || r->mt != MT_MAIN ||
	    r->bytes[0] + r->bytes[1] < RELAY_MT_BYTES)
		return 0;
	for (i = 0; i < 2; i++)
		if (r->e[i].ssl != NULL || !relay_zero_copy(r, i) ||
		    r->nosplice[i] || buf_len(&r->b[i]) > 0)
			return 0;
	return 1;
}

/* Make all the progress possible without blocking, in the directions
 * whose bits are set in dirs. Returns 0 while the relay goes on, 1 once
 * done() was called (r may be freed). */
static int
relay_pump(struct relay *r, unsigned dirs)
{
	char err[256] = "";
	struct relay_end *src, *dst;
	struct relay_pipe *p;
	struct buf *b;
	ssize_t n;
	unsigned drained = 0;	/* directions whose source is empty now */
	int d, progress, s, copy;

	do {
		progress = 0;
		for (d = 0; d < 2; d++) {
			if (!(dirs & (1u << d)))
				continue;
			src = &r->e[d];
			dst = &r->e[1 - d];
			b = &r->b[d];
			p = &r->p[d];
			if (dst->wdead) {
				/* Nothing reaches dst any more: drop what src
				 * sent it and read no more from src. */
				buf_consume(b, buf_len(b));
				buf_release(b);
				pipe_release(p);	/* closes a full one */
				continue;
			}
			if (buf_len(b) > 0) {
				n = end_write(dst, b, err, sizeof(err));
				if (n == -2 && (dst->eof || dst->failed))
					goto fail_dst;
				if (n == -2) {
					/* dst may still have sent bytes we
					 * have not read: pass them on first. */
					end_wdead(dst, err);
					progress = 1;
					continue;
				}
				if (n > 0) {
					buf_consume(b, (size_t)n);
					count(&r->bytes[d], (uint64_t)n);
					progress = 1;
				}
			} else if (p->len > 0) {
				n = dir_splice_out(r, d, &progress, err, sizeof(err));
				if (n == -2 && (dst->eof || dst->failed))
					goto fail_dst;
				if (n == -2) {
					end_wdead(dst, err);
					progress = 1;
					continue;
				}
				if (n > 0) {
					count(&r->bytes[d], (uint64_t)n);
					count(&r->spliced[d], (uint64_t)n);
					progress = 1;
				}
			}
			if (buf_len(b) == 0 && p->len == 0) {
				buf_release(b);
				pipe_release(p);
				if (src->eof && !dst->shut) {
					s = end_shutdown(dst, err, sizeof(err));
					if (s == -2 && (dst->eof || dst->failed))
						goto fail_dst;
					if (s == -2) {
						end_wdead(dst, err);
						progress = 1;
						continue;
					}
					if (s == 1) {
						dst->shut = 1;
						progress = 1;
					}
				}
			}
			if ((drained & (1u << d)) || !dir_reading(r, d))
				continue;
			copy = 0;
			n = 0;
			if (dir_splices(r, d)) {
				n = dir_splice_in(r, d, &copy, err, sizeof(err));
				if (n == -2)
					goto fail_src;
				if (n > 0) {
					/* A short splice emptied the socket:
					 * no need to ask it again this turn
					 * (unless epoll no longer watches it:
					 * then its EOF must be read now). One
					 * that ended a chunk may not have: the
					 * loop is level-triggered, so the next
					 * turn reads on if there is more. */
					if (p->len < p->cap && !p->full &&
					    !src->hup)
						drained |= 1u << d;
					progress = 1;
				} else if (n == 0 && !copy)
					drained |= 1u << d;
			} else
				copy = p->len == 0;
			if (copy) {
				if (buf_take(b) == -1) {
					snprintf(err, sizeof(err), "out of memory");
					goto fail_src;
				}
				r->copy_next[d] = 0;
				n = end_read(src, b, err, sizeof(err));
				if (n == -2)
					goto fail_src;
				/* OpenSSL hands out one record per read:
				 * take what it holds already in one go, so
				 * the write below moves more at once. */
				while (n > 0 && src->ssl != NULL &&
				    buf_room(b) > (size_t)n &&
				    SSL_has_pending(src->ssl)) {
					b->wpos += (size_t)n;
					progress = 1;
					n = end_read(src, b, err, sizeof(err));
					if (n == -2)
						goto fail_src;
				}
				if (n > 0) {
					b->wpos += (size_t)n;
					/* A short plain read emptied the socket;
					 * TLS hands out one record at a time. */
					if (src->ssl == NULL && buf_room(b) > 0 &&
					    !src->hup)
						drained |= 1u << d;
					progress = 1;
				} else if (n == 0)
					drained |= 1u << d;
				if (buf_len(b) == 0)
					buf_release(b);
			}
			if (n == -1) {
				src->eof = 1;
				if (r->first_eof == -1)
					r->first_eof = d;
				progress = 1;
			}
			/* An idle relay holds no pipe. */
			if (p->len == 0)
				pipe_release(p);
		}
		if (progress)
			__atomic_store_n(&r->last_active, ev_now(),
			    __ATOMIC_RELAXED);
	} while (progress);

	for (d = 0; d < 2; d++)
		if (r->e[d].wdead && r->e[d].eof && buf_len(&r->b[d]) == 0 &&
		    r->p[d].len == 0) {
			/* All that d sent has been passed on; end with the
			 * error that writing to it gave. */
			r->e[d].failed = 1;
			relay_end(r, d, r->e[d].werr);
			return 1;
		}
	if (r->e[0].eof && r->e[1].eof && r->e[0].shut && r->e[1].shut) {
		relay_end(r, r->first_eof, NULL);
		return 1;
	}
	if (mt_wanted(r) && relay_mt_adopt(r) == 0)
		return 0;
	relay_update(r);
	return 0;

fail_dst:
	d = 1 - d;
fail_src:
	r->e[d].failed = 1;
	/* Side d failed: what it sent before failing still goes to the
	 * other side, as far as that side takes it now, before the
	 * reset. */
	if (!r->e[1 - d].failed) {
		char err2[256];
		int again = 0;

		while (buf_len(&r->b[d]) > 0 &&
		    (n = end_write(&r->e[1 - d], &r->b[d], err2,
		    sizeof(err2))) > 0) {
			buf_consume(&r->b[d], (size_t)n);
			count(&r->bytes[d], (uint64_t)n);
		}
		while (buf_len(&r->b[d]) == 0 && r->p[d].len > 0 &&
		    (n = dir_splice_out(r, d, &again, err2, sizeof(err2))) > 0) {
			count(&r->bytes[d], (uint64_t)n);
			count(&r->spliced[d], (uint64_t)n);
		}
	}
	relay_end(r, d, err);
	return 1;
}

static void
relay_io(struct ev_io *io, uint32_t events)
{
	struct relay_end *e = (struct relay_end *)(void *)io;
	struct relay *r = e->r;
	char err[256];
	int soerr, i = (int)(e - r->e);
	unsigned dirs = 3;

	if ((events & EPOLLERR) && e->soerr == 0) {
		/* Bytes the peer sent before the error (a reset after its
		 * last write) may still be queued: keep the error for after
		 * them rather than end here and lose them. TLS ends report
		 * it through OpenSSL. */
		if ((soerr = net_sock_error(io->fd)) != 0) {
			if (e->ssl != NULL) {
				snprintf(err, sizeof(err), "%s", strerror(soerr));
				e->failed = 1;
				relay_end(r, i, err);
				return;
			}
			e->soerr = soerr;
		}
	}
	if ((events & EPOLLHUP) && !e->hup) {
		/* Both directions of this socket are finished in the kernel:
		 * reads return data then EOF without blocking, so stop
		 * watching it (a level-triggered HUP would fire forever) and
		 * let the pump read it when there is room. */
		e->hup = 1;
		ev_del(io);
	}
	/* A plain socket that is readable concerns only the direction it
	 * feeds, one that is writable only the direction that feeds it.
	 * TLS may need either for both (a write can wait for a read). */
	if (e->ssl == NULL && !(events & (EPOLLHUP | EPOLLERR))) {
		dirs = 0;
		if (events & EPOLLIN)
			dirs |= 1u << i;
		if (events & EPOLLOUT)
			dirs |= 1u << (1 - i);
	}
	(void)relay_pump(r, dirs);
}

static void
end_init(struct relay *r, int i, int fd, SSL *ssl)
{
	struct relay_end *e = &r->e[i];

	ev_io_init(&e->io, fd, relay_io);
	e->ssl = ssl;
	e->r = r;
	e->rd_want = EPOLLIN;
	e->wr_want = EPOLLOUT;
	/* The kernel moves a TLS side's bytes only where OpenSSL handed it
	 * the record layer (kTLS), one direction at a time. */
	e->splice_in = relay_splice && (ssl == NULL ||
	    BIO_get_ktls_recv(SSL_get_rbio(ssl)));
	e->splice_out = relay_splice && (ssl == NULL ||
	    BIO_get_ktls_send(SSL_get_wbio(ssl)));
	r->p[i].fd[0] = r->p[i].fd[1] = -1;
}

int
relay_start(struct relay *r, int fd0, SSL *ssl0, int fd1, SSL *ssl1,
    struct buf *prime, unsigned flags, relay_done_cb *done, void *arg)
{
	unsigned dirs;
	int i;

	memset(r, 0, sizeof(*r));
	end_init(r, 0, fd0, ssl0);
	end_init(r, 1, fd1, ssl1);
	for (i = 0; i < 2; i++) {
		ev_adopt(&r->e[i].io, (flags & RELAY_HANDED(i)) != 0);
		if ((flags & RELAY_FRAMED(i)) && r->e[i].ssl == NULL) {
			r->e[i].framed = 1;
			r->e[i].keep = !(flags & RELAY_FIN(i));
		}
	}
	r->first_eof = -1;
	r->last_active = ev_now();
	r->done = done;
	r->arg = arg;
	if (prime != NULL) {
		/* Bytes for side 1 travel in the buffer of side 0. */
		r->b[0] = *prime;
		memset(prime, 0, sizeof(*prime));
	}
	/* Bytes may already wait inside OpenSSL (read along with the
	 * greeting), where epoll cannot see them: pump once right away,
	 * but not in a direction whose source the caller knows is quiet
	 * (epoll reports it when it speaks). done() may run from here,
	 * which frees r. */
	dirs = 3;
	for (i = 0; i < 2; i++)
		if (flags & RELAY_QUIET(i))
			dirs &= ~(1u << i);
	(void)relay_pump(r, dirs);
	return 0;
}

void
relay_suspend(struct relay *r)
{
	ev_del(&r->e[0].io);
	ev_del(&r->e[1].io);
}

void
relay_resume(struct relay *r)
{
	/* Level-triggered: what the sockets hold is seen at once; pump
	 * first for an end that is read without epoll (hup). */
	(void)relay_pump(r, 3);
}

int
relay_take_link(struct relay *r, int i, int *registered)
{
	struct relay_end *e = &r->e[i];
	int fd;

	if (!e->framed || !e->rx_end || !e->tx_end || e->failed ||
	    e->wdead || e->io.fd == -1)
		return -1;
	/* done() runs on the main thread, but the relay may still be
	 * listed by the relay thread that ran it. */
	if (__atomic_load_n(&r->mt, __ATOMIC_RELAXED) != MT_MAIN)
		relay_mt_reclaim(r);
	*registered = ev_release(&e->io);
	fd = e->io.fd;
	e->io.fd = -1;
	return fd;
}

int
relay_zero_copy(const struct relay *r, int i)
{
	return r->e[i].splice_in && r->e[i].splice_out;
}

static void
end_close(struct relay_end *e, int abort)
{
	/* Closed below, unless handed to a drain first (abort). */
	if (abort && e->ssl == NULL)
		ev_del(&e->io);
	else
		ev_forget(&e->io);
	if (e->ssl != NULL) {
		/* close_notify only on a clean end; after a fatal TLS error
		 * OpenSSL forbids it. */
		if (!abort && !e->failed && !e->shut)
			(void)SSL_shutdown(e->ssl);
		SSL_free(e->ssl);
		e->ssl = NULL;
	} else if (abort && e->io.fd != -1 && !e->failed) {
		relay_reset_after_drain(e->io.fd);
		e->io.fd = -1;
	} else if (abort && e->io.fd != -1) {
		relay_reset_now(e->io.fd);
		e->io.fd = -1;
	}
	if (e->io.fd != -1)
		close(e->io.fd);
	e->io.fd = -1;
}

void
relay_free(struct relay *r, int abort)
{
	/* Only the main thread makes it MT_MAIN again: reading anything
	 * else means asking under the lock. */
	if (__atomic_load_n(&r->mt, __ATOMIC_RELAXED) != MT_MAIN)
		relay_mt_reclaim(r);
	end_close(&r->e[0], abort);
	end_close(&r->e[1], abort);
	r->b[0].wpos = r->b[0].rpos = 0;
	r->b[1].wpos = r->b[1].rpos = 0;
	buf_release(&r->b[0]);
	buf_release(&r->b[1]);
	/* The prime buffer may not be pool-sized. */
	buf_free(&r->b[0]);
	buf_free(&r->b[1]);
	/* Bytes still in a pipe are dropped with it (pipe_release closes a
	 * pipe that is not empty). */
	pipe_release(&r->p[0]);
	pipe_release(&r->p[1]);
}
