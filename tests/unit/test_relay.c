/* test_relay.c - relay threads (relay_mt.c): a bulk relay between two
 * plain sockets moves to a relay thread, ends there with done() on the
 * main thread, and can be taken back and freed at any point. And framed
 * sides (RELAY_FRAMED, reusable plain links): chunks, end markers, what a
 * FIN means between and inside chunks, hostile lengths, and that the
 * link comes back with not one byte of the next session read. Real TCP
 * sockets on 127.0.0.1; the test drives both outer ends and the main
 * loop from this thread. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/relay.h"
#include "common/relay_mt.h"

#define BULK	(4 * 1024 * 1024)

static pthread_t main_thread;

struct fixture {
	int		 outer[2];	/* the test's ends: client, backend */
	struct relay	 r;
	int		 done_calls;
	int		 done_on_main;
	int		 done_err;
	int		 link_fd;	/* framed side 1, taken back, or -1 */
};

static void
nonblock(int fd)
{
	assert_int_not_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK),
	    -1);
}

/* A connected TCP pair on 127.0.0.1: *a connects, *b is accepted. */
static void
tcp_pair(int *a, int *b)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int l;

	l = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_not_equal(l, -1);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	*a = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_not_equal(*a, -1);
	assert_int_equal(connect(*a, (struct sockaddr *)&sin, sizeof(sin)), 0);
	*b = accept(l, NULL, NULL);
	assert_int_not_equal(*b, -1);
	close(l);
	nonblock(*a);
	nonblock(*b);
}

static void
on_done(struct relay *r, int first, const char *err)
{
	struct fixture *f = r->arg;

	(void)first;
	f->done_calls++;
	f->done_on_main = pthread_equal(pthread_self(), main_thread);
	f->done_err = err != NULL;
	f->link_fd = -1;
	if (err == NULL) {
		struct ev_io io;
		int reg;

		/* As a new owner would: adopt the loop's registration at
		 * once (here only to drop it). */
		f->link_fd = relay_take_link(r, 1, &reg);
		if (f->link_fd != -1) {
			ev_io_init(&io, f->link_fd, NULL);
			ev_adopt(&io, reg);
			ev_del(&io);
		}
	}
	relay_free(r, err != NULL);
}

static void
fixture_close(struct fixture *f)
{
	close(f->outer[0]);
	close(f->outer[1]);
}

/* After relay_free: a later turn of the loop must not run done(). */
static void
fixture_end_freed(struct fixture *f)
{
	assert_int_equal(ev_run_once(50), 0);
	assert_int_equal(f->done_calls, 0);
	fixture_close(f);
}

static void
fixture_start_flags(struct fixture *f, unsigned flags)
{
	int inner[2];

	memset(f, 0, sizeof(*f));
	tcp_pair(&f->outer[0], &inner[0]);
	tcp_pair(&inner[1], &f->outer[1]);
	assert_int_equal(relay_start(&f->r, inner[0], NULL, inner[1], NULL,
	    NULL, flags, on_done, f), 0);
}

static void
fixture_start(struct fixture *f)
{
	fixture_start_flags(f, 0);
}

static uint8_t
pattern(size_t i, int dir)
{
	return (uint8_t)((i * 31 + (i >> 12) + (size_t)dir * 7) & 0xff);
}

/* One direction of traffic through the relay: what the test sends into
 * outer[dir] and checks coming out of outer[1 - dir]. */
struct flow {
	int	 dir;
	size_t	 total, sent, got;
	int	 shut, eof, bad;
};

