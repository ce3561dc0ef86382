/* mux.c - streams over one data link (mux.h).
 *
 * The link reads frames into rx and hands each stream's bytes to its
 * pump; pumps send into tx, which goes out (through TLS, gathered into
 * wire) after the callback that queued it, from mux_settle. */
#include "common/mux.h"
#include "common/log.h"
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
 * call (up to RUN_MAX frames). */
#define RX_FILL		(512 * 1024)
#define RX_SIZE		(RX_FILL + MUX_HDR + MUX_DATA_MAX)
#define RUN_MAX		32
#define RX_ROUNDS	2	/* fills of rx handled per readiness */
#define TX_INIT		(64 * 1024)
/* Gathered TLS records: encrypt tx while wire holds less than WIRE_FILL,
 * WIRE_CHUNK of it per SSL_write. */
#define WIRE_FILL	(512 * 1024)
#define WIRE_CHUNK	(64 * 1024)
#define WIRE_MAX	(WIRE_FILL + 2 * WIRE_CHUNK)

static void link_io(struct ev_io *io, uint32_t events);

/* Links with frames to flush or a change to report (mux_settle). */
static struct mux *dirty_head;

void
mux_dirty(struct mux *m)
{
	if (m->dirty)
		return;
	m->dirty = 1;
	m->dnext = dirty_head;
	dirty_head = m;
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
		if (h->len > MUX_CTL_MAX) {
			*why = "mux frame too long";
			return -1;
		}
		break;
	case MUX_RST:
		if (h->len < 1 || h->len > MUX_CTL_MAX) {
			*why = "mux RST of a bad length";
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

void
mux_fail(struct mux *m, const char *why)
{
	if (m->failed)
		return;
	m->failed = 1;
	snprintf(m->why, sizeof(m->why), "%s", why);
}

void
mux_broken(struct mux *m, const char *why)
{
	if (!m->failed)
		m->broken = 1;
	mux_fail(m, why);
}

/* Room for n more bytes at tx's end. 0, or -1 with the link failed. */
int
mux_tx_reserve(struct mux *m, size_t n)
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
		mux_fail(m, "peer too far behind");
		return -1;
	}
	for (nsize = b->size ? b->size : TX_INIT; nsize < b->wpos + n;)
		nsize *= 2;
	if (nsize > MUX_TX_MAX)
		nsize = MUX_TX_MAX;
	if ((nd = realloc(b->data, nsize)) == NULL) {
		mux_fail(m, "out of memory");
		return -1;
	}
	b->data = nd;
	b->size = nsize;
	return 0;
}

/* Queue a frame with payload p[0..n). 0 or -1 (link failed). */
int
mux_tx_frame(struct mux *m, uint32_t sid, uint8_t type, const void *p, size_t n)
{
	if (mux_tx_reserve(m, MUX_HDR + n) == -1)
		return -1;
	mux_hdr_encode(m->tx.data + m->tx.wpos, sid, type, (uint16_t)n);
	if (n > 0)
		memcpy(m->tx.data + m->tx.wpos + MUX_HDR, p, n);
	m->tx.wpos += MUX_HDR + n;
	return 0;
}

void
mux_tx_credit(struct mux *m, uint32_t sid, uint32_t n)
{
	uint8_t v[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16),
	    (uint8_t)(n >> 8), (uint8_t)n };

	(void)mux_tx_frame(m, sid, MUX_CREDIT, v, sizeof(v));
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
		mux_fail(m, "cannot watch the link");
}


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
			mux_fail(m, err);
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
			mux_fail(m, err);
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
		mux_fail(m, eof ? "peer closed" : err);
		return -1;
	}
	/* Gathering, only a full wire makes SSL_write wait to write; an
	 * empty one that still cannot take a record is out of memory. */
	if (m->gather && want == EPOLLOUT && buf_len(&m->wire) == 0) {
		mux_fail(m, "out of memory");
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
	struct mux_stream *s, *list;
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
	if (buf_len(&m->tx) < MUX_TX_SOFT / 2 && m->waiting != NULL) {
		/* Each sender once: one that fills tx again waits again. */
		list = m->waiting;
		m->waiting = NULL;
		while ((s = list) != NULL) {
			list = s->wnext;
			s->wnext = NULL;
			s->waiting = 0;
			if (!m->failed)
				mux_stream_wake(s);
		}
	}
	link_update(m);
}

