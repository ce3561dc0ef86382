/* test_cidr.c - address ranges and lists for the access policy. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>

#include "common/cidr.h"

static void
a16(const char *ip, uint8_t out[16])
{
	uint8_t b[16];

	if (strchr(ip, ':') != NULL) {
		assert_int_equal(inet_pton(AF_INET6, ip, b), 1);
		cidr_addr16(AF_INET6, b, out);
	} else {
		assert_int_equal(inet_pton(AF_INET, ip, b), 1);
		cidr_addr16(AF_INET, b, out);
	}
}

static int
in(const char *list, const char *ip)
{
	struct cidr_list l;
	char err[128];
	uint8_t a[16];

	assert_int_equal(cidr_list_parse(list, &l, err, sizeof(err)), 0);
	a16(ip, a);
	return cidr_list_match(&l, a);
}

static void
test_match(void **state)
{
	(void)state;
	assert_true(in("127.0.0.0/8", "127.1.2.3"));
	assert_false(in("127.0.0.0/8", "128.0.0.1"));
	assert_true(in("10.0.0.0/9", "10.127.255.255"));
	assert_false(in("10.0.0.0/9", "10.128.0.0"));
	assert_true(in("192.0.2.7", "192.0.2.7"));		/* bare host */
	assert_false(in("192.0.2.7", "192.0.2.8"));
	assert_true(in("192.0.2.7/32", "192.0.2.7"));
	assert_true(in("0.0.0.0/0", "203.0.113.9"));
	assert_false(in("0.0.0.0/0", "2001:db8::1"));		/* v4 only */
	assert_true(in("::/0", "2001:db8::1"));
	assert_true(in("::/0", "192.0.2.1"));			/* all */
	assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(in("2001:db8::/32", "2001:db9::1"));
	assert_true(in("2001:db8::1/128", "2001:db8::1"));
	/* an IPv4 rule matches the client seen as IPv4-mapped IPv6 */
	assert_true(in("192.0.2.0/24", "::ffff:192.0.2.200"));
	assert_false(in("192.0.2.0/24", "::ffff:192.0.3.1"));
	/* lists: any item; spaces allowed */
	assert_true(in("10.0.0.0/8, 127.0.0.5 ,2001:db8::/32", "127.0.0.5"));
	assert_false(in("10.0.0.0/8, 127.0.0.5 ,2001:db8::/32", "127.0.0.6"));
	assert_false(in("", "127.0.0.1"));			/* empty list */
	assert_false(in("   ", "127.0.0.1"));
}

static void
test_bad(void **state)
{
	static const char *const bad[] = {
		"10.0.0.0/33", "2001:db8::/129", "10.1.2.3/8", "2001:db8::1/32",
		"10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/08",
		"10.0.0.0/1000", "10.0.0", "10.0.0.0.0", "256.0.0.0",
		"localhost", "10.0.0.0/8/8", "/8", "10.0.0.0 /8", "1.2.3.4,",
		",1.2.3.4", "1.2.3.4,,5.6.7.8", "1.2.3.4 5.6.7.8", "::ffff::1",
		"fe80::1%eth0", "2001:db8::/3a",
	};
	struct cidr_list l;
	char err[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (cidr_list_parse(bad[i], &l, err, sizeof(err)) != -1)
			fail_msg("accepted '%s'", bad[i]);
		assert_true(err[0] != '\0');
	}
}

static void
test_limits(void **state)
{
	static char s[CIDR_STR_MAX + 16];
	struct cidr_list l;
	char err[128];
	size_t i, n = 0;

	(void)state;
	/* CIDR_LIST_MAX ranges fit, one more does not */
	for (i = 0; i < CIDR_LIST_MAX; i++)
		n += (size_t)snprintf(s + n, sizeof(s) - n, "%s10.0.%zu.0/24",
		    i ? "," : "", i);
	assert_int_equal(cidr_list_parse(s, &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, CIDR_LIST_MAX);
	snprintf(s + n, sizeof(s) - n, ",10.1.0.0/16");
	assert_int_equal(cidr_list_parse(s, &l, err, sizeof(err)), -1);
	/* a string as long as the limit is refused without being read on */
	memset(s, ' ', CIDR_STR_MAX + 8);
	s[CIDR_STR_MAX + 8] = '\0';
	assert_int_equal(cidr_list_parse(s, &l, err, sizeof(err)), -1);
}

static void
test_prefix_bits(void **state)
{
	struct cidr c;
	const char *why;
	uint8_t a[16];
	unsigned p;
	char s[64];

	(void)state;
	/* every IPv4 prefix length: 255.255.255.255/p needs zero host bits,
	 * so use the network 128.0.0.0 (only the top bit) */
	for (p = 1; p <= 32; p++) {
		snprintf(s, sizeof(s), "128.0.0.0/%u", p);
		assert_int_equal(cidr_parse(s, strlen(s), &c, &why), 0);
		assert_int_equal(c.prefix, p + 96);
		a16("128.0.0.0", a);
		assert_true(cidr_match(&c, a));
		a16("0.0.0.0", a);
		assert_false(cidr_match(&c, a));
	}
	assert_int_equal(cidr_parse("128.0.0.0/0", 11, &c, &why), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_prefix_bits),
	};
	return cmocka_run_group_tests_name("cidr", tests, NULL, NULL);
}
