/* test_hosock.c - the hand-over socket (hosock.h): what a process takes
 * from another (every step needs what it needs, descriptors only where
 * announced, only listening TCP sockets), where it looks (a directory
 * nobody else may write; nobody there means a fresh start) and whom it
 * takes it from (the service's user or root); while draining, what it
 * tells the next process and when it may exit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/hosock.h"
#include "common/log.h"

/* The encoded frame of m in buf; its length. */
static size_t
enc(const struct msg *m, uint8_t *buf, size_t max)
{
	struct buf b = { 0 };
	size_t n;

	assert_int_equal(msg_encode(m, &b, max), 0);
	n = buf_len(&b);
	memcpy(buf, b.data, n);
	buf_free(&b);
	return n;
}

static void
step(struct msg *m, uint8_t s)
{
	msg_init(m, FT_HANDOVER);
	msg_set_int(m, FA_HO_STEP, s);
}

static int
check(const struct msg *m, size_t nfds, const char **why)
{
	uint8_t p[HOSOCK_MSG_MAX];
	struct msg d;
	size_t n = enc(m, p, sizeof(p));

	*why = NULL;
	return hosock_check(p, n, nfds, &d, why);
}

/* Each step without what it needs is refused; with it, taken. */
static void
test_steps_need(void **state)
{
	struct msg m;
	const char *why;

	(void)state;
	step(&m, HO_HELLO);
	assert_int_equal(check(&m, 0, &why), -1);
	assert_string_equal(why, "hand-over step without what it needs");
	msg_set_int(&m, FA_VERSION, 1);
	assert_int_equal(check(&m, 0, &why), 0);

	step(&m, HO_OFFERED);
	assert_int_equal(check(&m, 0, &why), -1);
	msg_set_int(&m, FA_COUNT, 0);
	assert_int_equal(check(&m, 0, &why), 0);

	step(&m, HO_STATUS);
	assert_int_equal(check(&m, 0, &why), -1);
	msg_set_int(&m, FA_COUNT, 5);
	assert_int_equal(check(&m, 0, &why), 0);

	step(&m, HO_REFUSED);
	assert_int_equal(check(&m, 0, &why), -1);
	msg_set_str(&m, FA_TEXT, "no");
	assert_int_equal(check(&m, 0, &why), 0);

	step(&m, HO_FTP_END);
	assert_int_equal(check(&m, 0, &why), -1);
	msg_set_int(&m, FA_FTP_CTL, 7);
	assert_int_equal(check(&m, 0, &why), 0);

	step(&m, HO_TAKEN);
	assert_int_equal(check(&m, 0, &why), 0);
	step(&m, HO_RELEASE);
	assert_int_equal(check(&m, 0, &why), 0);
	step(&m, HO_WITHDRAWN);
	assert_int_equal(check(&m, 0, &why), 0);
}

/* An FTP record: id, service, client and agent; a passive range with
 * both ends, in order, or none. */
static void
test_ftp_record(void **state)
{
	struct msg m;
	const char *why;

	(void)state;
	step(&m, HO_FTP);
	msg_set_int(&m, FA_FTP_CTL, 41);
	msg_set_str(&m, FA_SERVICE, "ftp");
	msg_set_str(&m, FA_CLIENT_ADDR, "192.0.2.7");
	assert_int_equal(check(&m, 0, &why), -1);	/* no agent */
	msg_set_str(&m, FA_NAME, "in-1");
	assert_int_equal(check(&m, 0, &why), 0);
	msg_set_int(&m, FA_PASV_MIN, 50000);
	assert_int_equal(check(&m, 0, &why), -1);
	assert_string_equal(why, "a passive range without both ends");
	msg_set_int(&m, FA_PASV_MAX, 49999);
	assert_int_equal(check(&m, 0, &why), -1);
	assert_string_equal(why, "a passive range that ends before it starts");
	msg_set_int(&m, FA_PASV_MAX, 50099);
	assert_int_equal(check(&m, 0, &why), 0);
}

/* Descriptors come only with LISTENERS, exactly as many as it says. */
static void
test_descriptors_announced(void **state)
{
	struct msg m;
	const char *why;

	(void)state;
	step(&m, HO_LISTENERS);
	msg_set_int(&m, FA_COUNT, 3);
	assert_int_equal(check(&m, 3, &why), 0);
	assert_int_equal(check(&m, 2, &why), -1);
	assert_string_equal(why, "descriptors that the message does not announce");
	assert_int_equal(check(&m, 4, &why), -1);
	assert_int_equal(check(&m, 0, &why), -1);
	step(&m, HO_HELLO);
	msg_set_int(&m, FA_VERSION, 1);
	assert_int_equal(check(&m, 1, &why), -1);
	step(&m, HO_TAKEN);
	assert_int_equal(check(&m, 1, &why), -1);
}

