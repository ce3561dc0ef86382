/* mux.c - streams over one data link (see mux.h).
 *
 * Callbacks into the owner (done, open, lost) never run in the middle of
 * moving bytes: a stream that ends is unhashed at once and queued, and
 * the queue is settled at the end of each event handler and tick, so a
 * stream or the link is never freed under the code still using it. */
#include "common/mux.h"
#include "common/log.h"
#include "common/relay.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <openssl/err.h>

/* Many records' worth of frames are read before any is handled, so that
 * a run of DATA frames for one stream goes to its socket with one system
 * call (up to RUN_MAX frames). RX_FILL stays under MUX_WINDOW: the
 * sender waits for credit for what is held here. */
#define RX_FILL		(512 * 1024)
#define RX_SIZE		(RX_FILL + MUX_HDR + MUX_DATA_MAX)
#define RUN_MAX		32
/* DATA frames read from a stream's socket per system call. */
#define READ_SLOTS	32
#define TX_INIT		(64 * 1024)
/* Gathered TLS records: encrypt tx while wire holds less than WIRE_FILL,
 * WIRE_CHUNK of it per SSL_write. */
#define WIRE_FILL	(512 * 1024)
#define WIRE_CHUNK	(64 * 1024)
#define WIRE_MAX	(WIRE_FILL + 2 * WIRE_CHUNK)

static void link_io(struct ev_io *io, uint32_t events);
static void stream_io(struct ev_io *io, uint32_t events);

/* Ended streams whose done() is due, all links: settled by mux_settle. */
static struct mux_stream *reap_head;

/* Window granted beyond MUX_WINDOW, all streams, within grow_budget. */
static size_t grown;
static size_t grow_budget = MUX_GROW_BUDGET;

size_t
mux_grown(void)
{
	return grown;
}

void
mux_set_grow_budget(size_t n)
{
	grow_budget = n;
}

/* --- frames ------------------------------------------------------------- */

int
mux_hdr_decode(const uint8_t *p, struct mux_hdr *h, const char **why)
{
	h->sid = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
	h->type = p[4];
	h->flags = p[5];
	h->len = (uint16_t)(p[6] << 8 | p[7]);
	if (h->flags != 0 && (h->type != MUX_DATA || h->flags != MUX_F_BLOCKED)) {
		*why = "mux frame flags unknown";
		return -1;
	}
	switch (h->type) {
	case MUX_DATA:
		if (h->len == 0 || h->len > MUX_DATA_MAX) {
			*why = "mux DATA of a bad length";
			return -1;
		}
		break;
	case MUX_OPEN:
	case MUX_RST:
	case MUX_REFUSE:
		if (h->len > MUX_CTL_MAX) {
			*why = "mux frame too long";
			return -1;
		}
		break;
	case MUX_FIN:
		if (h->len != 0) {
			*why = "mux FIN with a payload";
			return -1;
		}
		break;
	case MUX_CREDIT:
		if (h->len != 4) {
			*why = "mux CREDIT not 4 bytes";
			return -1;
		}
		break;
	case MUX_PING:
	case MUX_PONG:
		if (h->len != 8 || h->sid != 0) {
			*why = "mux PING/PONG malformed";
			return -1;
		}
		return 0;
	default:
		*why = "unknown mux frame type";
		return -1;
	}
	if (h->sid == 0) {
		*why = "mux frame for stream 0";
		return -1;
	}
	return 0;
}

void
mux_hdr_encode(uint8_t *p, uint32_t sid, uint8_t type, uint16_t len)
{
	p[0] = (uint8_t)(sid >> 24);
	p[1] = (uint8_t)(sid >> 16);
	p[2] = (uint8_t)(sid >> 8);
	p[3] = (uint8_t)sid;
	p[4] = type;
	p[5] = 0;
	p[6] = (uint8_t)(len >> 8);
	p[7] = (uint8_t)len;
}

/* --- the link's output --------------------------------------------------- */

static void
link_fail(struct mux *m, const char *why)
{
	if (m->failed)
		return;
	m->failed = 1;
	snprintf(m->why, sizeof(m->why), "%s", why);
}

/* Room for n more bytes at tx's end. 0, or -1 with the link failed. */
static int
tx_reserve(struct mux *m, size_t n)
{
	struct buf *b = &m->tx;
	size_t nsize;
	uint8_t *nd;

	if (m->failed)
		return -1;
	if (buf_room(b) >= n)
		return 0;
	if (b->rpos > 0) {
		memmove(b->data, b->data + b->rpos, buf_len(b));
		b->wpos -= b->rpos;
		b->rpos = 0;
		if (buf_room(b) >= n)
			return 0;
	}
	if (b->wpos + n > MUX_TX_MAX) {
		link_fail(m, "peer too far behind");
		return -1;
	}
	for (nsize = b->size ? b->size : TX_INIT; nsize < b->wpos + n;)
		nsize *= 2;
	if (nsize > MUX_TX_MAX)
		nsize = MUX_TX_MAX;
	if ((nd = realloc(b->data, nsize)) == NULL) {
		link_fail(m, "out of memory");
		return -1;
	}
	b->data = nd;
	b->size = nsize;
	return 0;
}

