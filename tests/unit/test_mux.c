/* test_mux.c - mux frame headers, and streams end to end over a real link
 * (a socketpair, plain) driven by the event loop: bulk transfer with
 * back-pressure, half-close, many streams, RST, REFUSE, cut, keep-alive,
 * and a hand-written peer that breaks the protocol. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "common/mux.h"
#include "common/relay.h"

#define DEADLINE_MS	30000
#define MIB		(1024 * 1024)

/* --- headers ------------------------------------------------------------- */

static int
dec(uint32_t sid, uint8_t type, uint8_t flags, uint16_t len, struct mux_hdr *h)
{
	uint8_t p[MUX_HDR];
	const char *why = NULL;
	int r;

	mux_hdr_encode(p, sid, type, len);
	p[5] = flags;
	r = mux_hdr_decode(p, h, &why);
	if (r == -1)
		assert_non_null(why);
	return r;
}

static void
test_hdr_layout(void **state)
{
	uint8_t p[MUX_HDR];
	const uint8_t want[MUX_HDR] = { 1, 2, 3, 4, MUX_DATA, 0, 0x12, 0x34 };

	(void)state;
	mux_hdr_encode(p, 0x01020304, MUX_DATA, 0x1234);
	assert_memory_equal(p, want, MUX_HDR);
}

static void
test_hdr_hostile(void **state)
{
	struct mux_hdr h;
	uint8_t t;
	const uint8_t ctl[] = { MUX_OPEN, MUX_RST, MUX_REFUSE };
	size_t i;

	(void)state;
	/* The only flag is BLOCKED, on DATA only; any other is refused,
	 * even with an otherwise good header. */
	for (t = MUX_OPEN; t <= MUX_PONG; t++) {
		uint32_t sid = t == MUX_PING || t == MUX_PONG ? 0 : 1;
		uint16_t len = t == MUX_CREDIT ? 4 : t == MUX_PING ||
		    t == MUX_PONG ? 8 : t == MUX_DATA ? 1 : 0;

		assert_int_equal(dec(sid, t, 0, len, &h), 0);
		assert_int_equal(h.flags, 0);
		assert_int_equal(dec(sid, t, MUX_F_BLOCKED, len, &h),
		    t == MUX_DATA ? 0 : -1);
		assert_int_equal(dec(sid, t, 2, len, &h), -1);
		assert_int_equal(dec(sid, t, MUX_F_BLOCKED | 2, len, &h), -1);
		assert_int_equal(dec(sid, t, 0x80, len, &h), -1);
		assert_int_equal(dec(sid, t, 0xff, len, &h), -1);
		/* Stream 0 is for PING and PONG only, and they only use it. */
		assert_int_equal(dec(sid == 0 ? 1 : 0, t, 0, len, &h), -1);
		assert_int_equal(dec(sid == 0 ? 0xffffffffu : 0, t, 0, len, &h),
		    -1);
	}
	/* Unknown types. */
	assert_int_equal(dec(1, 0, 0, 0, &h), -1);
	assert_int_equal(dec(1, 9, 0, 0, &h), -1);
	assert_int_equal(dec(0, 9, 0, 8, &h), -1);
	assert_int_equal(dec(1, 0x7f, 0, 4, &h), -1);
	assert_int_equal(dec(1, 0xff, 0, 1, &h), -1);
	/* DATA: 1..MUX_DATA_MAX. */
	assert_int_equal(dec(1, MUX_DATA, 0, 0, &h), -1);
	assert_int_equal(dec(1, MUX_DATA, 0, MUX_DATA_MAX + 1, &h), -1);
	assert_int_equal(dec(1, MUX_DATA, 0, 0xffff, &h), -1);
	/* OPEN, RST, REFUSE: 0..MUX_CTL_MAX. */
	for (i = 0; i < sizeof(ctl); i++) {
		assert_int_equal(dec(1, ctl[i], 0, MUX_CTL_MAX + 1, &h), -1);
		assert_int_equal(dec(1, ctl[i], 0, MUX_DATA_MAX, &h), -1);
		assert_int_equal(dec(1, ctl[i], 0, 0xffff, &h), -1);
	}
	/* FIN: empty. */
	assert_int_equal(dec(1, MUX_FIN, 0, 1, &h), -1);
	assert_int_equal(dec(1, MUX_FIN, 0, 0xffff, &h), -1);
	/* CREDIT: exactly 4. */
	assert_int_equal(dec(1, MUX_CREDIT, 0, 0, &h), -1);
	assert_int_equal(dec(1, MUX_CREDIT, 0, 3, &h), -1);
	assert_int_equal(dec(1, MUX_CREDIT, 0, 5, &h), -1);
	assert_int_equal(dec(1, MUX_CREDIT, 0, 0xffff, &h), -1);
	/* PING, PONG: exactly 8, stream 0. */
	for (t = MUX_PING; t <= MUX_PONG; t++) {
		assert_int_equal(dec(0, t, 0, 0, &h), -1);
		assert_int_equal(dec(0, t, 0, 7, &h), -1);
		assert_int_equal(dec(0, t, 0, 9, &h), -1);
		assert_int_equal(dec(0, t, 0, 0xffff, &h), -1);
		assert_int_equal(dec(1, t, 0, 8, &h), -1);
		assert_int_equal(dec(0x80000000u, t, 0, 8, &h), -1);
	}
}

static void
test_hdr_good(void **state)
{
	struct mux_hdr h;
	const uint8_t ctl[] = { MUX_OPEN, MUX_RST, MUX_REFUSE };
	size_t i;

	(void)state;
	assert_int_equal(dec(1, MUX_DATA, 0, 1, &h), 0);
	assert_int_equal(dec(0xffffffffu, MUX_DATA, 0, MUX_DATA_MAX, &h), 0);
	assert_int_equal(h.sid, 0xffffffffu);
	assert_int_equal(h.type, MUX_DATA);
	assert_int_equal(h.len, MUX_DATA_MAX);
	for (i = 0; i < sizeof(ctl); i++) {
		assert_int_equal(dec(7, ctl[i], 0, 0, &h), 0);
		assert_int_equal(dec(7, ctl[i], 0, MUX_CTL_MAX, &h), 0);
		assert_int_equal(h.len, MUX_CTL_MAX);
		assert_int_equal(h.type, ctl[i]);
	}
	assert_int_equal(dec(3, MUX_FIN, 0, 0, &h), 0);
	assert_int_equal(dec(3, MUX_CREDIT, 0, 4, &h), 0);
	assert_int_equal(dec(0, MUX_PING, 0, 8, &h), 0);
	assert_int_equal(h.sid, 0);
	assert_int_equal(dec(0, MUX_PONG, 0, 8, &h), 0);
	assert_int_equal(h.type, MUX_PONG);
}

static void
test_hdr_roundtrip(void **state)
{
	struct mux_hdr h;
	uint8_t p[MUX_HDR];
	const char *why;
	uint32_t x = 12345, sid;
	uint16_t len;
	uint8_t type;
	int i;

	(void)state;
	for (i = 0; i < 100000; i++) {
		x = x * 1103515245u + 12345u;
		type = (uint8_t)(MUX_OPEN + (x >> 8) % 8);
		sid = x | 1u;
		switch (type) {
		case MUX_DATA: len = (uint16_t)(1 + x % MUX_DATA_MAX); break;
		case MUX_FIN: len = 0; break;
		case MUX_CREDIT: len = 4; break;
		case MUX_PING: case MUX_PONG: len = 8; sid = 0; break;
		default: len = (uint16_t)(x % (MUX_CTL_MAX + 1)); break;
		}
		mux_hdr_encode(p, sid, type, len);
		assert_int_equal(mux_hdr_decode(p, &h, &why), 0);
		assert_int_equal(h.sid, sid);
		assert_int_equal(h.type, type);
		assert_int_equal(h.len, len);
	}
}

/* --- end to end: harness --------------------------------------------------- */

/* The test's end of one stream's local socket (the client at A, the
 * backend at B): it sends a pattern, reads and checks the peer's. */
