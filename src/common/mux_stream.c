/* mux_stream.c - a stream of a multiplexed link as a pump endpoint
 * (mux.h): what it sends goes into the link's frames within its credit,
 * what the peer sends is pushed into its pump, and its window grows
 * while the other side keeps up. */
#include "common/mux.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* DATA frames read from a socket per system call (st_pull). */
#define READ_SLOTS	32

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

/* --- streams ------------------------------------------------------------- */

static struct mux_stream **
bucket(struct mux *m, uint32_t sid)
{
	return &m->buckets[sid % MUX_BUCKETS];
}

struct mux_stream *
mux_stream_find(struct mux *m, uint32_t sid)
{
	struct mux_stream *s;

	for (s = *bucket(m, sid); s != NULL; s = s->hnext)
		if (s->sid == sid)
			return s;
	return NULL;
}

/* Off the link's tables: no frame reaches s from here on. */
static void
stream_unhash(struct mux_stream *s)
{
	struct mux_stream **pp;

	if (!s->hashed)
		return;
	s->hashed = 0;
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
	s->hnext = s->wnext = NULL;
	s->m->nstreams--;
	mux_dirty(s->m);	/* a closing link may be idle now */
}

static void stream_init_ops(struct mux_stream *s);

static struct mux_stream *
stream_new(struct mux *m, uint32_t sid)
{
	struct mux_stream *s;

	/* Ids only grow, so this cannot be; if it were, two sessions would
	 * share one id: fail the link rather than mix their bytes. */
	if (mux_stream_find(m, sid) != NULL) {
		mux_broken(m, "mux stream id in use");
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	stream_init_ops(s);
	s->m = m;
	s->sid = sid;
	s->credit = MUX_WINDOW;
	s->win = MUX_WINDOW;
	s->hashed = 1;
	s->hnext = *bucket(m, sid);
	*bucket(m, sid) = s;
	m->nstreams++;
	m->streams_total++;
	return s;
}

/* The pump waits for credit or room on the link, and there is some. */
void
mux_stream_wake(struct mux_stream *s)
{
	if (s->want_wr && s->e.p != NULL) {
		s->want_wr = 0;
		pump_wake(s->e.p, s->e.side, PEND_WR);
	}
}

/* The link failed under a stream the pump writes to. */
static ssize_t
link_gone(struct pend *e, const struct mux *m)
{
	e->code = SE_ERROR;
	snprintf(e->err, sizeof(e->err), "data link: %.140s", m->why);
	return PEND_ERR;
}

/* A read from the other side's socket failed (st_pull): its error. */
static ssize_t
pull_err(struct pend *src, int err)
{
	src->code = SE_ERROR;
	snprintf(src->err, sizeof(src->err), "%s", strerror(err));
	return PEND_ERR;
}

/* The pump's bytes for the peer, as DATA frames within the credit. */
static ssize_t
st_send(struct pend *e, const struct iovec *iov, int cnt)
{
	struct mux_stream *s = (struct mux_stream *)(void *)e;
	struct mux *m = s->m;
	size_t total = 0, want, left, k, off = 0;
	uint8_t *at;
	int i = 0;

	if (m->failed) {
		return link_gone(e, m);
	}
	if (buf_len(&m->tx) >= MUX_TX_SOFT) {
		if (!s->waiting) {
			s->waiting = 1;
			s->wnext = m->waiting;
			m->waiting = s;
		}
		return PEND_AGAIN;
	}
	for (i = 0; i < cnt; i++)
		total += iov[i].iov_len;
	want = total < s->credit ? total : s->credit;
	if (want == 0)
		return PEND_AGAIN;
	if (mux_tx_reserve(m, want + (want + MUX_DATA_MAX - 1) / MUX_DATA_MAX *
	    MUX_HDR) == -1) {
		return link_gone(e, m);
	}
	s->credit -= (uint32_t)want;
	/* Frames of at most MUX_DATA_MAX, gathered across the iov. */
	for (left = want, i = 0; left > 0; ) {
		size_t flen = left < MUX_DATA_MAX ? left : MUX_DATA_MAX;

		at = m->tx.data + m->tx.wpos;
		mux_hdr_encode(at, s->sid, MUX_DATA, (uint16_t)flen);
		if (flen == left && s->credit == 0)
			at[5] = MUX_F_BLOCKED;
		m->tx.wpos += MUX_HDR;
		for (k = flen; k > 0; ) {
			size_t c = iov[i].iov_len - off;

			if (c > k)
				c = k;
			memcpy(m->tx.data + m->tx.wpos,
			    (const uint8_t *)iov[i].iov_base + off, c);
			m->tx.wpos += c;
			off += c;
			k -= c;
			if (off == iov[i].iov_len) {
				i++;
				off = 0;
			}
		}
		left -= flen;
	}
	mux_dirty(m);
	return (ssize_t)want;
}

/* src's bytes read straight into DATA frames on the link: up to
 * READ_SLOTS frames per readv(), each read into its place in tx after
 * the room for its header, so they are copied only by TLS. */
static ssize_t
st_pull(struct pend *e, struct pend *src, int *more)
{
	struct mux_stream *s = (struct mux_stream *)(void *)e;
	struct mux *m = s->m;
	struct iovec iov[READ_SLOTS];
	size_t want, left, got, k;
	ssize_t n;
	uint8_t *at;
	int i, cnt;

	if (m->failed || s->credit == 0)
		return PEND_FULL;	/* a failed link fails s soon */
	if (buf_len(&m->tx) >= MUX_TX_SOFT) {
		if (!s->waiting) {
			s->waiting = 1;
			s->wnext = m->waiting;
			m->waiting = s;
		}
		return PEND_FULL;
	}
	want = s->credit < READ_SLOTS * MUX_DATA_MAX ? s->credit :
	    READ_SLOTS * MUX_DATA_MAX;
	cnt = (int)((want + MUX_DATA_MAX - 1) / MUX_DATA_MAX);
	if (mux_tx_reserve(m, want + (size_t)cnt * MUX_HDR) == -1)
		return PEND_FULL;
	at = m->tx.data + m->tx.wpos;
	for (i = 0, left = want; i < cnt; i++) {
		k = left < MUX_DATA_MAX ? left : MUX_DATA_MAX;
		iov[i].iov_base = at + (size_t)i * (MUX_HDR + MUX_DATA_MAX) +
		    MUX_HDR;
		iov[i].iov_len = k;
		left -= k;
	}
	n = readv(src->rawfd, iov, cnt);
	if (n == 0)
		return src->kept_err != 0 ? pull_err(src, src->kept_err) :
		    PEND_EOF;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ?
		    PEND_AGAIN : pull_err(src, errno);
	/* Only the last slot filled may be short: the frames lie back to
	 * back. */
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
	*more = (size_t)n == want;
	mux_dirty(m);
	return n;
}

static int
st_shut(struct pend *e)
{
	struct mux_stream *s = (struct mux_stream *)(void *)e;

	if (s->m->failed) {
		return (int)link_gone(e, s->m);
	}
	(void)mux_tx_frame(s->m, s->sid, MUX_FIN, NULL, 0);
	mux_dirty(s->m);
	return 1;
}

static void
st_watch(struct pend *e, unsigned what)
{
	struct mux_stream *s = (struct mux_stream *)(void *)e;

	s->want_wr = (what & PEND_WR) != 0;
}

/* n of the peer's bytes left the pump: credit them back in batches. */
static void
st_drained(struct pend *e, size_t n, int empty)
{
	struct mux_stream *s = (struct mux_stream *)(void *)e;
	uint32_t more = 0;

	s->owed += (uint32_t)n;
	if (s->owed < s->win / 4 || !s->hashed)
		return;
	/* The peer waited for credit while this side keeps up: the window,
	 * not this side, limits the stream. */
	if (s->blocked && empty && s->win < MUX_WINDOW_MAX &&
	    grown + s->win <= grow_budget) {
		more = s->win;
		grown += more;
		s->win += more;
	}
	s->blocked = 0;
	mux_tx_credit(s->m, s->sid, s->owed + more);
	s->inflight -= s->owed;
	s->owed = 0;
	mux_dirty(s->m);
}

/* The session is over: tell the peer if it was cut, and forget s. */
static void
st_close(struct pend *e, int abort)
{
	struct mux_stream *s = (struct mux_stream *)(void *)e;
	struct mux *m = s->m;
	struct pump *p = e->p;

	if (abort && s->hashed && !s->rst_rcvd && !m->failed)
		mux_tx_rst(m, s->sid, p != NULL ? p->cut_code : SE_ERROR,
		    p != NULL && p->cut_why[0] != '\0' ? p->cut_why : "cut");
	stream_unhash(s);
	grown -= s->win - MUX_WINDOW;
	free(s);
}

static const struct pend_ops stream_ops = {
	.recv = NULL,			/* the link pushes the peer's bytes */
	.send = st_send,
	.splice_in = NULL,
	.splice_out = NULL,
	.pull = st_pull,
	.shut = st_shut,
	.watch = st_watch,
	.drained = st_drained,
	.close = st_close,
};

static void
stream_init_ops(struct mux_stream *s)
{
	s->e.ops = &stream_ops;
	s->e.rawfd = -1;
}

/* A run of DATA frames for s: iov[0..cnt), n bytes in all; blocked if one
 * was marked MUX_F_BLOCKED. */
void
mux_stream_data(struct mux *m, struct mux_stream *s, const struct iovec *iov,
    int cnt, size_t n, int blocked)
{
	if (s->fin_rcvd || s->rst_rcvd) {
		mux_broken(m, "mux DATA after the stream's end");
		return;
	}
	if (s->inflight + n > s->win) {
		mux_broken(m, "mux peer sent beyond its credit");
		return;
	}
	s->inflight += (uint32_t)n;
	if (blocked)
		s->blocked = 1;	/* the sender waits for credit */
	if (pump_push(s->e.p, s->e.side, iov, cnt, s->win + MUX_PRIME_MAX) == -1)
		mux_broken(m, "mux peer sent beyond its credit");
}

/* An RST from the peer: its code (SE_ERROR if unknown) and text. */
void
mux_stream_rst(struct mux_stream *s, const uint8_t *p, size_t n)
{
	enum sess_end code;
	char why[MUX_CTL_MAX];
	size_t i;

	if (end_from_wire(p[0], &code) == -1)
		code = SE_ERROR;
	/* Text from the peer goes into logs: printable only. */
	for (i = 1; i < n && i < sizeof(why); i++)
		why[i - 1] = (char)(p[i] >= 0x20 && p[i] <= 0x7e ? p[i] : '?');
	why[i - 1] = '\0';
	s->rst_rcvd = 1;
	pump_fail(s->e.p, s->e.side, code, why);
}

struct mux_stream *
mux_open(struct mux *m, const void *p, size_t n)
{
	struct mux_stream *s;

	if (!m->opener || m->failed || m->closing || n > MUX_CTL_MAX)
		return NULL;
	if ((s = stream_new(m, m->next_sid)) == NULL)
		return NULL;
	if (mux_tx_frame(m, s->sid, MUX_OPEN, p, n) == -1) {
		stream_unhash(s);
		free(s);
		return NULL;
	}
	m->next_sid++;
	if (s->sid == MUX_SID_LAST)
		mux_spent(m);
	mux_dirty(m);
	return s;
}

struct mux_stream *
mux_accept(struct mux *m, uint32_t sid)
{
	struct mux_stream *s;

	/* Refused as mux.h says: else the opener's stream would wait for
	 * an answer that never comes. */
	if ((s = stream_new(m, sid)) == NULL)
		mux_refuse(m, sid, SE_REFUSED, "out of memory");
	return s;
}

