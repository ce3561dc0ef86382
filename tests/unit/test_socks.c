/* test_socks.c - SOCKS5 parsers against good and hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "agent/socks.h"

/* Every proper prefix of a valid message is "need more" (0). */
static void
prefixes_incomplete(const uint8_t *p, size_t n,
    int (*fn)(const uint8_t *, size_t, void *), void *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		assert_int_equal(fn(p, i, out), 0);
}

static int g_fn(const uint8_t *p, size_t n, void *o) { return socks_greeting(p, n, o); }
static int a_fn(const uint8_t *p, size_t n, void *o) { return socks_auth(p, n, o); }
static int r_fn(const uint8_t *p, size_t n, void *o) { return socks_request(p, n, o); }

static void
test_greeting(void **state)
{
	const uint8_t good[] = { 5, 2, 0, 2, 0xaa };	/* + a pipelined byte */
	const uint8_t only_gssapi[] = { 5, 1, 1 };
	struct socks_greeting g;

	(void)state;
	prefixes_incomplete(good, 4, g_fn, &g);
	assert_int_equal(socks_greeting(good, sizeof(good), &g), 4);
	assert_true(g.offers_none && g.offers_userpass);
	assert_int_equal(socks_greeting(only_gssapi, 3, &g), 3);
	assert_false(g.offers_none || g.offers_userpass);
}

static void
test_greeting_hostile(void **state)
{
	const uint8_t v4[] = { 4, 1, 0 };
	const uint8_t zero_methods[] = { 5, 0 };
	const uint8_t http[] = "GET / HTTP/1.1\r\n";
	uint8_t many[2 + 255];
	struct socks_greeting g;

	(void)state;
	assert_int_equal(socks_greeting(v4, sizeof(v4), &g), -1);
	assert_int_equal(socks_greeting(zero_methods, 2, &g), -1);
	assert_int_equal(socks_greeting(http, sizeof(http) - 1, &g), -1);
	memset(many, 0x7f, sizeof(many));
	many[0] = 5;
	many[1] = 255;
	assert_int_equal(socks_greeting(many, sizeof(many) - 1, &g), 0);
	assert_int_equal(socks_greeting(many, sizeof(many), &g), 257);
	assert_int_equal(socks_greeting(many, 0, &g), 0);
}

static void
test_auth(void **state)
{
	const uint8_t good[] = { 1, 4, 'u', 's', 'e', 'r', 3, 'p', 0, 'w' };
	const uint8_t empty_pass[] = { 1, 1, 'u', 0 };
	struct socks_auth a;

	(void)state;
	prefixes_incomplete(good, sizeof(good), a_fn, &a);
	assert_int_equal(socks_auth(good, sizeof(good), &a), (int)sizeof(good));
	assert_string_equal(a.user, "user");
	assert_int_equal(a.plen, 3);
	assert_memory_equal(a.pass, "p\0w", 3);
	assert_int_equal(socks_auth(empty_pass, sizeof(empty_pass), &a), 4);
	assert_int_equal(a.plen, 0);
}

static void
test_auth_hostile(void **state)
{
	const uint8_t badver[] = { 5, 1, 'u', 0 };
	const uint8_t nouser[] = { 1, 0, 0 };
	const uint8_t nul_user[] = { 1, 2, 'u', 0, 0 };
	uint8_t big[3 + 255 + 255];
	struct socks_auth a;

	(void)state;
	assert_int_equal(socks_auth(badver, sizeof(badver), &a), -1);
	assert_int_equal(socks_auth(nouser, sizeof(nouser), &a), -1);
	assert_int_equal(socks_auth(nul_user, sizeof(nul_user), &a), -1);
	memset(big, 'x', sizeof(big));
	big[0] = 1;
	big[1] = 255;
	big[2 + 255] = 255;
	assert_int_equal(socks_auth(big, sizeof(big) - 1, &a), 0);
	assert_int_equal(socks_auth(big, sizeof(big), &a), SOCKS_MSG_MAX - 2);
	assert_int_equal(a.ulen, 255);
	assert_int_equal(strlen(a.user), 255);
}

