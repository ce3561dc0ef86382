/* test_pump.c - the byte pump (pump.c) with socket endpoints (psock.c)
 * and plain-link endpoints (plink.c), over real TCP pairs on 127.0.0.1.
 *
 * Each test builds one session: the test's client socket, the pump's
 * outer endpoint (a psock), the pump's inner endpoint (a psock toward a
 * backend, or a plink toward the far end of a plain data link), and the
 * test's end of that. The test drives both outer ends and the event
 * loop from this thread, and checks what arrives, how each stream ends
 * (EOF or reset), and what done() is told. Everything runs with splice
 * and without. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/plink.h"
#include "common/psock.h"
#include "common/pump.h"
#include "testnet.h"

#define MIB	(1024 * 1024)

struct fx {
	int		 c;		/* the test's client (outer side) */
	int		 d;		/* the test's backend, or link peer */
	struct pump	 p;
	struct psock	 outer;
	struct psock	 inner;		/* unless is_link */
	struct plink	 link;		/* if is_link */
	int		 is_link;
	int		 done;		/* done() calls */
	int		 side, clean;
	enum sess_end	 code;
	char		 err[160];
	int		 link_fd;	/* plink_take's result */
	uint64_t	 bytes[2];	/* pump_bytes at done() */
	uint64_t	 spliced;
};

static void
on_done(struct pump *p, int side, int clean)
{
	struct fx *f = p->arg;
	struct pend *e = p->e[side];
	struct ev_io io;
	int reg;

	f->done++;
	f->side = side;
	f->clean = clean;
	f->code = e->code;
	snprintf(f->err, sizeof(f->err), "%s", e->err);
	f->bytes[0] = pump_bytes(p, PUMP_OUTER);
	f->bytes[1] = pump_bytes(p, PUMP_INNER);
	f->spliced = pump_spliced(p);
	f->link_fd = -1;
	if (clean && f->is_link) {
		f->link_fd = plink_take(&f->link, &reg);
		if (f->link_fd != -1) {
			/* As a new owner would: adopt the loop's
			 * registration at once (here only to drop it). */
			ev_io_init(&io, f->link_fd, NULL);
			ev_adopt(&io, reg);
			ev_del(&io);
		}
	}
	pump_free(p, clean ? SE_NONE : f->code, f->err);
}

/* The outer side only; the inner one follows with fx_inner. */
static void
fx_outer(struct fx *f, int is_link)
{
	int a;

	memset(f, 0, sizeof(*f));
	f->is_link = is_link;
	f->link_fd = -1;
	tn_tcp_pair(&f->c, &a);
	pump_init(&f->p, on_done, f);
	psock_init(&f->outer, a, 0);
	pump_attach(&f->p, PUMP_OUTER, &f->outer.e, NULL, 0);
}

/* 1: the link is the agent's end, whose peer (the edge) may not refuse. */
static int fx_agent_side;

static void
fx_inner(struct fx *f, struct buf *prime)
{
	int b;

	tn_tcp_pair(&b, &f->d);
	if (f->is_link) {
		plink_init(&f->link, b, 0, !fx_agent_side);
		pump_attach(&f->p, PUMP_INNER, &f->link.s.e, prime, 0);
	} else {
		psock_init(&f->inner, b, 0);
		pump_attach(&f->p, PUMP_INNER, &f->inner.e, prime, 0);
	}
	ev_settle();
}

static void
fx_start(struct fx *f, int is_link)
{
	fx_outer(f, is_link);
	fx_inner(f, NULL);
}

static void
fx_close(struct fx *f)
{
	if (f->c != -1)
		close(f->c);
	if (f->d != -1)
		close(f->d);
	if (f->link_fd != -1)
		close(f->link_fd);
	psock_tick(UINT64_MAX);
	pump_splice = 1;
}

static void
shut(int fd)
{
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
}

static void
send_chunk(int fd, const void *p, uint32_t n)
{
	uint8_t h[4];

	tn_put32(h, n);
	tn_send_all(fd, h, 4);
	if (n > 0)
		tn_send_all(fd, p, n);
}

/* --- sockets both ways ---------------------------------------------------- */


