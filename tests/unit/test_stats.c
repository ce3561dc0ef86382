/* test_stats.c - the edge counter list parser, good and hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "common/stats.h"

static int
parse(const char *s, struct stats_kv *kv, size_t *n)
{
	const char *why = NULL;
	int r = stats_parse(s, strlen(s), kv, STATS_MAX, n, &why);

	if (r == -1)
		assert_non_null(why);
	return r;
}

static void
test_good(void **state)
{
	struct stats_kv kv[STATS_MAX];
	size_t n = 99;

	(void)state;
	assert_int_equal(parse("", kv, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(parse("a=0", kv, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(kv[0].name, "a");
	assert_int_equal(kv[0].value, 0);
	assert_int_equal(parse("sessions_accepted_total=12 agents_connected=1 "
	    "x9=18446744073709551615", kv, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(kv[1].name, "agents_connected");
	assert_int_equal(kv[0].value, 12);
	assert_true(kv[2].value == UINT64_MAX);
}

static void
test_hostile(void **state)
{
	static const char *const bad[] = {
		" a=1", "a=1 ", "a=1  b=2", "a", "=1", "a=", "a=-1", "a=+1",
		"a=01", "a=1x", "A=1", "1a=1", "_a=1", "a-b=1", "a=1=2",
		"a=18446744073709551616", "a=99999999999999999999",
		"a=100000000000000000000", "a=1 a=2", "a=1\tb=2", "a=1\nb=2",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1", " ",
	};
	struct stats_kv kv[STATS_MAX];
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i], kv, &n) != -1)
			fail_msg("accepted '%s'", bad[i]);
}

static void
test_limits(void **state)
{
	struct stats_kv kv[STATS_MAX];
	char s[2048] = "";
	const char *why;
	size_t i, n;
	char name[16];

	(void)state;
	for (i = 0; i < STATS_MAX; i++) {
		snprintf(name, sizeof(name), "c%zu", i);
		assert_int_equal(stats_append(s, sizeof(s), name, i), 0);
	}
	assert_int_equal(parse(s, kv, &n), 0);
	assert_int_equal(n, STATS_MAX);
	assert_int_equal(stats_append(s, sizeof(s), "one_more", 1), 0);
	assert_int_equal(parse(s, kv, &n), -1);
	/* max is honoured even below STATS_MAX */
	assert_int_equal(stats_parse("a=1 b=2", 7, kv, 1, &n, &why), -1);
	/* len bounds the read: the bytes after it are never looked at */
	assert_int_equal(stats_parse("a=1 b=2", 3, kv, STATS_MAX, &n, &why), 0);
	assert_int_equal(n, 1);
	/* appending never overflows and reports what did not fit */
	char small[8] = "";
	assert_int_equal(stats_append(small, sizeof(small), "abc", 1), 0);
	assert_int_equal(stats_append(small, sizeof(small), "abc", 2), -1);
	assert_string_equal(small, "abc=1");
	assert_int_equal(stats_append(small, sizeof(small), "Bad", 1), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
