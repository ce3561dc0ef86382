/* test_ban.c - bans: DURATION, ranges, reasons, BANS records, ban_file
 * lines, and the ban table (CIDR matching, expiry, owners, growth). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "common/ban.h"

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

static uint32_t
dur(const char *s)
{
	const char *why = NULL;
	uint32_t v = 12345;

	if (ban_duration_parse(s, &v, &why) == -1) {
		assert_non_null(why);
		return 0;
	}
	return v;
}

static void
test_duration(void **state)
{
	(void)state;
	assert_int_equal(dur("90"), 90);
	assert_int_equal(dur("90s"), 90);
	assert_int_equal(dur("15m"), 900);
	assert_int_equal(dur("12h"), 43200);
	assert_int_equal(dur("7d"), 604800);
	assert_int_equal(dur("1"), 1);
	assert_int_equal(dur("3660d"), BAN_FOR_MAX);
	/* hostile and mistaken */
	const char *bad[] = { "", "0", "0s", "s", "m", "-5", "+5", " 5", "5 ",
	    "1w", "5x", "5ss", "5ms", "1.5h", "3661d", "99999999999",
	    "4294967296", "18446744073709551617", "1e9", "0x10", "5\n", "5d1" };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(dur(bad[i]), 0);
}

static void
test_range(void **state)
{
	const char *ok[] = { "192.0.2.7", "192.0.2.0/24", "0.0.0.0/0",
	    "2001:db8::/32", "2001:db8::1", "::/0", "198.51.100.128/25" };
	const char *bad[] = { "", "192.0.2.7/24", "192.0.2.0/33", "300.1.1.1",
	    "2001:db8::1/32", "2001:db8::/129", "192.0.2.0/", "192.0.2.0/024",
	    "example.com", "192.0.2.7 ", "1.2.3.4/8" };
	struct cidr c, c2;
	const char *why;
	char s[BAN_STR_MAX], big[200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(ban_range_parse(ok[i], &c, &why), 0);
		ban_range_fmt(&c, s, sizeof(s));
		assert_string_equal(s, ok[i]);
		assert_int_equal(ban_range_parse(s, &c2, &why), 0);
		assert_memory_equal(&c, &c2, sizeof(c));
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ban_range_parse(bad[i], &c, &why), -1);
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(ban_range_parse(big, &c, &why), -1);
	/* an IPv4-mapped /96+ range prints as IPv4 */
	assert_int_equal(ban_range_parse("::ffff:192.0.2.0/120", &c, &why), 0);
	ban_range_fmt(&c, s, sizeof(s));
	assert_string_equal(s, "192.0.2.0/24");
}

static void
test_reason(void **state)
{
	char r[260];

	(void)state;
	assert_true(ban_reason_valid(""));
	assert_true(ban_reason_valid("fail2ban sshd: 5 failures"));
	memset(r, 'x', 200);
	r[200] = '\0';
	assert_true(ban_reason_valid(r));
	r[200] = 'x';
	r[201] = '\0';
	assert_false(ban_reason_valid(r));
	assert_false(ban_reason_valid("tab\there"));
	assert_false(ban_reason_valid("new\nline"));
	assert_false(ban_reason_valid("\x7f"));
	assert_false(ban_reason_valid("caf\xc3\xa9"));
}

