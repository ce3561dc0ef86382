/* test_dial.c - the dialler: what it takes (dial_check, against hostile
 * requests), and a real dialler process, in its sandbox, spoken to on
 * its socket as a compromised relay process would: it refuses a
 * --dial-deny address however it is written, and only then connects
 * and hands the socket over. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "edge/edge_dial.h"

static struct dial_conf
conf_default(void)
{
	struct dial_conf c;
	char err[128];

	memset(&c, 0, sizeof(c));
	assert_int_equal(cidr_list_parse(DIAL_DENY_DEFAULT, &c.deny, err,
	    sizeof(err)), 0);
	return c;
}

static void
sa(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':') != NULL) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
}

static struct dial_req
req(int why, const char *host, uint16_t port)
{
	struct dial_req q;

	memset(&q, 0, sizeof(q));
	q.id = 7;
	q.why = (uint8_t)why;
	q.port = port;
	snprintf(q.host, sizeof(q.host), "%s", host);
	return q;
}

static int
takes(const struct dial_conf *c, const struct dial_req *q, char *why)
{
	return dial_check(c, q, sizeof(*q), why, 400);
}

static int
denied(const struct dial_conf *c, const char *ip)
{
	struct sockaddr_storage ss;

	sa(&ss, ip, 443);
	return dial_denied(c, (struct sockaddr *)&ss);
}

static void
test_deny_default(void **state)
{
	static const char *const in[] = { "127.0.0.1", "127.9.9.9",
	    "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
	    "169.254.0.9", "100.64.0.1", "100.127.255.254", "0.0.0.0",
	    "0.1.2.3", "::", "::1", "fe80::1", "febf::1", "fc00::1",
	    "fdff::9", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
	    "::ffff:192.168.0.1", "::ffff:169.254.1.1" };
	static const char *const out[] = { "192.0.2.1", "198.51.100.7",
	    "203.0.113.9", "172.32.0.1", "100.128.0.1", "11.0.0.1",
	    "2001:db8::1", "::ffff:192.0.2.1", "fec0::1", "::2" };
	struct dial_conf c = conf_default();
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		assert_true(denied(&c, in[i]));
	for (i = 0; i < sizeof(out) / sizeof(out[0]); i++)
		assert_false(denied(&c, out[i]));
	/* An empty list (--dial-deny none) denies nothing. */
	c.deny.n = 0;
	assert_false(denied(&c, "127.0.0.1"));
}

static void
test_hostile_requests(void **state)
{
	struct dial_conf c = conf_default();
	struct dial_req q;
	char why[400];

	(void)state;
	q = req(DW_ACTIVE_FTP, "192.0.2.1", 4000);
	assert_int_equal(takes(&c, &q, why), 0);
	/* The wrong size, whatever it holds. */
	assert_int_equal(dial_check(&c, &q, sizeof(q) - 1, why, 400), -1);
	assert_string_equal(why, "malformed request");
	assert_int_equal(dial_check(&c, &q, sizeof(q) + 1, why, 400), -1);
	assert_int_equal(dial_check(&c, &q, 0, why, 400), -1);
	/* Id 0, a reason it does not know, port 0. */
	q.id = 0;
	assert_int_equal(takes(&c, &q, why), -1);
	q = req(9, "192.0.2.1", 4000);
	assert_int_equal(takes(&c, &q, why), -1);
	q = req(0, "192.0.2.1", 4000);
	assert_int_equal(takes(&c, &q, why), -1);
	q = req(DW_ACTIVE_FTP, "192.0.2.1", 0);
	assert_int_equal(takes(&c, &q, why), -1);
	/* A host that does not end, or is no host; a policy that does not
	 * end. */
	q = req(DW_ACTIVE_FTP, "192.0.2.1", 4000);
	memset(q.host, '1', sizeof(q.host));
	assert_int_equal(takes(&c, &q, why), -1);
	q = req(DW_ACTIVE_FTP, "192.0.2.1;rm", 4000);
	assert_int_equal(takes(&c, &q, why), -1);
	q = req(DW_ACTIVE_FTP, "", 4000);
	assert_int_equal(takes(&c, &q, why), -1);
	q = req(DW_ACTIVE_FTP, "192.0.2.1", 4000);
	memset(q.policy, '*', sizeof(q.policy));
	assert_int_equal(takes(&c, &q, why), -1);
	/* A source that is not of the internet's families. */
	q = req(DW_ACTIVE_FTP, "192.0.2.1", 4000);
	q.src.ss_family = AF_UNIX;
	assert_int_equal(takes(&c, &q, why), -1);
	/* Active FTP to a port below 1024: a bounce to a service. */
	q = req(DW_ACTIVE_FTP, "192.0.2.1", 1023);
	assert_int_equal(takes(&c, &q, why), -1);
	assert_non_null(strstr(why, "from 1024"));
	q = req(DW_ACTIVE_FTP, "192.0.2.1", 25);
	assert_int_equal(takes(&c, &q, why), -1);
	/* Outbound without --allow-outbound: not at all. */
	q = req(DW_OUTBOUND, "files.example.com", 443);
	assert_int_equal(takes(&c, &q, why), -1);
	assert_non_null(strstr(why, "--allow-outbound"));
	c.outbound = 1;
	assert_int_equal(takes(&c, &q, why), 0);
	/* Outbound from a chosen source: no. */
	sa(&q.src, "0.0.0.0", 0);
	assert_int_equal(takes(&c, &q, why), -1);
	/* Source port 20: with --active-ftp-port20 only; no other. */
	q = req(DW_ACTIVE_FTP, "192.0.2.1", 4000);
	sa(&q.src, "198.51.100.1", 20);
	assert_int_equal(takes(&c, &q, why), -1);
	assert_non_null(strstr(why, "source port"));
	c.port20 = 1;
	assert_int_equal(takes(&c, &q, why), 0);
	sa(&q.src, "2001:db8::1", 20);
	assert_int_equal(takes(&c, &q, why), 0);
	sa(&q.src, "198.51.100.1", 22);
	assert_int_equal(takes(&c, &q, why), -1);
	sa(&q.src, "198.51.100.1", 0);
	assert_int_equal(takes(&c, &q, why), 0);
}