/* Megabytes both ways, each direction half-closed when its bytes are
 * out: every byte arrives in order, each EOF after them, and done()
 * reports a clean end with the byte counts. */
static void
both_ways(int splice_on)
{
	struct fx f;
	struct tn_flow up = { 0 }, down = { 0 };
	uint64_t dl;

	pump_splice = splice_on;
	fx_start(&f, 0);
	up.from = f.c; up.to = f.d; up.dir = 0; up.total = 4 * MIB;
	down.from = f.d; down.to = f.c; down.dir = 1; down.total = 3 * MIB + 17;
	dl = tn_now() + TN_DEADLINE_MS;
	while (!(up.eof && down.eof && f.done) && tn_now() < dl) {
		tn_flow_step(&up);
		tn_flow_step(&down);
		tn_spin();
	}
	assert_true(up.eof && down.eof);
	assert_int_equal(up.got, up.total);
	assert_int_equal(down.got, down.total);
	assert_false(up.bad || down.bad);
	assert_int_equal(f.done, 1);
	assert_true(f.clean);
	assert_int_equal(f.bytes[PUMP_OUTER], up.total);
	assert_int_equal(f.bytes[PUMP_INNER], down.total);
	if (splice_on)
		assert_true(f.spliced > 0);
	else
		assert_int_equal(f.spliced, 0);
	fx_close(&f);
}

static void
test_both_ways_spliced(void **state)
{
	(void)state;
	both_ways(1);
}

static void
test_both_ways_copied(void **state)
{
	(void)state;
	both_ways(0);
}

/* A half-close passes on as a half-close, and the other direction goes
 * on until it ends too; done() names the side that ended first. */
static void
half_close(int first_inner)
{
	struct fx f;
	uint8_t b[16];
	int how, a, z;

	fx_start(&f, 0);
	a = first_inner ? f.d : f.c;	/* closes first */
	z = first_inner ? f.c : f.d;
	tn_send_all(a, "last", 4);
	shut(a);
	assert_int_equal(tn_recv_n(z, b, sizeof(b), &how), 4);
	assert_int_equal(how, TN_EOF);
	assert_memory_equal(b, "last", 4);
	/* The other way is still open. */
	tn_send_all(z, "reply", 5);
	assert_int_equal(tn_recv_n(a, b, 5, &how), 5);
	assert_memory_equal(b, "reply", 5);
	assert_int_equal(f.done, 0);
	tn_send_all(z, "more", 4);
	shut(z);
	assert_int_equal(tn_recv_n(a, b, sizeof(b), &how), 4);
	assert_int_equal(how, TN_EOF);
	TN_UNTIL(f.done == 1);
	assert_true(f.clean);
	assert_int_equal(f.side, first_inner ? PUMP_INNER : PUMP_OUTER);
	assert_int_equal(f.bytes[first_inner ? PUMP_INNER : PUMP_OUTER], 4);
	assert_int_equal(f.bytes[first_inner ? PUMP_OUTER : PUMP_INNER], 9);
	fx_close(&f);
}

static void
test_half_close_outer_first(void **state)
{
	(void)state;
	half_close(0);
}

static void
test_half_close_inner_first(void **state)
{
	(void)state;
	half_close(1);
}

/* A side that fails (its peer resets it) ends the session as failed:
 * what it sent before is still passed on, then the other side is reset,
 * never closed cleanly, so a cut transfer cannot look complete. */
static void
failure(int inner_fails, int splice_on)
{
	static uint8_t big[256 * 1024];
	struct fx f;
	static uint8_t b[sizeof(big) + 16];
	int how, a, z;
	size_t i, n;

	pump_splice = splice_on;
	for (i = 0; i < sizeof(big); i++)
		big[i] = tn_pattern(i, 3);
	fx_start(&f, 0);
	a = inner_fails ? f.d : f.c;
	z = inner_fails ? f.c : f.d;
	/* Bytes the pump has passed on already, then bytes sent right
	 * before the reset (once they left the test's socket: a reset
	 * drops what it still holds). */
	tn_send_all(a, "first", 5);
	assert_int_equal(tn_recv_n(z, b, 5, &how), 5);
	tn_send_all(a, big, sizeof(big));
	tn_wait_sent(a);
	tn_reset(a);
	if (inner_fails)
		f.d = -1;
	else
		f.c = -1;
	n = tn_recv_end(z, b, sizeof(b), &how);
	assert_int_equal(how, TN_RESET);
	assert_int_equal(n, sizeof(big));
	assert_memory_equal(b, big, sizeof(big));
	TN_UNTIL(f.done == 1);
	assert_false(f.clean);
	assert_int_equal(f.side, inner_fails ? PUMP_INNER : PUMP_OUTER);
	assert_int_equal(f.code, SE_ERROR);
	assert_true(f.err[0] != '\0');
	fx_close(&f);
}