static void
test_records(void **state)
{
	static uint8_t p[(BAN_FRAME_RECS + 1) * BAN_REC];
	struct cidr c, c2;
	const char *why;
	uint32_t ttl;
	size_t i;

	(void)state;
	assert_int_equal(ban_range_parse("192.0.2.0/24", &c, &why), 0);
	for (i = 0; i <= BAN_FRAME_RECS; i++)
		ban_rec_put(p + i * BAN_REC, &c, (uint32_t)i * 1000003u);
	assert_int_equal(ban_recs_check(p, BAN_REC, &why), 0);
	assert_int_equal(ban_recs_check(p, BAN_FRAME_RECS * BAN_REC, &why), 0);
	for (i = 0; i < BAN_FRAME_RECS; i += 97) {
		ban_rec_get(p, i, &c2, &ttl);
		assert_memory_equal(&c, &c2, sizeof(c));
		assert_int_equal(ttl, (uint32_t)i * 1000003u);
	}
	/* lengths: none, partial, one too many */
	assert_int_equal(ban_recs_check(p, 0, &why), -1);
	assert_int_equal(ban_recs_check(p, BAN_REC - 1, &why), -1);
	assert_int_equal(ban_recs_check(p, BAN_REC + 1, &why), -1);
	assert_int_equal(ban_recs_check(p, (BAN_FRAME_RECS + 1) * BAN_REC,
	    &why), -1);
	/* a prefix over 128, host bits beyond the prefix */
	p[16] = 129;
	assert_int_equal(ban_recs_check(p, BAN_REC, &why), -1);
	p[16] = 120;
	p[15] = 1;
	assert_int_equal(ban_recs_check(p, BAN_REC, &why), -1);
	p[16] = 128;
	assert_int_equal(ban_recs_check(p, BAN_REC, &why), 0);
	/* the bad one is the last of several */
	p[2 * BAN_REC + 16] = 200;
	assert_int_equal(ban_recs_check(p, 3 * BAN_REC, &why), -1);
}

static void
test_lines(void **state)
{
	char reason[BAN_REASON_MAX];
	uint64_t until, created;
	const char *why;
	struct cidr c;
	char s[BAN_STR_MAX];

	(void)state;
	assert_int_equal(ban_line_parse("192.0.2.7 1900000000 1800000000 "
	    "fail2ban sshd", &c, &until, &created, reason, &why), 0);
	ban_range_fmt(&c, s, sizeof(s));
	assert_string_equal(s, "192.0.2.7");
	assert_true(until == 1900000000u && created == 1800000000u);
	assert_string_equal(reason, "fail2ban sshd");
	assert_int_equal(ban_line_parse("2001:db8::/32 0 5", &c, &until,
	    &created, reason, &why), 0);
	assert_true(until == 0 && created == 5);
	assert_string_equal(reason, "");
	const char *bad[] = { "", "192.0.2.7", "192.0.2.7 ", "192.0.2.7 1",
	    "192.0.2.7 1 ", "192.0.2.7  1 2", "192.0.2.7 x 2", "192.0.2.7 1 x",
	    "192.0.2.7 -1 2", "192.0.2.7/24 1 2", "192.0.2.7 1 2x",
	    "192.0.2.7 12345678901234567890 1",
	    "192.0.2.7 1 2 bad\x01reason", " 192.0.2.7 1 2" };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(ban_line_parse(bad[i], &c, &until, &created,
		    reason, &why), -1);
}

static struct ban *
mkban(struct bantab *t, const char *range, uint8_t owner, uint64_t until)
{
	struct ban *b = calloc(1, sizeof(*b));
	const char *why;

	assert_non_null(b);
	assert_int_equal(ban_range_parse(range, &b->c, &why), 0);
	b->owner = owner;
	b->until = until;
	assert_int_equal(bantab_add(t, b), 0);
	return b;
}

static int
banned(const struct bantab *t, const char *ip, uint64_t now)
{
	uint8_t a[16];

	a16(ip, a);
	return bantab_match(t, a, now) != NULL;
}

static int
older_than(struct ban *b, void *arg)
{
	return b->until != 0 && b->until <= *(uint64_t *)arg;
}

