/* fuzz_mux.c - a hostile peer on a multiplexed data link.
 *
 * The first input byte picks the side under test, the rest is what the
 * peer sends on the link:
 *
 *   bit 0 clear: an acceptor mux (the agent) reads a hostile edge's
 *   bytes. Its open() takes streams as the agent does: most get a pump
 *   with a backend (a socketpair whose far end the harness reads, some
 *   with a PROXY header as prime, some that answer or hang up at once),
 *   some are held without a backend (their bytes wait in the pump), some
 *   are refused.
 *
 *   bit 0 set: an opener mux (the edge) reads a hostile agent's bytes,
 *   with 1 to 4 streams opened first, each pumped to a client socketpair
 *   (bits 1-2: how many; bits 3-4: whether the clients send bytes and
 *   half-close).
 *
 *   bit 7 set: the next two bytes are a count and an offset: the peer's
 *   bytes up to the offset are sent once, the rest count + 1 times. So
 *   an input of a few KiB can send more than a window (256 KiB) to a
 *   stream: a flood the bounds must hold against.
 *
 * The link is a non-blocking socketpair: the harness writes the input
 * into its end as the socket takes it, then, a turn after the last byte,
 * half-closes it (the mux then sees the link end); it turns the event
 * loop (ev_run_once(0), the settle hooks, psock_tick) until the mux
 * reports the link lost. After every turn it checks what must hold
 * whatever the peer sends:
 *
 *   - the stream table is sound: every stream sits in its id's bucket
 *     once, no two live streams share an id, nstreams is what the table
 *     holds, and every id is below the next one to open;
 *   - no stream is created for an id that is not the next one (open()
 *     sees 1, 2, 3, ...);
 *   - memory stays bounded: what waits in a stream's pump from the peer
 *     never exceeds the stream's window + MUX_PRIME_MAX, nor what it has
 *     in flight its window; windows grow within the budget;
 *   - the link is lost once, after every stream's pump has ended.
 *
 * A hang (MAX_TURNS) aborts; lost() frees the mux with free(), so a use
 * after it is caught by ASan. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/mux.h"
#include "common/psock.h"
#include "common/pump.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXS		64
#define MAX_TURNS	100000

/* One session on the link: its pump, the local socket's endpoint, and
 * the harness's end of that socket. */
struct fs {
	int		 used;
	int		 live;		/* the pump has not ended */
	uint32_t	 sid;
	struct pump	 p;
	struct psock	 ps;
	int		 fd;		/* the harness's end, or -1 */
};

static struct mux *M;
static int opener, nlost;
static uint32_t last_sid;	/* acceptor: the id open() saw last */
static struct fs S[MAXS];

