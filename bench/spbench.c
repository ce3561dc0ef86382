/*
 * spbench - the load generator and echo backend for bench/run.
 *
 *   spbench echo ADDR PORT
 *       An epoll echo server: every byte read is written back, with
 *       back-pressure (a connection is not read while its echo is pending).
 *       Prints "listening" once bound.
 *   spbench latency ADDR PORT COUNT SIZE
 *       COUNT sequential sessions: connect, send SIZE bytes, read their echo,
 *       close. Prints one line per session, "s MICROSECONDS" (socket() to the
 *       last byte of the reply), then "end ok N errors E mismatch M".
 *   spbench rate ADDR PORT CONC SECONDS SIZE
 *       CONC sessions in flight for SECONDS; prints one JSON object with the
 *       sessions completed, errors and content mismatches.
 *   spbench hold ADDR PORT COUNT SIZE INFLIGHT TIMEOUT
 *       Opens COUNT sessions (at most INFLIGHT being set up at once), each
 *       proven end to end by one echo, and keeps them open and idle. Prints
 *       "held K failed F mismatch M" when all are set up (or TIMEOUT
 *       seconds passed), then waits for stdin to close, prints
 *       "dropped D" (held sessions the other side closed meanwhile) and
 *       closes them all.
 *
 * Every request carries bytes derived from a per-session counter, and every
 * reply is compared with what was sent: a relay that changes, loses or mixes
 * up bytes shows as a mismatch, never as a fast session.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQ_MAX   4096
#define ECHO_BUF  16384
#define SRC_ADDRS 8     /* rate: spread sources over 127.0.0.1-8 (ports) */

static struct sockaddr_in target;

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
die(const char *what)
{
	fprintf(stderr, "spbench: %s: %s\n", what, strerror(errno));
	exit(2);
}

static long
arg_num(const char *s, long lo, long hi, const char *name)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "spbench: %s: want %ld..%ld\n", name, lo, hi);
		exit(2);
	}
	return v;
}

static void
set_target(const char *addr, const char *port)
{
	memset(&target, 0, sizeof(target));
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)arg_num(port, 1, 65535, "port"));
	if (inet_pton(AF_INET, addr, &target.sin_addr) != 1) {
		fprintf(stderr, "spbench: %s: not an IPv4 address\n", addr);
		exit(2);
	}
}

/* Room for n descriptors and some: root may raise the hard limit when it
 * holds CAP_SYS_RESOURCE; otherwise take the hard limit and say so. */
static void
want_files(rlim_t n)
{
	struct rlimit rl, want;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		die("getrlimit");
	if (rl.rlim_cur >= n + 64)
		return;
	want.rlim_cur = n + 64;
	want.rlim_max = rl.rlim_max < want.rlim_cur ? want.rlim_cur : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &want) == 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		die("setrlimit RLIMIT_NOFILE");
	fprintf(stderr, "spbench: descriptor limit %llu (wanted %llu)\n",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)want.rlim_cur);
}

/* The request of session `seq`: SIZE bytes from a xorshift seeded by seq. */
static void
fill_req(unsigned char *p, size_t n, uint64_t seq)
{
	uint64_t x = seq * 0x9e3779b97f4a7c15u + 0x632be59bd9b4e019u;
	size_t i;

	for (i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x >> 24);
	}
}

static int
new_socket(int nonblock, int src)
{
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC |
	    (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd == -1)
		return -1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (src > 1) {
		/* A second loopback source address doubles the ephemeral
		 * ports; the port is still chosen at connect() time. */
		struct sockaddr_in sa;

		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)src);
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* ---------------------------------------------------------------- echo */

struct econn {
	int fd;
	int eof;
	size_t len, off;
	unsigned char buf[ECHO_BUF];
};

