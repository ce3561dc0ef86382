/* test_mux.c - the multiplexed data link (mux.c): frame headers, and
 * streams end to end, each a pump endpoint.
 *
 * A link is a non-blocking socketpair (plain, no TLS: mux_start with a
 * NULL SSL) between an opener mux (the edge) and an acceptor mux (the
 * agent). A session is what the daemons build on it:
 *
 *   client -- psock [edge pump] stream == link == stream [agent pump] psock -- backend
 *
 * with real pumps and psock endpoints over loopback TCP pairs; the test
 * holds the client's and the backend's far ends. For hostile cases the
 * test itself is one side of the link and writes frames by hand.
 *
 * Pump ends and link flushes run from the loop's settle hooks, so the
 * test turns the loop until what it waits for holds (testnet.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mux.h"
#include "common/psock.h"
#include "common/pump.h"
#include "testnet.h"

#define MIB		(1024 * 1024)
#define NSESS		64	/* sessions per link in a test, by id */

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

	(void)state;
	/* The only flag is BLOCKED, on DATA only; any other is refused,
	 * even with an otherwise good header. */
	for (t = MUX_OPEN; t <= MUX_PONG; t++) {
		uint32_t sid = t == MUX_PING || t == MUX_PONG ? 0 : 1;
		uint16_t len = t == MUX_CREDIT ? 4 : t == MUX_PING ||
		    t == MUX_PONG ? 8 : t == MUX_DATA || t == MUX_RST ? 1 : 0;

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
	assert_int_equal(dec(1, MUX_PONG + 1, 0, 0, &h), -1);
	assert_int_equal(dec(0, MUX_PONG + 1, 0, 8, &h), -1);
	assert_int_equal(dec(1, 0x7f, 0, 4, &h), -1);
	assert_int_equal(dec(1, 0xff, 0, 1, &h), -1);
	/* DATA: 1..MUX_DATA_MAX. */
	assert_int_equal(dec(1, MUX_DATA, 0, 0, &h), -1);
	assert_int_equal(dec(1, MUX_DATA, 0, MUX_DATA_MAX + 1, &h), -1);
	assert_int_equal(dec(1, MUX_DATA, 0, 0xffff, &h), -1);
	/* OPEN: 0..MUX_CTL_MAX; RST: 1..MUX_CTL_MAX (its END code). */
	assert_int_equal(dec(1, MUX_OPEN, 0, MUX_CTL_MAX + 1, &h), -1);
	assert_int_equal(dec(1, MUX_OPEN, 0, 0xffff, &h), -1);
	assert_int_equal(dec(1, MUX_RST, 0, 0, &h), -1);
	assert_int_equal(dec(1, MUX_RST, 0, MUX_CTL_MAX + 1, &h), -1);
	assert_int_equal(dec(1, MUX_RST, 0, MUX_DATA_MAX, &h), -1);
	/* FIN: empty. */
	assert_int_equal(dec(1, MUX_FIN, 0, 1, &h), -1);
	assert_int_equal(dec(1, MUX_FIN, 0, 0xffff, &h), -1);
	/* CREDIT: exactly 4. */
	assert_int_equal(dec(1, MUX_CREDIT, 0, 0, &h), -1);
	assert_int_equal(dec(1, MUX_CREDIT, 0, 3, &h), -1);
	assert_int_equal(dec(1, MUX_CREDIT, 0, 5, &h), -1);
	/* PING, PONG: exactly 8, stream 0. */
	for (t = MUX_PING; t <= MUX_PONG; t++) {
		assert_int_equal(dec(0, t, 0, 0, &h), -1);
		assert_int_equal(dec(0, t, 0, 7, &h), -1);
		assert_int_equal(dec(0, t, 0, 9, &h), -1);
		assert_int_equal(dec(1, t, 0, 8, &h), -1);
		assert_int_equal(dec(0x80000000u, t, 0, 8, &h), -1);
	}
}

static void
test_hdr_good(void **state)
{
	struct mux_hdr h;

	(void)state;
	assert_int_equal(dec(1, MUX_DATA, 0, 1, &h), 0);
	assert_int_equal(dec(0xffffffffu, MUX_DATA, MUX_F_BLOCKED,
	    MUX_DATA_MAX, &h), 0);
	assert_int_equal(h.sid, 0xffffffffu);
	assert_int_equal(h.type, MUX_DATA);
	assert_int_equal(h.flags, MUX_F_BLOCKED);
	assert_int_equal(h.len, MUX_DATA_MAX);
	assert_int_equal(dec(7, MUX_OPEN, 0, 0, &h), 0);
	assert_int_equal(dec(7, MUX_OPEN, 0, MUX_CTL_MAX, &h), 0);
	assert_int_equal(dec(7, MUX_RST, 0, 1, &h), 0);
	assert_int_equal(dec(7, MUX_RST, 0, MUX_CTL_MAX, &h), 0);
	assert_int_equal(dec(3, MUX_FIN, 0, 0, &h), 0);
	assert_int_equal(dec(3, MUX_CREDIT, 0, 4, &h), 0);
	assert_int_equal(dec(0, MUX_PING, 0, 8, &h), 0);
	assert_int_equal(dec(0, MUX_PONG, 0, 8, &h), 0);
}

/* --- a link, its sessions ------------------------------------------------- */