static void
flow_step(struct fixture *f, struct flow *fl)
{
	uint8_t b[65536];
	size_t i, n;
	ssize_t k = -1;

	if (fl->sent < fl->total) {
		n = fl->total - fl->sent < sizeof(b) ? fl->total - fl->sent :
		    sizeof(b);
		for (i = 0; i < n; i++)
			b[i] = pattern(fl->sent + i, fl->dir);
		k = write(f->outer[fl->dir], b, n);
		if (k > 0)
			fl->sent += (size_t)k;
	} else if (!fl->shut && fl->total > 0) {
		assert_int_equal(shutdown(f->outer[fl->dir], SHUT_WR), 0);
		fl->shut = 1;
	}
	while (!fl->eof && (k = read(f->outer[1 - fl->dir], b, sizeof(b))) > 0) {
		for (i = 0; i < (size_t)k; i++)
			if (b[i] != pattern(fl->got + i, fl->dir))
				fl->bad = 1;
		fl->got += (size_t)k;
	}
	if (k == 0)
		fl->eof = 1;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
relay_owner(const struct relay *r)
{
	return __atomic_load_n(&r->mt, __ATOMIC_SEQ_CST);
}

/* Both ways, with half-closes: the relay moves to a thread, every byte
 * arrives in order, and done() runs once, on the main thread. */
static void
test_bulk_moves_and_ends_on_main(void **state)
{
	struct fixture f;
	struct flow up = { 0, BULK, 0, 0, 0, 0, 0 };
	struct flow down = { 1, BULK - 12345, 0, 0, 0, 0, 0 };
	uint64_t before = relay_threads_handoffs(), deadline;
	int moved = 0;

	(void)state;
	fixture_start(&f);
	deadline = now_ms() + 60000;
	while (f.done_calls == 0 && now_ms() < deadline) {
		flow_step(&f, &up);
		flow_step(&f, &down);
		if (relay_owner(&f.r) != MT_MAIN)
			moved = 1;
		assert_int_equal(ev_run_once(10), 0);
	}
	while (!(up.eof && down.eof) && now_ms() < deadline) {
		flow_step(&f, &up);
		flow_step(&f, &down);
	}
	assert_true(moved);
	assert_int_equal(relay_threads_handoffs(), before + 1);
	assert_int_equal(f.done_calls, 1);
	assert_true(f.done_on_main);
	assert_false(f.done_err);
	assert_true(up.eof && down.eof);
	assert_int_equal(up.got, up.total);
	assert_int_equal(down.got, down.total);
	assert_false(up.bad || down.bad);
	fixture_close(&f);
}

/* Move the relay to a thread, then free it from the main thread while
 * it runs there: it comes back, its sockets close, done() never runs. */
static void
test_free_while_in_thread(void **state)
{
	struct fixture f;
	struct flow up = { 0, 2 * RELAY_MT_BYTES, 0, 0, 0, 0, 0 };
	uint64_t deadline;
	uint8_t b[4096];
	ssize_t k;

	(void)state;
	fixture_start(&f);
	up.shut = 1;		/* keep the relay open */
	deadline = now_ms() + 60000;
	while (up.got < up.total && now_ms() < deadline) {
		flow_step(&f, &up);
		assert_int_equal(ev_run_once(10), 0);
	}
	assert_int_equal(up.got, up.total);
	assert_int_equal(relay_owner(&f.r), MT_WORKER);
	relay_free(&f.r, 1);
	assert_int_equal(relay_owner(&f.r), MT_MAIN);
	/* The outer ends see the relay's sockets go: EOF or a reset. */
	deadline = now_ms() + 10000;
	while ((k = read(f.outer[1], b, sizeof(b))) == -1 && errno == EAGAIN &&
	    now_ms() < deadline) {
		assert_int_equal(ev_run_once(10), 0);
		relay_tick(ev_now());	/* a reset that waited for a drain */
	}
	assert_true(k == 0 || (k == -1 && errno == ECONNRESET));
	fixture_end_freed(&f);
}

/* The relay ends in its thread, and the main thread frees it before its
 * loop has run done(): done() must then never run. */
static void
test_free_after_end_before_done(void **state)
{
	struct fixture f;
	struct flow up = { 0, 2 * RELAY_MT_BYTES, 0, 0, 0, 0, 0 };
	struct flow down = { 1, 0, 0, 0, 1, 0, 0 };
	uint64_t deadline;

	(void)state;
	fixture_start(&f);
	deadline = now_ms() + 60000;
	while (relay_owner(&f.r) == MT_MAIN && now_ms() < deadline) {
		flow_step(&f, &up);
		assert_int_equal(ev_run_once(10), 0);
	}
	assert_int_equal(relay_owner(&f.r), MT_WORKER);
	/* From here the main loop does not run: the thread carries on. */
	assert_int_equal(shutdown(f.outer[1], SHUT_WR), 0);
	while (!(up.eof && down.eof) && now_ms() < deadline) {
		flow_step(&f, &up);
		flow_step(&f, &down);
	}
	assert_true(up.eof && down.eof);
	assert_int_equal(up.got, up.total);
	assert_false(up.bad);
	while (relay_owner(&f.r) != MT_DONE && now_ms() < deadline)
		usleep(1000);
	assert_int_equal(relay_owner(&f.r), MT_DONE);
	relay_free(&f.r, 0);
	assert_int_equal(relay_owner(&f.r), MT_MAIN);
	fixture_end_freed(&f);
}

/* A small session never leaves the main loop. */
static void
test_small_stays_on_main(void **state)
{
	struct fixture f;
	struct flow up = { 0, 1000, 0, 0, 0, 0, 0 };
	struct flow down = { 1, 5000, 0, 0, 0, 0, 0 };
	uint64_t before = relay_threads_handoffs(), deadline;

	(void)state;
	fixture_start(&f);
	deadline = now_ms() + 30000;
	while (f.done_calls == 0 && now_ms() < deadline) {
		flow_step(&f, &up);
		flow_step(&f, &down);
		assert_int_equal(relay_owner(&f.r), MT_MAIN);
		assert_int_equal(ev_run_once(10), 0);
	}
	assert_int_equal(f.done_calls, 1);
	assert_int_equal(relay_threads_handoffs(), before);
	fixture_close(&f);
}

/* --- framed sides --------------------------------------------------------- */

/* Run the loop until cond holds or 10 s pass. */
#define LOOP_UNTIL(cond) do {						\
	uint64_t dl_ = now_ms() + 10000;				\
	while (!(cond) && now_ms() < dl_)				\
		assert_int_equal(ev_run_once(10), 0);			\
	assert_true(cond);						\
} while (0)

