/* test_outpol.c - the outbound destination policy: rule parsing, the
 * special-address ban and when a CIDR rule lifts it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/outpol.h"

static struct outpol *
pol(const char *s)
{
	static struct outpol p;
	char err[512];

	if (outpol_parse(s, &p, err, sizeof(err)) != 0)
		fail_msg("'%s': %s", s, err);
	return &p;
}

static struct sockaddr_storage ss;

static const struct sockaddr *
addr(const char *ip, uint16_t port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
	} else {
		assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
	}
	return (const struct sockaddr *)&ss;
}

static int
ok_addr(const char *policy, const char *host, const char *ip, uint16_t port)
{
	const char *why = NULL;
	int r = outpol_check_addr(pol(policy), host, addr(ip, port), &why);

	if (r == 0)
		assert_non_null(why);
	return r;
}

static int
ok_name(const char *policy, const char *host, uint16_t port)
{
	const char *why = NULL;

	return outpol_check_name(pol(policy), host, port, &why);
}

static void
test_parse(void **state)
{
	struct outpol *p;

	(void)state;
	p = pol(" files.example.com:22 , *.partner.net:443,198.51.100.0/24:990-999,"
	    "[2001:db8::/32]:*, *:443, [::1]:22, 10.1.2.3:21, Example.ORG.:80");
	assert_int_equal(p->n, 8);
	assert_int_equal(p->r[0].kind, OUTPOL_EXACT);
	assert_string_equal(p->r[0].host, "files.example.com");
	assert_int_equal(p->r[0].port_lo, 22);
	assert_int_equal(p->r[1].kind, OUTPOL_SUFFIX);
	assert_string_equal(p->r[1].host, ".partner.net");
	assert_int_equal(p->r[2].kind, OUTPOL_CIDR);
	assert_int_equal(p->r[2].prefix, 24);
	assert_int_equal(p->r[2].port_lo, 990);
	assert_int_equal(p->r[2].port_hi, 999);
	assert_false(p->r[2].lifts_ban);
	assert_int_equal(p->r[3].family, AF_INET6);
	assert_int_equal(p->r[3].port_hi, 65535);
	assert_int_equal(p->r[4].kind, OUTPOL_ANY);
	assert_true(p->r[5].lifts_ban);			/* ::1 names loopback */
	assert_int_equal(p->r[6].prefix, 32);
	assert_true(p->r[6].lifts_ban);			/* inside 10/8 */
	assert_string_equal(p->r[7].host, "Example.ORG");
	assert_int_equal(pol("")->n, 0);
	assert_int_equal(pol("  ")->n, 0);
}

static void
test_parse_hostile(void **state)
{
	static const char *bad[] = {
		"example.com", "example.com:", ":80", "example.com:0",
		"example.com:65536", "example.com:80-79", "example.com:1-2-3",
		"example.com:http", "a..b:80", ".a:80", "a b:80", "a/b:80",
		"*.:80", "**.a:80", "*a:80", "10.0.0.0/33:80", "10.1.2.3/8:80",
		"[::1:80", "[::1]80", "[::1]/128:80", "2001:db8::1:80",
		"[10.0.0.1]:80", "[::/129]:80", "a:80,", ",a:80", "a:80,,b:80",
		"x123456789012345678901234567890123456789012345678901234567890123.a:1",
		"a:1 2", "a:+1", "a:00080x",
	};
	struct outpol p;
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (outpol_parse(bad[i], &p, err, sizeof(err)) != -1)
			fail_msg("'%s' was accepted", bad[i]);
		assert_int_equal(p.n, 0);
		assert_true(err[0] != '\0');
	}
}

static void
test_too_many_rules(void **state)
{
	char *s = malloc(70 * 8);
	struct outpol *p = malloc(sizeof(*p));
	char err[256];
	size_t i, n = 0;

	(void)state;
	assert_non_null(s);
	assert_non_null(p);
	for (i = 0; i < 65; i++)
		n += (size_t)snprintf(s + n, 70 * 8 - n, "%sa:%zu", i ? "," : "", i + 1);
	assert_int_equal(outpol_parse(s, p, err, sizeof(err)), -1);
	s[strlen(s) - 5] = '\0';	/* drop ",a:65" */
	assert_int_equal(outpol_parse(s, p, err, sizeof(err)), 0);
	assert_int_equal(p->n, 64);
	free(s);
	free(p);
}

static void
test_names(void **state)
{
	(void)state;
	assert_true(ok_name("files.example.com:22", "files.example.com", 22));
	assert_true(ok_name("files.example.com:22", "FILES.example.com.", 22));
	assert_false(ok_name("files.example.com:22", "files.example.com", 23));
	assert_false(ok_name("files.example.com:22", "xfiles.example.com", 22));
	assert_true(ok_name("*.partner.net:443", "a.b.partner.net", 443));
	assert_false(ok_name("*.partner.net:443", "partner.net", 443));
	assert_false(ok_name("*.partner.net:443", "evilpartner.net", 443));
	/* a CIDR rule can only be judged after resolution */
	assert_true(ok_name("198.51.100.0/24:443", "anything.example", 443));
	assert_false(ok_name("198.51.100.0/24:443", "anything.example", 80));
	/* literals are checked as addresses right away */
	assert_true(ok_name("198.51.100.0/24:443", "198.51.100.9", 443));
	assert_false(ok_name("198.51.100.0/24:443", "198.51.101.9", 443));
	assert_false(ok_name("*:443", "127.0.0.1", 443));
	assert_false(ok_name("*:443", "bad host", 443));
	assert_false(ok_name("*:443", "a", 0));
	assert_false(ok_name("", "example.com", 443));
}