static void
test_inner_fails(void **state)
{
	(void)state;
	failure(1, 1);
	failure(1, 0);
}

static void
test_outer_fails(void **state)
{
	(void)state;
	failure(0, 1);
	failure(0, 0);
}

/* A prime (the PROXY header) goes to the inner side before any relayed
 * byte, also before bytes the client sent before the inner side was
 * there, and is not counted as the client's. */
static void
test_prime(void **state)
{
	static const char hdr[] = "PROXY TCP4 192.0.2.1 198.51.100.2 1234 22\r\n";
	struct buf prime = { 0 };
	struct fx f;
	uint8_t b[128];
	size_t hl = sizeof(hdr) - 1;
	int how;

	(void)state;
	fx_outer(&f, 0);
	tn_send_all(f.c, "early", 5);
	assert_int_equal(buf_append(&prime, hdr, hl, hl), 0);
	fx_inner(&f, &prime);
	assert_null(prime.data);	/* moved in */
	tn_send_all(f.c, "hello", 5);
	shut(f.c);
	assert_int_equal(tn_recv_n(f.d, b, sizeof(b), &how), hl + 10);
	assert_int_equal(how, TN_EOF);
	assert_memory_equal(b, hdr, hl);
	assert_memory_equal(b + hl, "earlyhello", 10);
	tn_send_all(f.d, "ok", 2);
	shut(f.d);
	assert_int_equal(tn_recv_n(f.c, b, sizeof(b), &how), 2);
	assert_int_equal(how, TN_EOF);
	TN_UNTIL(f.done == 1);
	assert_true(f.clean);
	assert_int_equal(f.bytes[PUMP_OUTER], 10);
	assert_int_equal(f.bytes[PUMP_INNER], 2);
	fx_close(&f);
}

/* pump_fail from the owner (a push endpoint's failure, or a cut): the
 * pump ends failed with the code given; freed before done() ran, done()
 * never runs. Both sockets are reset. */