static void
send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	ssize_t w;

	while (n > 0) {
		w = send(fd, b, n, MSG_NOSIGNAL);
		if (w == -1 && errno == EAGAIN) {
			assert_int_equal(ev_run_once(1), 0);
			continue;
		}
		assert_true(w > 0);
		b += w;
		n -= (size_t)w;
	}
}

static void
send_chunk(int fd, const void *p, uint32_t n)
{
	uint8_t h[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16),
	    (uint8_t)(n >> 8), (uint8_t)n };

	send_all(fd, h, 4);
	if (n > 0)
		send_all(fd, p, n);
}

/* Read exactly n bytes from fd, running the loop meanwhile. Returns n,
 * or fewer at EOF. */
static size_t
recv_n(int fd, void *p, size_t n)
{
	uint64_t dl = now_ms() + 10000;
	size_t have = 0;
	ssize_t r;

	while (have < n && now_ms() < dl) {
		r = recv(fd, (uint8_t *)p + have, n - have, 0);
		if (r == 0)
			break;
		if (r > 0)
			have += (size_t)r;
		else
			assert_int_equal(ev_run_once(1), 0);
	}
	return have;
}

static void
test_framed_roundtrip_and_reuse(void **state)
{
	struct fixture f;
	uint8_t buf[64];

	(void)state;
	fixture_start_flags(&f, RELAY_FRAMED(1));
	/* Client bytes leave in one chunk behind their length. */
	send_all(f.outer[0], "hello", 5);
	assert_int_equal(recv_n(f.outer[1], buf, 9), 9);
	assert_memory_equal(buf, "\0\0\0\5hello", 9);
	/* Chunks, one split in its header, reach the client as bytes. */
	send_chunk(f.outer[1], "abc", 3);
	send_all(f.outer[1], "\0\0", 2);
	assert_int_equal(ev_run_once(10), 0);
	send_all(f.outer[1], "\0\4defg", 6);
	assert_int_equal(recv_n(f.outer[0], buf, 7), 7);
	assert_memory_equal(buf, "abcdefg", 7);
	/* The client's FIN becomes a marker; the link's marker a FIN. */
	assert_int_equal(shutdown(f.outer[0], SHUT_WR), 0);
	assert_int_equal(recv_n(f.outer[1], buf, 4), 4);
	assert_memory_equal(buf, "\0\0\0\0", 4);
	/* The next session's greeting right behind the marker. */
	send_all(f.outer[1], "\0\0\0\0NEXT", 8);
	LOOP_UNTIL(f.done_calls == 1);
	assert_int_equal(recv_n(f.outer[0], buf, 1), 0);
	assert_int_equal(f.done_err, 0);
	assert_int_not_equal(f.link_fd, -1);
	assert_int_equal(recv_n(f.link_fd, buf, 4), 4);
	assert_memory_equal(buf, "NEXT", 4);
	close(f.link_fd);
	fixture_close(&f);
}