static void
test_addresses(void **state)
{
	(void)state;
	/* public addresses: a name rule or a CIDR rule */
	assert_true(ok_addr("files.example.com:22", "files.example.com",
	    "198.51.100.7", 22));
	assert_false(ok_addr("files.example.com:22", NULL, "198.51.100.7", 22));
	assert_true(ok_addr("0.0.0.0/0:443", NULL, "198.51.100.7", 443));
	assert_true(ok_addr("*:443", NULL, "198.51.100.7", 443));
	assert_true(ok_addr("[2001:db8::/32]:22", NULL, "2001:db8::5", 22));
	assert_false(ok_addr("[2001:db8::/32]:22", NULL, "2001:db9::5", 22));
	/* a name that resolves to a special address: refused, whatever
	 * name rule matched (DNS rebinding) */
	assert_false(ok_addr("files.example.com:22", "files.example.com",
	    "127.0.0.1", 22));
	assert_false(ok_addr("*:22", "files.example.com", "10.0.0.5", 22));
	assert_false(ok_addr("*:22", "x", "169.254.169.254", 22));
	assert_false(ok_addr("*:22", "x", "192.168.1.1", 22));
	assert_false(ok_addr("*:22", "x", "172.31.0.1", 22));
	assert_false(ok_addr("*:22", "x", "100.64.0.1", 22));
	assert_false(ok_addr("*:22", "x", "::1", 22));
	assert_false(ok_addr("*:22", "x", "fe80::1", 22));
	assert_false(ok_addr("*:22", "x", "fd00::1", 22));
	assert_false(ok_addr("*:22", "x", "::ffff:127.0.0.1", 22));
	assert_false(ok_addr("*:22", "x", "::ffff:10.0.0.1", 22));
	assert_false(ok_addr("*:22", "x", "64:ff9b::7f00:1", 22));
	assert_false(ok_addr("*:22", "x", "2002:7f00:1::", 22));
	assert_false(ok_addr("*:22", "x", "224.0.0.1", 22));
	assert_false(ok_addr("*:22", "x", "255.255.255.255", 22));
	/* a wide CIDR rule does not lift the ban */
	assert_false(ok_addr("0.0.0.0/0:22", NULL, "127.0.0.1", 22));
	assert_false(ok_addr("[::/0]:22", NULL, "::1", 22));
	assert_false(ok_addr("96.0.0.0/3:22", NULL, "127.0.0.1", 22));
	/* a CIDR rule inside a special block does, for what it contains */
	assert_true(ok_addr("127.0.0.1/32:22", NULL, "127.0.0.1", 22));
	assert_true(ok_addr("127.0.0.1:22", "localhost", "127.0.0.1", 22));
	assert_true(ok_addr("127.0.0.1:22", NULL, "::ffff:127.0.0.1", 22));
	assert_false(ok_addr("127.0.0.1/32:22", NULL, "127.0.0.2", 22));
	assert_false(ok_addr("127.0.0.1/32:22", NULL, "127.0.0.1", 23));
	assert_true(ok_addr("10.0.0.0/8:22", "db.inside", "10.9.8.7", 22));
	assert_true(ok_addr("[::1]:22", NULL, "::1", 22));
	assert_true(ok_addr("[fd00::/8]:22", NULL, "fd00::1", 22));
	/* never: the unspecified address, NAT64/6to4 of special space */
	assert_false(ok_addr("0.0.0.0/8:22", NULL, "0.0.0.0", 22));
	assert_false(ok_addr("[::/128]:22", NULL, "::", 22));
	assert_false(ok_addr("[64:ff9b::/96]:22", NULL, "64:ff9b::7f00:1", 22));
}

static void
test_valid_host(void **state)
{
	char big[300];

	(void)state;
	assert_true(outpol_valid_host("example.com"));
	assert_true(outpol_valid_host("example.com."));
	assert_true(outpol_valid_host("_srv.example.com"));
	assert_true(outpol_valid_host("192.0.2.1"));
	assert_true(outpol_valid_host("2001:db8::1"));
	assert_false(outpol_valid_host(""));
	assert_false(outpol_valid_host("."));
	assert_false(outpol_valid_host("a..b"));
	assert_false(outpol_valid_host("[::1]"));
	assert_false(outpol_valid_host("a b"));
	assert_false(outpol_valid_host("a%b"));
	memset(big, 'a', sizeof(big));
	big[299] = '\0';
	assert_false(outpol_valid_host(big));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_hostile),
		cmocka_unit_test(test_too_many_rules),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_valid_host),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