static void
nonblock(int fd)
{
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void
done_cb(struct pump *p, int side, int clean)
{
	struct fs *f = p->arg;

	if (!f->live || p != &f->p)
		abort();
	f->live = 0;
	pump_free(p, clean ? SE_NONE : p->e[side]->code, p->e[side]->err);
}

static void
lost_cb(struct mux *m, const char *why)
{
	int i;

	if (m != M || nlost++ > 0 || why == NULL || m->nstreams != 0)
		abort();
	/* Every stream's pump ended before the link was reported. */
	for (i = 0; i < MAXS; i++)
		if (S[i].live)
			abort();
	mux_free(m);
	free(m);
	M = NULL;
}

/* A local socket for f, as side s of its pump; prime: a PROXY header. */
static int
attach_socket(struct fs *f, int s, int prime)
{
	struct buf pb = { 0 };
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		return -1;
	nonblock(sv[0]);
	nonblock(sv[1]);
	f->fd = sv[1];
	psock_init(&f->ps, sv[0], 0);
	if (prime)
		(void)buf_append(&pb, "PROXY UNKNOWN\r\n", 15, MUX_PRIME_MAX);
	pump_attach(&f->p, s, &f->ps.e, prime ? &pb : NULL, 1);
	return 0;
}

/* Acceptor: as the agent, by the stream's id. */
static void
open_cb(struct mux *m, uint32_t sid, const uint8_t *p, size_t n)
{
	struct mux_stream *st;
	struct fs *f;

	(void)p;
	if (m != M || opener || n > MUX_CTL_MAX)
		abort();
	/* Ids 1, 2, 3, ...: never another. */
	if (sid != last_sid + 1)
		abort();
	last_sid = sid;
	if (sid % 4 == 3 || sid >= MAXS) {
		mux_refuse(m, sid, sid % 8 == 3 ? SE_REFUSED : SE_LIMIT,
		    "refused");
		return;
	}
	f = &S[sid];
	if (f->used)
		abort();
	f->used = 1;
	f->sid = sid;
	f->fd = -1;
	if ((st = mux_accept(m, sid)) == NULL)
		return;
	if (st->sid != sid)
		abort();
	pump_init(&f->p, done_cb, f);
	f->live = 1;
	pump_attach(&f->p, PUMP_OUTER, &st->e, NULL, 0);
	if (sid % 5 == 0)
		return;		/* held: the backend has not answered */
	if (attach_socket(f, PUMP_INNER, sid % 3 == 0) == -1) {
		pump_fail(&f->p, PUMP_INNER, SE_ERROR, "no socket");
		return;
	}
	/* Backends that hang up at once, and ones that speak first. */
	if (sid % 4 == 1)
		(void)shutdown(f->fd, SHUT_WR);
	else if (sid % 4 == 2)
		(void)send(f->fd, "220 hello\r\n", 11, MSG_NOSIGNAL);
}

static const struct mux_ops ops = { open_cb, lost_cb };

/* Opener: n streams, as the edge opens them for clients. */
static void
open_streams(int n, unsigned how)
{
	struct mux_stream *st;
	struct fs *f;
	int i;

	for (i = 0; i < n; i++) {
		if ((st = mux_open(M, "SESS_OPEN", 9)) == NULL)
			abort();
		if (st->sid != (uint32_t)i + 1)
			abort();
		f = &S[st->sid];
		f->used = 1;
		f->sid = st->sid;
		f->fd = -1;
		pump_init(&f->p, done_cb, f);
		f->live = 1;
		if (attach_socket(f, PUMP_OUTER, 0) == -1)
			abort();
		pump_attach(&f->p, PUMP_INNER, &st->e, NULL, 0);
		if (how & 1)
			(void)send(f->fd, "client bytes", 12, MSG_NOSIGNAL);
		if (how & 2)
			(void)shutdown(f->fd, SHUT_WR);
	}
}

/* What must hold after every turn while the link lives. */
static void
check(void)
{
	const struct mux_stream *s, *t;
	uint32_t sids[MAXS * 2];
	uint64_t count = 0;
	size_t i, k, held, bound;
	struct pump *p;

	if (M == NULL)
		return;
	for (i = 0; i < MUX_BUCKETS; i++)
		for (s = M->buckets[i]; s != NULL; s = s->hnext) {
			if (s->m != M || !s->hashed || s->sid == 0 ||
			    s->sid % MUX_BUCKETS != i || s->sid >= M->next_sid)
				abort();
			if (count >= sizeof(sids) / sizeof(sids[0]))
				abort();
			for (k = 0; k < count; k++)
				if (sids[k] == s->sid)
					abort();	/* two live streams, one id */
			sids[count++] = s->sid;
			/* Memory per stream: the window it granted. */
			if (s->win < MUX_WINDOW || s->win > MUX_WINDOW_MAX ||
			    s->inflight > s->win ||
			    s->credit > MUX_WINDOW_MAX)
				abort();
			if ((p = s->e.p) != NULL) {
				held = buf_len(&p->d[s->e.side].b) +
				    p->d[s->e.side].plen;
				bound = (size_t)s->win + MUX_PRIME_MAX;
				if (held > bound)
					abort();
			}
			for (t = s->hnext; t != NULL; t = t->hnext)
				if (t == s)
					abort();	/* a loop in a chain */
		}
	if (count != M->nstreams)
		abort();
	if (mux_grown() > MUX_GROW_BUDGET)
		abort();
}

/* The peer's bytes: pre[0..npre), then rep[0..nrep) reps times. */
struct wire {
	const uint8_t	*pre, *rep;
	size_t		 npre, nrep, reps;
};

static size_t
wire_len(const struct wire *w)
{
	return w->npre + w->nrep * w->reps;
}

/* The bytes at offset off, and how many follow there contiguously. */
static const uint8_t *
wire_at(const struct wire *w, size_t off, size_t *n)
{
	if (off < w->npre) {
		*n = w->npre - off;
		return w->pre + off;
	}
	off = (off - w->npre) % w->nrep;
	*n = w->nrep - off;
	return w->rep + off;
}

static void
drain(int fd)
{
	uint8_t b[65536];

	while (fd != -1 && recv(fd, b, sizeof(b), 0) > 0)
		;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	struct wire w;
	const uint8_t *at;
	size_t off = 0, len, k, split;
	ssize_t n;
	int l[2], shut = 0, idle = 0, turns = 0, i;

	if (!init) {
		if (ev_init() == -1)
			abort();
		signal(SIGPIPE, SIG_IGN);
		init = 1;
	}
	if (size < 1)
		return 0;
	opener = data[0] & 1;
	nlost = 0;
	last_sid = 0;
	memset(S, 0, sizeof(S));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, l) == -1)
		abort();
	nonblock(l[0]);
	nonblock(l[1]);
	if ((M = calloc(1, sizeof(*M))) == NULL)
		abort();
	if (mux_start(M, l[1], NULL, opener, NULL, &ops, NULL) == -1)
		abort();
	if (opener)
		open_streams(1 + ((data[0] >> 1) & 3), (unsigned)data[0] >> 3);
	ev_settle();
	check();
	memset(&w, 0, sizeof(w));
	w.reps = 1;
	if ((data[0] & 0x80) && size >= 3) {
		w.reps = (size_t)data[1] + 1;
		split = data[2];
		data += 3;
		size -= 3;
		if (split > size)
			split = size;
		w.pre = data;
		w.npre = split;
		w.rep = data + split;
		w.nrep = size - split;
	} else {
		w.rep = data + 1;
		w.nrep = size - 1;
	}
	if (w.nrep == 0)
		w.reps = 0;
	len = wire_len(&w);
	while (nlost == 0) {
		/* The end of the link only after a turn has handled all the
		 * bytes: else a flood and the EOF behind it would be handled
		 * in one turn, and check() would not see what the flood left
		 * in memory before the link ended. */
		if (off == len && !shut && idle) {
			(void)shutdown(l[0], SHUT_WR);
			shut = 1;
		} else if (off < len) {
			at = wire_at(&w, off, &k);
			n = send(l[0], at, k, MSG_NOSIGNAL);
			if (n > 0)
				off += (size_t)n;
			else if (errno != EAGAIN)
				abort();	/* the link stays open until lost */
		}
		/* The peer and the local sockets read all they get. */
		drain(l[0]);
		for (i = 0; i < MAXS; i++)
			if (S[i].used)
				drain(S[i].fd);
		if (ev_run_once(0) == -1)
			abort();
		ev_settle();
		psock_tick(ev_now());
		check();
		idle = off == len;
		if (M != NULL && turns % 64 == 0)
			mux_tick(M, ev_now());
		if (++turns > MAX_TURNS)
			abort();	/* a hang */
	}
	for (i = 0; i < MAXS; i++)
		if (S[i].live)
			abort();
	if (mux_grown() != 0)
		abort();	/* growth is given back with the streams */
	close(l[0]);
	for (i = 0; i < MAXS; i++)
		if (S[i].used && S[i].fd != -1)
			close(S[i].fd);
	/* Sockets waiting to be reset after a drain: reset them now. */
	psock_tick(UINT64_MAX);
	return 0;
}