static void
test_framed_fin_between_chunks(void **state)
{
	struct fixture f;
	uint8_t buf[8];

	(void)state;
	fixture_start_flags(&f, RELAY_FRAMED(1));
	send_chunk(f.outer[1], "xy", 2);
	assert_int_equal(shutdown(f.outer[1], SHUT_WR), 0);
	assert_int_equal(recv_n(f.outer[0], buf, 8), 2);
	assert_int_equal(shutdown(f.outer[0], SHUT_WR), 0);
	LOOP_UNTIL(f.done_calls == 1);
	/* A clean end, but not a link to keep. */
	assert_int_equal(f.done_err, 0);
	assert_int_equal(f.link_fd, -1);
	fixture_close(&f);
}

/* The link sends wire (then a FIN if fin): the relay ends with an error
 * and does not keep the link. */
static void
framed_error(const void *wire, size_t n, int fin)
{
	struct fixture f;

	fixture_start_flags(&f, RELAY_FRAMED(1));
	send_all(f.outer[1], wire, n);
	if (fin)
		assert_int_equal(shutdown(f.outer[1], SHUT_WR), 0);
	LOOP_UNTIL(f.done_calls == 1);
	assert_int_equal(f.done_err, 1);
	assert_int_equal(f.link_fd, -1);
	fixture_close(&f);
}

static void
test_framed_fin_inside_chunk(void **state)
{
	(void)state;
	framed_error("\0\0\0\20abc", 7, 1);
}

static void
test_framed_hostile_length(void **state)
{
	(void)state;
	/* One byte over RELAY_CHUNK_MAX (0xffffffff would mean raw). */
	framed_error("\x01\0\0\x01", 4, 0);
}

static void
test_framed_not_kept_ends_with_fin(void **state)
{
	struct fixture f;
	uint8_t buf[8];

	(void)state;
	fixture_start_flags(&f, RELAY_FRAMED(1) | RELAY_FIN(1));
	assert_int_equal(shutdown(f.outer[0], SHUT_WR), 0);
	assert_int_equal(recv_n(f.outer[1], buf, 8), 0);
	send_chunk(f.outer[1], NULL, 0);
	LOOP_UNTIL(f.done_calls == 1);
	assert_int_equal(f.done_err, 0);
	assert_int_equal(f.link_fd, -1);
	fixture_close(&f);
}

/* Megabytes both ways through a framed side, by splice and by copying:
 * every byte arrives in order. Up to RELAY_MT_BYTES the link is kept;
 * past it (n bytes up) the upward direction goes raw, ends with a FIN,
 * and the link is not kept. */