struct tend {
	int		 fd;
	uint64_t	 out_seed, out_total, sent;
	int		 shut_after;	/* shutdown(SHUT_WR) after out_total */
	int		 after_eof;	/* send only once EOF was read */
	int		 shut;
	uint64_t	 in_seed, rcvd;
	const uint8_t	*prime;		/* expected before the pattern */
	size_t		 prime_len, prime_got;
	int		 slow;		/* read slowly at times */
	int		 noread;
	int		 eof;
	int		 err;		/* errno of a failed read */
	int		 bad;		/* a byte differed */
};

struct tstream {
	struct mux_stream *s;		/* NULL once freed */
	int		 ndone;
	int		 first;
	int		 refused;
	char		 err[200];
	int		 order;		/* C.seq when done() ran */
	struct tend	 end;
};

enum { ACC_ATTACH, ACC_REFUSE, ACC_ACCEPT_REFUSE, ACC_HOLD, ACC_BAD_PRIME };

struct side {
	struct mux	 m;
	int		 started;
	int		 nlost;
	int		 order;
	char		 why[200];
};

static struct ctx {
	struct side	 a, b;
	struct tstream	*ta, *tb;	/* index = sid - 1 */
	int		 n;		/* slots in ta and tb */
	int		 policy;	/* B's open() */
	int		 policy_odd;	/* for odd sids, if >= 0 */
	int		 b_tcp, a_tcp;	/* local sockets over TCP */
	int		 a_small;	/* A's with tiny buffers */
	int		 b_small;	/* B's backend sockets too */
	uint64_t	 b_out_total;	/* what B's ends send */
	int		 b_vary;		/* or a size per stream */
	int		 b_shut, b_after_eof, b_slow, a_slow;
	int		 nopen;		/* open() calls */
	int		 seq;
	size_t		 max_out;	/* largest stream out buffer seen */
	uint32_t	 max_win;	/* largest stream window seen */
	int		 credit_zero;	/* a stream ran out of credit */
	size_t		 max_tx;
	uint64_t	 iter;
	int		 lfd;		/* listener for TCP pairs */
} C;

static const struct mux_ops ops;

static uint64_t
mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The pattern of stream seed at offset off. */
static void
fill(uint8_t *p, uint64_t seed, uint64_t off, size_t n)
{
	uint64_t w = UINT64_MAX, v = 0, o;
	size_t i;

	for (i = 0; i < n; i++) {
		o = off + i;
		if ((o >> 3) != w) {
			w = o >> 3;
			v = mix(seed * 0x100000001b3ull ^ w);
		}
		p[i] = (uint8_t)(v >> (8 * (o & 7)));
	}
}

static void
nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	assert_int_not_equal(fl, -1);
	assert_int_equal(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void
unix_pair(int *mine, int *theirs)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	nonblock(sv[0]);
	nonblock(sv[1]);
	*mine = sv[0];
	*theirs = sv[1];
}

/* A connected TCP pair on 127.0.0.1; small: tiny kernel buffers toward
 * theirs, so that the mux side's writes stall early. */