static void
echo_events(int ep, struct econn *c, uint32_t ev)
{
	struct epoll_event e;

	e.events = ev;
	e.data.ptr = c;
	(void)epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void
echo_close(struct econn *c)
{
	close(c->fd);
	free(c);
}

/* Move what can move without blocking; 0 keep, -1 closed. */
static int
echo_pump(int ep, struct econn *c)
{
	ssize_t n;

	for (;;) {
		while (c->off < c->len) {
			n = write(c->fd, c->buf + c->off, c->len - c->off);
			if (n == -1) {
				if (errno == EAGAIN) {
					echo_events(ep, c, EPOLLOUT);
					return 0;
				}
				if (errno == EINTR)
					continue;
				echo_close(c);
				return -1;
			}
			c->off += (size_t)n;
		}
		c->off = c->len = 0;
		if (c->eof) {
			echo_close(c);
			return -1;
		}
		n = read(c->fd, c->buf, sizeof(c->buf));
		if (n == -1) {
			if (errno == EAGAIN) {
				echo_events(ep, c, EPOLLIN);
				return 0;
			}
			if (errno == EINTR)
				continue;
			echo_close(c);
			return -1;
		}
		if (n == 0)
			c->eof = 1;
		c->len = (size_t)n;
	}
}

static int
cmd_echo(int argc, char **argv)
{
	struct epoll_event ev[256], e;
	int lfd, ep, one = 1, i, n;

	if (argc != 4)
		return 2;
	set_target(argv[2], argv[3]);
	want_files(200000);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd == -1)
		die("socket");
	(void)setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&target, sizeof(target)) == -1)
		die("bind");
	if (listen(lfd, 4096) == -1)
		die("listen");
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep == -1)
		die("epoll_create1");
	e.events = EPOLLIN;
	e.data.ptr = NULL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) == -1)
		die("epoll_ctl");
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		n = epoll_wait(ep, ev, 256, -1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++) {
			struct econn *c = ev[i].data.ptr;
			int fd;

			if (c != NULL) {
				(void)echo_pump(ep, c);
				continue;
			}
			while ((fd = accept4(lfd, NULL, NULL,
			    SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
				c = malloc(sizeof(*c));
				if (c == NULL) {
					close(fd);
					continue;
				}
				c->fd = fd;
				c->eof = 0;
				c->len = c->off = 0;
				(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY,
				    &one, sizeof(one));
				e.events = EPOLLIN;
				e.data.ptr = c;
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == -1)
					echo_close(c);
			}
		}
	}
}

/* ------------------------------------------------------------- latency */

/* One blocking session; 0 ok, 1 mismatch, -1 error. */
static int
one_session(uint64_t seq, size_t size)
{
	unsigned char req[REQ_MAX], rep[REQ_MAX];
	struct timeval tv = { 10, 0 };
	size_t got = 0;
	ssize_t n;
	int fd, rc = -1;

	fill_req(req, size, seq);
	fd = new_socket(0, 0);
	if (fd == -1)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&target, sizeof(target)) == -1)
		goto out;
	if (write(fd, req, size) != (ssize_t)size)
		goto out;
	while (got < size) {
		n = read(fd, rep + got, size - got);
		if (n <= 0)
			goto out;
		got += (size_t)n;
	}
	rc = memcmp(req, rep, size) == 0 ? 0 : 1;
out:
	close(fd);
	return rc;
}

static int
cmd_latency(int argc, char **argv)
{
	long count, i, ok = 0, errs = 0, bad = 0;
	size_t size;
	uint64_t seq, t0;
	int r;

	if (argc != 6)
		return 2;
	set_target(argv[2], argv[3]);
	count = arg_num(argv[4], 1, 10000000, "COUNT");
	size = (size_t)arg_num(argv[5], 1, REQ_MAX, "SIZE");
	seq = (uint64_t)getpid() << 32;
	for (i = 0; i < count; i++) {
		t0 = now_ns();
		r = one_session(seq++, size);
		if (r == 0) {
			printf("s %.1f\n", (double)(now_ns() - t0) / 1000.0);
			ok++;
		} else if (r == 1) {
			bad++;
		} else {
			errs++;
		}
	}
	printf("end ok %ld errors %ld mismatch %ld\n", ok, errs, bad);
	return 0;
}

/* ---------------------------------------------------- rate and hold */

enum { S_FREE, S_CONNECTING, S_READING, S_HELD };

struct slot {
	int fd;
	int state;
	size_t got;
	uint64_t seq;
};

struct load {
	int ep;
	size_t size;
	uint64_t next_seq;
	int nsrc, src;
	long done, errs, bad;
	unsigned char req[REQ_MAX];
};

static void
slot_close(struct load *l, struct slot *s)
{
	if (s->fd != -1) {
		(void)epoll_ctl(l->ep, EPOLL_CTL_DEL, s->fd, NULL);
		close(s->fd);
	}
	s->fd = -1;
	s->state = S_FREE;
}