/* Not a HANDOVER frame, a broken one, bytes after it. */
static void
test_not_handover(void **state)
{
	uint8_t p[HOSOCK_MSG_MAX];
	struct msg m, d;
	const char *why;
	size_t n;

	(void)state;
	msg_init(&m, FT_PING);
	msg_set_int(&m, FA_NONCE, 1);
	n = enc(&m, p, sizeof(p));
	assert_int_equal(hosock_check(p, n, 0, &d, &why), -1);
	assert_string_equal(why, "not a HANDOVER frame");
	step(&m, HO_TAKEN);
	n = enc(&m, p, sizeof(p));
	assert_int_equal(hosock_check(p, n - 1, 0, &d, &why), -1);
	p[n] = 0;
	assert_int_equal(hosock_check(p, n + 1, 0, &d, &why), -1);
	assert_int_equal(hosock_check(p, 0, 0, &d, &why), -1);
}

static int
tcp_listener(void)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd != -1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	return fd;
}

/* Listeners cross with their addresses; anything else is not taken;
 * a message that does not check closes what came with it. */
static void
test_send_recv(void **state)
{
	int sv[2], fds[HOSOCK_FDS_MAX], out[2], pfd[2];
	struct net_addr a, b;
	struct msg m;
	const char *why;
	size_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	assert_int_equal(hosock_recv(sv[1], &m, fds, &n, 0, &why), -2);
	out[0] = tcp_listener();
	out[1] = tcp_listener();
	step(&m, HO_LISTENERS);
	msg_set_int(&m, FA_COUNT, 2);
	assert_int_equal(hosock_send(sv[0], &m, out, 2), 0);
	assert_int_equal(hosock_recv(sv[1], &m, fds, &n, 1000, &why), 1);
	assert_int_equal(n, 2);
	assert_int_equal(hosock_listener(fds[0], &a), 0);
	assert_int_equal(hosock_listener(out[0], &b), 0);
	assert_true(hosock_same(&a, &b));
	assert_int_equal(hosock_listener(fds[1], &a), 0);
	assert_false(hosock_same(&a, &b));
	close(fds[0]);
	close(fds[1]);

	/* A pipe is no listener; neither is a socket that does not listen. */
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(hosock_listener(pfd[0], &a), -1);
	assert_int_equal(hosock_listener(sv[0], &a), -1);

	/* COUNT 3 with 2 descriptors: refused, and what came is closed. */
	msg_set_int(&m, FA_COUNT, 3);
	assert_int_equal(hosock_send(sv[0], &m, out, 2), 0);
	assert_int_equal(hosock_recv(sv[1], &m, fds, &n, 1000, &why), -1);
	assert_int_equal(n, 0);
	assert_string_equal(why, "descriptors that the message does not announce");
	/* The peer's end closed: 0. */
	close(sv[0]);
	assert_int_equal(hosock_recv(sv[1], &m, fds, &n, 1000, &why), 0);
	close(sv[1]);
	close(out[0]);
	close(out[1]);
	close(pfd[0]);
	close(pfd[1]);
}

/* A message larger than any that is sent is cut by the kernel, and
 * refused rather than read in part. */
static void
test_too_long(void **state)
{
	static uint8_t big[HOSOCK_MSG_MAX + 100];
	int sv[2], fds[HOSOCK_FDS_MAX];
	struct msg m;
	const char *why;
	size_t n;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	assert_int_equal(send(sv[0], big, sizeof(big), 0), (ssize_t)sizeof(big));
	assert_int_equal(hosock_recv(sv[1], &m, fds, &n, 1000, &why), -1);
	assert_string_equal(why, "message or descriptors cut short");
	close(sv[0]);
	close(sv[1]);
}

/* Listen, publish, connect; nobody at the path, or a socket whose
 * process is gone: start afresh (0); an unsafe directory: -1. */