static void
tcp_pair_sized(int *mine, int *theirs, int small)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int c, sz = 4096;

	if (C.lfd == -1) {
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		C.lfd = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_not_equal(C.lfd, -1);
		assert_int_equal(bind(C.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(listen(C.lfd, 16), 0);
	}
	assert_int_equal(getsockname(C.lfd, (struct sockaddr *)&sa, &sl), 0);
	c = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_not_equal(c, -1);
	if (small)
		assert_int_equal(setsockopt(c, SOL_SOCKET, SO_RCVBUF, &sz,
		    sizeof(sz)), 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	*mine = accept(C.lfd, NULL, NULL);
	assert_int_not_equal(*mine, -1);
	if (small)
		assert_int_equal(setsockopt(*mine, SOL_SOCKET, SO_SNDBUF, &sz,
		    sizeof(sz)), 0);
	*theirs = c;
	nonblock(*mine);
	nonblock(*theirs);
}

static void
rst_close(int fd)
{
	struct linger lg = { 1, 0 };

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(fd);
}

static int
outq(int fd)
{
	int q = 0;

	assert_int_equal(ioctl(fd, SIOCOUTQ, &q), 0);
	return q;
}

static void
done_cb(struct mux_stream *s, int first, const char *err, int refused)
{
	struct tstream *t = s->arg;

	assert_ptr_equal(t->s, s);
	t->ndone++;
	t->first = first;
	t->refused = refused;
	t->order = ++C.seq;
	snprintf(t->err, sizeof(t->err), "%s", err != NULL ? err : "");
	/* An error end resets the socket (after its bytes have left). */
	mux_stream_free(s, err != NULL);
	t->s = NULL;
}

static void
lost_cb(struct mux *m, const char *why)
{
	struct side *sd = m->arg;

	sd->nlost++;
	sd->order = ++C.seq;
	snprintf(sd->why, sizeof(sd->why), "%s", why);
}

static void
end_setup(struct tend *e, int fd, uint64_t out_seed, uint64_t out_total,
    uint64_t in_seed)
{
	memset(e, 0, sizeof(*e));
	e->fd = fd;
	e->out_seed = out_seed;
	e->out_total = out_total;
	e->in_seed = in_seed;
	e->shut_after = 1;
}

#define PRIME_FMT "PROXY TCP4 192.0.2.%d 198.51.100.1 %d 443\r\n"
static char primes[1024][64];

static void
open_cb(struct mux *m, uint32_t sid, const uint8_t *p, size_t n)
{
	struct tstream *t;
	struct buf prime = { 0 };
	char meta[64];
	int policy, mine, theirs, i;

	assert_ptr_equal(m, &C.b.m);
	C.nopen++;
	assert_true(sid >= 1 && sid <= (uint32_t)C.n);
	i = (int)sid - 1;
	snprintf(meta, sizeof(meta), "client=%d svc=sftp", i);
	assert_int_equal(n, strlen(meta));
	assert_memory_equal(p, meta, n);
	t = &C.tb[i];
	policy = C.policy_odd >= 0 && (sid & 1) ? C.policy_odd : C.policy;
	switch (policy) {
	case ACC_REFUSE:
		mux_refuse(m, sid, "no backend\n\x01");
		return;
	case ACC_ACCEPT_REFUSE:
		t->s = mux_stream_accept(m, sid, done_cb, t);
		assert_non_null(t->s);
		mux_stream_refuse(t->s, "later");
		t->s = NULL;
		return;
	case ACC_HOLD:
		t->s = mux_stream_accept(m, sid, done_cb, t);
		assert_non_null(t->s);
		t->end.fd = -1;
		return;
	case ACC_BAD_PRIME:
		/* A prime over 1024 bytes: attach fails, done() first. */
		t->s = mux_stream_accept(m, sid, done_cb, t);
		assert_non_null(t->s);
		unix_pair(&mine, &theirs);
		close(theirs);
		for (int k = 0; k < 2000; k++)
			assert_int_equal(buf_append(&prime, "x", 1, 4096), 0);
		assert_int_equal(mux_stream_attach(t->s, mine, &prime), -1);
		assert_int_equal(t->ndone, 1);
		assert_null(t->s);
		assert_int_equal(C.b.nlost, 0);
		return;
	}
	t->s = mux_stream_accept(m, sid, done_cb, t);
	assert_non_null(t->s);
	if (C.b_tcp)
		tcp_pair_sized(&mine, &theirs, C.b_small);
	else
		unix_pair(&mine, &theirs);
	end_setup(&t->end, theirs, 2000 + (uint64_t)i, C.b_vary ?
	    (uint64_t)i * 104729 % 200000 : C.b_out_total, 1000 + (uint64_t)i);
	t->end.shut_after = C.b_shut;
	t->end.after_eof = C.b_after_eof;
	t->end.slow = C.b_slow;
	snprintf(primes[i % 1024], sizeof(primes[0]), PRIME_FMT, i % 250, i);
	t->end.prime = (const uint8_t *)primes[i % 1024];
	t->end.prime_len = strlen(primes[i % 1024]);
	assert_int_equal(buf_append(&prime, t->end.prime, t->end.prime_len,
	    1024), 0);
	assert_int_equal(mux_stream_attach(t->s, mine, &prime), 0);
}

/* Read what e's socket has and check it. */
static void
end_read(struct tend *e)
{
	uint8_t buf[65536], want[65536];
	size_t cap = sizeof(buf), k;
	ssize_t n;

	if (e->fd == -1 || e->eof || e->err || e->noread)
		return;
	/* Slow phases: nothing for a while, then a trickle. */
	if (e->slow) {
		uint64_t ph = (C.iter / 50) % 4;

		if (ph == 0)
			return;
		if (ph == 1)
			cap = 700;
	}
	n = recv(e->fd, buf, cap, 0);
	if (n == 0) {
		e->eof = 1;
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR)
			e->err = errno;
		return;
	}
	k = 0;
	while (e->prime_got < e->prime_len && k < (size_t)n) {
		if (buf[k] != e->prime[e->prime_got])
			e->bad = 1;
		e->prime_got++;
		k++;
	}
	if (k < (size_t)n) {
		fill(want, e->in_seed, e->rcvd, (size_t)n - k);
		if (memcmp(buf + k, want, (size_t)n - k) != 0)
			e->bad = 1;
		e->rcvd += (size_t)n - k;
	}
}

static void
end_write(struct tend *e)
{
	uint8_t buf[65536];
	size_t want;
	ssize_t n;

	if (e->fd == -1 || e->shut || (e->after_eof && !e->eof))
		return;
	if (e->sent < e->out_total) {
		want = e->out_total - e->sent < sizeof(buf) ?
		    (size_t)(e->out_total - e->sent) : sizeof(buf);
		fill(buf, e->out_seed, e->sent, want);
		n = send(e->fd, buf, want, MSG_NOSIGNAL);
		if (n > 0)
			e->sent += (uint64_t)n;
	}
	if (e->sent == e->out_total && e->shut_after) {
		assert_int_equal(shutdown(e->fd, SHUT_WR), 0);
		e->shut = 1;
	}
}

static void
check_stream(const struct mux_stream *s)
{
	if (s == NULL)
		return;
	assert_true(s->win >= MUX_WINDOW && s->win <= MUX_WINDOW_MAX);
	assert_true(s->out.size <= s->win + MUX_PRIME_MAX);
	assert_true(buf_len(&s->out) <= s->win + s->prime);
	assert_true(s->inflight <= s->win);
	assert_true(s->credit <= MUX_WINDOW_MAX);
	assert_true(mux_grown() <= MUX_GROW_BUDGET);
	if (s->out.size > C.max_out)
		C.max_out = s->out.size;
	if (s->win > C.max_win)
		C.max_win = s->win;
	if (s->credit == 0)
		C.credit_zero = 1;
}

/* One loop turn: the muxes, then the test's ends of the local sockets. */
static void
turn(int ms)
{
	int i;

	assert_int_equal(ev_run_once(ms), 0);
	relay_tick(ev_now());
	for (i = 0; i < C.n; i++) {
		end_write(&C.ta[i].end);
		end_write(&C.tb[i].end);
		end_read(&C.ta[i].end);
		end_read(&C.tb[i].end);
		check_stream(C.ta[i].s);
		check_stream(C.tb[i].s);
	}
	if (C.a.started && C.a.m.tx.size > C.max_tx)
		C.max_tx = C.a.m.tx.size;
	if (C.b.started && C.b.m.tx.size > C.max_tx)
		C.max_tx = C.b.m.tx.size;
	assert_true(C.max_tx <= MUX_TX_MAX);
	C.iter++;
}

/* Turn the loop until cond holds, or fail after a generous deadline. */
#define WAIT(cond) do {							\
	uint64_t dl_ = ev_now_update() + DEADLINE_MS;			\
	while (!(cond)) {						\
		if (ev_now() > dl_)					\
			fail_msg("timed out waiting for %s", #cond);	\
		turn(1);						\
	}								\
} while (0)

static int
all_done(void)
{
	int i;

	for (i = 0; i < C.n; i++)
		if (C.ta[i].s != NULL || C.tb[i].s != NULL)
			return 0;
	return 1;
}

/* Every stream ended and every test end that reads has read its end. */
static int
all_settled(void)
{
	int i;

	if (!all_done())
		return 0;
	for (i = 0; i < C.n; i++) {
		const struct tend *e[2] = { &C.ta[i].end, &C.tb[i].end };

		for (int k = 0; k < 2; k++)
			if (e[k]->fd != -1 && !e[k]->noread && !e[k]->eof &&
			    !e[k]->err)
				return 0;
	}
	return 1;
}

static void
ctx_init(int n)
{
	static int evok;

	if (!evok) {
		assert_int_equal(ev_init(), 0);
		evok = 1;
	}
	memset(&C, 0, sizeof(C));
	C.lfd = -1;
	C.policy_odd = -1;
	C.b_shut = 1;
	C.n = n;
	C.ta = calloc((size_t)n, sizeof(*C.ta));
	C.tb = calloc((size_t)n, sizeof(*C.tb));
	assert_non_null(C.ta);
	assert_non_null(C.tb);
	for (int i = 0; i < n; i++)
		C.ta[i].end.fd = C.tb[i].end.fd = -1;
	ev_now_update();
}

/* A link: A opens, B accepts. raw: B only, the test speaks for A on
 * *rawfd; raw_opener: A only, the test speaks for B. */
static void
link_up(int *rawfd, int raw_is_acceptor)
{
	int l0, l1;

	unix_pair(&l0, &l1);
	if (rawfd == NULL || raw_is_acceptor) {
		assert_int_equal(mux_start(&C.a.m, l0, NULL, 1, NULL, &ops, &C.a), 0);
		C.a.started = 1;
	}
	if (rawfd == NULL || !raw_is_acceptor) {
		assert_int_equal(mux_start(&C.b.m, l1, NULL, 0, NULL, &ops, &C.b), 0);
		C.b.started = 1;
	}
	if (rawfd != NULL)
		*rawfd = raw_is_acceptor ? l1 : l0;
}

/* A opens stream i with local socket traffic of out bytes. */
static struct mux_stream *
a_open(int i, uint64_t out)
{
	struct tstream *t = &C.ta[i];
	char meta[64];
	int mine, theirs;

	if (C.a_tcp)
		tcp_pair_sized(&mine, &theirs, C.a_small);
	else
		unix_pair(&mine, &theirs);
	end_setup(&t->end, theirs, 1000 + (uint64_t)i, out, 2000 + (uint64_t)i);
	t->end.slow = C.a_slow;
	snprintf(meta, sizeof(meta), "client=%d svc=sftp", i);
	t->s = mux_open(&C.a.m, mine, meta, strlen(meta), done_cb, t);
	assert_non_null(t->s);
	assert_int_equal(t->s->sid, (uint32_t)i + 1);
	return t->s;
}

static void
ctx_free(void)
{
	int i;

	for (i = 0; i < C.n; i++) {
		if (C.ta[i].s != NULL)
			mux_stream_free(C.ta[i].s, 1);
		if (C.tb[i].s != NULL)
			mux_stream_free(C.tb[i].s, 1);
		if (C.ta[i].end.fd != -1)
			close(C.ta[i].end.fd);
		if (C.tb[i].end.fd != -1)
			close(C.tb[i].end.fd);
	}
	if (C.a.started)
		mux_free(&C.a.m);
	if (C.b.started)
		mux_free(&C.b.m);
	relay_tick(UINT64_MAX);
	if (C.lfd != -1)
		close(C.lfd);
	free(C.ta);
	free(C.tb);
	C.ta = C.tb = NULL;
}

static const struct mux_ops ops = { open_cb, lost_cb };

static void
expect_pattern(const struct tend *e, uint64_t total, size_t prime_len)
{
	assert_false(e->bad);
	assert_int_equal(e->rcvd, total);
	assert_int_equal(e->prime_got, prime_len);
}

/* --- end to end: tests ------------------------------------------------------ */

/* Several MiB each way through one stream, both readers slow at times:
 * exact bytes, the PROXY header first and once, bounded buffers, and the
 * sender ran out of credit (back-pressure worked). */
static void
test_bulk(void **state)
{
	const uint64_t ab = 6 * MIB + 12345, ba = 5 * MIB + 777;
	struct tstream *a, *b;

	(void)state;
	ctx_init(1);
	C.b_out_total = ba;
	C.a_slow = C.b_slow = 1;
	link_up(NULL, 0);
	a_open(0, ab);
	WAIT(all_settled());
	a = &C.ta[0];
	b = &C.tb[0];
	assert_int_equal(a->ndone, 1);
	assert_int_equal(b->ndone, 1);
	assert_string_equal(a->err, "");
	assert_string_equal(b->err, "");
	expect_pattern(&b->end, ab, b->end.prime_len);
	assert_true(b->end.prime_len > 20);
	expect_pattern(&a->end, ba, 0);
	assert_true(a->end.eof);
	assert_true(b->end.eof);
	assert_true(C.credit_zero);
	assert_true(C.max_out > 0 && C.max_out <= MUX_WINDOW_MAX + MUX_PRIME_MAX);
	assert_true(C.max_tx <= 2 * MUX_TX_SOFT);
	assert_int_equal(C.a.nlost, 0);
	assert_int_equal(C.b.nlost, 0);
	assert_int_equal(C.a.m.nstreams, 0);
	assert_int_equal(C.b.m.nstreams, 0);
	ctx_free();
}

/* A's client sends and half-closes; B's backend answers only after it
 * read that EOF, with much more than a window. */
static void
test_half_close(void **state)
{
	(void)state;
	ctx_init(1);
	C.b_out_total = 3 * MIB;
	C.b_after_eof = 1;
	link_up(NULL, 0);
	a_open(0, 1 * MIB + 3);
	WAIT(all_settled());
	assert_string_equal(C.ta[0].err, "");
	assert_string_equal(C.tb[0].err, "");
	assert_int_equal(C.ta[0].first, 0);
	assert_int_equal(C.tb[0].first, 1);
	assert_int_equal(C.ta[0].refused, 0);
	expect_pattern(&C.tb[0].end, 1 * MIB + 3, C.tb[0].end.prime_len);
	expect_pattern(&C.ta[0].end, 3 * MIB, 0);
	assert_true(C.ta[0].end.eof && C.tb[0].end.eof);
	/* The other way round: the backend ends first. */
	ctx_free();
	ctx_init(1);
	C.b_out_total = 100000;
	link_up(NULL, 0);
	a_open(0, 2 * MIB);
	C.ta[0].end.after_eof = 1;
	WAIT(all_settled());
	assert_string_equal(C.ta[0].err, "");
	assert_string_equal(C.tb[0].err, "");
	assert_int_equal(C.ta[0].first, 1);
	assert_int_equal(C.tb[0].first, 0);
	expect_pattern(&C.tb[0].end, 2 * MIB, C.tb[0].end.prime_len);
	expect_pattern(&C.ta[0].end, 100000, 0);
	ctx_free();
}

/* 200 streams at once, each its own sizes both ways (some empty). */
static void
test_many(void **state)
{
	const int n = 200;
	int i;

	(void)state;
	ctx_init(n);
	C.b_vary = 1;
	C.a_slow = 1;
	link_up(NULL, 0);
	for (i = 0; i < n; i++)
		a_open(i, (uint64_t)(i * 7919) % 150000);
	WAIT(all_settled());
	assert_int_equal(C.nopen, n);
	for (i = 0; i < n; i++) {
		assert_int_equal(C.ta[i].ndone, 1);
		assert_int_equal(C.tb[i].ndone, 1);
		assert_string_equal(C.ta[i].err, "");
		assert_string_equal(C.tb[i].err, "");
		expect_pattern(&C.tb[i].end, (uint64_t)(i * 7919) % 150000,
		    C.tb[i].end.prime_len);
		expect_pattern(&C.ta[i].end, (uint64_t)i * 104729 % 200000, 0);
	}
	assert_int_equal(C.a.m.streams_total, (uint64_t)n);
	assert_int_equal(C.a.nlost + C.b.nlost, 0);
	ctx_free();
}

static int
a_end_flushed(void)
{
	return C.ta[0].end.sent == C.ta[0].end.out_total &&
	    outq(C.ta[0].end.fd) == 0;
}

static int
b_end_finished(void)
{
	return all_done() && (C.tb[0].end.eof || C.tb[0].end.err);
}

/* A's client resets its TCP connection after sending: B's backend gets
 * every byte, then a reset (not an EOF); both done() report an error. */
static void
test_rst(void **state)
{
	const uint64_t ab = 400000;

	(void)state;
	ctx_init(1);
	C.a_tcp = C.b_tcp = 1;
	C.b_shut = 0;
	C.b_slow = 1;
	link_up(NULL, 0);
	a_open(0, ab);
	C.ta[0].end.shut_after = 0;
	WAIT(a_end_flushed());
	rst_close(C.ta[0].end.fd);
	C.ta[0].end.fd = -1;
	WAIT(b_end_finished());
	assert_int_equal(C.ta[0].ndone, 1);
	assert_int_equal(C.ta[0].first, 0);
	assert_string_not_equal(C.ta[0].err, "");
	assert_int_equal(C.tb[0].ndone, 1);
	assert_int_equal(C.tb[0].first, 1);
	assert_non_null(strstr(C.tb[0].err, "reset"));
	assert_non_null(strstr(C.tb[0].err, "Connection reset by peer"));
	expect_pattern(&C.tb[0].end, ab, C.tb[0].end.prime_len);
	assert_int_equal(C.tb[0].end.err, ECONNRESET);
	assert_int_equal(C.a.nlost + C.b.nlost, 0);
	ctx_free();
}

/* B's backend resets while A's client is still sending: A's client gets
 * B's bytes, then a reset. */
static void
test_rst_backend(void **state)
{
	(void)state;
	ctx_init(1);
	C.a_tcp = C.b_tcp = 1;
	C.b_shut = 0;
	C.b_out_total = (MUX_WINDOW + 56512);
	C.a_small = 1;
	link_up(NULL, 0);
	a_open(0, 64 * MIB);
	C.ta[0].end.shut_after = 0;
	C.ta[0].end.slow = 1;
	/* Neither end reads: B holds A's bytes for the backend when it
	 * resets (so B meets the reset writing), and B's credit toward A
	 * is spent, so the backend's last bytes still wait in B's socket. */
	C.ta[0].end.noread = 1;
	WAIT(C.tb[0].end.fd != -1);
	C.tb[0].end.noread = 1;
	WAIT(C.tb[0].end.sent == (MUX_WINDOW + 56512) && outq(C.tb[0].end.fd) == 0 &&
	    C.tb[0].s != NULL && buf_len(&C.tb[0].s->out) > 0 &&
	    C.tb[0].s->credit == 0);
	/* The client stops sending, so that its reads report the reset. */
	C.ta[0].end.out_total = C.ta[0].end.sent;
	rst_close(C.tb[0].end.fd);
	C.tb[0].end.fd = -1;
	turn(5);
	C.ta[0].end.noread = 0;
	WAIT(all_settled());
	assert_int_equal(C.tb[0].first, 0);
	assert_string_not_equal(C.tb[0].err, "");
	assert_int_equal(C.ta[0].first, 1);
	assert_non_null(strstr(C.ta[0].err, "reset: "));
	expect_pattern(&C.ta[0].end, (MUX_WINDOW + 56512), 0);
	assert_int_equal(C.ta[0].end.err, ECONNRESET);
	assert_int_equal(C.a.nlost + C.b.nlost, 0);
	ctx_free();
}

static int
a_refused(void)
{
	return C.ta[0].ndone && C.ta[1].ndone && C.ta[2].ndone &&
	    C.tb[2].ndone;
}

/* B refuses stream 1 from open(), and stream 2 after accepting it; A's
 * client already sent bytes for them, which B drops. Stream 3 works. */
static void
test_refuse(void **state)
{
	(void)state;
	ctx_init(3);
	C.policy = ACC_REFUSE;
	C.policy_odd = -1;
	link_up(NULL, 0);
	a_open(0, 100000);
	WAIT(C.nopen >= 1);
	C.policy = ACC_ACCEPT_REFUSE;
	a_open(1, 100000);
	WAIT(C.nopen >= 2);
	C.policy = ACC_ATTACH;
	C.b_out_total = 5000;
	a_open(2, 200000);
	WAIT(a_refused());
	assert_int_equal(C.ta[0].refused, 1);
	assert_int_equal(C.ta[0].first, 1);
	/* The peer's text, made printable. */
	assert_string_equal(C.ta[0].err, "refused: no backend??");
	assert_int_equal(C.ta[1].refused, 1);
	assert_string_equal(C.ta[1].err, "refused: later");
	assert_int_equal(C.tb[1].ndone, 0);	/* refused: no done */
	assert_int_equal(C.ta[2].refused, 0);
	assert_string_equal(C.ta[2].err, "");
	expect_pattern(&C.tb[2].end, 200000, C.tb[2].end.prime_len);
	expect_pattern(&C.ta[2].end, 5000, 0);
	assert_int_equal(C.a.nlost + C.b.nlost, 0);
	ctx_free();
}

/* A's owner cuts a live stream: B's done() reports the reset; frames B
 * had already sent for it are dropped at A; the link goes on. */
static void
test_cut(void **state)
{
	(void)state;
	ctx_init(2);
	C.b_out_total = 4 * MIB;
	C.b_shut = 0;
	link_up(NULL, 0);
	a_open(0, 4 * MIB);
	C.ta[0].end.shut_after = 0;
	WAIT(!(C.ta[0].end.rcvd < 500000 || C.tb[0].end.rcvd < 500000));
	mux_stream_free(C.ta[0].s, 1);
	C.ta[0].s = NULL;
	WAIT(C.tb[0].s == NULL);
	assert_int_equal(C.tb[0].ndone, 1);
	assert_int_equal(C.tb[0].first, 1);
	assert_string_equal(C.tb[0].err, "reset: cut");
	/* The backend sees the end (a reset once its bytes left). */
	WAIT(C.tb[0].end.eof || C.tb[0].end.err);
	assert_false(C.tb[0].end.bad);
	C.b_shut = 1;
	C.b_out_total = 1000;
	a_open(1, 1000);
	WAIT(!(C.ta[1].s != NULL || C.tb[1].s != NULL));
	assert_string_equal(C.ta[1].err, "");
	expect_pattern(&C.ta[1].end, 1000, 0);
	assert_int_equal(C.a.nlost + C.b.nlost, 0);
	assert_int_equal(C.ta[0].ndone, 0);	/* cut: no done */
	ctx_free();
}

/* --- a hand-written peer ------------------------------------------------------ */

struct raw {
	int		 fd;
	uint8_t		 in[1 << 20];
	size_t		 len;
};

static struct raw R;

static void
raw_send_f(uint32_t sid, uint8_t type, uint8_t flags, const void *p, size_t n)
{
	uint8_t f[MUX_HDR + 65536];
	size_t off = 0;
	ssize_t w;

	mux_hdr_encode(f, sid, type, (uint16_t)n);
	f[5] = flags;
	if (n > 0)
		memcpy(f + MUX_HDR, p, n);
	while (off < MUX_HDR + n) {
		w = send(R.fd, f + off, MUX_HDR + n - off, MSG_NOSIGNAL);
		if (w > 0)
			off += (size_t)w;
		else {
			assert_true(w == -1 && errno == EAGAIN);
			turn(1);
		}
	}
}

static void
raw_send(uint32_t sid, uint8_t type, const void *p, size_t n)
{
	raw_send_f(sid, type, 0, p, n);
}

static void
raw_data(uint32_t sid, size_t n)
{
	uint8_t p[MUX_DATA_MAX];

	memset(p, 'd', sizeof(p));
	while (n > 0) {
		size_t k = n < MUX_DATA_MAX ? n : MUX_DATA_MAX;

		raw_send(sid, MUX_DATA, p, k);
		n -= k;
	}
}

static void
raw_read(void)
{
	ssize_t n;

	for (;;) {
		if (R.len == sizeof(R.in))
			R.len = 0;	/* only recent frames matter */
		n = recv(R.fd, R.in + R.len, sizeof(R.in) - R.len, 0);
		if (n <= 0)
			return;
		R.len += (size_t)n;
	}
}

/* Take the first whole frame of the given type off R.in. 1 if found. */
static int
raw_take(uint8_t type, struct mux_hdr *out, uint8_t *payload)
{
	struct mux_hdr h;
	const char *why;
	size_t off = 0;

	raw_read();
	while (R.len - off >= MUX_HDR) {
		assert_int_equal(mux_hdr_decode(R.in + off, &h, &why), 0);
		if (R.len - off < MUX_HDR + (size_t)h.len)
			break;
		if (h.type == type) {
			*out = h;
			if (payload != NULL)
				memcpy(payload, R.in + off + MUX_HDR, h.len);
			memmove(R.in + off, R.in + off + MUX_HDR + h.len,
			    R.len - off - MUX_HDR - h.len);
			R.len -= MUX_HDR + (size_t)h.len;
			return 1;
		}
		off += MUX_HDR + h.len;
	}
	return 0;
}

/* PING with nonce, wait for its PONG: every earlier frame was handled. */
static void
raw_sync(uint64_t nonce)
{
	uint8_t v[8], got[8];
	struct mux_hdr h;
	uint64_t deadline = ev_now_update() + DEADLINE_MS;
	int i;

	for (i = 0; i < 8; i++)
		v[i] = (uint8_t)(nonce >> (8 * i));
	raw_send(0, MUX_PING, v, 8);
	for (;;) {
		turn(1);
		if (raw_take(MUX_PONG, &h, got)) {
			assert_int_equal(h.sid, 0);
			assert_int_equal(h.len, 8);
			assert_memory_equal(got, v, 8);
			return;
		}
		assert_true(ev_now() < deadline);
	}
}

static void
raw_open(uint32_t sid)
{
	char meta[64];

	snprintf(meta, sizeof(meta), "client=%d svc=sftp", (int)sid - 1);
	raw_send(sid, MUX_OPEN, meta, strlen(meta));
}

static int
b_lost(void)
{
	return C.b.nlost > 0;
}

static int
a_lost(void)
{
	return C.a.nlost > 0;
}

static void
raw_start(int raw_is_acceptor, int n)
{
	ctx_init(n);
	memset(&R, 0, sizeof(R));
	link_up(&R.fd, raw_is_acceptor);
}

static void
raw_end(void)
{
	close(R.fd);
	ctx_free();
}

/* Up to the window is fine; one byte more loses the link, and the
 * stream ends (done, with the link's error) before lost(). */
static void
test_raw_credit(void **state)
{
	(void)state;
	raw_start(0, 2);
	C.policy = ACC_HOLD;
	raw_open(1);
	raw_data(1, MUX_WINDOW);
	raw_sync(1);
	assert_int_equal(C.b.nlost, 0);
	assert_non_null(C.tb[0].s);
	assert_int_equal(buf_len(&C.tb[0].s->out), MUX_WINDOW);
	raw_data(1, 1);
	WAIT(b_lost());
	assert_string_equal(C.b.why, "mux peer sent beyond its credit");
	assert_int_equal(C.tb[0].ndone, 1);
	assert_string_equal(C.tb[0].err,
	    "data link: mux peer sent beyond its credit");
	assert_true(C.tb[0].order < C.b.order);
	raw_end();
}

/* The peer honours credit: it may send exactly what B credited back. */
static void
test_raw_credit_honoured(void **state)
{
	struct mux_hdr h;
	uint8_t v[4];
	uint64_t credit = MUX_WINDOW, sent = 0, total = 3 * MIB;
	uint8_t buf[65536];

	(void)state;
	raw_start(0, 1);
	C.b_shut = 0;
	raw_open(1);
	while (sent < total) {
		size_t k = credit < MUX_DATA_MAX ? (size_t)credit : MUX_DATA_MAX;

		if (k > total - sent)
			k = (size_t)(total - sent);
		if (k > 0) {
			raw_data(1, k);
			sent += k;
			credit -= k;
		}
		turn(1);
		while (raw_take(MUX_CREDIT, &h, v)) {
			assert_int_equal(h.sid, 1);
			credit += (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 |
			    (uint32_t)v[2] << 8 | v[3];
			assert_true(credit <= MUX_WINDOW);
		}
		/* The backend reads in bursts. */
		C.tb[0].end.noread = 1;
		if (C.tb[0].end.fd != -1 && (C.iter / 20) % 2 == 0)
			while (recv(C.tb[0].end.fd, buf, sizeof(buf), 0) > 0)
				;
		assert_int_equal(C.b.nlost, 0);
	}
	raw_sync(2);
	assert_int_equal(C.b.nlost, 0);
	raw_end();
}

/* Credit for stream sid in the frames read so far. */
static uint64_t
raw_credits(uint32_t sid)
{
	struct mux_hdr h;
	uint8_t v[4];
	uint64_t n = 0;

	while (raw_take(MUX_CREDIT, &h, v)) {
		assert_int_equal(h.sid, sid);
		n += (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 |
		    (uint32_t)v[2] << 8 | v[3];
	}
	return n;
}

/* n bytes for sid, the last frame marked BLOCKED. */
static void
raw_data_blocked(uint32_t sid, size_t n)
{
	uint8_t p[MUX_DATA_MAX];

	memset(p, 'd', sizeof(p));
	raw_data(sid, n - MUX_DATA_MAX);
	raw_send_f(sid, MUX_DATA, MUX_F_BLOCKED, p, sizeof(p));
}

/* Keep streams 1..n sending within their credit (got[i] credit taken,
 * sent[i] bytes sent beyond the first window) until done() says so. */
static void
raw_keep_sending(int n, uint64_t *got, uint64_t *sent, int (*done)(void))
{
	uint64_t dl = ev_now_update() + DEADLINE_MS;
	struct mux_hdr h;
	uint8_t v[4];
	int i;

	while (!done()) {
		assert_true(ev_now() < dl);
		turn(1);
		while (raw_take(MUX_CREDIT, &h, v)) {
			assert_true(h.sid >= 1 && h.sid <= (uint32_t)n);
			got[h.sid - 1] += (uint32_t)v[0] << 24 |
			    (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3];
		}
		for (i = 0; i < n; i++) {
			uint64_t k = got[i] - sent[i];

			if (k > 4096)
				k = 4096;
			if (k > 0) {
				raw_data((uint32_t)i + 1, (size_t)k);
				sent[i] += k;
			}
		}
		assert_int_equal(C.b.nlost, 0);
	}
}

static int
grew_one(void)
{
	return C.tb[0].s != NULL && C.tb[0].s->win > MUX_WINDOW;
}

/* A sender out of credit (BLOCKED) to a receiver whose socket keeps up
 * gets its window doubled at the next credit, and may then have the
 * doubled window in flight; the growth goes back to the budget when the
 * stream ends. Without the mark, the window stays (test_raw_credit_honoured). */
static void
test_raw_window_grows(void **state)
{
	uint64_t got[1] = { 0 }, sent[1] = { 0 };

	(void)state;
	raw_start(0, 1);
	C.b_shut = 0;
	raw_open(1);
	raw_data_blocked(1, MUX_WINDOW);
	raw_keep_sending(1, got, sent, grew_one);
	assert_int_equal(C.tb[0].s->win, 2 * MUX_WINDOW);
	assert_int_equal(mux_grown(), MUX_WINDOW);
	/* Take the credit that came with it, and send all of it at once. */
	raw_sync(1);
	got[0] += raw_credits(1);
	assert_true(got[0] > MUX_WINDOW);
	raw_data(1, (size_t)(got[0] - sent[0]));
	raw_sync(2);
	assert_int_equal(C.b.nlost, 0);
	raw_end();
	assert_int_equal(mux_grown(), 0);
}

/* A receiver whose socket is behind when the sender runs out of credit
 * keeps the window as it is: the socket, not the window, is the limit. */
static void
test_raw_window_behind(void **state)
{
	(void)state;
	raw_start(0, 1);
	C.b_shut = 0;
	C.b_tcp = 1;
	C.b_small = 1;
	raw_open(1);
	raw_sync(1);
	assert_non_null(C.tb[0].s);
	C.tb[0].end.noread = 1;
	raw_data(1, MUX_WINDOW / 2);
	raw_sync(2);
	assert_true(buf_len(&C.tb[0].s->out) > 0);
	raw_data_blocked(1, MUX_WINDOW / 2);	/* the rest, BLOCKED last */
	raw_sync(3);
	C.tb[0].end.noread = 0;
	WAIT(buf_len(&C.tb[0].s->out) == 0 && C.tb[0].end.rcvd +
	    C.tb[0].end.prime_got >= MUX_WINDOW);
	raw_sync(4);
	assert_int_equal(C.tb[0].s->win, MUX_WINDOW);
	assert_true(raw_credits(1) <= MUX_WINDOW);
	assert_int_equal(mux_grown(), 0);
	raw_end();
}

static int
grew_either(void)
{
	return C.tb[0].s != NULL && C.tb[1].s != NULL &&
	    C.tb[0].s->win + C.tb[1].s->win > 2 * MUX_WINDOW &&
	    !C.tb[0].s->blocked && !C.tb[1].s->blocked;
}

/* Growth stops at the budget: of two streams that ask, one grows. */
static void
test_raw_window_budget(void **state)
{
	uint64_t got[2] = { 0, 0 }, sent[2] = { 0, 0 };

	(void)state;
	mux_set_grow_budget(MUX_WINDOW);
	raw_start(0, 2);
	C.b_shut = 0;
	raw_open(1);
	raw_open(2);
	raw_data_blocked(1, MUX_WINDOW);
	raw_data_blocked(2, MUX_WINDOW);
	raw_keep_sending(2, got, sent, grew_either);
	assert_int_equal(mux_grown(), MUX_WINDOW);
	assert_int_equal(C.tb[0].s->win + C.tb[1].s->win, 3 * MUX_WINDOW);
	raw_end();
	assert_int_equal(mux_grown(), 0);
	mux_set_grow_budget(MUX_GROW_BUDGET);
}

/* The opener marks the DATA frame that spends its last credit, and only
 * that one; it honours credit up to the largest window, and a peer that
 * credits beyond that loses the link. */
static void
test_raw_blocked_marked(void **state)
{
	const uint32_t max = MUX_WINDOW_MAX - MUX_WINDOW;
	uint8_t big[4] = { (uint8_t)(max >> 24), (uint8_t)(max >> 16),
	    (uint8_t)(max >> 8), (uint8_t)max }, one[4] = { 0, 0, 0, 1 };
	struct mux_hdr h;
	uint64_t got = 0, marked = 0;
	int i;

	(void)state;
	raw_start(1, 1);
	a_open(0, 64 * MIB);
	C.ta[0].end.shut_after = 0;
	WAIT(raw_take(MUX_OPEN, &h, NULL));
	for (i = 0; i < 2; i++) {
		uint64_t want = i == 0 ? MUX_WINDOW : max;

		while (got < want) {
			WAIT(raw_take(MUX_DATA, &h, NULL));
			got += h.len;
			if (h.flags & MUX_F_BLOCKED) {
				assert_int_equal(got, want);
				marked++;
			}
		}
		assert_int_equal(marked, (uint64_t)i + 1);
		turn(20);
		assert_false(raw_take(MUX_DATA, &h, NULL));
		/* Grow to the largest window: credit the first window
		 * back, and what it may grow by. */
		if (i == 0) {
			raw_send(1, MUX_CREDIT, big, 4);
			got = 0;
		}
	}
	/* Credit to the largest window, and one byte more (both handled
	 * before the stream can spend any). */
	big[0] = (uint8_t)(MUX_WINDOW_MAX >> 24);
	big[1] = (uint8_t)(MUX_WINDOW_MAX >> 16);
	big[2] = (uint8_t)(MUX_WINDOW_MAX >> 8);
	big[3] = (uint8_t)MUX_WINDOW_MAX;
	raw_send(1, MUX_CREDIT, big, 4);
	raw_send(1, MUX_CREDIT, one, 4);
	WAIT(a_lost());
	assert_string_equal(C.a.why, "mux CREDIT beyond the window");
	raw_end();
}

/* Frames for a stream never opened lose the link. */
static void
test_raw_never_opened(void **state)
{
	const uint8_t types[] = { MUX_DATA, MUX_FIN, MUX_RST, MUX_CREDIT };
	uint8_t p[4] = { 0, 0, 0, 1 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(types); i++) {
		raw_start(0, 4);
		raw_open(1);
		raw_sync(1);
		raw_send(2, types[i], p, types[i] == MUX_FIN ? 0 :
		    types[i] == MUX_CREDIT ? 4 : 1);
		WAIT(b_lost());
		assert_string_equal(C.b.why, "mux frame for a stream never opened");
		raw_end();
	}
}

/* Frames for streams that ended (refused; done) are dropped quietly. */
static void
test_raw_ended(void **state)
{
	uint8_t c[4] = { 0, 0, 0x10, 0 };
	struct mux_hdr h;
	uint8_t why[MUX_CTL_MAX];

	(void)state;
	raw_start(0, 4);
	C.policy = ACC_REFUSE;
	raw_open(1);
	raw_sync(1);
	assert_true(raw_take(MUX_REFUSE, &h, why));
	assert_int_equal(h.sid, 1);
	assert_memory_equal(why, "no backend", 10);
	raw_data(1, 20000);
	raw_send(1, MUX_CREDIT, c, 4);
	raw_send(1, MUX_FIN, NULL, 0);
	raw_send(1, MUX_RST, "x", 1);
	raw_sync(2);
	assert_int_equal(C.b.nlost, 0);
	/* A stream that ended cleanly. */
	C.policy = ACC_ATTACH;
	raw_open(2);
	raw_data(2, 100);
	raw_send(2, MUX_FIN, NULL, 0);
	WAIT(!(C.tb[1].end.fd == -1 || !C.tb[1].end.eof));
	WAIT(all_settled());
	assert_string_equal(C.tb[1].err, "");
	raw_data(2, 10);
	raw_send(2, MUX_FIN, NULL, 0);
	raw_send(2, MUX_CREDIT, c, 4);
	raw_sync(3);
	assert_int_equal(C.b.nlost, 0);
	raw_end();
}

struct badcase {
	const char	*name;
	const char	*why;
};

/* Protocol errors a raw opener can make, each on a fresh link. */
static void
test_raw_protocol(void **state)
{
	static const struct badcase cases[] = {
		{ "open order", "mux OPEN out of order" },
		{ "open twice", "mux OPEN out of order" },
		{ "data after fin", "mux DATA after the stream's end" },
		{ "fin twice", "mux FIN twice" },
		{ "credit over", "mux CREDIT beyond the window" },
		{ "credit 0", "mux CREDIT beyond the window" },
		{ "refuse", "mux REFUSE from the opener" },
		{ "bad header", "mux frame flags unknown" },
		{ "bad type", "unknown mux frame type" },
	};
	/* Credit beyond the largest window a stream may have. */
	uint32_t over = MUX_WINDOW_MAX - MUX_WINDOW + 1;
	uint8_t c[4] = { (uint8_t)(over >> 24), (uint8_t)(over >> 16),
	    (uint8_t)(over >> 8), (uint8_t)over }, z[4] = { 0 };
	uint8_t hdr[MUX_HDR];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		raw_start(0, 4);
		C.policy = ACC_HOLD;
		switch (i) {
		case 0:
			raw_open(3);
			raw_open(2);
			break;
		case 1:
			raw_open(1);
			raw_open(1);
			break;
		case 2:
			raw_open(1);
			raw_send(1, MUX_FIN, NULL, 0);
			raw_data(1, 1);
			break;
		case 3:
			raw_open(1);
			raw_send(1, MUX_FIN, NULL, 0);
			raw_send(1, MUX_FIN, NULL, 0);
			break;
		case 4:
			raw_open(1);
			raw_send(1, MUX_CREDIT, c, 4);
			break;
		case 5:
			raw_open(1);
			raw_send(1, MUX_CREDIT, z, 4);
			break;
		case 6:
			raw_open(1);
			raw_send(1, MUX_REFUSE, "no", 2);
			break;
		case 7:
			mux_hdr_encode(hdr, 1, MUX_OPEN, 0);
			hdr[5] = 1;
			assert_int_equal(send(R.fd, hdr, MUX_HDR, 0), MUX_HDR);
			break;
		case 8:
			mux_hdr_encode(hdr, 1, 0x42, 0);
			assert_int_equal(send(R.fd, hdr, MUX_HDR, 0), MUX_HDR);
			break;
		}
		WAIT(b_lost());
		assert_string_equal(C.b.why, cases[i].why);
		assert_int_equal(C.b.nlost, 1);
		raw_end();
	}
}

/* The acceptor side breaks the protocol toward a mux opener. */
static void
test_raw_acceptor(void **state)
{
	uint32_t over = MUX_WINDOW_MAX - MUX_WINDOW + 1;
	uint8_t c[4] = { (uint8_t)(over >> 24), (uint8_t)(over >> 16),
	    (uint8_t)(over >> 8), (uint8_t)over };
	struct mux_hdr h;
	int i;

	(void)state;
	for (i = 0; i < 3; i++) {
		raw_start(1, 2);
		a_open(0, 0);
		C.ta[0].end.shut_after = 0;
		WAIT(raw_take(MUX_OPEN, &h, NULL));
		assert_int_equal(h.sid, 1);
		if (i == 0)
			raw_send(5, MUX_OPEN, NULL, 0);
		else if (i == 1)
			raw_send(1, MUX_CREDIT, c, 4);
		else
			raw_send(2, MUX_DATA, "x", 1);
		WAIT(a_lost());
		assert_string_equal(C.a.why, i == 0 ? "mux OPEN out of order" :
		    i == 1 ? "mux CREDIT beyond the window" :
		    "mux frame for a stream never opened");
		assert_int_equal(C.ta[0].ndone, 1);
		assert_int_equal(C.ta[0].first, 1);
		assert_non_null(strstr(C.ta[0].err, "data link: "));
		raw_end();
	}
}

/* The link closing ends every stream with an error, then lost(). */
static void
test_raw_link_closed(void **state)
{
	(void)state;
	raw_start(0, 3);
	raw_open(1);
	raw_open(2);
	raw_data(1, 1000);
	raw_sync(1);
	shutdown(R.fd, SHUT_WR);
	WAIT(b_lost());
	assert_string_equal(C.b.why, "closed by peer");
	assert_int_equal(C.tb[0].ndone, 1);
	assert_int_equal(C.tb[1].ndone, 1);
	assert_string_equal(C.tb[0].err, "data link: closed by peer");
	assert_true(C.tb[0].order < C.b.order && C.tb[1].order < C.b.order);
	raw_end();
}

/* A stream whose attach fails from open() ends there (done), while the
 * link fails too (its peer is gone): lost() comes once, after open()
 * returned, not from inside it. */
static void
test_raw_attach_fails(void **state)
{
	(void)state;
	raw_start(0, 2);
	C.policy = ACC_BAD_PRIME;
	raw_open(1);
	close(R.fd);
	R.fd = -1;
	WAIT(b_lost());
	turn(1);
	turn(1);
	assert_int_equal(C.tb[0].ndone, 1);
	assert_string_equal(C.tb[0].err, "cannot queue the PROXY header");
	assert_int_equal(C.b.nlost, 1);
	assert_true(C.tb[0].order < C.b.order);
	ctx_free();
	/* The same with the link alive: done() from attach, link goes on. */
	raw_start(0, 3);
	C.policy = ACC_BAD_PRIME;
	raw_open(1);
	raw_sync(1);
	assert_int_equal(C.tb[0].ndone, 1);
	assert_int_equal(C.b.nlost, 0);
	C.policy = ACC_ATTACH;
	raw_open(2);
	raw_sync(2);
	assert_non_null(C.tb[1].s);
	assert_int_equal(C.b.nlost, 0);
	raw_end();
}

/* PING gets PONG; mux_tick pings and declares a silent link dead (time
 * is given to mux_tick, so no waiting). */
static void
test_ping_tick(void **state)
{
	struct mux_hdr h;
	uint8_t v[8];
	uint64_t t0;

	(void)state;
	raw_start(0, 2);
	C.policy = ACC_HOLD;
	raw_open(1);
	raw_sync(0x1122334455667788ull);
	t0 = C.b.m.last_rx;
	assert_int_equal(mux_tick(&C.b.m, t0 + 100), 0);
	turn(1);
	assert_false(raw_take(MUX_PING, &h, v));
	assert_int_equal(mux_tick(&C.b.m, t0 + MUX_PING_MS), 0);
	turn(1);
	assert_true(raw_take(MUX_PING, &h, v));
	assert_int_equal(h.sid, 0);
	assert_int_equal(mux_tick(&C.b.m, t0 + MUX_DEAD_MS), 0);
	assert_int_equal(C.b.nlost, 0);
	assert_int_equal(mux_tick(&C.b.m, t0 + MUX_DEAD_MS + 1), -1);
	assert_int_equal(C.b.nlost, 1);
	assert_non_null(strstr(C.b.why, "no frame from peer"));
	assert_int_equal(C.tb[0].ndone, 1);
	assert_non_null(strstr(C.tb[0].err, "data link: no frame"));
	raw_end();
}

/* A peer that never reads its side of the link while it makes us send
 * (PONGs here) is dropped at MUX_TX_MAX, not buffered without end. */
static void
test_raw_tx_bound(void **state)
{
	uint8_t f[16 * 1024];
	size_t i, pos = 0;
	ssize_t w;

	(void)state;
	raw_start(0, 1);
	for (i = 0; i + 16 <= sizeof(f); i += 16) {
		mux_hdr_encode(f + i, 0, MUX_PING, 8);
		memset(f + i + MUX_HDR, 'p', 8);
	}
	uint64_t dl = ev_now_update() + DEADLINE_MS;

	while (C.b.nlost == 0) {
		assert_true(ev_now() < dl);
		/* f repeats one 16-byte frame: go on where the last send
		 * stopped, mid-frame or not. */
		w = send(R.fd, f + pos, sizeof(f) - pos, MSG_NOSIGNAL);
		assert_true(w > 0 || errno == EAGAIN);
		if (w > 0)
			pos = (pos + (size_t)w) % 16;
		turn(0);
		assert_true(C.b.m.tx.size <= MUX_TX_MAX);
	}
	assert_string_equal(C.b.why, "peer too far behind");
	raw_end();
}

/* A local socket whose peer went away while its stream waits (no credit,
 * nothing to write) must not spin the loop: level-triggered HUP/ERR
 * would fire on every turn. Idle turns of 40 ms must take their time. */
static void
expect_idle_at(int line)
{
	uint64_t t0 = ev_now_update(), t;
	int i;

	/* A few turns may still have work (a late CREDIT); a spin makes
	 * them all return at once. */
	for (i = 0; i < 20; i++)
		assert_int_equal(ev_run_once(40), 0);
	t = ev_now_update() - t0;
	if (t < 400)
		fail_msg("line %d: the loop spins: 20 idle turns took %llu ms",
		    line, (unsigned long long)t);
}
#define expect_idle() expect_idle_at(__LINE__)

static void
test_no_spin_hup(void **state)
{
	(void)state;
	ctx_init(1);
	C.b_shut = 0;
	link_up(NULL, 0);
	a_open(0, 5000);
	C.ta[0].end.shut_after = 0;
	WAIT(C.tb[0].end.rcvd >= 5000);
	/* The client closes (HUP on the unix socket); B says nothing. */
	close(C.ta[0].end.fd);
	C.ta[0].end.fd = -1;
	WAIT(C.tb[0].end.eof);
	expect_idle();
	/* Now B answers: A cannot deliver it, so B's side is reset. */
	C.tb[0].end.out_total = 100;
	WAIT(all_settled());
	assert_string_not_equal(C.tb[0].err, "");
	ctx_free();
}

static void
test_no_spin_rst(void **state)
{
	(void)state;
	/* A TCP client half-closes, then resets while B's answer is due:
	 * EPOLLERR on a socket the stream does not watch for anything. */
	ctx_init(1);
	C.a_tcp = C.b_tcp = 1;
	C.b_shut = 0;
	link_up(NULL, 0);
	a_open(0, 5000);
	WAIT(C.tb[0].end.eof);
	rst_close(C.ta[0].end.fd);
	C.ta[0].end.fd = -1;
	turn(5);
	expect_idle();
	C.tb[0].end.out_total = 100;
	WAIT(all_settled());
	assert_string_not_equal(C.ta[0].err, "");
	assert_string_not_equal(C.tb[0].err, "");
	ctx_free();
	/* The client resets while its upload waits for credit. */
	ctx_init(1);
	C.a_tcp = C.b_tcp = 1;
	C.b_shut = 0;
	C.b_small = 1;	/* the window, not the backend's socket, fills */
	link_up(NULL, 0);
	a_open(0, (MUX_WINDOW + 100000));
	C.ta[0].end.shut_after = 0;
	WAIT(C.tb[0].end.fd != -1);
	C.tb[0].end.noread = 1;
	WAIT(!(C.ta[0].s == NULL || C.ta[0].s->credit != 0 ||
	    C.ta[0].end.sent < (MUX_WINDOW + 100000) || outq(C.ta[0].end.fd) != 0));
	rst_close(C.ta[0].end.fd);
	C.ta[0].end.fd = -1;
	turn(5);
	expect_idle();
	C.tb[0].end.noread = 0;
	WAIT(b_end_finished());
	expect_pattern(&C.tb[0].end, (MUX_WINDOW + 100000), C.tb[0].end.prime_len);
	assert_int_equal(C.tb[0].end.err, ECONNRESET);
	ctx_free();
}

/* Bytes that arrive before the acceptor attaches its socket (and a FIN)
 * wait, and go out after the PROXY header. */
static void
test_late_attach(void **state)
{
	struct buf prime = { 0 };
	int mine, theirs;

	(void)state;
	ctx_init(1);
	C.policy = ACC_HOLD;
	link_up(NULL, 0);
	a_open(0, 40000);
	WAIT(!(C.tb[0].s == NULL || buf_len(&C.tb[0].s->out) < 40000 ||
	    !C.tb[0].s->fin_rcvd));
	unix_pair(&mine, &theirs);
	end_setup(&C.tb[0].end, theirs, 2000, 70000, 1000);
	C.tb[0].end.prime = (const uint8_t *)"PROXY UNKNOWN\r\n";
	C.tb[0].end.prime_len = 15;
	assert_int_equal(buf_append(&prime, "PROXY UNKNOWN\r\n", 15, 1024), 0);
	assert_int_equal(mux_stream_attach(C.tb[0].s, mine, &prime), 0);
	WAIT(all_settled());
	assert_string_equal(C.ta[0].err, "");
	assert_string_equal(C.tb[0].err, "");
	assert_int_equal(C.tb[0].first, 1);
	expect_pattern(&C.tb[0].end, 40000, 15);
	expect_pattern(&C.ta[0].end, 70000, 0);
	ctx_free();
}

/* close_when_idle: no new streams; lost() once the last one ends. */
static void
test_close_when_idle(void **state)
{
	(void)state;
	ctx_init(2);
	C.b_out_total = 1000;
	link_up(NULL, 0);
	a_open(0, 1000);
	mux_close_when_idle(&C.a.m);
	assert_null(mux_open(&C.a.m, 0, "x", 1, done_cb, &C.ta[1]));
	WAIT(a_lost());
	assert_string_equal(C.a.why, "closed when idle");
	assert_int_equal(C.ta[0].ndone, 1);
	assert_string_equal(C.ta[0].err, "");
	ctx_free();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_layout),
		cmocka_unit_test(test_hdr_hostile),
		cmocka_unit_test(test_hdr_good),
		cmocka_unit_test(test_hdr_roundtrip),
		cmocka_unit_test(test_bulk),
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_rst),
		cmocka_unit_test(test_rst_backend),
		cmocka_unit_test(test_refuse),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_late_attach),
		cmocka_unit_test(test_close_when_idle),
		cmocka_unit_test(test_raw_credit),
		cmocka_unit_test(test_raw_credit_honoured),
		cmocka_unit_test(test_raw_window_grows),
		cmocka_unit_test(test_raw_window_behind),
		cmocka_unit_test(test_raw_window_budget),
		cmocka_unit_test(test_raw_blocked_marked),
		cmocka_unit_test(test_raw_never_opened),
		cmocka_unit_test(test_raw_ended),
		cmocka_unit_test(test_raw_protocol),
		cmocka_unit_test(test_raw_acceptor),
		cmocka_unit_test(test_raw_link_closed),
		cmocka_unit_test(test_raw_attach_fails),
		cmocka_unit_test(test_ping_tick),
		cmocka_unit_test(test_raw_tx_bound),
		cmocka_unit_test(test_no_spin_hup),
		cmocka_unit_test(test_no_spin_rst),
	};

	/* MUX_TEST=name runs one test (debugging). */
	if (getenv("MUX_TEST") != NULL)
		cmocka_set_test_filter(getenv("MUX_TEST"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