static void
test_table_match(void **state)
{
	struct bantab t;
	struct cidr c;
	const char *why;

	(void)state;
	bantab_init(&t, 42, NULL);
	assert_false(banned(&t, "192.0.2.7", 0));
	mkban(&t, "192.0.2.7", 0, 0);
	mkban(&t, "198.51.100.0/24", 0, 0);
	mkban(&t, "2001:db8::/32", 0, 0);
	assert_true(banned(&t, "192.0.2.7", 0));
	assert_false(banned(&t, "192.0.2.8", 0));
	assert_true(banned(&t, "198.51.100.0", 0));
	assert_true(banned(&t, "198.51.100.255", 0));
	assert_false(banned(&t, "198.51.101.0", 0));
	assert_true(banned(&t, "2001:db8:ffff::1", 0));
	assert_false(banned(&t, "2001:db9::1", 0));
	/* an IPv4 client seen on an IPv6 socket (mapped) is matched too */
	assert_true(banned(&t, "::ffff:192.0.2.7", 0));
	assert_int_equal(t.nlens, 3);
	/* find is exact: range and owner */
	assert_int_equal(ban_range_parse("198.51.100.0/24", &c, &why), 0);
	assert_non_null(bantab_find(&t, &c, 0));
	assert_null(bantab_find(&t, &c, 1));
	assert_int_equal(ban_range_parse("198.51.100.0/25", &c, &why), 0);
	assert_null(bantab_find(&t, &c, 0));
	/* lift the /24: its lengths go away when the last of them does */
	assert_int_equal(ban_range_parse("198.51.100.0/24", &c, &why), 0);
	bantab_del(&t, bantab_find(&t, &c, 0));
	assert_false(banned(&t, "198.51.100.9", 0));
	assert_int_equal(t.nlens, 2);
	assert_int_equal(t.n, 2);
	/* everything */
	mkban(&t, "::/0", 3, 0);
	assert_true(banned(&t, "203.0.113.1", 0));
	bantab_clear(&t);
	assert_int_equal(t.n, 0);
	assert_false(banned(&t, "203.0.113.1", 0));
}

static void
test_table_expiry_and_owners(void **state)
{
	struct bantab t;
	uint64_t now = 5000;
	struct cidr c;
	const char *why;

	(void)state;
	bantab_init(&t, 7, NULL);
	mkban(&t, "192.0.2.1", 0, 1000);	/* expired at 1000 */
	mkban(&t, "192.0.2.2", 0, 9000);
	mkban(&t, "192.0.2.3", 0, 0);		/* until lifted */
	/* the same range from two owners: lifting one leaves the other */
	mkban(&t, "192.0.2.9", 1, 0);
	mkban(&t, "192.0.2.9", 2, 0);
	assert_false(banned(&t, "192.0.2.1", now));
	assert_true(banned(&t, "192.0.2.1", 999));
	assert_true(banned(&t, "192.0.2.2", now));
	assert_false(banned(&t, "192.0.2.2", 9000));
	assert_true(banned(&t, "192.0.2.3", UINT64_MAX));
	assert_int_equal(bantab_sweep(&t, older_than, &now), 1);
	assert_int_equal(t.n, 4);
	assert_int_equal(ban_range_parse("192.0.2.9", &c, &why), 0);
	bantab_del(&t, bantab_find(&t, &c, 1));
	assert_true(banned(&t, "192.0.2.9", now));
	bantab_del(&t, bantab_find(&t, &c, 2));
	assert_false(banned(&t, "192.0.2.9", now));
	bantab_clear(&t);
}

static void
test_table_many(void **state)
{
	struct bantab t;
	char ip[64];
	uint32_t i;
	uint64_t now = 1;

	(void)state;
	bantab_init(&t, 99, NULL);
	for (i = 0; i < 100000; i++) {
		snprintf(ip, sizeof(ip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255,
		    i & 255);
		mkban(&t, ip, 0, i % 2 ? 0 : 10);
	}
	assert_int_equal(t.n, 100000);
	assert_true(t.nbucket >= 100000);
	assert_true(banned(&t, "10.1.134.159", 0));	/* i = 99999 */
	assert_false(banned(&t, "10.1.134.160", 0));
	assert_true(banned(&t, "10.0.0.0", 0));
	assert_false(banned(&t, "10.0.0.0", 10));	/* even: expired */
	assert_true(banned(&t, "10.0.0.1", 10));
	now = 10;
	assert_int_equal(bantab_sweep(&t, older_than, &now), 50000);
	assert_int_equal(t.n, 50000);
	assert_true(banned(&t, "10.0.0.1", 0));
	assert_false(banned(&t, "10.0.0.2", 0));
	bantab_clear(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_reason),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_table_match),
		cmocka_unit_test(test_table_expiry_and_owners),
		cmocka_unit_test(test_table_many),
	};
	return cmocka_run_group_tests_name("ban", tests, NULL, NULL);
}