/* One session: its two pumps and the test's ends. */
struct sess {
	int		 used;
	uint32_t	 sid;
	int		 c, d;		/* the test's client and backend */
	struct pump	 ep, ap;	/* the edge's pump, the agent's */
	struct psock	 ec, ab;	/* the edge's client, the agent's backend */
	int		 a_open;	/* the agent has a pump for it */
	int		 edone, adone;
	int		 eside, aside, eclean, aclean;
	enum sess_end	 ecode, acode;
	char		 eerr[160], aerr[160];
};

/* What the acceptor does with the next OPEN. */
enum { ACCEPT, HOLD, REFUSE };

struct link {
	int		 fds[2];	/* [0] the edge's end, [1] the agent's */
	int		 raw;		/* -1: both muxes; 0 or 1: the test
					 * speaks on that end itself */
	struct mux	 edge, agent;
	int		 elost, alost;
	char		 ewhy[160], awhy[160];
	int		 mode;		/* ACCEPT, HOLD or REFUSE */
	enum sess_end	 refuse_code;
	const char	*refuse_why;
	uint8_t		 meta[MUX_CTL_MAX];
	size_t		 meta_len;
	int		 opens;
	struct sess	 s[NSESS];
};

static void
e_done(struct pump *p, int side, int clean)
{
	struct sess *s = p->arg;

	s->edone++;
	s->eside = side;
	s->eclean = clean;
	s->ecode = p->e[side]->code;
	snprintf(s->eerr, sizeof(s->eerr), "%s", p->e[side]->err);
	pump_free(p, clean ? SE_NONE : s->ecode, s->eerr);
}

static void
a_done(struct pump *p, int side, int clean)
{
	struct sess *s = p->arg;

	s->adone++;
	s->aside = side;
	s->aclean = clean;
	s->acode = p->e[side]->code;
	snprintf(s->aerr, sizeof(s->aerr), "%s", p->e[side]->err);
	pump_free(p, clean ? SE_NONE : s->acode, s->aerr);
}

static struct sess *
sess_of(struct link *L, uint32_t sid)
{
	assert_true(sid > 0 && sid < NSESS);
	return &L->s[sid];
}

/* The agent's backend answers: the second side of its pump. */
static void
sess_backend(struct sess *s)
{
	int b;

	tn_tcp_pair(&b, &s->d);
	psock_init(&s->ab, b, 0);
	pump_attach(&s->ap, PUMP_INNER, &s->ab.e, NULL, 1);
	ev_settle();
}

static void
on_open(struct mux *m, uint32_t sid, const uint8_t *p, size_t n)
{
	struct link *L = m->arg;
	struct mux_stream *st;
	struct sess *s;

	L->opens++;
	memcpy(L->meta, p, n);
	L->meta_len = n;
	if (L->mode == REFUSE) {
		mux_refuse(m, sid, L->refuse_code, L->refuse_why);
		return;
	}
	s = sess_of(L, sid);
	if (!s->used) {
		s->used = 1;
		s->sid = sid;
		s->c = s->d = -1;
	}
	st = mux_accept(m, sid);
	assert_non_null(st);
	assert_int_equal(st->sid, sid);
	pump_init(&s->ap, a_done, s);
	pump_attach(&s->ap, PUMP_OUTER, &st->e, NULL, 0);
	s->a_open = 1;
	if (L->mode == ACCEPT)
		sess_backend(s);
}

static void
on_lost(struct mux *m, const char *why)
{
	struct link *L = m->arg;

	if (m == &L->edge) {
		L->elost++;
		snprintf(L->ewhy, sizeof(L->ewhy), "%s", why);
	} else {
		L->alost++;
		snprintf(L->awhy, sizeof(L->awhy), "%s", why);
	}
	assert_int_equal(m->nstreams, 0);
	mux_free(m);
}

static const struct mux_ops ops = { on_open, on_lost };

/* raw: -1 both ends are muxes; 0 the test is the edge (it writes to
 * fds[0]), 1 the test is the agent (fds[1]). */
static void
link_start(struct link *L, int raw)
{
	memset(L, 0, sizeof(*L));
	L->raw = raw;
	L->mode = ACCEPT;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    L->fds), 0);
	tn_nonblock(L->fds[0]);
	tn_nonblock(L->fds[1]);
	if (raw != 0)
		assert_int_equal(mux_start(&L->edge, L->fds[0], NULL, 1, NULL,
		    &ops, L), 0);
	if (raw != 1)
		assert_int_equal(mux_start(&L->agent, L->fds[1], NULL, 0, NULL,
		    &ops, L), 0);
	ev_settle();
}

/* A new session from the edge: the client connects, the edge opens a
 * stream with metadata meta and pumps between them. */
static struct sess *
sess_open(struct link *L, const char *meta)
{
	struct mux_stream *st;
	struct sess *s;
	int a, c;

	tn_tcp_pair(&c, &a);
	st = mux_open(&L->edge, meta, strlen(meta));
	assert_non_null(st);
	s = sess_of(L, st->sid);
	assert_false(s->used);
	s->used = 1;
	s->sid = st->sid;
	s->c = c;
	s->d = -1;
	pump_init(&s->ep, e_done, s);
	psock_init(&s->ec, a, 0);
	pump_attach(&s->ep, PUMP_OUTER, &s->ec.e, NULL, 0);
	pump_attach(&s->ep, PUMP_INNER, &st->e, NULL, 0);
	ev_settle();
	return s;
}