static void
test_fail_and_free_before_done(void **state)
{
	struct fx f;
	uint8_t b[8];
	int how;

	(void)state;
	fx_start(&f, 0);
	pump_fail(&f.p, PUMP_INNER, SE_KILLED, "cut by the operator");
	ev_settle();
	assert_int_equal(f.done, 1);
	assert_false(f.clean);
	assert_int_equal(f.side, PUMP_INNER);
	assert_int_equal(f.code, SE_KILLED);
	assert_string_equal(f.err, "cut by the operator");
	assert_int_equal(tn_recv_n(f.c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	fx_close(&f);

	fx_start(&f, 0);
	pump_fail(&f.p, PUMP_OUTER, SE_STOPPING, "stopping");
	assert_true(f.p.queued);
	pump_free(&f.p, SE_STOPPING, "stopping");
	ev_settle();
	assert_int_equal(f.done, 0);
	assert_int_equal(tn_recv_n(f.c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	assert_int_equal(tn_recv_n(f.d, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	fx_close(&f);
}

/* --- plain links ---------------------------------------------------------- */

/* Chunks both ways, a header split across writes, markers for the ends,
 * and the link comes back with not one byte of what follows the marker
 * read: the next session's bytes wait in the socket. */
static void
test_link_chunks_and_reuse(void **state)
{
	struct fx f;
	uint8_t b[64];
	int how;

	(void)state;
	fx_start(&f, 1);
	/* The client's bytes leave in one chunk behind their length. */
	tn_send_all(f.c, "hello", 5);
	assert_int_equal(tn_recv_n(f.d, b, 9, &how), 9);
	assert_memory_equal(b, "\0\0\0\5hello", 9);
	/* Chunks, one split in its header, reach the client as bytes. */
	send_chunk(f.d, "abc", 3);
	tn_send_all(f.d, "\0\0", 2);
	tn_spin();
	tn_send_all(f.d, "\0\4defg", 6);
	assert_int_equal(tn_recv_n(f.c, b, 7, &how), 7);
	assert_memory_equal(b, "abcdefg", 7);
	/* The client's FIN becomes a marker; the link's marker a FIN. */
	shut(f.c);
	assert_int_equal(tn_recv_n(f.d, b, 4, &how), 4);
	assert_memory_equal(b, "\0\0\0\0", 4);
	/* The next session's first bytes right behind the marker. */
	tn_send_all(f.d, "\0\0\0\0NEXT", 8);
	assert_int_equal(tn_recv_n(f.c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_EOF);
	TN_UNTIL(f.done == 1);
	assert_true(f.clean);
	assert_int_equal(f.side, PUMP_OUTER);
	assert_int_equal(f.bytes[PUMP_OUTER], 5);
	assert_int_equal(f.bytes[PUMP_INNER], 7);
	assert_int_not_equal(f.link_fd, -1);
	assert_int_equal(tn_recv_n(f.link_fd, b, 4, &how), 4);
	assert_memory_equal(b, "NEXT", 4);
	/* And nothing else went out on the link after the marker. */
	assert_int_equal(recv(f.d, b, sizeof(b), 0), -1);
	assert_int_equal(errno, EAGAIN);
	fx_close(&f);
}

/* The link's peer ends first with a marker; the link is kept. */
static void
test_link_peer_marker_first(void **state)
{
	struct fx f;
	uint8_t b[8];
	int how;

	(void)state;
	fx_start(&f, 1);
	send_chunk(f.d, "xy", 2);
	send_chunk(f.d, NULL, 0);
	assert_int_equal(tn_recv_n(f.c, b, sizeof(b), &how), 2);
	assert_int_equal(how, TN_EOF);
	assert_int_equal(f.done, 0);
	shut(f.c);
	assert_int_equal(tn_recv_n(f.d, b, 4, &how), 4);
	assert_memory_equal(b, "\0\0\0\0", 4);
	TN_UNTIL(f.done == 1);
	assert_true(f.clean);
	assert_int_equal(f.side, PUMP_INNER);
	assert_int_not_equal(f.link_fd, -1);
	fx_close(&f);
}

/* Chunks and the marker in one segment: one read takes the bytes of
 * both chunks and then the marker, which epoll will not announce again;
 * the end still reaches the client at once, by splice and by copy. */
static void
link_marker_with_bytes(int splice_on)
{
	struct fx f;
	uint8_t b[16];
	int how;

	pump_splice = splice_on;
	fx_start(&f, 1);
	tn_send_all(f.d, "\0\0\0\3abc\0\0\0\4defg\0\0\0\0", 19);
	assert_int_equal(tn_recv_n(f.c, b, sizeof(b), &how), 7);
	assert_int_equal(how, TN_EOF);
	assert_memory_equal(b, "abcdefg", 7);
	shut(f.c);
	assert_int_equal(tn_recv_n(f.d, b, 4, &how), 4);
	assert_memory_equal(b, "\0\0\0\0", 4);
	TN_UNTIL(f.done == 1);
	assert_true(f.clean);
	assert_int_not_equal(f.link_fd, -1);
	fx_close(&f);
}

static void
test_link_marker_with_bytes(void **state)
{
	(void)state;
	link_marker_with_bytes(1);
	link_marker_with_bytes(0);
}

/* The link's peer ends its direction with a FIN instead of the marker,
 * as an agent killed mid-transfer does (its kernel sends the FIN). That
 * must not look like a complete transfer: the session fails on the
 * link's side with SE_ERROR, the bytes that came before the FIN reach
 * the client intact, and the client then sees a reset, not an EOF.
 * payload: bytes the peer sends in chunks before its FIN (0: none);
 * client_done: the client's direction has ended with our marker first,
 * so only the peer's marker is missing. */
static void
link_fin_early(int splice_on, size_t payload, int client_done)
{
	static uint8_t sent[256 * 1024 + 5], got[sizeof(sent) + 16];
	struct fx f;
	uint8_t b[16];
	size_t i, off, k, n;
	int how;

	assert_true(payload <= sizeof(sent));
	pump_splice = splice_on;
	for (i = 0; i < payload; i++)
		sent[i] = tn_pattern(i, 1);
	fx_start(&f, 1);
	if (client_done) {
		tn_send_all(f.c, "up", 2);
		shut(f.c);
		assert_int_equal(tn_recv_n(f.d, b, 10, &how), 10);
		assert_memory_equal(b, "\0\0\0\2up\0\0\0\0", 10);
	}
	for (off = 0; off < payload; off += k) {
		k = payload - off < 65537 ? payload - off : 65537;
		send_chunk(f.d, sent + off, (uint32_t)k);
	}
	shut(f.d);
	n = tn_recv_end(f.c, got, sizeof(got), &how);
	assert_int_equal(how, TN_RESET);
	assert_int_equal(n, payload);
	if (payload > 0)
		assert_memory_equal(got, sent, payload);
	TN_UNTIL(f.done == 1);
	assert_false(f.clean);
	assert_int_equal(f.side, PUMP_INNER);
	assert_int_equal(f.code, SE_ERROR);
	assert_string_equal(f.err, "data link closed before the session's end");
	assert_int_equal(f.bytes[PUMP_INNER], payload);
	assert_int_equal(f.bytes[PUMP_OUTER], client_done ? 2 : 0);
	assert_int_equal(f.link_fd, -1);
	fx_close(&f);
}

static void
test_link_fin_before_marker(void **state)
{
	(void)state;
	/* Before any chunk, and after a small one. */
	link_fin_early(1, 0, 0);
	link_fin_early(0, 0, 0);
	link_fin_early(1, 2, 0);
	/* After many chunks: every byte of them first, then the reset. */
	link_fin_early(1, 256 * 1024 + 5, 0);
	link_fin_early(0, 256 * 1024 + 5, 0);
	/* Our marker went out already; the peer's never came. */
	link_fin_early(1, 0, 1);
	link_fin_early(0, 3, 1);
}

/* The link's peer sends wire (then a FIN if fin): the session fails on
 * the link's side with why containing `why`; the client gets the bytes
 * before the error (want, n) and then a reset. */
static void
link_error(const void *wire, size_t wn, int fin, const char *want, size_t n,
    const char *why)
{
	struct fx f;
	uint8_t b[64];
	int how;

	fx_start(&f, 1);
	tn_send_all(f.d, wire, wn);
	if (fin)
		shut(f.d);
	assert_int_equal(tn_recv_end(f.c, b, sizeof(b), &how), n);
	assert_int_equal(how, TN_RESET);
	if (n > 0)
		assert_memory_equal(b, want, n);
	TN_UNTIL(f.done == 1);
	assert_false(f.clean);
	assert_int_equal(f.side, PUMP_INNER);
	assert_int_equal(f.code, SE_ERROR);
	if (strstr(f.err, why) == NULL)
		fail_msg("error '%s', want '%s'", f.err, why);
	assert_int_equal(f.link_fd, -1);
	fx_close(&f);
}

static void
test_link_fin_inside_chunk(void **state)
{
	(void)state;
	link_error("\0\0\0\20abc", 7, 1, "abc", 3, "closed inside a chunk");
	/* Inside a header: before the marker, whatever its bytes were. */
	link_error("\0\0", 2, 1, NULL, 0, "before the session's end");
	link_error("\0\0\0\2xy\0", 7, 1, "xy", 2, "before the session's end");
}

static void
test_link_hostile_length(void **state)
{
	(void)state;
	/* One byte over PLINK_CHUNK_MAX, and far over. */
	link_error("\x01\0\0\x01", 4, 0, NULL, 0, "over 16 MiB");
	link_error("\x7f\xff\xff\xff", 4, 0, NULL, 0, "over 16 MiB");
	/* The largest length is just too long, first or after a chunk, and
	 * what follows it never reaches the client (no raw mode). */
	link_error("\xff\xff\xff\xff", 4, 0, NULL, 0, "over 16 MiB");
	link_error("\xff\xff\xff\xff" "defgh", 9, 1, NULL, 0, "over 16 MiB");
	link_error("\0\0\0\3abc\xff\xff\xff\xff" "defgh", 16, 1, "abc", 3,
	    "over 16 MiB");
	/* A refusal header anywhere but first is just too long. */
	link_error("\0\0\0\2ab\xff\xff\xff\xfe", 10, 0, "ab", 2, "over 16 MiB");
	/* A refusal chunk of no bytes, or over its limit, or cut short. */
	link_error("\xff\xff\xff\xfe\0\0\0\0", 8, 0, NULL, 0, "bad refusal");
	link_error("\xff\xff\xff\xfe\0\0\x04\x02", 8, 0, NULL, 0,
	    "bad refusal");
	link_error("\xff\xff\xff\xfe\0\0\0\x0a\3abc", 12, 1, NULL, 0,
	    "inside a refusal");
	/* Only the agent refuses: from the edge, even first, a refusal
	 * header is just a length over the maximum (a hostile edge cannot
	 * put its words in the agent's log as a refusal). */
	fx_agent_side = 1;
	link_error("\xff\xff\xff\xfe\0\0\0\x03\3ab", 11, 0, NULL, 0,
	    "over 16 MiB");
	fx_agent_side = 0;
}

/* A chunk of exactly PLINK_CHUNK_MAX is allowed: its bytes flow before
 * the rest of it has come. */
static void
test_link_largest_chunk(void **state)
{
	struct fx f;
	uint8_t b[8];
	int how;

	(void)state;
	fx_start(&f, 1);
	tn_send_all(f.d, "\x01\0\0\0abc", 7);
	assert_int_equal(tn_recv_n(f.c, b, 3, &how), 3);
	assert_memory_equal(b, "abc", 3);
	assert_int_equal(f.done, 0);
	shut(f.d);
	TN_UNTIL(f.done == 1);
	assert_false(f.clean);
	fx_close(&f);
}

/* The agent refuses the session on the link (plink_refuse): a refusal
 * header, one chunk with the END code and text, a FIN. The edge's pump
 * fails with that code and text, and resets the client. */
static void
refusal(uint8_t code, const char *text, enum sess_end want_code,
    const char *want_text)
{
	struct fx f;
	uint8_t b[8];
	int how;

	fx_start(&f, 1);
	tn_send_all(f.c, "SSH-2.0-x\r\n", 11);
	assert_int_equal(plink_refuse(f.d, (enum sess_end)code, text), 0);
	assert_int_equal(tn_recv_end(f.c, b, sizeof(b), &how), 0);
	assert_int_equal(how, TN_RESET);
	TN_UNTIL(f.done == 1);
	assert_false(f.clean);
	assert_int_equal(f.side, PUMP_INNER);
	assert_int_equal(f.code, want_code);
	assert_string_equal(f.err, want_text);
	assert_int_equal(f.link_fd, -1);
	fx_close(&f);
}

static void
test_link_refusal(void **state)
{
	uint8_t b[64];
	int sv[2], how;

	(void)state;
	refusal(SE_REFUSED, "no backend for sftp", SE_REFUSED,
	    "no backend for sftp");
	refusal(SE_LIMIT, "16384 sessions", SE_LIMIT, "16384 sessions");
	refusal(SE_REFUSED, "", SE_REFUSED, "");
	/* An END code that is none: still a refusal. Control bytes in the
	 * text are not passed into logs. */
	refusal(0, "x", SE_REFUSED, "x");
	refusal(200, "a\nb\x7f", SE_REFUSED, "a?b?");

	/* What plink_refuse writes, byte for byte, then its FIN. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	tn_nonblock(sv[1]);
	assert_int_equal(plink_refuse(sv[0], SE_REFUSED, "no"), 0);
	assert_int_equal(tn_recv_n(sv[1], b, sizeof(b), &how), 11);
	assert_int_equal(how, TN_EOF);
	assert_memory_equal(b, "\xff\xff\xff\xfe\0\0\0\3\3no", 11);
	close(sv[0]);
	close(sv[1]);
}

/* Reads one direction of a plain link the way its peer must: chunk
 * headers, payloads checked against the pattern, up to the marker; a
 * length over PLINK_CHUNK_MAX or a FIN before the marker is bad. Stops at
 * the marker: what follows it is the next session's. */
struct creader {
	int		 fd, dir;
	uint8_t		 h[4];
	size_t		 hoff;
	uint32_t	 left;
	size_t		 got;
	size_t		 chunks;	/* payload chunks read */
	uint32_t	 largest;	/* ... and the largest length */
	int		 marker, eof, bad;
};

static void
creader_step(struct creader *r)
{
	uint8_t b[65536];
	size_t i, want;
	ssize_t k = -1;

	while (!r->marker && !r->eof && !r->bad) {
		if (r->left == 0) {
			k = recv(r->fd, r->h + r->hoff, 4 - r->hoff, 0);
			if (k <= 0)
				break;
			if ((r->hoff += (size_t)k) < 4)
				continue;
			r->hoff = 0;
			r->left = tn_get32(r->h);
			if (r->left == 0)
				r->marker = 1;
			else if (r->left > PLINK_CHUNK_MAX)
				r->bad = 1;
			else {
				r->chunks++;
				if (r->left > r->largest)
					r->largest = r->left;
			}
			continue;
		}
		want = r->left < sizeof(b) ? r->left : sizeof(b);
		k = recv(r->fd, b, want, 0);
		if (k <= 0)
			break;
		for (i = 0; i < (size_t)k; i++)
			if (b[i] != tn_pattern(r->got + i, r->dir))
				r->bad = 1;
		r->got += (size_t)k;
		r->left -= (uint32_t)k;
	}
	if (k == 0) {
		r->eof = 1;
		r->bad = 1;	/* a FIN before the marker */
	}
}

/* Writes one direction of a plain link as its peer would: chunks of
 * `size` bytes of the pattern, then a marker. */
struct cwriter {
	int		 fd, dir;
	size_t		 total, sent, size;
	uint8_t		 h[4];
	size_t		 hoff, hlen;
	uint32_t	 left;
	int		 ended;
};

static void
cwriter_step(struct cwriter *w)
{
	uint8_t b[65536];
	size_t i, n;
	ssize_t k;

	for (;;) {
		if (w->hoff < w->hlen) {
			k = send(w->fd, w->h + w->hoff, w->hlen - w->hoff,
			    MSG_NOSIGNAL);
			if (k <= 0)
				return;
			w->hoff += (size_t)k;
			continue;
		}
		if (w->left > 0) {
			n = w->left < sizeof(b) ? w->left : sizeof(b);
			for (i = 0; i < n; i++)
				b[i] = tn_pattern(w->sent + i, w->dir);
			k = send(w->fd, b, n, MSG_NOSIGNAL);
			if (k <= 0)
				return;
			w->sent += (size_t)k;
			w->left -= (uint32_t)k;
			continue;
		}
		if (w->ended)
			return;
		n = w->total - w->sent < w->size ? w->total - w->sent : w->size;
		tn_put32(w->h, (uint32_t)n);
		w->hoff = 0;
		w->hlen = 4;
		w->left = (uint32_t)n;
		if (n == 0)
			w->ended = 1;
	}
}

/* Bulk both ways through a plain link, by splice and by copying: up bytes
 * from the client, down bytes from the link's peer in chunks of down_size.
 * Every byte arrives in order; upward they come in chunks no longer than
 * PLINK_CHUNK_MAX, however much there is, and end with the marker, never
 * a FIN; the link then comes back (plink_take) with nothing of the
 * session left in it either way, and carries the next session's bytes. */
static void
link_bulk(int splice_on, size_t up_n, size_t down_n, size_t down_size)
{
	struct fx f;
	struct creader up = { 0 };
	struct cwriter down = { 0 };
	struct tn_flow cl = { 0 };
	uint8_t b[65536];
	uint64_t dl;
	ssize_t k;
	size_t i;
	int how;

	pump_splice = splice_on;
	fx_start(&f, 1);
	cl.from = f.c; cl.to = -1; cl.dir = 0; cl.total = up_n;
	up.fd = f.d; up.dir = 0;
	down.fd = f.d; down.dir = 1; down.total = down_n; down.size = down_size;
	dl = tn_now() + TN_DEADLINE_MS;
	while (!(up.marker || up.bad) || !down.ended ||
	    down.hoff < down.hlen || cl.got < down_n || !cl.eof) {
		if (tn_now() > dl)
			fail_msg("link_bulk: up %zu/%zu, down %zu, client %zu",
			    up.got, up_n, down.sent, cl.got);
		if (cl.sent < cl.total) {
			for (i = 0; i < sizeof(b) && cl.sent + i < cl.total; i++)
				b[i] = tn_pattern(cl.sent + i, 0);
			if ((k = send(f.c, b, i, MSG_NOSIGNAL)) > 0)
				cl.sent += (size_t)k;
		} else if (!cl.shut) {
			shut(f.c);
			cl.shut = 1;
		}
		creader_step(&up);
		cwriter_step(&down);
		while (!cl.eof && (k = recv(f.c, b, sizeof(b), 0)) > 0) {
			for (i = 0; i < (size_t)k; i++)
				if (b[i] != tn_pattern(cl.got + i, 1))
					cl.bad = 1;
			cl.got += (size_t)k;
		}
		if (k == 0)
			cl.eof = 1;
		tn_spin();
	}
	assert_false(up.bad);
	assert_false(cl.bad);
	assert_true(up.marker);
	assert_int_equal(up.got, up_n);
	assert_true(up.largest <= PLINK_CHUNK_MAX);
	assert_true(up.chunks >= up_n / PLINK_CHUNK_MAX);
	assert_int_equal(cl.got, down_n);
	TN_UNTIL(f.done == 1);
	assert_true(f.clean);
	assert_int_equal(f.bytes[PUMP_OUTER], up_n);
	assert_int_equal(f.bytes[PUMP_INNER], down_n);
	if (splice_on)
		assert_true(f.spliced > 0);
	else
		assert_int_equal(f.spliced, 0);
	assert_int_not_equal(f.link_fd, -1);
	/* Nothing after the marker on either side, and the link works. */
	assert_int_equal(recv(f.d, b, sizeof(b), 0), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(recv(f.link_fd, b, sizeof(b), 0), -1);
	assert_int_equal(errno, EAGAIN);
	tn_send_all(f.d, "NEXT", 4);
	assert_int_equal(tn_recv_n(f.link_fd, b, 4, &how), 4);
	assert_memory_equal(b, "NEXT", 4);
	tn_send_all(f.link_fd, "BACK", 4);
	assert_int_equal(tn_recv_n(f.d, b, 4, &how), 4);
	assert_memory_equal(b, "BACK", 4);
	fx_close(&f);
}

static void
test_link_bulk(void **state)
{
	(void)state;
	link_bulk(1, 512 * 1024, 512 * 1024 + 3, 65537);
	link_bulk(0, 512 * 1024, 512 * 1024 + 3, 65537);
	/* Several MiB each way; down in chunks far larger than the pump's
	 * buffer or pipe, and in one chunk of PLINK_CHUNK_MAX. */
	link_bulk(1, 6 * MIB + 1, 5 * MIB + 3, MIB + 1);
	link_bulk(0, 6 * MIB + 1, 5 * MIB + 3, MIB + 1);
	link_bulk(1, 3 * MIB, PLINK_CHUNK_MAX, PLINK_CHUNK_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_ways_spliced),
		cmocka_unit_test(test_both_ways_copied),
		cmocka_unit_test(test_half_close_outer_first),
		cmocka_unit_test(test_half_close_inner_first),
		cmocka_unit_test(test_inner_fails),
		cmocka_unit_test(test_outer_fails),
		cmocka_unit_test(test_prime),
		cmocka_unit_test(test_fail_and_free_before_done),
		cmocka_unit_test(test_link_chunks_and_reuse),
		cmocka_unit_test(test_link_peer_marker_first),
		cmocka_unit_test(test_link_marker_with_bytes),
		cmocka_unit_test(test_link_fin_before_marker),
		cmocka_unit_test(test_link_fin_inside_chunk),
		cmocka_unit_test(test_link_hostile_length),
		cmocka_unit_test(test_link_largest_chunk),
		cmocka_unit_test(test_link_refusal),
		cmocka_unit_test(test_link_bulk),
	};

	if (ev_init() == -1)
		return 1;
	return cmocka_run_group_tests_name("pump", tests, NULL, NULL);
}