/* --- a real dialler ------------------------------------------------------- */

static int
listener(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Send q (n bytes) and wait for the answer: *fd the socket that came
 * with it, or -1. */
static struct dial_rep
ask(int sock, const void *q, size_t n, int *fd)
{
	union {
		struct cmsghdr	 h;
		char		 b[CMSG_SPACE(sizeof(int))];
	} cm;
	struct dial_rep r;
	struct iovec iov = { &r, sizeof(r) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = &cm, .msg_controllen = sizeof(cm) };
	struct pollfd pfd = { sock, POLLIN, 0 };
	struct cmsghdr *c;

	assert_int_equal(send(sock, q, n, 0), (ssize_t)n);
	/* A generous bound: the dialler answers at once or is broken. */
	assert_int_equal(poll(&pfd, 1, 20000), 1);
	memset(&r, 0, sizeof(r));
	assert_int_equal(recvmsg(sock, &mh, 0), (ssize_t)sizeof(r));
	*fd = -1;
	if ((c = CMSG_FIRSTHDR(&mh)) != NULL && c->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(c), sizeof(*fd));
	return r;
}

static void
stop(int sock)
{
	int st;

	close(sock);
	/* It ends when its socket does. */
	assert_true(waitpid(-1, &st, 0) > 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void
test_dialler_refuses_denied(void **state)
{
	struct sandbox_conf sc;
	struct dial_conf c = conf_default();
	struct dial_req q;
	struct dial_rep r;
	char err[256];
	uint16_t port;
	int sock, lfd, fd;

	(void)state;
	memset(&sc, 0, sizeof(sc));	/* its real sandbox */
	c.outbound = sc.outbound = 1;	/* the resolver may read its files */
	lfd = listener(&port);
	c.sc = &sc;
	sock = dial_fork(&c, err, sizeof(err));
	assert_true(sock >= 0);
	/* The relay process asks for the inside directly: loopback, as
	 * IPv4 and as IPv4-mapped IPv6, by name, for both reasons, with a
	 * policy that allows anything. */
	q = req(DW_ACTIVE_FTP, "127.0.0.1", port);
	r = ask(sock, &q, sizeof(q), &fd);
	assert_int_equal(r.id, 7);
	assert_int_equal(r.err, EACCES);
	assert_int_equal(fd, -1);
	snprintf(err, sizeof(err), "127.0.0.1:%u: in --dial-deny", port);
	assert_string_equal(r.text, err);
	q = req(DW_ACTIVE_FTP, "::ffff:127.0.0.1", port);
	q.id = 8;
	r = ask(sock, &q, sizeof(q), &fd);
	assert_int_equal(r.id, 8);
	assert_int_equal(r.err, EACCES);
	assert_non_null(strstr(r.text, "in --dial-deny"));
	q = req(DW_OUTBOUND, "127.0.0.1", port);
	snprintf(q.policy, sizeof(q.policy), "*:*, 127.0.0.0/8:*");
	r = ask(sock, &q, sizeof(q), &fd);
	assert_int_equal(r.err, EACCES);
	assert_non_null(strstr(r.text, "in --dial-deny"));
	q = req(DW_OUTBOUND, "localhost", port);
	snprintf(q.policy, sizeof(q.policy), "localhost:*, 127.0.0.0/8:*, "
	    "[::1]:*");
	r = ask(sock, &q, sizeof(q), &fd);
	assert_int_equal(r.err, EACCES);
	assert_int_equal(fd, -1);
	assert_non_null(strstr(r.text, "localhost resolves to"));
	assert_non_null(strstr(r.text, "in --dial-deny"));
	/* A malformed request: refused, with its id. */
	q.id = 9;
	r = ask(sock, &q, 16, &fd);
	assert_int_equal(r.id, 9);
	assert_int_equal(r.err, EACCES);
	assert_string_equal(r.text, "malformed request");
	/* Refused before any connect(): nothing reached the listener. */
	assert_int_equal(accept(lfd, NULL, NULL), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	stop(sock);
	close(lfd);
}

static void
test_dialler_connects_and_hands_over(void **state)
{
	struct sandbox_conf sc;
	struct dial_conf c;
	struct dial_req q;
	struct dial_rep r;
	struct pollfd pfd;
	char err[256], buf[8];
	uint16_t port;
	int sock, lfd, fd, afd;

	(void)state;
	memset(&sc, 0, sizeof(sc));
	memset(&c, 0, sizeof(c));	/* --dial-deny none */
	lfd = listener(&port);
	c.sc = &sc;
	sock = dial_fork(&c, err, sizeof(err));
	assert_true(sock >= 0);
	/* Without --allow-outbound: no outbound. */
	q = req(DW_OUTBOUND, "127.0.0.1", port);
	snprintf(q.policy, sizeof(q.policy), "127.0.0.1/32:*");
	r = ask(sock, &q, sizeof(q), &fd);
	assert_int_equal(r.err, EACCES);
	/* Active FTP takes numeric addresses only: no name is looked up. */
	q = req(DW_ACTIVE_FTP, "localhost", port);
	r = ask(sock, &q, sizeof(q), &fd);
	assert_int_equal(r.err, EHOSTUNREACH);
	assert_int_equal(fd, -1);
	/* Active FTP to a port from 1024, from the loopback address:
	 * connected, and the socket comes over, non-blocking; bytes pass
	 * through it. */
	q = req(DW_ACTIVE_FTP, "127.0.0.1", port);
	sa(&q.src, "127.0.0.1", 0);
	r = ask(sock, &q, sizeof(q), &fd);
	assert_int_equal(r.err, 0);
	assert_true(fd >= 0);
	pfd = (struct pollfd){ lfd, POLLIN, 0 };
	assert_int_equal(poll(&pfd, 1, 20000), 1);
	afd = accept(lfd, NULL, NULL);
	assert_true(afd >= 0);
	assert_int_equal(write(fd, "ping", 4), 4);
	assert_int_equal(read(afd, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(read(fd, buf, sizeof(buf)), -1);
	assert_int_equal(errno, EAGAIN);
	close(afd);
	close(fd);
	/* Nobody listens: refused, as the kernel said. */
	close(lfd);
	q = req(DW_ACTIVE_FTP, "127.0.0.1", port);
	r = ask(sock, &q, sizeof(q), &fd);
	assert_int_equal(r.err, ECONNREFUSED);
	assert_int_equal(fd, -1);
	stop(sock);
}

/* A connection that does not answer holds up no other: each request has
 * a worker of its own. The silent one is a listener whose queue is full
 * (Linux drops the SYNs it cannot queue, so that connect waits). */
static void
test_dialler_slow_connect_holds_up_no_other(void **state)
{
	struct sandbox_conf sc;
	struct dial_conf c;
	struct dial_req q;
	struct dial_rep r;
	struct sockaddr_in a = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char err[256];
	uint16_t full, open;
	int sock, lfull, lopen, filler, fd;

	(void)state;
	memset(&sc, 0, sizeof(sc));
	memset(&c, 0, sizeof(c));
	c.sc = &sc;
	lfull = listener(&full);
	assert_int_equal(listen(lfull, 0), 0);
	a.sin_port = htons(full);
	filler = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(filler, (struct sockaddr *)&a, sizeof(a)), 0);
	lopen = listener(&open);
	sock = dial_fork(&c, err, sizeof(err));
	assert_true(sock >= 0);
	q = req(DW_ACTIVE_FTP, "127.0.0.1", full);
	q.id = 1;
	assert_int_equal(send(sock, &q, sizeof(q), 0), (ssize_t)sizeof(q));
	q = req(DW_ACTIVE_FTP, "127.0.0.1", open);
	q.id = 2;
	r = ask(sock, &q, sizeof(q), &fd);
	assert_int_equal(r.id, 2);		/* the second, first */
	assert_int_equal(r.err, 0);
	close(fd);
	stop(sock);
	close(filler);
	close(lfull);
	close(lopen);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deny_default),
		cmocka_unit_test(test_hostile_requests),
		cmocka_unit_test(test_dialler_refuses_denied),
		cmocka_unit_test(test_dialler_connects_and_hands_over),
		cmocka_unit_test(test_dialler_slow_connect_holds_up_no_other),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
