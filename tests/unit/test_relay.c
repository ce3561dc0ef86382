/* test_relay.c - relay threads (relay_mt.c): a bulk relay between two
 * plain sockets moves to a relay thread, ends there with done() on the
 * main thread, and can be taken back and freed at any point. Real TCP
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
fixture_start(struct fixture *f)
{
	int inner[2];

	memset(f, 0, sizeof(*f));
	tcp_pair(&f->outer[0], &inner[0]);
	tcp_pair(&inner[1], &f->outer[1]);
	assert_int_equal(relay_start(&f->r, inner[0], NULL, inner[1], NULL,
	    NULL, 0, on_done, f), 0);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_stays_on_main),
		cmocka_unit_test(test_bulk_moves_and_ends_on_main),
		cmocka_unit_test(test_free_while_in_thread),
		cmocka_unit_test(test_free_after_end_before_done),
	};

	main_thread = pthread_self();
	if (ev_init() == -1 || relay_threads(2) == -1)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