/* The end of a test: every session's pumps ended, the test's sockets
 * closed, both muxes gone (closed here if they live). */
static void
link_close(struct link *L)
{
	size_t i;

	for (i = 0; i < NSESS; i++) {
		struct sess *s = &L->s[i];

		if (!s->used)
			continue;
		if (s->c != -1)
			close(s->c);
		if (s->d != -1)
			close(s->d);
	}
	if (L->raw != 0 && L->elost == 0) {
		mux_close_when_idle(&L->edge);
		ev_settle();
	}
	if (L->raw != 1 && L->alost == 0) {
		mux_close_when_idle(&L->agent);
		ev_settle();
	}
	TN_UNTIL((L->raw == 0 || L->elost == 1) &&
	    (L->raw == 1 || L->alost == 1));
	if (L->raw != -1)
		close(L->fds[L->raw]);
	psock_tick(UINT64_MAX);
	assert_int_equal(mux_grown(), 0);
}

/* --- both muxes ----------------------------------------------------------- */


/* n sessions at once, each moving up bytes in and down bytes out with
 * half-closes: every byte intact, every session ends cleanly on both
 * sides, the link stays up, and no stream is left. */
static void
sessions(int n, size_t up, size_t down)
{
	struct link L;
	struct tn_flow fu[NSESS], fd[NSESS];
	struct sess *s[NSESS];
	char meta[32];
	uint64_t dl;
	int i, busy;

	link_start(&L, -1);
	for (i = 0; i < n; i++) {
		snprintf(meta, sizeof(meta), "SESS_OPEN #%d", i + 1);
		s[i] = sess_open(&L, meta);
		assert_int_equal(s[i]->sid, (uint32_t)i + 1);
	}
	TN_UNTIL(L.opens == n);
	assert_int_equal(L.meta_len, strlen(meta));
	assert_memory_equal(L.meta, meta, L.meta_len);
	assert_int_equal(L.edge.nstreams, (uint64_t)n);
	assert_int_equal(L.agent.nstreams, (uint64_t)n);
	for (i = 0; i < n; i++) {
		assert_int_not_equal(s[i]->d, -1);
		memset(&fu[i], 0, sizeof(fu[i]));
		memset(&fd[i], 0, sizeof(fd[i]));
		fu[i].from = s[i]->c; fu[i].to = s[i]->d; fu[i].dir = i;
		fu[i].total = up + (size_t)i;
		fd[i].from = s[i]->d; fd[i].to = s[i]->c; fd[i].dir = i + 100;
		fd[i].total = down + (size_t)i * 3;
	}
	dl = tn_now() + TN_DEADLINE_MS * 2;
	do {
		busy = 0;
		for (i = 0; i < n; i++) {
			tn_flow_step(&fu[i]);
			tn_flow_step(&fd[i]);
			busy |= !fu[i].eof || !fd[i].eof ||
			    !s[i]->edone || !s[i]->adone;
		}
		tn_spin();
	} while (busy && tn_now() < dl);
	for (i = 0; i < n; i++) {
		assert_true(fu[i].eof && fd[i].eof);
		assert_int_equal(fu[i].got, fu[i].total);
		assert_int_equal(fd[i].got, fd[i].total);
		assert_false(fu[i].bad || fd[i].bad);
		assert_int_equal(s[i]->edone, 1);
		assert_int_equal(s[i]->adone, 1);
		assert_true(s[i]->eclean && s[i]->aclean);
	}
	assert_int_equal(L.edge.nstreams, 0);
	assert_int_equal(L.agent.nstreams, 0);
	assert_int_equal(L.elost + L.alost, 0);
	link_close(&L);
}

static void
test_bytes_both_ways(void **state)
{
	(void)state;
	sessions(1, 6 * MIB, 5 * MIB);
}

static void
test_many_streams(void **state)
{
	(void)state;
	sessions(12, 300 * 1024, 200 * 1024);
}

/* Windows grow for a stream that waits for credit, within the process's
 * budget, and the growth is given back when the stream ends. */
static void
test_window_growth_bounded(void **state)
{
	(void)state;
	mux_set_grow_budget(MUX_WINDOW);
	sessions(3, 4 * MIB, 4 * MIB);
	assert_int_equal(mux_grown(), 0);
	mux_set_grow_budget(MUX_GROW_BUDGET);
}

/* A half-close crosses the link as FIN, and the other direction goes on
 * until it ends too. */
static void
test_half_close(void **state)
{
	struct link L;
	struct sess *s;
	uint8_t b[16];
	int how;

	(void)state;
	link_start(&L, -1);
	s = sess_open(&L, "half");
	TN_UNTIL(s->d != -1);
	tn_send_all(s->c, "request", 7);
	assert_int_equal(shutdown(s->c, SHUT_WR), 0);
	assert_int_equal(tn_recv_n(s->d, b, sizeof(b), &how), 7);
	assert_int_equal(how, TN_EOF);
	assert_memory_equal(b, "request", 7);
	tn_send_all(s->d, "reply", 5);
	assert_int_equal(tn_recv_n(s->c, b, 5, &how), 5);
	assert_memory_equal(b, "reply", 5);
	assert_int_equal(s->edone + s->adone, 0);
	tn_send_all(s->d, "tail", 4);
	assert_int_equal(shutdown(s->d, SHUT_WR), 0);
	assert_int_equal(tn_recv_n(s->c, b, sizeof(b), &how), 4);
	assert_int_equal(how, TN_EOF);
	TN_UNTIL(s->edone == 1 && s->adone == 1);
	assert_true(s->eclean && s->aclean);
	assert_int_equal(s->eside, PUMP_OUTER);	/* the client first */
	assert_int_equal(s->aside, PUMP_OUTER);	/* the link, at the agent */
	link_close(&L);
}

