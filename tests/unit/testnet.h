/* testnet.h - what the data-path tests (test_pump.c, test_mux.c) share:
 * loopback TCP pairs, and driving the event loop until a condition holds.
 *
 * Pumps end, and mux links flush, from the loop's settle hooks, which
 * ev_run_once runs after each callback; code a test calls directly
 * (pump_attach, mux_open, pump_fail) may leave work for them, so spin()
 * settles too. Nothing here sleeps blindly: every wait is a loop turn
 * that returns as soon as a socket is ready, bounded by a deadline.
 *
 * Include after cmocka.h: the helpers assert. */
#ifndef SP_TESTNET_H
#define SP_TESTNET_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <time.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/psock.h"

#define TN_DEADLINE_MS	20000

static inline uint64_t
tn_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void
tn_nonblock(int fd)
{
	assert_int_not_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK),
	    -1);
}

/* A connected TCP pair on 127.0.0.1, both ends non-blocking: *a
 * connected, *b accepted. */
static inline void
tn_tcp_pair(int *a, int *b)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int l;

	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_not_equal(l, -1);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_not_equal(*a, -1);
	assert_int_equal(connect(*a, (struct sockaddr *)&sin, sizeof(sin)), 0);
	*b = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_int_not_equal(*b, -1);
	close(l);
	tn_nonblock(*a);
	tn_nonblock(*b);
}

/* One turn of the loop (waiting at most 1 ms for a socket), the resets
 * that waited for their bytes to leave, and the settle hooks. */
static inline void
tn_spin(void)
{
	assert_int_equal(ev_run_once(1), 0);
	psock_tick(ev_now());
	ev_settle();
}

/* Spin until cond holds; fail the test if it does not within the
 * deadline. */
#define TN_UNTIL(cond) do {						\
	uint64_t tn_dl_ = tn_now() + TN_DEADLINE_MS;			\
	while (!(cond) && tn_now() < tn_dl_)				\
		tn_spin();						\
	if (!(cond))							\
		fail_msg("%s:%d: timed out waiting for %s", __FILE__,	\
		    __LINE__, #cond);					\
} while (0)

static inline void
tn_send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t dl = tn_now() + TN_DEADLINE_MS;
	ssize_t w;

	while (n > 0 && tn_now() < dl) {
		w = send(fd, b, n, MSG_NOSIGNAL);
		if (w == -1 && (errno == EAGAIN || errno == EINTR)) {
			tn_spin();
			continue;
		}
		assert_true(w > 0);
		b += w;
		n -= (size_t)w;
	}
	assert_int_equal(n, 0);
}

static inline void
tn_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t
tn_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

/* How a read of fd ended: what tn_recv_n saw after its bytes. */
#define TN_MORE		0	/* nothing yet (deadline) or n reached */
#define TN_EOF		1
#define TN_RESET	2	/* ECONNRESET (or EPIPE) */

/* Read up to n bytes from fd, spinning the loop, until n arrived, the
 * stream ended, or the deadline passed; *how says which (may be NULL).
 * Returns the bytes read. */
static inline size_t
tn_recv_n(int fd, void *p, size_t n, int *how)
{
	uint64_t dl = tn_now() + TN_DEADLINE_MS;
	size_t have = 0;
	ssize_t r;
	int h = TN_MORE;

	while (have < n && tn_now() < dl) {
		r = recv(fd, (uint8_t *)p + have, n - have, 0);
		if (r > 0) {
			have += (size_t)r;
			continue;
		}
		if (r == 0) {
			h = TN_EOF;
			break;
		}
		if (errno == ECONNRESET || errno == EPIPE) {
			h = TN_RESET;
			break;
		}
		if (errno != EAGAIN && errno != EINTR)
			fail_msg("recv: %s", strerror(errno));
		tn_spin();
	}
	if (how != NULL)
		*how = h;
	return have;
}

/* Read fd to its end: the bytes before it into p (at most n), and how it
 * ended (TN_EOF or TN_RESET; TN_MORE on the deadline, or when more than
 * n bytes came). */
static inline size_t
tn_recv_end(int fd, void *p, size_t n, int *how)
{
	uint8_t extra;
	size_t have = tn_recv_n(fd, p, n, how);

	if (*how == TN_MORE && have == n &&
	    tn_recv_n(fd, &extra, 1, how) == 1)
		*how = TN_MORE;
	return have;
}

/* Spin until the peer's kernel has taken every byte written to fd: a
 * reset discards what it has not. */
static inline void
tn_wait_sent(int fd)
{
	int q = -1;

	TN_UNTIL(ioctl(fd, SIOCOUTQ, &q) == 0 && q == 0);
}

/* Reset fd (SO_LINGER 0) and close it. */
static inline void
tn_reset(int fd)
{
	struct linger lg = { 1, 0 };

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg,
	    sizeof(lg)), 0);
	close(fd);
}

static inline uint8_t
tn_pattern(size_t i, int dir)
{
	return (uint8_t)((i * 31 + (i >> 12) + (size_t)dir * 7) & 0xff);
}

/* One direction of traffic: `total` bytes of tn_pattern(dir) the test
 * writes into `from` (then half-closes it) and reads back out of `to`,
 * checking each. */
struct tn_flow {
	int	 from, to, dir;
	size_t	 total, sent, got;
	int	 shut, eof, bad;
};

/* As much of fl as the sockets take now. */
static inline void
tn_flow_step(struct tn_flow *fl)
{
	uint8_t b[65536];
	size_t i, n;
	ssize_t k = -1;

	if (fl->sent < fl->total) {
		n = fl->total - fl->sent < sizeof(b) ? fl->total - fl->sent :
		    sizeof(b);
		for (i = 0; i < n; i++)
			b[i] = tn_pattern(fl->sent + i, fl->dir);
		k = send(fl->from, b, n, MSG_NOSIGNAL);
		if (k > 0)
			fl->sent += (size_t)k;
	} else if (!fl->shut) {
		assert_int_equal(shutdown(fl->from, SHUT_WR), 0);
		fl->shut = 1;
	}
	while (!fl->eof && (k = recv(fl->to, b, sizeof(b), 0)) > 0) {
		for (i = 0; i < (size_t)k; i++)
			if (b[i] != tn_pattern(fl->got + i, fl->dir))
				fl->bad = 1;
		fl->got += (size_t)k;
	}
	if (k == 0)
		fl->eof = 1;
}

#endif
