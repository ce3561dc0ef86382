/* test_stats.c - the edge's counters on the wire: the agent's parser
 * (stats_parse.c) with good and hostile input, and the edge's formatter
 * (estats_put, estats_msg in edge_stats.c), whose every frame the parser
 * must take. The edge modules estats_msg asks for their own counters are
 * stubbed below. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "agent/stats_parse.h"
#include "edge/edge_adm.h"
#include "edge/edge_ban.h"
#include "edge/edge_ftp.h"
#include "edge/edge_limit.h"
#include "edge/edge_link.h"
#include "edge/edge_lis.h"
#include "edge/edge_handover.h"
#include "edge/edge_sess.h"
#include "edge/edge_stats.h"
#include "common/fconn.h"

/* Stubs: what the other edge modules add to a STATS frame. */
uint64_t fconn_bad_frames = 5;

size_t
adm_tracked(void)
{
	return 7;
}

void
esess_stats(char *out, size_t outlen)
{
	(void)estats_put(out, outlen, "sessions_active", 3);
}

void
esvc_stats(char *out, size_t outlen)
{
	(void)estats_put(out, outlen, "services_open", 2);
}

void
elink_stats(char *out, size_t outlen)
{
	(void)estats_put(out, outlen, "mux_links", 1);
}

void
eftp_stats(char *out, size_t outlen)
{
	(void)estats_put(out, outlen, "ftp_data_accepted_total", 0);
}

void
eban_stats(char *out, size_t outlen)
{
	(void)estats_put(out, outlen, "bans", 100000);
}

void
eho_stats(char *out, size_t outlen)
{
	(void)estats_put(out, outlen, "draining_sessions", 4);
}

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
		assert_int_equal(estats_put(s, sizeof(s), name, i), 0);
	}
	assert_int_equal(parse(s, kv, &n), 0);
	assert_int_equal(n, STATS_MAX);
	assert_int_equal(estats_put(s, sizeof(s), "one_more", 1), 0);
	assert_int_equal(parse(s, kv, &n), -1);
	/* max is honoured even below STATS_MAX */
	assert_int_equal(stats_parse("a=1 b=2", 7, kv, 1, &n, &why), -1);
	/* len bounds the read: the bytes after it are never looked at */
	assert_int_equal(stats_parse("a=1 b=2", 3, kv, STATS_MAX, &n, &why), 0);
	assert_int_equal(n, 1);
	assert_int_equal(stats_parse("a=1 b=2", 4, kv, STATS_MAX, &n, &why), -1);
	/* the longest name, and one byte longer */
	assert_true(stats_valid_name("a23456789012345678901234567890123456789012345678",
	    STATS_NAME_MAX - 1));
	assert_false(stats_valid_name("a234567890123456789012345678901234567890123456789",
	    STATS_NAME_MAX));
	assert_false(stats_valid_name("", 0));
	assert_false(stats_valid_name("9a", 2));
}

/* estats_put never overflows, keeps out NUL-terminated, and leaves it
 * unchanged when a token does not fit. */
static void
test_put(void **state)
{
	char small[8] = "";
	char full[4] = { 'a', 'b', 'c', 'd' };

	(void)state;
	assert_int_equal(estats_put(small, sizeof(small), "abc", 1), 0);
	assert_string_equal(small, "abc=1");
	assert_int_equal(estats_put(small, sizeof(small), "abc", 2), -1);
	assert_string_equal(small, "abc=1");
	assert_int_equal(estats_put(small, sizeof(small), "x", 0), -1);
	assert_string_equal(small, "abc=1");
	small[0] = '\0';
	assert_int_equal(estats_put(small, sizeof(small), "a", 12345), 0);
	assert_string_equal(small, "a=12345");
	assert_int_equal(estats_put(small, sizeof(small), "b", 1), -1);
	assert_string_equal(small, "a=12345");
	small[0] = '\0';
	assert_int_equal(estats_put(small, sizeof(small), "abcdefgh", 1), -1);
	assert_string_equal(small, "");
	/* a buffer with no NUL in it: nothing written */
	assert_int_equal(estats_put(full, sizeof(full), "a", 1), -1);
	assert_memory_equal(full, "abcd", 4);
}

/* What the edge sends in STATS is what the agent accepts: every counter
 * once, valid names, and the values the edge holds. */
static void
test_edge_frame(void **state)
{
	struct stats_kv kv[STATS_MAX];
	struct msg m, d;
	struct buf b = { 0 };
	const char *why = NULL;
	size_t i, n, seen = 0;

	(void)state;
	memset(&edge_stats, 0, sizeof(edge_stats));
	edge_stats.sessions_accepted = 12;
	edge_stats.agents_connected = 1;
	edge_stats.links_reused = UINT64_MAX;
	lim_counter[LIM_PER_IP] = 5;
	estats_msg(&m);
	assert_int_equal(m.type, FT_STATS);
	assert_true(m.have & FA_BIT(FA_STATS));
	/* through the codec, as it travels */
	assert_int_equal(msg_encode(&m, &b, FRAME_HDR + FRAME_MAX), 0);
	assert_int_equal(msg_decode_frame(b.data, buf_len(&b), &d, &why), 0);
	buf_free(&b);
	if (stats_parse(d.stats, strlen(d.stats), kv, STATS_MAX, &n, &why) != 0)
		fail_msg("the agent refuses the edge's STATS: %s: %s", why,
		    d.stats);
	for (i = 0; i < n; i++) {
		if (strcmp(kv[i].name, "sessions_accepted_total") == 0) {
			assert_int_equal(kv[i].value, 12);
			seen |= 1;
		} else if (strcmp(kv[i].name, "agents_connected") == 0) {
			assert_int_equal(kv[i].value, 1);
			seen |= 2;
		} else if (strcmp(kv[i].name, "plain_links_reused_total") == 0) {
			assert_true(kv[i].value == UINT64_MAX);
			seen |= 4;
		} else if (strcmp(kv[i].name, "limit_per_ip_total") == 0) {
			assert_int_equal(kv[i].value, 5);
			seen |= 8;
		} else if (strcmp(kv[i].name, "clients_tracked") == 0) {
			assert_int_equal(kv[i].value, 7);
			seen |= 16;
		} else if (strcmp(kv[i].name, "mux_links") == 0)
			seen |= 32;
	}
	assert_int_equal(seen, 63);
	/* one token per limit, and the edge's own */
	assert_true(n >= 12 + LIM_COUNT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_put),
		cmocka_unit_test(test_edge_frame),
	};
	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