static void
test_request(void **state)
{
	const uint8_t v4[] = { 5, 1, 0, 1, 192, 0, 2, 7, 0x01, 0xbb, 0x16 };
	const uint8_t dom[] = { 5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l',
	    'e', '.', 'c', 'o', 'm', 0, 22 };
	uint8_t v6[4 + 16 + 2] = { 5, 1, 0, 4 };
	struct socks_req r;

	(void)state;
	prefixes_incomplete(v4, 10, r_fn, &r);
	assert_int_equal(socks_request(v4, sizeof(v4), &r), 10);
	assert_string_equal(r.host, "192.0.2.7");
	assert_int_equal(r.port, 443);
	prefixes_incomplete(dom, sizeof(dom), r_fn, &r);
	assert_int_equal(socks_request(dom, sizeof(dom), &r), (int)sizeof(dom));
	assert_string_equal(r.host, "example.com");
	assert_int_equal(r.port, 22);
	v6[4] = 0x20; v6[5] = 0x01; v6[6] = 0x0d; v6[7] = 0xb8; v6[19] = 1;
	v6[21] = 80;
	assert_int_equal(socks_request(v6, sizeof(v6), &r), 22);
	assert_string_equal(r.host, "2001:db8::1");
	assert_int_equal(r.port, 80);
}

static void
test_request_hostile(void **state)
{
	const uint8_t bind[] = { 5, 2, 0, 1, 1, 2, 3, 4, 0, 80 };
	const uint8_t udp_partial[] = { 5, 3, 0, 1, 1 };
	const uint8_t atyp9[] = { 5, 1, 0, 9 };
	const uint8_t rsv[] = { 5, 1, 1, 1, 1, 2, 3, 4, 0, 80 };
	const uint8_t empty_dom[] = { 5, 1, 0, 3, 0, 0, 80 };
	const uint8_t ctl_dom[] = { 5, 1, 0, 3, 3, 'a', '\n', 'b', 0, 80 };
	const uint8_t sp_dom[] = { 5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80 };
	const uint8_t nul_dom[] = { 5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80 };
	uint8_t long_dom[5 + 255 + 2];
	struct socks_req r;

	(void)state;
	assert_int_equal(socks_request(bind, sizeof(bind), &r), -1);
	assert_int_equal(r.rep, SOCKS_CMD_UNSUPPORTED);
	/* an unsupported command is reported only once the request is in */
	assert_int_equal(socks_request(udp_partial, sizeof(udp_partial), &r), 0);
	assert_int_equal(socks_request(atyp9, sizeof(atyp9), &r), -1);
	assert_int_equal(r.rep, SOCKS_ATYP_UNSUPPORTED);
	assert_int_equal(socks_request(rsv, sizeof(rsv), &r), -1);
	assert_int_equal(socks_request(empty_dom, sizeof(empty_dom), &r), -1);
	assert_int_equal(socks_request(ctl_dom, sizeof(ctl_dom), &r), -1);
	assert_int_equal(socks_request(sp_dom, sizeof(sp_dom), &r), -1);
	assert_int_equal(socks_request(nul_dom, sizeof(nul_dom), &r), -1);
	memset(long_dom, 'a', sizeof(long_dom));
	long_dom[0] = 5; long_dom[1] = 1; long_dom[2] = 0; long_dom[3] = 3;
	long_dom[4] = 255;
	assert_int_equal(socks_request(long_dom, sizeof(long_dom), &r), 262);
	assert_int_equal(strlen(r.host), 255);
}

static void
test_reply(void **state)
{
	uint8_t out[SOCKS_REPLY_LEN];
	const uint8_t want[] = { 5, 2, 0, 1, 0, 0, 0, 0, 0, 0 };

	(void)state;
	assert_int_equal(socks_reply(out, SOCKS_NOT_ALLOWED), 10);
	assert_memory_equal(out, want, sizeof(want));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_greeting_hostile),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_auth_hostile),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_request_hostile),
		cmocka_unit_test(test_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