static void
test_paths(void **state)
{
	char dir[] = "/tmp/hosock-XXXXXX", path[256], err[256];
	int lfd, fd, old;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ho.sock", dir);
	assert_int_equal(hosock_connect(path, geteuid(), &fd, err,
	    sizeof(err)), 0);
	assert_int_equal(fd, -1);
	lfd = hosock_listen(path, err, sizeof(err));
	assert_true(lfd != -1);
	/* Bound under its temporary name only: nobody finds it yet. */
	assert_int_equal(hosock_connect(path, geteuid(), &fd, err,
	    sizeof(err)), 0);
	assert_int_equal(hosock_publish(path, err, sizeof(err)), 0);
	assert_int_equal(hosock_connect(path, geteuid(), &fd, err,
	    sizeof(err)), 1);
	close(fd);
	close(lfd);
	/* Its socket file is left: refused, so a fresh start. */
	assert_int_equal(hosock_connect(path, geteuid(), &fd, err,
	    sizeof(err)), 0);
	/* A directory others may write: refused with why. */
	old = chmod(dir, 0777);
	assert_int_equal(old, 0);
	assert_int_equal(hosock_connect(path, geteuid(), &fd, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "writable by nobody else"));
	assert_int_equal(chmod(dir, 0700), 0);
	/* Owned by another user who is not root: refused. */
	if (geteuid() == 0) {
		assert_int_equal(chown(dir, 65534, 65534), 0);
		assert_int_equal(hosock_connect(path, 0, &fd, err,
		    sizeof(err)), -1);
		assert_int_equal(chown(dir, 0, 0), 0);
	}
	/* Too long for a Unix socket. */
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(hosock_connect(path, geteuid(), &fd, err,
	    sizeof(err)), -1);
	assert_int_equal(hosock_listen(path, err, sizeof(err)), -1);
	snprintf(path, sizeof(path), "%s/ho.sock", dir);
	(void)unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

/* A process of another user (not root) is refused by name; our own
 * uid, and root, are taken. */
static void
test_peer_uid(void **state)
{
	char dir[] = "/tmp/hosock-XXXXXX", path[256], err[256];
	struct sockaddr_un sun;
	int lfd, fd, st;
	pid_t pid, peer;

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/ho.sock", dir);
	lfd = hosock_listen(path, err, sizeof(err));
	assert_true(lfd != -1);
	assert_int_equal(hosock_publish(path, err, sizeof(err)), 0);
	assert_int_equal(chmod(path, 0666), 0);
	if ((pid = fork()) == 0) {
		if (setresgid(65534, 65534, 65534) == -1 ||
		    setresuid(65534, 65534, 65534) == -1)
			_exit(2);
		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		memcpy(sun.sun_path, path, strlen(path) + 1);
		fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		_exit(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0 ?
		    0 : 3);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(WEXITSTATUS(st), 0);
	while ((fd = accept(lfd, NULL, NULL)) == -1 && errno == EAGAIN)
		usleep(1000);
	assert_int_equal(hosock_peer(fd, 0, &peer, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "runs as uid 65534, not as uid 0 or root"));
	assert_int_equal(hosock_peer(fd, 65534, &peer, err, sizeof(err)), 0);
	assert_int_equal(peer, pid);
	close(fd);
	close(lfd);
	(void)unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

/* In a child: take over from path; the two listeners offered must be
 * claimable by their addresses a and b, the session id come along. */
static int
child_take(const char *path, const struct net_addr *a,
    const struct net_addr *b, const char *want_err)
{
	char err[256];
	struct net_addr u;
	uint64_t next = 0;
	pid_t pid;
	int fd, rc;

	rc = hosock_take(path, geteuid(), &fd, &pid, &next, err, sizeof(err));
	if (want_err != NULL)
		return rc == -1 && strstr(err, want_err) != NULL ? 0 : 10;
	if (rc != 1 || next != 42 || pid != getppid())
		return 11;
	if (hosock_claim(b) == -1 || hosock_claim(b) != -1)
		return 12;
	if (hosock_unclaimed(&u) == -1 || !hosock_same(&u, a) ||
	    hosock_unclaimed(&u) != -1)
		return 13;
	return 0;
}

/* The whole exchange between two processes: HELLO, the listeners and
 * OFFERED; and a refusal, with why, when the running one is busy. */
static void
test_take_offer(void **state)
{
	char dir[] = "/tmp/hosock-XXXXXX", path[256], err[256];
	struct hosock_fds l = { NULL, 0, 0, 0 };
	struct net_addr a, b;
	struct msg *m;
	const char *why;
	int lfd, fd, out[2], st, rc, round;
	struct pollfd pfd;
	pid_t pid, peer;

	(void)state;
	assert_int_equal(ev_init(), 0);
	log_init("test_hosock", 0);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ho.sock", dir);
	lfd = hosock_listen(path, err, sizeof(err));
	assert_true(lfd != -1);
	assert_int_equal(hosock_publish(path, err, sizeof(err)), 0);
	out[0] = tcp_listener();
	out[1] = tcp_listener();
	assert_int_equal(hosock_listener(out[0], &a), 0);
	assert_int_equal(hosock_listener(out[1], &b), 0);
	for (round = 0; round < 2; round++) {
		if ((pid = fork()) == 0)
			_exit(child_take(path, &a, &b, round ? "busy here" : NULL));
		pfd.fd = lfd;
		pfd.events = POLLIN;
		assert_int_equal(poll(&pfd, 1, 5000), 1);
		fd = hosock_accept(lfd, geteuid(), round ? "busy here" : NULL,
		    &peer);
		assert_true((fd == -1) == (round == 1));
		if (round == 0) {
			assert_int_equal(peer, pid);
			m = hosock_read(fd, 5000, &rc, &why);
			assert_non_null(m);
			assert_int_equal(m->ho_step, HO_HELLO);
			hosock_fds_add(out[0], &l);
			hosock_fds_add(out[1], &l);
			assert_int_equal(hosock_offer(fd, &l, 42), 0);
		} else {
			/* Refused: the loop reads its HELLO, then closes. */
			while (waitpid(pid, &st, WNOHANG) == 0)
				assert_int_equal(ev_run_once(50), 0);
		}
		if (round == 0)
			assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
		if (round == 0)
			close(fd);
	}
	close(out[0]);
	close(out[1]);
	close(lfd);
	(void)unlink(path);
	assert_int_equal(rmdir(dir), 0);
}

/* Draining: STATUS goes to the next process with the sessions left here
 * and behind, once a count changed and at most once a second; the drain
 * time-out falls due only past its end with sessions left; a process
 * exits only once nothing drains here or behind it. */
static void
test_drain(void **state)
{
	struct hosock_new n = { .lis.fd = -1, .io.fd = -1,
	    .status_sent = UINT64_MAX };
	struct hosock_old o = { .io.fd = -1, .sessions = 3, .procs = 2 };
	const char *why;
	char what[48];
	struct msg *m;
	int sv[2], rc;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
	n.io.fd = sv[0];
	assert_int_equal(hosock_tick(&n, &o, 5000, 4), 0);
	assert_null(hosock_read(sv[1], 0, &rc, &why));
	assert_int_equal(rc, -2);

	hosock_drain(&n, 5000, 0, what, sizeof(what));
	assert_string_equal(what, "no drain timeout");
	hosock_drain(&n, 5000, 60000, what, sizeof(what));
	assert_string_equal(what, "drain timeout 60 s");
	assert_int_equal(n.state, HOSOCK_DRAINING);

	assert_int_equal(hosock_tick(&n, &o, 5000, 4), 0);
	assert_non_null(m = hosock_read(sv[1], 0, &rc, &why));
	assert_int_equal(m->ho_step, HO_STATUS);
	assert_int_equal(m->count, 7);
	assert_int_equal(m->processes, 3);
	/* Changed within the second, or unchanged: nothing. */
	assert_int_equal(hosock_tick(&n, &o, 5999, 2), 0);
	assert_int_equal(hosock_tick(&n, &o, 7000, 4), 0);
	assert_null(hosock_read(sv[1], 0, &rc, &why));
	assert_int_equal(rc, -2);
	assert_int_equal(hosock_tick(&n, &o, 7000, 2), 0);
	assert_non_null(m = hosock_read(sv[1], 0, &rc, &why));
	assert_int_equal(m->count, 5);

	assert_int_equal(hosock_tick(&n, &o, 64999, 2), 0);
	assert_int_equal(hosock_tick(&n, &o, 65000, 0), 0);
	assert_int_equal(hosock_tick(&n, &o, 65000, 2), 1);

	assert_int_equal(hosock_drained(&n, &o, 1), 0);
	o.io.fd = sv[1];
	assert_int_equal(hosock_drained(&n, &o, 0), 0);
	o.io.fd = -1;
	assert_int_equal(hosock_drained(&n, &o, 0), 1);
	close(sv[0]);
	close(sv[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steps_need),
		cmocka_unit_test(test_ftp_record),
		cmocka_unit_test(test_descriptors_announced),
		cmocka_unit_test(test_not_handover),
		cmocka_unit_test(test_send_recv),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_peer_uid),
		cmocka_unit_test(test_take_offer),
		cmocka_unit_test(test_drain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