/* An RST for sid: the END code, then the text. */
void
mux_tx_rst(struct mux *m, uint32_t sid, enum sess_end code, const char *why)
{
	uint8_t b[MUX_CTL_MAX];
	size_t n = strnlen(why, sizeof(b) - 1);

	b[0] = (uint8_t)(code == SE_NONE ? SE_ERROR : code);
	memcpy(b + 1, why, n);
	(void)mux_tx_frame(m, sid, MUX_RST, b, n + 1);
	mux_dirty(m);
}

/* --- the link's input ----------------------------------------------------- */

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* The DATA frame at p (whole, for stream s) and those right after it
 * for s that rx holds whole: pushed together. Bytes of rx they take. */
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
	mux_stream_data(m, s, iov, cnt, n, blocked);
	return used;
}

/* One frame from the peer. */
static void
link_frame(struct mux *m, const struct mux_hdr *h, const uint8_t *p)
{
	struct mux_stream *s;
	uint32_t v;

	if (h->type == MUX_PING) {
		(void)mux_tx_frame(m, 0, MUX_PONG, p, h->len);
		mux_dirty(m);
		return;
	}
	if (h->type == MUX_PONG)
		return;
	if (h->type == MUX_OPEN) {
		/* Ids 1, 2, 3, ... in order, never wrapping. */
		if (m->opener || h->sid != m->next_sid || h->sid == UINT32_MAX) {
			mux_broken(m, "mux OPEN out of order");
			return;
		}
		m->next_sid = h->sid + 1;
		if (h->sid == MUX_SID_LAST)
			mux_spent(m);
		m->ops->open(m, h->sid, p, h->len);
		return;
	}
	if ((s = mux_stream_find(m, h->sid)) == NULL) {
		/* A stream that ended here while the peer still spoke of it
		 * is fine; one that never began is not. */
		if (h->sid >= m->next_sid)
			mux_broken(m, "mux frame for a stream never opened");
		return;
	}
	switch (h->type) {
	case MUX_FIN:
		if (s->fin_rcvd || s->rst_rcvd) {
			mux_broken(m, "mux FIN after the stream's end");
			return;
		}
		s->fin_rcvd = 1;
		pump_eof(s->e.p, s->e.side);
		break;
	case MUX_CREDIT:
		v = get32(p);
		if (v == 0 || (uint64_t)s->credit + v > MUX_WINDOW_MAX) {
			mux_broken(m, "mux CREDIT beyond the window");
			return;
		}
		s->credit += v;
		mux_stream_wake(s);
		break;
	case MUX_RST:
		if (s->rst_rcvd) {
			mux_broken(m, "mux RST twice");
			return;
		}
		mux_stream_rst(s, p, h->len);
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
	int eof, r, drained;
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
			drained = (size_t)n < buf_room(&m->rx);
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
			drained = !SSL_has_pending(m->ssl);
		}
		m->rx.wpos += (size_t)n;
		m->last_rx = ev_now();
		/* The socket gave less than asked, or OpenSSL (reading ahead)
		 * used all it read: asking again now would mostly get EAGAIN.
		 * Nothing waits where epoll cannot see it, and its watch of
		 * the link is level-triggered: it says when more comes. */
		if (drained)
			return 0;
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
			mux_broken(m, why);
			return;
		}
		if (buf_len(&m->rx) < MUX_HDR + (size_t)h.len)
			break;
		if (h.type == MUX_DATA && (s = mux_stream_find(m, h.sid)) != NULL)
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
 * link's end is handled before it fails. At most RX_ROUNDS fills of rx
 * per readiness: a peer that sends as fast as it can must not keep the
 * event loop to itself, so what is left waits a turn (OpenSSL may hold
 * it, where epoll cannot see it: the link is deferred). */