/* Queue a frame with payload p[0..n). 0 or -1 (link failed). */
static int
tx_frame(struct mux *m, uint32_t sid, uint8_t type, const void *p, size_t n)
{
	if (tx_reserve(m, MUX_HDR + n) == -1)
		return -1;
	mux_hdr_encode(m->tx.data + m->tx.wpos, sid, type, (uint16_t)n);
	if (n > 0)
		memcpy(m->tx.data + m->tx.wpos + MUX_HDR, p, n);
	m->tx.wpos += MUX_HDR + n;
	return 0;
}

static void
tx_credit(struct mux *m, uint32_t sid, uint32_t n)
{
	uint8_t v[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16),
	    (uint8_t)(n >> 8), (uint8_t)n };

	(void)tx_frame(m, sid, MUX_CREDIT, v, sizeof(v));
}

static void
link_update(struct mux *m)
{
	uint32_t mask = 0;

	if (!m->failed) {
		mask = m->rd_want;
		if (buf_len(&m->wire) > 0)
			mask |= EPOLLOUT;
		else if (buf_len(&m->tx) > 0)
			mask |= m->wr_want;
	}
	if (ev_set(&m->io, mask) == -1)
		link_fail(m, "cannot watch the link");
}

static void stream_update(struct mux_stream *s);

/* Send what wire holds. 0, or -1 if the socket cannot take more now
 * (or the link failed). */