/* The agent refuses a stream: an RST with its END code and text reaches
 * the edge's pump as that code, the client is reset, and the link goes
 * on with the next session. */
static void
test_refused(void **state)
{
	struct link L;
	struct sess *s;
	uint8_t b[16];
	int how;

	(void)state;
	link_start(&L, -1);
	L.mode = REFUSE;
	L.refuse_code = SE_REFUSED;
	L.refuse_why = "no backend for sftp";
	s = sess_open(&L, "refuse me");
	tn_send_all(s->c, "hello", 5);
	TN_UNTIL(s->edone == 1);
	assert_false(s->eclean);
	assert_int_equal(s->eside, PUMP_INNER);
	assert_int_equal(s->ecode, SE_REFUSED);
	assert_string_equal(s->eerr, "no backend for sftp");
	assert_int_equal(tn_recv_end(s->c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	/* A limit is not a refusal: the code is what the agent said. */
	L.refuse_code = SE_LIMIT;
	L.refuse_why = "16384 sessions";
	s = sess_open(&L, "limit");
	TN_UNTIL(s->edone == 1);
	assert_int_equal(s->ecode, SE_LIMIT);
	assert_string_equal(s->eerr, "16384 sessions");
	/* The link lives on. */
	L.mode = ACCEPT;
	s = sess_open(&L, "next");
	assert_int_equal(s->sid, 3);
	TN_UNTIL(s->d != -1);
	tn_send_all(s->c, "x", 1);
	assert_int_equal(tn_recv_n(s->d, b, 1, &how), 1);
	assert_int_equal(L.elost + L.alost, 0);
	link_close(&L);
}

/* A session that fails on one side: its bytes before the failure reach
 * the other end, then a reset; the failure crosses the link as an RST
 * whose END code is the one the failing pump was cut with. */
static void
test_failure_crosses(void **state)
{
	struct link L;
	struct sess *s;
	uint8_t b[16];
	int how;

	(void)state;
	link_start(&L, -1);
	/* The backend resets after its last words. */
	s = sess_open(&L, "one");
	TN_UNTIL(s->d != -1);
	tn_send_all(s->d, "bye", 3);
	tn_wait_sent(s->d);
	tn_reset(s->d);
	s->d = -1;
	assert_int_equal(tn_recv_end(s->c, b, sizeof(b), &how), 3);
	assert_int_equal(how, TN_RESET);
	assert_memory_equal(b, "bye", 3);
	TN_UNTIL(s->edone == 1 && s->adone == 1);
	assert_false(s->aclean);
	assert_int_equal(s->aside, PUMP_INNER);
	assert_int_equal(s->acode, SE_ERROR);
	assert_false(s->eclean);
	assert_int_equal(s->eside, PUMP_INNER);
	assert_int_equal(s->ecode, SE_ERROR);
	assert_string_equal(s->eerr, s->aerr);	/* the text crossed too */

	/* The agent cuts a session (an operator's kill): the edge hears
	 * SE_KILLED and why; the client is reset. */
	s = sess_open(&L, "two");
	TN_UNTIL(s->d != -1);
	pump_fail(&s->ap, PUMP_INNER, SE_KILLED, "killed by the operator");
	ev_settle();
	TN_UNTIL(s->edone == 1);
	assert_int_equal(s->ecode, SE_KILLED);
	assert_string_equal(s->eerr, "killed by the operator");
	assert_int_equal(tn_recv_end(s->c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	assert_int_equal(tn_recv_end(s->d, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);

	/* The client resets: the backend is reset, the agent hears why. */
	s = sess_open(&L, "three");
	TN_UNTIL(s->d != -1);
	tn_send_all(s->c, "partial", 7);
	tn_wait_sent(s->c);
	tn_reset(s->c);
	s->c = -1;
	assert_int_equal(tn_recv_end(s->d, b, sizeof(b), &how), 7);
	assert_int_equal(how, TN_RESET);
	TN_UNTIL(s->edone == 1 && s->adone == 1);
	assert_int_equal(s->eside, PUMP_OUTER);
	assert_int_equal(s->aside, PUMP_OUTER);
	assert_int_equal(s->acode, SE_ERROR);
	assert_int_equal(L.elost + L.alost, 0);
	link_close(&L);
}

/* The link fails under live streams: every stream ends as failed on both
 * sides, the client and the backend are reset, and each mux reports the
 * loss once its streams are closed. */
static void
test_link_failure_ends_streams(void **state)
{
	struct link L;
	struct sess *s1, *s2;
	uint8_t b[16];
	int how;

	(void)state;
	link_start(&L, -1);
	s1 = sess_open(&L, "a");
	s2 = sess_open(&L, "b");
	TN_UNTIL(s1->d != -1 && s2->d != -1);
	tn_send_all(s1->c, "x", 1);
	assert_int_equal(tn_recv_n(s1->d, b, 1, &how), 1);
	assert_int_equal(shutdown(L.fds[0], SHUT_RDWR), 0);
	TN_UNTIL(L.elost == 1 && L.alost == 1);
	assert_int_equal(s1->edone + s2->edone + s1->adone + s2->adone, 4);
	assert_false(s1->eclean || s2->eclean || s1->aclean || s2->aclean);
	assert_int_equal(s1->ecode, SE_ERROR);
	assert_non_null(strstr(s1->eerr, "data link"));
	assert_int_equal(tn_recv_end(s1->c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	assert_int_equal(tn_recv_end(s2->d, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	link_close(&L);
}

/* Back-pressure: while the agent holds a stream (no backend yet), what
 * waits for it there is at most its window, whatever the client sends;
 * the edge stops at its credit. When the backend answers, every byte
 * arrives, in order. */
static void
test_held_stream_bounded(void **state)
{
	struct link L;
	struct sess *s;
	struct tn_flow up = { 0 };
	uint64_t dl;
	size_t held;
	int i;

	(void)state;
	link_start(&L, -1);
	L.mode = HOLD;
	s = sess_open(&L, "held");
	TN_UNTIL(s->a_open);
	up.from = s->c; up.to = -1; up.dir = 7; up.total = 16 * MIB;
	/* Send until the edge's credit is spent and the client's socket is
	 * full: a few hundred turns without progress. */
	for (i = 0, dl = tn_now() + TN_DEADLINE_MS;
	    i < 200 && tn_now() < dl; i++) {
		size_t before = up.sent;

		if (up.sent < up.total) {
			uint8_t b[65536];
			size_t k, n = up.total - up.sent < sizeof(b) ?
			    up.total - up.sent : sizeof(b);
			ssize_t w;

			for (k = 0; k < n; k++)
				b[k] = tn_pattern(up.sent + k, up.dir);
			if ((w = send(up.from, b, n, MSG_NOSIGNAL)) > 0)
				up.sent += (size_t)w;
		}
		tn_spin();
		if (up.sent != before)
			i = 0;
	}
	held = buf_len(&s->ap.d[PUMP_OUTER].b);
	assert_int_equal(held, MUX_WINDOW);
	assert_true(up.sent < up.total);
	assert_int_equal(L.elost + L.alost, 0);
	/* The backend answers. */
	sess_backend(s);
	up.to = s->d;		/* the client carries on where it stopped */
	dl = tn_now() + TN_DEADLINE_MS;
	while (!up.eof && tn_now() < dl) {
		tn_flow_step(&up);
		tn_spin();
	}
	assert_true(up.eof);
	assert_int_equal(up.got, up.total);
	assert_false(up.bad);
	assert_int_equal(shutdown(s->d, SHUT_WR), 0);
	TN_UNTIL(s->edone == 1 && s->adone == 1);
	assert_true(s->eclean && s->aclean);
	link_close(&L);
}

/* An edge that is closing opens no stream; the link reports the loss
 * once its last stream has ended. */
static void
test_close_when_idle(void **state)
{
	struct link L;
	struct sess *s;

	(void)state;
	link_start(&L, -1);
	s = sess_open(&L, "last");
	TN_UNTIL(s->d != -1);
	mux_close_when_idle(&L.edge);
	ev_settle();
	assert_null(mux_open(&L.edge, "x", 1));
	assert_int_equal(L.elost, 0);
	assert_int_equal(shutdown(s->c, SHUT_WR), 0);
	assert_int_equal(shutdown(s->d, SHUT_WR), 0);
	TN_UNTIL(s->edone == 1 && L.elost == 1);
	assert_true(s->eclean);
	assert_string_equal(L.ewhy, "closed when idle");
	link_close(&L);
}

/* --- a hostile peer ------------------------------------------------------- */

static size_t
frame(uint8_t *p, uint32_t sid, uint8_t type, uint8_t flags, const void *pl,
    uint16_t n)
{
	mux_hdr_encode(p, sid, type, n);
	p[5] = flags;
	if (n > 0)
		memcpy(p + MUX_HDR, pl, n);
	return MUX_HDR + (size_t)n;
}

static void
put(struct link *L, uint32_t sid, uint8_t type, uint8_t flags,
    const void *pl, uint16_t n)
{
	uint8_t f[MUX_HDR + MUX_DATA_MAX];

	tn_send_all(L->fds[L->raw], f, frame(f, sid, type, flags, pl, n));
	tn_spin();
}

static void
put_credit(struct link *L, uint32_t sid, uint32_t v)
{
	uint8_t c[4];

	tn_put32(c, v);
	put(L, sid, MUX_CREDIT, 0, c, 4);
}

/* Read the next frame the mux sent the test, skipping CREDIT and PONG
 * unless asked for. Returns its header; payload into p. */
static struct mux_hdr
get(struct link *L, uint8_t *p, int want_type)
{
	struct mux_hdr h;
	uint8_t hb[MUX_HDR];
	const char *why;
	int how;

	for (;;) {
		assert_int_equal(tn_recv_n(L->fds[L->raw], hb, MUX_HDR, &how),
		    MUX_HDR);
		assert_int_equal(mux_hdr_decode(hb, &h, &why), 0);
		if (h.len > 0)
			assert_int_equal(tn_recv_n(L->fds[L->raw], p, h.len,
			    &how), h.len);
		if (want_type == 0 || h.type == want_type)
			return h;
	}
}

/* The mux the test speaks to must have failed with why containing
 * `want`, and have closed the link. */
static void
expect_lost(struct link *L, const char *want)
{
	int *lost = L->raw == 0 ? &L->alost : &L->elost;
	const char *why = L->raw == 0 ? L->awhy : L->ewhy;
	uint8_t b[256];
	int how;

	TN_UNTIL(*lost == 1);
	if (strstr(why, want) == NULL)
		fail_msg("link lost with '%s', want '%s'", why, want);
	/* Whatever it still had queued, then the end of the link. */
	while (tn_recv_n(L->fds[L->raw], b, sizeof(b), &how) == sizeof(b))
		;
	assert_int_equal(how, TN_EOF);
}

static void
lost_close(struct link *L, const char *want)
{
	expect_lost(L, want);
	link_close(L);
}

/* The acceptor still answers: a PING comes back as its PONG. */
static void
expect_alive(struct link *L)
{
	uint8_t p[MUX_CTL_MAX];
	struct mux_hdr h;

	put(L, 0, MUX_PING, 0, "pingpong", 8);
	h = get(L, p, MUX_PONG);
	assert_int_equal(h.sid, 0);
	assert_int_equal(h.len, 8);
	assert_memory_equal(p, "pingpong", 8);
	assert_int_equal(L->alost + L->elost, 0);
}

/* A hostile edge: OPENs out of order end the link on the acceptor. */
static void
test_acceptor_open_order(void **state)
{
	struct link L;

	(void)state;
	link_start(&L, 0);		/* not 1 first */
	put(&L, 2, MUX_OPEN, 0, "x", 1);
	lost_close(&L, "OPEN out of order");

	link_start(&L, 0);		/* the same id twice */
	put(&L, 1, MUX_OPEN, 0, "x", 1);
	expect_alive(&L);
	assert_int_equal(L.opens, 1);
	put(&L, 1, MUX_OPEN, 0, "x", 1);
	lost_close(&L, "OPEN out of order");

	link_start(&L, 0);		/* an id skipped */
	put(&L, 1, MUX_OPEN, 0, NULL, 0);
	put(&L, 3, MUX_OPEN, 0, NULL, 0);
	lost_close(&L, "OPEN out of order");

	link_start(&L, 0);		/* the last id */
	put(&L, 0xffffffffu, MUX_OPEN, 0, NULL, 0);
	lost_close(&L, "OPEN out of order");

	/* ...even when it would be next: ids never wrap. */
	link_start(&L, 0);
	L.agent.next_sid = 0xffffffffu;
	put(&L, 0xffffffffu, MUX_OPEN, 0, NULL, 0);
	lost_close(&L, "OPEN out of order");

	link_start(&L, 0);		/* stream 0 */
	put(&L, 0, MUX_OPEN, 0, NULL, 0);
	lost_close(&L, "stream 0");
}

/* A hostile edge: frames for streams never opened end the link; frames
 * for streams that have ended are dropped. */
static void
test_acceptor_never_opened(void **state)
{
	static const uint8_t types[] = { MUX_DATA, MUX_FIN, MUX_RST,
	    MUX_CREDIT };
	const uint8_t pl[4] = { 0, 0, 1, 0 };
	struct link L;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(types); i++) {
		link_start(&L, 0);
		put(&L, 1, types[i], 0, types[i] == MUX_FIN ? NULL : pl,
		    types[i] == MUX_FIN ? 0 : types[i] == MUX_CREDIT ? 4 : 1);
		lost_close(&L, "never opened");
	}
	/* Beyond the ids opened so far. */
	link_start(&L, 0);
	put(&L, 1, MUX_OPEN, 0, NULL, 0);
	put(&L, 2, MUX_DATA, 0, "z", 1);
	lost_close(&L, "never opened");

	/* Refused, then spoken of: dropped, the link lives. */
	link_start(&L, 0);
	L.mode = REFUSE;
	L.refuse_code = SE_REFUSED;
	L.refuse_why = "unknown service";
	put(&L, 1, MUX_OPEN, 0, NULL, 0);
	{
		uint8_t p[MUX_CTL_MAX];
		struct mux_hdr h = get(&L, p, MUX_RST);

		assert_int_equal(h.sid, 1);
		assert_int_equal(p[0], SE_REFUSED);
		assert_int_equal(h.len, 1 + strlen("unknown service"));
		assert_memory_equal(p + 1, "unknown service", h.len - 1u);
	}
	put(&L, 1, MUX_DATA, 0, "late", 4);
	put(&L, 1, MUX_FIN, 0, NULL, 0);
	put(&L, 1, MUX_RST, 0, "\7", 1);
	expect_alive(&L);
	assert_int_equal(L.agent.nstreams, 0);
	link_close(&L);
}

/* A hostile edge breaks flow control: DATA beyond the window it was
 * given ends the link, and until then a held stream keeps at most its
 * window (so memory stays bounded whatever the edge sends). */
static void
test_acceptor_window(void **state)
{
	static uint8_t data[MUX_DATA_MAX];
	struct link L;
	struct sess *s;
	size_t sent;

	(void)state;
	memset(data, 'w', sizeof(data));
	link_start(&L, 0);
	L.mode = HOLD;
	put(&L, 1, MUX_OPEN, 0, NULL, 0);
	s = sess_of(&L, 1);
	TN_UNTIL(s->a_open);
	for (sent = 0; sent < MUX_WINDOW; sent += MUX_DATA_MAX)
		put(&L, 1, MUX_DATA, sent + MUX_DATA_MAX == MUX_WINDOW ?
		    MUX_F_BLOCKED : 0, data, MUX_DATA_MAX);
	expect_alive(&L);
	assert_int_equal(buf_len(&s->ap.d[PUMP_OUTER].b), MUX_WINDOW);
	put(&L, 1, MUX_DATA, 0, data, 1);
	lost_close(&L, "beyond its credit");
	assert_int_equal(s->adone, 1);
	assert_false(s->aclean);
}

/* A hostile edge: the end of a stream comes once. */
static void
test_acceptor_stream_end(void **state)
{
	struct link L;

	(void)state;
	link_start(&L, 0);		/* DATA after FIN */
	L.mode = HOLD;
	put(&L, 1, MUX_OPEN, 0, NULL, 0);
	put(&L, 1, MUX_FIN, 0, NULL, 0);
	expect_alive(&L);
	put(&L, 1, MUX_DATA, 0, "x", 1);
	lost_close(&L, "after the stream's end");

	link_start(&L, 0);		/* FIN after FIN */
	L.mode = HOLD;
	put(&L, 1, MUX_OPEN, 0, NULL, 0);
	put(&L, 1, MUX_FIN, 0, NULL, 0);
	put(&L, 1, MUX_FIN, 0, NULL, 0);
	lost_close(&L, "FIN after the stream's end");

	link_start(&L, 0);		/* RST twice; with a backend, the
					 * first RST ends the stream and the
					 * second is dropped, so hold it */
	L.mode = HOLD;
	put(&L, 1, MUX_OPEN, 0, NULL, 0);
	put(&L, 2, MUX_OPEN, 0, NULL, 0);
	/* Stream 2 stays open (its pump waits); stream 1 is reset twice
	 * before the agent's pump can end it: both in one write. */
	{
		uint8_t f[64];
		size_t n = frame(f, 1, MUX_RST, 0, "\7a", 2);

		n += frame(f + n, 1, MUX_RST, 0, "\7b", 2);
		tn_send_all(L.fds[0], f, n);
	}
	lost_close(&L, "RST twice");

	link_start(&L, 0);		/* BLOCKED on a FIN */
	L.mode = HOLD;
	put(&L, 1, MUX_OPEN, 0, NULL, 0);
	put(&L, 1, MUX_FIN, MUX_F_BLOCKED, NULL, 0);
	lost_close(&L, "flags unknown");

	link_start(&L, 0);		/* PING on a stream */
	put(&L, 1, MUX_PING, 0, "12345678", 8);
	lost_close(&L, "PING/PONG malformed");

	link_start(&L, 0);		/* an unknown type */
	put(&L, 1, 9, 0, NULL, 0);
	lost_close(&L, "unknown mux frame type");
}

/* A hostile agent, against the edge's opener mux: an OPEN from it, bad
 * credit, frames for ids the edge never opened. The edge's client is
 * reset with the link. */
static void
opener_error(int what)
{
	uint8_t p[MUX_CTL_MAX], b[8];
	struct mux_hdr h;
	struct link L;
	struct sess *s;
	int how;

	link_start(&L, 1);
	s = sess_open(&L, "SESS_OPEN edge");
	h = get(&L, p, MUX_OPEN);
	assert_int_equal(h.sid, 1);
	assert_int_equal(h.len, strlen("SESS_OPEN edge"));
	assert_memory_equal(p, "SESS_OPEN edge", h.len);
	switch (what) {
	case 0:
		put(&L, 1, MUX_OPEN, 0, NULL, 0);
		expect_lost(&L, "OPEN out of order");
		break;
	case 1:
		put_credit(&L, 1, 0);
		expect_lost(&L, "CREDIT beyond the window");
		break;
	case 2:
		/* Up to MUX_WINDOW_MAX in all is fine; one byte more is not. */
		put_credit(&L, 1, MUX_WINDOW_MAX - MUX_WINDOW);
		put_credit(&L, 1, 1);
		expect_lost(&L, "CREDIT beyond the window");
		break;
	case 3:
		put_credit(&L, 1, 0xffffffffu);
		expect_lost(&L, "CREDIT beyond the window");
		break;
	case 4:
		put(&L, 2, MUX_DATA, 0, "z", 1);
		expect_lost(&L, "never opened");
		break;
	}
	assert_int_equal(s->edone, 1);
	assert_false(s->eclean);
	assert_int_equal(s->ecode, SE_ERROR);
	assert_int_equal(tn_recv_end(s->c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	link_close(&L);
}

static void
test_opener_hostile(void **state)
{
	int i;

	(void)state;
	for (i = 0; i <= 4; i++)
		opener_error(i);
}

/* An agent's RST reaches the edge's pump with its END code and text;
 * a code that is no END is an error, and control bytes in the text are
 * not passed into logs. */
static void
opener_rst(const void *pl, uint16_t n, enum sess_end code, const char *text)
{
	uint8_t p[MUX_CTL_MAX], b[8];
	struct link L;
	struct sess *s;
	int how;

	link_start(&L, 1);
	s = sess_open(&L, "x");
	(void)get(&L, p, MUX_OPEN);
	put(&L, 1, MUX_RST, 0, pl, n);
	TN_UNTIL(s->edone == 1);
	assert_false(s->eclean);
	assert_int_equal(s->eside, PUMP_INNER);
	assert_int_equal(s->ecode, code);
	assert_string_equal(s->eerr, text);
	assert_int_equal(tn_recv_end(s->c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	/* The stream is gone; the peer speaking of it again is dropped. */
	put(&L, 1, MUX_DATA, 0, "x", 1);
	assert_int_equal(L.elost, 0);
	assert_int_equal(L.edge.nstreams, 0);
	link_close(&L);
}

static void
test_opener_rst(void **state)
{
	(void)state;
	opener_rst("\3no backend", 11, SE_REFUSED, "no backend");
	opener_rst("\6", 1, SE_TIMEOUT, "");
	opener_rst("\0x", 2, SE_ERROR, "x");
	opener_rst("\xc8y", 2, SE_ERROR, "y");
	opener_rst("\3a\nb\x7f", 5, SE_REFUSED, "a?b?");
}

/* A link's last stream id: the edge opens no stream after it, and both
 * sides close the link once that stream has ended (the agent opens
 * another). */
static void
test_ids_used_up(void **state)
{
	uint8_t p[MUX_CTL_MAX];
	struct mux_stream *st;
	struct mux_hdr h;
	struct link L;
	struct sess *s;
	int a;

	(void)state;
	/* The edge's side. */
	link_start(&L, 1);
	L.edge.next_sid = MUX_SID_LAST;
	s = &L.s[1];
	s->used = 1;
	s->d = -1;
	tn_tcp_pair(&s->c, &a);
	assert_non_null(st = mux_open(&L.edge, "x", 1));
	assert_int_equal(st->sid, MUX_SID_LAST);
	s->sid = st->sid;
	pump_init(&s->ep, e_done, s);
	psock_init(&s->ec, a, 0);
	pump_attach(&s->ep, PUMP_OUTER, &s->ec.e, NULL, 0);
	pump_attach(&s->ep, PUMP_INNER, &st->e, NULL, 0);
	ev_settle();
	h = get(&L, p, MUX_OPEN);
	assert_int_equal(h.sid, MUX_SID_LAST);
	assert_true(L.edge.spent);
	assert_null(mux_open(&L.edge, "y", 1));
	assert_int_equal(L.elost, 0);
	put(&L, MUX_SID_LAST, MUX_RST, 0, "\3done", 5);
	TN_UNTIL(s->edone == 1 && L.elost == 1);
	assert_string_equal(L.ewhy, "closed when idle");
	link_close(&L);

	/* The agent's side. */
	link_start(&L, 0);
	L.agent.next_sid = MUX_SID_LAST;
	L.mode = REFUSE;
	L.refuse_code = SE_REFUSED;
	L.refuse_why = "no";
	put(&L, MUX_SID_LAST, MUX_OPEN, 0, NULL, 0);
	h = get(&L, p, MUX_RST);
	assert_int_equal(h.sid, MUX_SID_LAST);
	TN_UNTIL(L.alost == 1);
	assert_string_equal(L.awhy, "closed when idle");
	link_close(&L);
}

/* Data for the edge's stream: delivered to the client; and PING is
 * answered there too. */
static void
test_opener_data(void **state)
{
	uint8_t p[MUX_CTL_MAX], b[16];
	struct mux_hdr h;
	struct link L;
	struct sess *s;
	int how;

	(void)state;
	link_start(&L, 1);
	s = sess_open(&L, "x");
	(void)get(&L, p, MUX_OPEN);
	tn_send_all(s->c, "up", 2);
	h = get(&L, p, MUX_DATA);
	assert_int_equal(h.sid, 1);
	assert_int_equal(h.len, 2);
	assert_memory_equal(p, "up", 2);
	put(&L, 1, MUX_DATA, 0, "down", 4);
	assert_int_equal(tn_recv_n(s->c, b, 4, &how), 4);
	assert_memory_equal(b, "down", 4);
	put(&L, 0, MUX_PING, 0, "87654321", 8);
	h = get(&L, p, MUX_PONG);
	assert_memory_equal(p, "87654321", 8);
	/* Both directions end: FIN each way, a clean end. */
	put(&L, 1, MUX_FIN, 0, NULL, 0);
	assert_int_equal(tn_recv_n(s->c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_EOF);
	assert_int_equal(shutdown(s->c, SHUT_WR), 0);
	h = get(&L, p, MUX_FIN);
	assert_int_equal(h.sid, 1);
	TN_UNTIL(s->edone == 1);
	assert_true(s->eclean);
	assert_int_equal(s->eside, PUMP_INNER);
	link_close(&L);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_layout),
		cmocka_unit_test(test_hdr_hostile),
		cmocka_unit_test(test_hdr_good),
		cmocka_unit_test(test_bytes_both_ways),
		cmocka_unit_test(test_many_streams),
		cmocka_unit_test(test_window_growth_bounded),
		cmocka_unit_test(test_half_close),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_failure_crosses),
		cmocka_unit_test(test_link_failure_ends_streams),
		cmocka_unit_test(test_held_stream_bounded),
		cmocka_unit_test(test_close_when_idle),
		cmocka_unit_test(test_acceptor_open_order),
		cmocka_unit_test(test_acceptor_never_opened),
		cmocka_unit_test(test_acceptor_window),
		cmocka_unit_test(test_acceptor_stream_end),
		cmocka_unit_test(test_opener_hostile),
		cmocka_unit_test(test_opener_rst),
		cmocka_unit_test(test_opener_data),
		cmocka_unit_test(test_ids_used_up),
	};

	if (ev_init() == -1)
		return 1;
	return cmocka_run_group_tests_name("mux", tests, NULL, NULL);
}