/* Start a session in slot s; -1 when the socket could not be made. */
static int
slot_start(struct load *l, struct slot *s)
{
	struct epoll_event e;

	s->fd = new_socket(1, l->nsrc > 1 ? 1 + (l->src++ % l->nsrc) : 0);
	if (s->fd == -1) {
		l->errs++;
		return -1;
	}
	s->seq = l->next_seq++;
	s->got = 0;
	s->state = S_CONNECTING;
	if (connect(s->fd, (struct sockaddr *)&target, sizeof(target)) == -1 &&
	    errno != EINPROGRESS) {
		l->errs++;
		close(s->fd);
		s->fd = -1;
		s->state = S_FREE;
		return -1;
	}
	e.events = EPOLLOUT;
	e.data.ptr = s;
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, s->fd, &e) == -1)
		die("epoll_ctl");
	return 0;
}

/* Advance slot s after an event. Returns 1 when its echo is complete and
 * correct (the slot stays open), 0 when still in progress, -1 when it
 * failed (the slot is closed and counted). */
static int
slot_event(struct load *l, struct slot *s)
{
	unsigned char buf[REQ_MAX];
	struct epoll_event e;
	socklen_t len = sizeof(int);
	int err = 0;
	ssize_t n;

	if (s->state == S_CONNECTING) {
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 ||
		    err != 0)
			goto fail;
		fill_req(l->req, l->size, s->seq);
		if (write(s->fd, l->req, l->size) != (ssize_t)l->size)
			goto fail;
		s->state = S_READING;
		e.events = EPOLLIN;
		e.data.ptr = s;
		if (epoll_ctl(l->ep, EPOLL_CTL_MOD, s->fd, &e) == -1)
			die("epoll_ctl");
		return 0;
	}
	n = read(s->fd, buf, l->size - s->got);
	if (n == -1 && errno == EAGAIN)
		return 0;
	if (n <= 0)
		goto fail;
	fill_req(l->req, l->size, s->seq);
	if (memcmp(buf, l->req + s->got, (size_t)n) != 0) {
		l->bad++;
		slot_close(l, s);
		return -1;
	}
	s->got += (size_t)n;
	return s->got == l->size ? 1 : 0;
fail:
	l->errs++;
	slot_close(l, s);
	return -1;
}

static int
cmd_rate(int argc, char **argv)
{
	struct epoll_event ev[256];
	struct load l;
	struct slot *slots;
	long conc, secs, i;
	uint64_t t0, end, drain_end, elapsed;
	int n, k, inflight = 0;

	if (argc != 7)
		return 2;
	set_target(argv[2], argv[3]);
	conc = arg_num(argv[4], 1, 10000, "CONC");
	secs = arg_num(argv[5], 1, 3600, "SECONDS");
	memset(&l, 0, sizeof(l));
	l.size = (size_t)arg_num(argv[6], 1, REQ_MAX, "SIZE");
	l.nsrc = SRC_ADDRS;
	l.next_seq = (uint64_t)getpid() << 32;
	want_files((rlim_t)conc);
	l.ep = epoll_create1(EPOLL_CLOEXEC);
	if (l.ep == -1)
		die("epoll_create1");
	slots = calloc((size_t)conc, sizeof(*slots));
	if (slots == NULL)
		die("calloc");
	t0 = now_ns();
	end = t0 + (uint64_t)secs * 1000000000u;
	drain_end = end + 10 * 1000000000ull;
	for (i = 0; i < conc; i++) {
		slots[i].fd = -1;
		if (slot_start(&l, &slots[i]) == 0)
			inflight++;
	}
	while (inflight > 0) {
		uint64_t t = now_ns();

		if (t >= drain_end)
			break;
		n = epoll_wait(l.ep, ev, 256, 100);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		t = now_ns();
		for (k = 0; k < n; k++) {
			struct slot *s = ev[k].data.ptr;
			int r = slot_event(&l, s);

			if (r == 0)
				continue;
			if (r == 1) {
				if (t < end)
					l.done++;
				slot_close(&l, s);
			}
			inflight--;
			if (t < end && slot_start(&l, s) == 0)
				inflight++;
		}
		if (inflight == 0 && now_ns() < end) {
			/* every start failed: try again rather than spin out */
			for (i = 0; i < conc; i++)
				if (slots[i].state == S_FREE &&
				    slot_start(&l, &slots[i]) == 0)
					inflight++;
		}
	}
	elapsed = (end - t0);
	printf("{\"sessions\": %ld, \"seconds\": %.3f, \"per_second\": %.1f, "
	    "\"errors\": %ld, \"mismatch\": %ld, \"unfinished\": %d}\n",
	    l.done, (double)elapsed / 1e9,
	    (double)l.done / ((double)elapsed / 1e9), l.errs, l.bad, inflight);
	for (i = 0; i < conc; i++)
		if (slots[i].fd != -1)
			close(slots[i].fd);
	free(slots);
	close(l.ep);
	return 0;
}

