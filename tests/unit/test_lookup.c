/* test_lookup.c - the agent's name lookups off the event loop (dial.h):
 * answers come back through the loop, errors are reported, a cancelled
 * lookup never calls back, and no more than BG_MAX run at once (bg.h).
 * A unit test sends nothing to a DNS server: addresses, and a name whose
 * port fails first. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "agent/bg.h"
#include "agent/dial.h"
#include "common/ev.h"

struct answer {
	int		 calls;
	int		 ok;
	struct net_addr	 a;
	char		 err[256];
};

static void
got(void *arg, const struct net_addr *a, const char *err)
{
	struct answer *r = arg;

	r->calls++;
	r->ok = a != NULL;
	if (a != NULL)
		r->a = *a;
	else
		snprintf(r->err, sizeof(r->err), "%s", err);
}

/* Run the loop until every lookup came back (a generous deadline). */
static void
drain(void)
{
	int turns;

	for (turns = 0; bg_pending() > 0 && turns < 300; turns++)
		ev_run_once(100);
	assert_int_equal(bg_pending(), 0);
}

static void
test_answers(void **state)
{
	struct answer r4 = { 0 }, r6 = { 0 }, bad = { 0 }, named = { 0 };
	const struct sockaddr_in *s4;
	const struct sockaddr_in6 *s6;

	(void)state;
	assert_non_null(dial_lookup("127.0.0.1", "7000", got, &r4));
	assert_non_null(dial_lookup("::1", "22", got, &r6));
	assert_non_null(dial_lookup("127.0.0.1", "not-a-port", got, &bad));
	/* A name goes to a thread; a port that is not a number fails there
	 * before any DNS server is asked. */
	assert_non_null(dial_lookup("edge.invalid", "x", got, &named));
	/* Never from the call itself. */
	assert_int_equal(r4.calls + r6.calls + bad.calls + named.calls, 0);
	drain();
	assert_int_equal(r4.calls, 1);
	assert_true(r4.ok);
	s4 = (const struct sockaddr_in *)(const void *)&r4.a.ss;
	assert_int_equal(s4->sin_family, AF_INET);
	assert_int_equal(ntohs(s4->sin_port), 7000);
	assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(r6.calls, 1);
	assert_true(r6.ok);
	s6 = (const struct sockaddr_in6 *)(const void *)&r6.a.ss;
	assert_int_equal(s6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(s6->sin6_port), 22);
	assert_int_equal(bad.calls, 1);
	assert_false(bad.ok);
	assert_non_null(strstr(bad.err, "127.0.0.1:not-a-port"));
	assert_int_equal(named.calls, 1);
	assert_false(named.ok);
	assert_non_null(strstr(named.err, "edge.invalid:x"));
}

static void
test_cancelled_never_calls_back(void **state)
{
	struct answer r = { 0 }, kept = { 0 };
	struct dial_lookup *l;

	(void)state;
	assert_non_null(l = dial_lookup("127.0.0.1", "1", got, &r));
	assert_non_null(dial_lookup("127.0.0.1", "2", got, &kept));
	dial_lookup_cancel(l);
	dial_lookup_cancel(NULL);
	drain();
	assert_int_equal(r.calls, 0);
	assert_int_equal(kept.calls, 1);
}

static void
test_bounded(void **state)
{
	static struct answer r[BG_MAX + 1];
	int i;

	(void)state;
	memset(r, 0, sizeof(r));
	/* The loop does not run meanwhile: none has come back yet. */
	for (i = 0; i < BG_MAX; i++)
		assert_non_null(dial_lookup("127.0.0.1", "9", got, &r[i]));
	errno = 0;
	assert_null(dial_lookup("127.0.0.1", "9", got, &r[i]));
	assert_int_equal(errno, EBUSY);
	drain();
	for (i = 0; i < BG_MAX; i++)
		assert_int_equal(r[i].calls, 1);
	assert_int_equal(r[BG_MAX].calls, 0);
	/* Room again. */
	assert_non_null(dial_lookup("127.0.0.1", "9", got, &r[0]));
	drain();
	assert_int_equal(r[0].calls, 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_cancelled_never_calls_back),
		cmocka_unit_test(test_bounded),
	};

	if (ev_init() == -1)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