static void
framed_bulk(int splice_on, size_t n)
{
	struct fixture f;
	uint8_t *in, *out, h[4];
	size_t got = 0, off = 0, sent = 0, back = n < BULK / 4 ? n : BULK / 4;
	uint32_t left = 0;
	int raw = 0;
	ssize_t r;

	relay_splice = splice_on;
	in = malloc(n);
	out = malloc(n);
	assert_non_null(in);
	assert_non_null(out);
	for (size_t i = 0; i < n; i++)
		in[i] = pattern(i, 0);
	fixture_start_flags(&f, RELAY_FRAMED(1));
	/* Client to link: unframe what arrives. */
	{
		uint64_t dl = now_ms() + 30000;

		while (got < n && now_ms() < dl) {
			if (sent < n) {
				r = send(f.outer[0], in + sent, n - sent,
				    MSG_NOSIGNAL);
				if (r > 0)
					sent += (size_t)r;
			}
			if (left == 0 && off < 4 && !raw) {
				r = recv(f.outer[1], h + off, 4 - off, 0);
				if (r > 0 && (off += (size_t)r) == 4) {
					left = (uint32_t)h[0] << 24 |
					    (uint32_t)h[1] << 16 |
					    (uint32_t)h[2] << 8 | h[3];
					assert_true(left > 0);
					/* raw only after RELAY_MT_BYTES */
					if (left == RELAY_CHUNK_RAW) {
						assert_true(got >= RELAY_MT_BYTES);
						raw = 1;
					}
					off = 0;
				}
			} else if (left > 0) {
				r = recv(f.outer[1], out + got,
				    left < n - got ? left : n - got, 0);
				if (r > 0) {
					got += (size_t)r;
					if (!raw)
						left -= (uint32_t)r;
				}
			}
			assert_int_equal(ev_run_once(0), 0);
		}
	}
	assert_int_equal(got, n);
	assert_memory_equal(in, out, n);
	assert_int_equal(raw, n > RELAY_MT_BYTES);
	/* Link to client, in chunks of odd sizes. */
	for (sent = 0; sent < back; sent += 65537 < back - sent ? 65537 :
	    back - sent)
		send_chunk(f.outer[1], in + sent,
		    (uint32_t)(65537 < back - sent ? 65537 : back - sent));
	assert_int_equal(recv_n(f.outer[0], out, back), back);
	assert_memory_equal(in, out, back);
	assert_int_equal(shutdown(f.outer[0], SHUT_WR), 0);
	if (raw)
		assert_int_equal(recv_n(f.outer[1], h, 4), 0);	/* a FIN */
	else {
		assert_int_equal(recv_n(f.outer[1], h, 4), 4);
		assert_memory_equal(h, "\0\0\0\0", 4);
	}
	send_chunk(f.outer[1], NULL, 0);
	LOOP_UNTIL(f.done_calls == 1);
	assert_int_equal(f.done_err, 0);
	assert_int_equal(f.link_fd == -1, raw);
	if (f.link_fd != -1)
		close(f.link_fd);
	fixture_close(&f);
	free(in);
	free(out);
	relay_splice = 1;
}

static void
test_framed_bulk_spliced(void **state)
{
	(void)state;
	framed_bulk(1, BULK / 4);
}

static void
test_framed_bulk_goes_raw(void **state)
{
	(void)state;
	framed_bulk(1, BULK);
}

static void
test_framed_bulk_copied(void **state)
{
	(void)state;
	framed_bulk(0, BULK / 4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_stays_on_main),
		cmocka_unit_test(test_bulk_moves_and_ends_on_main),
		cmocka_unit_test(test_free_while_in_thread),
		cmocka_unit_test(test_free_after_end_before_done),
		cmocka_unit_test(test_framed_roundtrip_and_reuse),
		cmocka_unit_test(test_framed_fin_between_chunks),
		cmocka_unit_test(test_framed_fin_inside_chunk),
		cmocka_unit_test(test_framed_hostile_length),
		cmocka_unit_test(test_framed_not_kept_ends_with_fin),
		cmocka_unit_test(test_framed_bulk_spliced),
		cmocka_unit_test(test_framed_bulk_copied),
		cmocka_unit_test(test_framed_bulk_goes_raw),
	};

	main_thread = pthread_self();
	if (ev_init() == -1 || relay_threads(2) == -1)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