static int
cmd_hold(int argc, char **argv)
{
	struct epoll_event ev[256], e;
	struct load l;
	struct slot *slots;
	long count, inflight_max, timeout, started = 0, held = 0, dropped = 0;
	long inflight = 0;
	uint64_t deadline;
	int n, k, waiting;

	if (argc != 8)
		return 2;
	set_target(argv[2], argv[3]);
	count = arg_num(argv[4], 1, 1000000, "COUNT");
	memset(&l, 0, sizeof(l));
	l.size = (size_t)arg_num(argv[5], 1, REQ_MAX, "SIZE");
	inflight_max = arg_num(argv[6], 1, 100000, "INFLIGHT");
	timeout = arg_num(argv[7], 1, 3600, "TIMEOUT");
	l.next_seq = (uint64_t)getpid() << 32;
	want_files((rlim_t)count);
	l.ep = epoll_create1(EPOLL_CLOEXEC);
	if (l.ep == -1)
		die("epoll_create1");
	slots = calloc((size_t)count, sizeof(*slots));
	if (slots == NULL)
		die("calloc");
	deadline = now_ns() + (uint64_t)timeout * 1000000000u;
	while (now_ns() < deadline) {
		while (inflight < inflight_max && started < count) {
			slots[started].fd = -1;
			if (slot_start(&l, &slots[started]) == 0)
				inflight++;
			started++;
		}
		if (inflight == 0)
			break;
		n = epoll_wait(l.ep, ev, 256, 100);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (k = 0; k < n; k++) {
			struct slot *s = ev[k].data.ptr;
			int r;

			if (s->state == S_HELD) {
				/* a held session woke: closed or reset */
				slot_close(&l, s);
				held--;
				dropped++;
				continue;
			}
			r = slot_event(&l, s);
			if (r == 0)
				continue;
			inflight--;
			if (r == 1) {
				s->state = S_HELD;
				held++;
				e.events = EPOLLIN | EPOLLRDHUP;
				e.data.ptr = s;
				(void)epoll_ctl(l.ep, EPOLL_CTL_MOD, s->fd, &e);
			}
		}
	}
	printf("held %ld failed %ld mismatch %ld dropped %ld\n", held,
	    count - held - l.bad - dropped, l.bad, dropped);
	fflush(stdout);

	/* Idle until told to let go (stdin closes), watching for drops. */
	e.events = EPOLLIN;
	e.data.ptr = NULL;
	if (epoll_ctl(l.ep, EPOLL_CTL_ADD, 0, &e) == -1)
		die("epoll_ctl stdin");
	waiting = 1;
	while (waiting) {
		n = epoll_wait(l.ep, ev, 256, -1);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (k = 0; k < n; k++) {
			struct slot *s = ev[k].data.ptr;
			char b[64];

			if (s == NULL) {
				if (read(0, b, sizeof(b)) <= 0)
					waiting = 0;
				continue;
			}
			if (s->state == S_HELD) {
				slot_close(&l, s);
				dropped++;
			} else if (s->fd != -1) {
				slot_close(&l, s);   /* late: still setting up */
			}
		}
	}
	printf("dropped %ld\n", dropped);
	fflush(stdout);
	for (k = 0; k < started; k++)
		if (slots[k].fd != -1)
			close(slots[k].fd);
	free(slots);
	close(l.ep);
	return 0;
}

int
main(int argc, char **argv)
{
	int rc = 2;

	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && strcmp(argv[1], "echo") == 0)
		rc = cmd_echo(argc, argv);
	else if (argc >= 2 && strcmp(argv[1], "latency") == 0)
		rc = cmd_latency(argc, argv);
	else if (argc >= 2 && strcmp(argv[1], "rate") == 0)
		rc = cmd_rate(argc, argv);
	else if (argc >= 2 && strcmp(argv[1], "hold") == 0)
		rc = cmd_hold(argc, argv);
	if (rc == 2)
		fprintf(stderr, "usage: spbench echo ADDR PORT | latency ADDR PORT "
		    "COUNT SIZE | rate ADDR PORT CONC SECONDS SIZE | hold ADDR "
		    "PORT COUNT SIZE INFLIGHT TIMEOUT\n");
	return rc;
}