static int
wire_send(struct mux *m)
{
	char err[128];
	ssize_t n;

	while (buf_len(&m->wire) > 0) {
		n = send(m->io.fd, m->wire.data + m->wire.rpos,
		    buf_len(&m->wire), MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return -1;	/* link_update watches for room */
		if (n < 0) {
			snprintf(err, sizeof(err), "%s", strerror(errno));
			link_fail(m, err);
			return -1;
		}
		buf_consume(&m->wire, (size_t)n);
	}
	return 0;
}

/* Move up to n bytes of tx to the link: send() on a plain link, else
 * SSL_write (into wire when gathering). Bytes taken, 0 when the link
 * cannot take any now, -1 when it failed. */
static ssize_t
link_put(struct mux *m, size_t n)
{
	char err[128];
	uint32_t want;
	int eof, r;
	ssize_t w;

	if (m->ssl == NULL) {
		w = send(m->io.fd, m->tx.data + m->tx.rpos, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (w < 0) {
			snprintf(err, sizeof(err), "%s", strerror(errno));
			link_fail(m, err);
			return -1;
		}
		return w;
	}
	ERR_clear_error();
	errno = 0;
	r = SSL_write(m->ssl, m->tx.data + m->tx.rpos,
	    n > INT32_MAX ? INT32_MAX : (int)n);
	if (r > 0) {
		m->wr_want = EPOLLOUT;
		return r;
	}
	if (tlsx_result(m->ssl, r, &want, &eof, err, sizeof(err)) !=
	    TLSX_AGAIN) {
		link_fail(m, eof ? "peer closed" : err);
		return -1;
	}
	/* Gathering, only a full wire makes SSL_write wait to write; an
	 * empty one that still cannot take a record is out of memory. */
	if (m->gather && want == EPOLLOUT && buf_len(&m->wire) == 0) {
		link_fail(m, "out of memory");
		return -1;
	}
	m->wr_want = want;
	return 0;
}

/* Write what tx holds. Readers stopped for room go on once it drains.
 * Gathering, records collect in wire up to WIRE_FILL and go out with one
 * send() each: many fewer system calls, and wake-ups of the peer. */
static void
link_flush(struct mux *m)
{
	struct mux_stream *s;
	size_t len;
	ssize_t n;

	while (!m->failed) {
		while (buf_len(&m->tx) > 0 &&
		    (!m->gather || buf_len(&m->wire) < WIRE_FILL)) {
			len = buf_len(&m->tx);
			if (m->gather && len > WIRE_CHUNK)
				len = WIRE_CHUNK;
			if ((n = link_put(m, len)) <= 0)
				break;
			buf_consume(&m->tx, (size_t)n);
		}
		if (!m->gather || m->failed || buf_len(&m->wire) == 0 ||
		    wire_send(m) == -1 || buf_len(&m->tx) == 0)
			break;
	}
	if (buf_len(&m->tx) < MUX_TX_SOFT / 2) {
		while ((s = m->waiting) != NULL) {
			m->waiting = s->wnext;
			s->wnext = NULL;
			s->waiting = 0;
			stream_update(s);
		}
	}
	link_update(m);
}

/* --- streams -------------------------------------------------------------- */

static struct mux_stream **
bucket(struct mux *m, uint32_t sid)
{
	return &m->buckets[sid % MUX_BUCKETS];
}

static struct mux_stream *
stream_find(struct mux *m, uint32_t sid)
{
	struct mux_stream *s;

	for (s = *bucket(m, sid); s != NULL; s = s->hnext)
		if (s->sid == sid)
			return s;
	return NULL;
}

static void
stream_unhash(struct mux_stream *s)
{
	struct mux_stream **pp;

	for (pp = bucket(s->m, s->sid); *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == s) {
			*pp = s->hnext;
			break;
		}
	if (s->waiting) {
		for (pp = &s->m->waiting; *pp != NULL; pp = &(*pp)->wnext)
			if (*pp == s) {
				*pp = s->wnext;
				break;
			}
		s->waiting = 0;
	}
	s->wnext = NULL;
	if (s->m->nstreams > 0)
		s->m->nstreams--;
}

/* Free s and what it holds; its window's growth goes back to the budget. */
static void
stream_destroy(struct mux_stream *s)
{
	grown -= s->win - MUX_WINDOW;
	buf_free(&s->out);
	free(s);
}

static struct mux_stream *
stream_new(struct mux *m, uint32_t sid, mux_done_cb *done, void *arg)
{
	struct mux_stream *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->m = m;
	s->sid = sid;
	s->credit = MUX_WINDOW;
	s->win = MUX_WINDOW;
	s->first = -1;
	s->done = done;
	s->arg = arg;
	s->last_active = ev_now();
	ev_io_init(&s->io, -1, stream_io);
	s->hnext = *bucket(m, sid);
	*bucket(m, sid) = s;
	m->nstreams++;
	m->streams_total++;
	return s;
}

/* End s: off the link's tables, its socket unwatched, done() queued. */
static void
stream_end(struct mux_stream *s, int first, const char *err)
{
	if (s->ended)
		return;
	s->ended = 1;
	stream_unhash(s);
	ev_del(&s->io);
	if (err != NULL && s->err[0] == '\0')
		snprintf(s->err, sizeof(s->err), "%.127s", err);
	else if (err == NULL)
		s->err[0] = '\0';
	s->hnext = NULL;
	s->first = first;
	s->end_err = err != NULL;
	s->rnext = reap_head;
	reap_head = s;
}

/* Fail s because of its socket: the peer gets a RST after the bytes
 * already queued, and the socket is reset at once. */
static void
stream_fail_local(struct mux_stream *s, const char *why)
{
	s->failed = 1;
	(void)tx_frame(s->m, s->sid, MUX_RST, why, strlen(why));
	stream_end(s, 0, why);
}

static void stream_update(struct mux_stream *s);

/* The socket failed a write (reset by its peer, most likely). The bytes
 * that peer sent before the reset may still wait in the socket, and they
 * go to our peer before the RST (as relay.c does): drop what was to be
 * written, read on to EOF (the error itself went with the failed send),
 * then fail (stream_read). With EOF read already, fail at once. */
static void
stream_fail_write(struct mux_stream *s, int e)
{
	if (s->eof || s->rst_rcvd) {
		stream_fail_local(s, strerror(e));
		return;
	}
	s->failed = 1;
	snprintf(s->err, sizeof(s->err), "%s", strerror(e));
	s->out.rpos = s->out.wpos = 0;
	s->prime = 0;
	buf_free(&s->out);
	stream_update(s);
}

static void
stream_update(struct mux_stream *s)
{
	uint32_t mask = 0;

	if (s->ended || s->io.fd == -1)
		return;
	if (!s->eof && !s->rst_rcvd && s->credit > 0 && !s->waiting)
		mask |= EPOLLIN;
	if (buf_len(&s->out) > 0)
		mask |= EPOLLOUT;
	/* Nothing to wait for (no credit, EOF read, nothing to write): leave
	 * the epoll set. epoll reports HUP and ERR whatever the mask, and
	 * level-triggered they would fire on every turn until the peer
	 * credits or answers. A socket reset meanwhile is seen at the next
	 * read or write, as in relay.c. */
	if (mask == 0) {
		ev_del(&s->io);
		return;
	}
	if (ev_set(&s->io, mask) == -1)
		stream_fail_local(s, "cannot watch socket");
}

/* The clean end, once both directions are done. */
static void
stream_check_done(struct mux_stream *s)
{
	if (s->ended)
		return;
	if (s->rst_rcvd && (buf_len(&s->out) == 0 || s->io.fd == -1)) {
		stream_end(s, 1, s->err[0] ? s->err : "reset by peer");
		return;
	}
	if (s->eof && s->fin_rcvd && s->shut && buf_len(&s->out) == 0 &&
	    !s->failed)
		stream_end(s, s->first == 1, NULL);
}

/* n bytes of out reached the socket: the prime first, which is not the
 * peer's and neither counted nor credited. */
static void
written(struct mux_stream *s, size_t n)
{
	size_t k = n < s->prime ? n : s->prime;

	s->prime -= (uint32_t)k;
	s->owed += (uint32_t)(n - k);
	s->bytes[1] += (uint64_t)(n - k);
	s->last_active = ev_now();
}

/* Write what waits for the socket; shut it down after the peer's FIN.
 * Credits what was written. */
static void
stream_write(struct mux_stream *s)
{
	ssize_t n;
	char err[160];

	if (s->failed)		/* reading what is left: stream_fail_write */
		return;
	while (!s->ended && s->io.fd != -1 && buf_len(&s->out) > 0) {
		n = send(s->io.fd, s->out.data + s->out.rpos, buf_len(&s->out),
		    MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n < 0) {
			stream_fail_write(s, errno);
			return;
		}
		buf_consume(&s->out, (size_t)n);
		written(s, (size_t)n);
	}
	if (s->ended || s->io.fd == -1)
		return;
	if (buf_len(&s->out) == 0) {
		buf_free(&s->out);	/* held only while bytes wait */
		if (s->fin_rcvd && !s->shut) {
			if (shutdown(s->io.fd, SHUT_WR) == -1 && errno != ENOTCONN) {
				snprintf(err, sizeof(err), "%s", strerror(errno));
				stream_fail_local(s, err);
				return;
			}
			s->shut = 1;
		}
	}
	if (s->owed >= s->win / 4) {	/* credits in batches */
		uint32_t more = 0;

		/* The peer waited for credit while the socket keeps up: the
		 * window, not this side, limits the stream. */
		if (s->blocked && buf_len(&s->out) == 0 &&
		    s->win < MUX_WINDOW_MAX && grown + s->win <= grow_budget) {
			more = s->win;
			grown += more;
			s->win += more;
		}
		s->blocked = 0;
		tx_credit(s->m, s->sid, s->owed + more);
		s->inflight -= s->owed;
		s->owed = 0;
	}
	stream_check_done(s);
}

/* Read the socket into DATA frames while credit and room last: up to
 * READ_SLOTS frames per readv(), each read into its place in tx after the
 * room for its header. */
static void
stream_read(struct mux_stream *s)
{
	struct iovec iov[READ_SLOTS];
	struct mux *m = s->m;
	size_t want, left, got, k;
	ssize_t n;
	char err[160];
	uint8_t *at;
	int budget = 4, i, cnt;

	while (!s->ended && !s->eof && s->credit > 0 && budget-- > 0) {
		if (buf_len(&m->tx) >= MUX_TX_SOFT) {
			if (!s->waiting) {
				s->waiting = 1;
				s->wnext = m->waiting;
				m->waiting = s;
			}
			break;
		}
		want = s->credit < READ_SLOTS * MUX_DATA_MAX ? s->credit :
		    READ_SLOTS * MUX_DATA_MAX;
		cnt = (int)((want + MUX_DATA_MAX - 1) / MUX_DATA_MAX);
		if (tx_reserve(m, want + (size_t)cnt * MUX_HDR) == -1)
			return;
		at = m->tx.data + m->tx.wpos;
		for (i = 0, left = want; i < cnt; i++) {
			k = left < MUX_DATA_MAX ? left : MUX_DATA_MAX;
			iov[i].iov_base = at + (size_t)i * (MUX_HDR + MUX_DATA_MAX) +
			    MUX_HDR;
			iov[i].iov_len = k;
			left -= k;
		}
		n = readv(s->io.fd, iov, cnt);
		if (n > 0) {
			/* Only the last slot filled may be short, so the
			 * frames lie back to back. */
			s->credit -= (uint32_t)n;
			for (i = 0, left = (size_t)n; left > 0; i++) {
				got = left < iov[i].iov_len ? left : iov[i].iov_len;
				at = (uint8_t *)iov[i].iov_base - MUX_HDR;
				mux_hdr_encode(at, s->sid, MUX_DATA, (uint16_t)got);
				if (got == left && s->credit == 0)
					at[5] = MUX_F_BLOCKED;
				m->tx.wpos += MUX_HDR + got;
				left -= got;
			}
			s->bytes[0] += (uint64_t)n;
			s->last_active = ev_now();
			if ((size_t)n < want)
				break;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (n < 0) {
			snprintf(err, sizeof(err), "%s", strerror(errno));
			stream_fail_local(s, err);
			return;
		}
		if (s->failed) {
			/* All that came before the failed write is out. */
			stream_fail_local(s, s->err);
			return;
		}
		s->eof = 1;
		if (s->first == -1)
			s->first = 0;
		(void)tx_frame(m, s->sid, MUX_FIN, NULL, 0);
	}
	stream_check_done(s);
}

/* Settle ended streams (done) and a failed link (lost). Returns -1 if
 * lost() was called for m (m may be freed), else 0. */
static int
mux_settle(struct mux *m)
{
	struct mux_stream *s;
	int i;

	if (m != NULL && m->failed && !m->settled) {
		m->settled = 1;
		for (i = 0; i < MUX_BUCKETS; i++)
			while (m->buckets[i] != NULL) {
				char why[200];

				snprintf(why, sizeof(why), "data link: %s", m->why);
				stream_end(m->buckets[i], 1, why);
			}
	}
	while ((s = reap_head) != NULL) {
		reap_head = s->rnext;
		s->rnext = NULL;
		s->done(s, s->first == 1, s->end_err ? s->err : NULL, s->refused);
	}
	if (m != NULL && m->failed) {
		ev_del(&m->io);
		m->ops->lost(m, m->why);
		return -1;
	}
	if (m != NULL && m->closing && m->nstreams == 0) {
		m->failed = 1;
		snprintf(m->why, sizeof(m->why), "closed when idle");
		ev_del(&m->io);
		m->ops->lost(m, m->why);
		return -1;
	}
	return 0;
}

/* done() for s alone, which has just ended: for mux_stream_attach, whose
 * caller is often open(), inside link_read. A full mux_settle there
 * would call lost() (if the link failed meanwhile, say on the RST's
 * send) under link_read, which goes on using the link, and lost() would
 * come again at the end of link_io: twice, the second time on a link the
 * owner may have freed. The link's failure is settled as usual at the
 * end of the handler (or by mux_tick). */
static void
stream_settle(struct mux_stream *s)
{
	struct mux_stream **pp;

	for (pp = &reap_head; *pp != NULL; pp = &(*pp)->rnext)
		if (*pp == s) {
			*pp = s->rnext;
			s->rnext = NULL;
			s->done(s, s->first == 1, s->end_err ? s->err : NULL,
			    s->refused);
			return;
		}
}

static void
stream_io(struct ev_io *io, uint32_t events)
{
	struct mux_stream *s = (struct mux_stream *)(void *)((char *)io -
	    offsetof(struct mux_stream, io));
	struct mux *m = s->m;

	if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
		stream_write(s);
	if (!s->ended && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		stream_read(s);
	if (!s->ended)
		stream_update(s);
	link_flush(m);
	(void)mux_settle(m);
}

/* --- the link's input ----------------------------------------------------- */

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* Bytes of a run of DATA frames for s: iov[0..cnt), n bytes in all;
 * blocked if one was marked MUX_F_BLOCKED. */
static void
stream_data(struct mux *m, struct mux_stream *s, const struct iovec *iov,
    int cnt, size_t n, int blocked)
{
	struct msghdr mh;
	ssize_t w = 0;
	size_t skip;
	int i;

	if (s->fin_rcvd || s->rst_rcvd) {
		link_fail(m, "mux DATA after the stream's end");
		return;
	}
	if (s->inflight + n > s->win) {
		link_fail(m, "mux peer sent beyond its credit");
		return;
	}
	s->inflight += (uint32_t)n;
	if (blocked)
		s->blocked = 1;	/* the sender waits for credit */
	if (s->failed)		/* the socket cannot take them: dropped */
		return;
	/* Straight to the socket when nothing waits before these bytes. */
	if (s->io.fd != -1 && buf_len(&s->out) == 0) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = (struct iovec *)(uintptr_t)iov;
		mh.msg_iovlen = (size_t)cnt;
		w = sendmsg(s->io.fd, &mh, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			stream_fail_write(s, errno);
			return;
		}
		if (w < 0)
			w = 0;
		written(s, (size_t)w);
	}
	/* What the socket does not take waits, at most the window (checked
	 * above) behind at most MUX_PRIME_MAX of prime. */
	for (i = 0, skip = (size_t)w; i < cnt; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		if (buf_append(&s->out, (const uint8_t *)iov[i].iov_base + skip,
		    iov[i].iov_len - skip, s->win + MUX_PRIME_MAX) == -1) {
			stream_fail_local(s, "out of memory");
			return;
		}
		skip = 0;
	}
	stream_write(s);
	stream_update(s);
}

/* The DATA frame at p (whole, for stream s) and those right after it
 * for s that rx holds whole: written with one system call. Bytes of rx
 * they take. */
static size_t
link_data(struct mux *m, struct mux_stream *s, const struct mux_hdr *h,
    uint8_t *p)
{
	struct iovec iov[RUN_MAX];
	const uint8_t *end = m->rx.data + m->rx.wpos;
	struct mux_hdr nh = *h;
	const char *why;
	size_t used = 0, n = 0;
	int cnt = 0, blocked = 0;

	for (;;) {
		iov[cnt].iov_base = p + used + MUX_HDR;
		iov[cnt].iov_len = nh.len;
		blocked |= nh.flags & MUX_F_BLOCKED;
		cnt++;
		n += nh.len;
		used += MUX_HDR + nh.len;
		/* A bad header ends the run; the caller then fails on it. */
		if (cnt == RUN_MAX || (size_t)(end - (p + used)) < MUX_HDR ||
		    mux_hdr_decode(p + used, &nh, &why) == -1 ||
		    nh.type != MUX_DATA || nh.sid != h->sid ||
		    (size_t)(end - (p + used)) < MUX_HDR + (size_t)nh.len)
			break;
	}
	stream_data(m, s, iov, cnt, n, blocked);
	return used;
}

/* One frame from the peer. */
static void
link_frame(struct mux *m, const struct mux_hdr *h, const uint8_t *p)
{
	struct mux_stream *s;
	char why[MUX_CTL_MAX + 64];
	uint32_t v;

	if (h->type == MUX_PING) {
		(void)tx_frame(m, 0, MUX_PONG, p, h->len);
		return;
	}
	if (h->type == MUX_PONG)
		return;
	if (h->type == MUX_OPEN) {
		if (m->opener || h->sid < m->next_sid) {
			link_fail(m, "mux OPEN out of order");
			return;
		}
		m->next_sid = h->sid + 1;
		m->ops->open(m, h->sid, p, h->len);
		return;
	}
	if ((s = stream_find(m, h->sid)) == NULL) {
		/* A stream that ended here while the peer still spoke of it
		 * is fine; one that never began is not. */
		if (h->sid >= m->next_sid)
			link_fail(m, "mux frame for a stream never opened");
		return;
	}
	switch (h->type) {
	case MUX_FIN:
		if (s->fin_rcvd) {
			link_fail(m, "mux FIN twice");
			return;
		}
		s->fin_rcvd = 1;
		if (s->first == -1)
			s->first = 1;
		stream_write(s);
		stream_update(s);
		break;
	case MUX_CREDIT:
		v = get32(p);
		if (v == 0 || (uint64_t)s->credit + v > MUX_WINDOW_MAX) {
			link_fail(m, "mux CREDIT beyond the window");
			return;
		}
		s->credit += v;
		stream_update(s);
		break;
	case MUX_RST:
	case MUX_REFUSE:
		if (h->type == MUX_REFUSE && !m->opener) {
			link_fail(m, "mux REFUSE from the opener");
			return;
		}
		snprintf(why, sizeof(why), "%s: %.*s", h->type == MUX_RST ?
		    "reset" : "refused", (int)h->len, (const char *)p);
		/* Text from the peer goes into logs: printable only. */
		for (v = 0; why[v] != '\0'; v++)
			if (why[v] < 0x20 || why[v] > 0x7e)
				why[v] = '?';
		snprintf(s->err, sizeof(s->err), "%.127s", why);
		s->rst_rcvd = 1;
		s->refused = h->type == MUX_REFUSE;
		stream_check_done(s);
		if (!s->ended)
			stream_update(s);
		break;
	}
}

/* Read the link into rx until rx has no room for another record or the
 * link has nothing more now. 1: rx is full (more may wait), 0: nothing
 * more now, -1: the link ended (why filled). */
static int
link_fill(struct mux *m, char *why, size_t whylen)
{
	uint32_t want;
	int eof, r;
	ssize_t n;

	while (buf_room(&m->rx) >= MUX_DATA_MAX) {
		if (m->ssl == NULL) {
			n = recv(m->io.fd, m->rx.data + m->rx.wpos,
			    buf_room(&m->rx), 0);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (n <= 0) {
				snprintf(why, whylen, "%s", n == 0 ?
				    "closed by peer" : strerror(errno));
				return -1;
			}
		} else {
			ERR_clear_error();
			errno = 0;
			r = SSL_read(m->ssl, m->rx.data + m->rx.wpos,
			    (int)buf_room(&m->rx));
			if (r <= 0) {
				switch (tlsx_result(m->ssl, r, &want, &eof, why,
				    whylen)) {
				case TLSX_AGAIN:
					m->rd_want = want;
					return 0;
				case TLSX_DONE:
					snprintf(why, whylen, "closed by peer");
					return -1;
				default:
					return -1;
				}
			}
			m->rd_want = EPOLLIN;
			n = r;
		}
		m->rx.wpos += (size_t)n;
		m->last_rx = ev_now();
	}
	return 1;
}

/* Handle every whole frame rx holds. */
static void
link_frames(struct mux *m)
{
	struct mux_stream *s;
	struct mux_hdr h;
	const char *why;
	uint8_t *p;
	size_t used;

	while (!m->failed && buf_len(&m->rx) >= MUX_HDR) {
		p = m->rx.data + m->rx.rpos;
		if (mux_hdr_decode(p, &h, &why) == -1) {
			link_fail(m, why);
			return;
		}
		if (buf_len(&m->rx) < MUX_HDR + (size_t)h.len)
			break;
		if (h.type == MUX_DATA && (s = stream_find(m, h.sid)) != NULL)
			used = link_data(m, s, &h, p);
		else {
			link_frame(m, &h, p + MUX_HDR);
			used = MUX_HDR + (size_t)h.len;
		}
		buf_consume(&m->rx, used);
	}
	if (m->rx.rpos > 0 && buf_len(&m->rx) > 0) {
		memmove(m->rx.data, m->rx.data + m->rx.rpos, buf_len(&m->rx));
		m->rx.wpos -= m->rx.rpos;
		m->rx.rpos = 0;
	}
}

/* Read the link and handle every whole frame; what came before the
 * link's end is handled before it fails. */
static void
link_read(struct mux *m)
{
	char why[128];
	int r = 1;

	while (!m->failed && r == 1) {
		r = link_fill(m, why, sizeof(why));
		link_frames(m);
		if (r == -1)
			link_fail(m, why);
	}
}

static void
link_io(struct ev_io *io, uint32_t events)
{
	struct mux *m = (struct mux *)(void *)((char *)io -
	    offsetof(struct mux, io));

	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		link_read(m);
	link_flush(m);
	(void)mux_settle(m);
}

/* --- the API ------------------------------------------------------------- */

int
mux_start(struct mux *m, int fd, SSL *ssl, int opener, struct buf *pending,
    const struct mux_ops *ops, void *arg)
{
	memset(m, 0, sizeof(*m));
	m->ssl = ssl;
	m->opener = opener;
	m->ops = ops;
	m->arg = arg;
	m->next_sid = 1;
	m->rd_want = EPOLLIN;
	m->wr_want = EPOLLOUT;
	m->last_rx = m->last_ping = ev_now();
	ev_io_init(&m->io, fd, link_io);
	if ((m->rx.data = malloc(RX_SIZE)) == NULL)
		goto fail;
	m->rx.size = RX_SIZE;
	if (pending != NULL && buf_len(pending) > 0) {
		if (tx_reserve(m, buf_len(pending)) == -1)
			goto fail;
		memcpy(m->tx.data, pending->data + pending->rpos, buf_len(pending));
		m->tx.wpos = buf_len(pending);
	}
	if (pending != NULL)
		buf_free(pending);
	if (ssl != NULL && !BIO_get_ktls_send(SSL_get_wbio(ssl))) {
		if (tlsx_gather(ssl, &m->wire, WIRE_MAX) == -1)
			goto fail;
		m->gather = 1;
	}
	link_flush(m);
	if (m->failed)
		goto fail;
	/* Read many records per system call from here on (not during the
	 * greeting, whose reads must stop at its end). */
	if (ssl != NULL) {
		SSL_set_read_ahead(ssl, 1);
		SSL_set_default_read_buffer_len(ssl, 256 * 1024);
	}
	/* OpenSSL may hold bytes that came with the greeting. */
	if (ssl != NULL && SSL_has_pending(ssl))
		link_read(m);
	return 0;
fail:
	if (pending != NULL)
		buf_free(pending);
	ev_del(&m->io);
	SSL_free(ssl);
	close(fd);
	m->ssl = NULL;
	m->io.fd = -1;
	buf_free(&m->rx);
	buf_free(&m->tx);
	buf_free(&m->wire);
	return -1;
}

void
mux_free(struct mux *m)
{
	ev_del(&m->io);
	if (m->ssl != NULL) {
		if (!m->failed) {
			(void)SSL_shutdown(m->ssl);
			/* The close_notify, and what came before it, if the
			 * socket takes them now. */
			if (m->gather)
				(void)wire_send(m);
		}
		SSL_free(m->ssl);
	}
	if (m->io.fd != -1)
		close(m->io.fd);
	m->ssl = NULL;
	m->io.fd = -1;
	buf_free(&m->rx);
	buf_free(&m->tx);
	buf_free(&m->wire);
}

struct mux_stream *
mux_open(struct mux *m, int fd, const void *p, size_t n, mux_done_cb *done,
    void *arg)
{
	struct mux_stream *s;

	if (!m->opener || m->failed || m->closing || n > MUX_CTL_MAX ||
	    m->next_sid == UINT32_MAX)
		return NULL;
	if ((s = stream_new(m, m->next_sid, done, arg)) == NULL)
		return NULL;
	if (tx_frame(m, s->sid, MUX_OPEN, p, n) == -1) {
		stream_unhash(s);
		stream_destroy(s);
		return NULL;
	}
	m->next_sid++;
	s->io.fd = fd;
	/* The client's first bytes go out right behind OPEN. */
	stream_read(s);
	stream_update(s);
	link_flush(m);
	return s;
}

struct mux_stream *
mux_stream_accept(struct mux *m, uint32_t sid, mux_done_cb *done, void *arg)
{
	struct mux_stream *s;

	/* Refused as mux.h says: else the opener's stream would wait for
	 * an answer that never comes. */
	if ((s = stream_new(m, sid, done, arg)) == NULL)
		mux_refuse(m, sid, "out of memory");
	return s;
}

void
mux_refuse(struct mux *m, uint32_t sid, const char *why)
{
	size_t n = strlen(why);

	(void)tx_frame(m, sid, MUX_REFUSE, why, n > MUX_CTL_MAX ? MUX_CTL_MAX : n);
	link_flush(m);
}

void
mux_stream_refuse(struct mux_stream *s, const char *why)
{
	struct mux *m = s->m;

	if (!s->ended) {
		stream_unhash(s);
		mux_refuse(m, s->sid, why);
	}
	if (s->io.fd != -1)
		close(s->io.fd);
	stream_destroy(s);
}

int
mux_stream_attach(struct mux_stream *s, int fd, struct buf *prime)
{
	struct mux *m = s->m;
	size_t n = prime != NULL ? buf_len(prime) : 0;

	s->io.fd = fd;
	if (n > 0) {
		/* Before whatever the peer has sent already (at most
		 * the window). */
		struct buf nb = { 0 };

		if (n > MUX_PRIME_MAX ||
		    buf_append(&nb, prime->data + prime->rpos, n,
		    s->win + MUX_PRIME_MAX) == -1 ||
		    (buf_len(&s->out) > 0 && buf_append(&nb, s->out.data +
		    s->out.rpos, buf_len(&s->out),
		    s->win + MUX_PRIME_MAX) == -1)) {
			buf_free(&nb);
			buf_free(prime);
			stream_fail_local(s, "cannot queue the PROXY header");
			link_flush(m);
			stream_settle(s);
			return -1;
		}
		buf_free(&s->out);
		s->out = nb;
		s->prime = (uint32_t)n;
	}
	if (prime != NULL)
		buf_free(prime);
	stream_write(s);
	/* The socket was just connected: it is read once epoll says so,
	 * not tried now (a system call that would find nothing). */
	if (!s->ended)
		stream_update(s);
	link_flush(m);
	if (s->ended) {
		stream_settle(s);
		return -1;
	}
	return 0;
}

void
mux_stream_free(struct mux_stream *s, int abort)
{
	struct mux *m = s->m;

	if (!s->ended) {
		/* Cut while live: the peer resets its side too. */
		stream_unhash(s);
		ev_del(&s->io);
		(void)tx_frame(m, s->sid, MUX_RST, "cut", 3);
		link_flush(m);
	}
	if (s->io.fd != -1) {
		if (abort && s->failed)
			relay_reset_now(s->io.fd);
		else if (abort)
			relay_reset_after_drain(s->io.fd);
		else
			close(s->io.fd);
	}
	s->io.fd = -1;
	stream_destroy(s);
}

int
mux_tick(struct mux *m, uint64_t now)
{
	uint8_t v[8];
	int i;

	if (!m->failed && now > m->last_rx && now - m->last_rx > MUX_DEAD_MS)
		link_fail(m, "no frame from peer for 6 s");
	if (!m->failed && now - m->last_ping >= MUX_PING_MS) {
		m->last_ping = now;
		m->nonce++;
		for (i = 0; i < 8; i++)
			v[i] = (uint8_t)(m->nonce >> (56 - 8 * i));
		(void)tx_frame(m, 0, MUX_PING, v, sizeof(v));
		link_flush(m);
	}
	return mux_settle(m);
}

void
mux_close_when_idle(struct mux *m)
{
	m->closing = 1;
}