static void
link_read(struct mux *m)
{
	char why[128];
	int r = 1, rounds = 0;

	while (!m->failed && r == 1) {
		if (rounds++ == RX_ROUNDS) {
			if (ev_defer(&m->io, EPOLLIN) == 0)
				return;
			rounds = 0;
		}
		r = link_fill(m, why, sizeof(why));
		link_frames(m);
		if (r == -1)
			mux_fail(m, why);
	}
}

static void
link_io(struct ev_io *io, uint32_t events)
{
	struct mux *m = (struct mux *)(void *)((char *)io -
	    offsetof(struct mux, io));

	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		link_read(m);
	mux_dirty(m);
}

/* --- settling ----------------------------------------------------------- */

/* Flush m; tell the pumps of a failed link; report a link that is gone
 * and has no stream left. Returns 1 if it did anything that may give
 * other hooks work. */
static int
link_settle(struct mux *m)
{
	struct mux_stream *s, *next;
	char why[200];
	int i, busy = 0;

	if (!m->failed)
		link_flush(m);
	if (m->failed && !m->settled) {
		m->settled = 1;
		ev_del(&m->io);
		snprintf(why, sizeof(why), "data link: %s", m->why);
		for (i = 0; i < MUX_BUCKETS; i++)
			for (s = m->buckets[i]; s != NULL; s = next) {
				next = s->hnext;
				if (!s->rst_rcvd) {
					s->rst_rcvd = 1;
					pump_fail(s->e.p, s->e.side, SE_ERROR, why);
					busy = 1;
				}
			}
	}
	if ((m->failed || m->closing) && m->nstreams == 0 && !m->reported) {
		m->reported = 1;
		if (!m->failed) {
			m->failed = 1;
			snprintf(m->why, sizeof(m->why), "closed when idle");
		}
		ev_del(&m->io);
		m->ops->lost(m, m->why);
		return 1;
	}
	return busy;
}

int
mux_settle(void)
{
	struct mux *m;
	int busy = 0;

	while ((m = dirty_head) != NULL) {
		dirty_head = m->dnext;
		m->dirty = 0;
		m->dnext = NULL;
		busy |= link_settle(m);
	}
	return busy;
}

/* --- the API ------------------------------------------------------------- */

int
mux_start(struct mux *m, int fd, SSL *ssl, int opener, struct buf *pending,
    const struct mux_ops *ops, void *arg)
{
	static int hooked;

	if (!hooked) {
		ev_settle_hook(mux_settle);
		hooked = 1;
	}
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
		if (mux_tx_reserve(m, buf_len(pending)) == -1)
			goto fail;
		memcpy(m->tx.data, pending->data + pending->rpos, buf_len(pending));
		m->tx.wpos = buf_len(pending);
	}
	if (pending != NULL)
		buf_free(pending);
	if (ssl != NULL) {
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
	struct mux **pp;

	for (pp = &dirty_head; *pp != NULL; pp = &(*pp)->dnext)
		if (*pp == m) {
			*pp = m->dnext;
			break;
		}
	ev_del(&m->io);
	if (m->ssl != NULL) {
		if (!m->failed || m->closing) {
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

void
mux_refuse(struct mux *m, uint32_t sid, enum sess_end code, const char *why)
{
	mux_tx_rst(m, sid, code, why);
}

void
mux_tick(struct mux *m, uint64_t now)
{
	uint8_t v[8];
	int i;

	if (!m->failed && now > m->last_rx && now - m->last_rx > MUX_DEAD_MS)
		mux_fail(m, "no frame from peer for 6 s");
	if (!m->failed && now - m->last_ping >= MUX_PING_MS) {
		m->last_ping = now;
		m->nonce++;
		for (i = 0; i < 8; i++)
			v[i] = (uint8_t)(m->nonce >> (56 - 8 * i));
		(void)mux_tx_frame(m, 0, MUX_PING, v, sizeof(v));
	}
	mux_dirty(m);
}

void
mux_close_when_idle(struct mux *m)
{
	m->closing = 1;
	mux_dirty(m);
}

void
mux_spent(struct mux *m)
{
	m->spent = 1;
	mux_close_when_idle(m);
}
