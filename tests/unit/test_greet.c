/* test_greet.c - how a connection to the edge's control port begins: the
 * first bytes an unproved peer sends (greet_sniff), and the plain data
 * link's greeting, LINK_HELLO and nothing else (greet_parse). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "edge/greet.h"

/* Magic + the encoded frame m, into out; returns the length. */
static size_t
greeting(const struct msg *m, uint8_t *out, size_t outlen)
{
	struct buf b = { 0 };
	size_t n;

	assert_int_equal(msg_encode(m, &b, 1 << 20), 0);
	n = PLINK_MAGIC_LEN + buf_len(&b);
	assert_true(n <= outlen);
	memcpy(out, PLINK_MAGIC, PLINK_MAGIC_LEN);
	memcpy(out + PLINK_MAGIC_LEN, b.data, buf_len(&b));
	buf_free(&b);
	return n;
}

static void
link_hello_msg(struct msg *m, uint64_t counter)
{
	msg_init(m, FT_LINK_HELLO);
	m->key_id = 0x1122334455667788ull;
	m->counter = counter;
	memset(m->proof, 0x5a, sizeof(m->proof));
	msg_have(m, FA_KEY_ID);
	msg_have(m, FA_COUNTER);
	msg_have(m, FA_PROOF);
}

static size_t
link_hello(uint8_t *out, size_t outlen)
{
	struct msg m;

	link_hello_msg(&m, 42);
	return greeting(&m, out, outlen);
}

static void
test_sniff(void **state)
{
	const uint8_t tls[] = { 0x16, 0x03, 0x01 };

	(void)state;
	assert_int_equal(greet_sniff(NULL, 0), GREET_MORE);
	assert_int_equal(greet_sniff(tls, 1), GREET_TLS);
	assert_int_equal(greet_sniff(tls, 3), GREET_TLS);
	assert_int_equal(greet_sniff((const uint8_t *)"S", 1), GREET_MORE);
	assert_int_equal(greet_sniff((const uint8_t *)"SPD", 3), GREET_MORE);
	assert_int_equal(greet_sniff((const uint8_t *)"SPD1", 4), GREET_PLAIN);
	assert_int_equal(greet_sniff((const uint8_t *)"SPD1xyz", 7), GREET_PLAIN);
	assert_int_equal(greet_sniff((const uint8_t *)"SPD2", 4), GREET_BAD);
	assert_int_equal(greet_sniff((const uint8_t *)"SX", 2), GREET_BAD);
	assert_int_equal(greet_sniff((const uint8_t *)"GET ", 4), GREET_BAD);
	assert_int_equal(greet_sniff((const uint8_t *)"\0", 1), GREET_BAD);
	assert_int_equal(greet_sniff((const uint8_t *)"\x15", 1), GREET_BAD);
}

static void
test_link_hello(void **state)
{
	uint8_t p[GREET_BUF + 1];
	struct msg m;
	const char *why = NULL;
	size_t n, need, k;

	(void)state;
	n = link_hello(p, sizeof(p));
	/* The documented size: 3 attributes, 8 + 8 + 32 bytes. */
	assert_int_equal(n, PLINK_MAGIC_LEN + FRAME_HDR + 60);
	assert_int_equal(greet_parse(p, n, &m, &need, &why), 0);
	assert_int_equal(m.type, FT_LINK_HELLO);
	assert_int_equal(m.key_id, 0x1122334455667788ull);
	assert_int_equal(m.counter, 42);
	assert_int_equal(m.proof[31], 0x5a);
	/* Every prefix asks for more, never for a byte past the greeting,
	 * and never for more than the edge's buffer holds. */
	for (k = 0; k < n; k++) {
		need = 0;
		assert_int_equal(greet_parse(p, k, &m, &need, &why), 1);
		assert_true(need > k);
		assert_true(need <= n);
		assert_true(need <= GREET_BUF);
	}
	/* One byte behind the greeting: a reader that asked for exactly
	 * what it needed never has it, so it is an error. */
	p[n] = 'x';
	why = NULL;
	assert_int_equal(greet_parse(p, n + 1, &m, &need, &why), -1);
	assert_string_equal(why, "bytes beyond the greeting");
	/* Unknown attributes are skipped, up to GREET_MAX of payload. */
	{
		uint8_t q[GREET_BUF];
		size_t plen = n - PLINK_MAGIC_LEN - FRAME_HDR, extra;

		memcpy(q, p, n);
		extra = GREET_MAX - plen;
		q[n] = 0; q[n + 1] = 60;	/* tag 60: not known */
		q[n + 2] = (uint8_t)((extra - 4) >> 8);
		q[n + 3] = (uint8_t)(extra - 4);
		memset(q + n + 4, 'z', extra - 4);
		q[PLINK_MAGIC_LEN + 6] = (uint8_t)(GREET_MAX >> 8);
		q[PLINK_MAGIC_LEN + 7] = (uint8_t)GREET_MAX;
		assert_int_equal(greet_parse(q, GREET_BUF, &m, &need, &why), 0);
		assert_int_equal(m.counter, 42);
	}
}

static void
test_hostile(void **state)
{
	uint8_t p[GREET_BUF + 64];
	struct msg m;
	const char *why;
	size_t n, need;
	uint16_t t;

	(void)state;
	/* Only LINK_HELLO may be sent in the clear: every other type is
	 * refused from its header, before its payload is read. */
	for (t = 1; t <= FT_MAX_TYPE; t++) {
		if (t == FT_LINK_HELLO)
			continue;
		n = link_hello(p, sizeof(p));
		p[PLINK_MAGIC_LEN] = (uint8_t)(t >> 8);
		p[PLINK_MAGIC_LEN + 1] = (uint8_t)t;
		why = NULL;
		assert_int_equal(greet_parse(p, PLINK_MAGIC_LEN + FRAME_HDR, &m,
		    &need, &why), -1);
		assert_string_equal(why,
		    "a plain link must start with LINK_HELLO");
	}
	/* A whole HELLO, well formed, is still not a greeting. */
	msg_init(&m, FT_HELLO);
	m.version = 1;
	msg_have(&m, FA_VERSION);
	msg_set_str(&m, FA_NAME, "x");
	n = greeting(&m, p, sizeof(p));
	assert_int_equal(greet_parse(p, n, &m, &need, &why), -1);
	/* A bad magic is refused after its first wrong byte. */
	n = link_hello(p, sizeof(p));
	p[2] = 'X';
	assert_int_equal(greet_parse(p, 3, &m, &need, &why), -1);
	/* TLS is not a plain greeting. */
	p[0] = 0x16;
	assert_int_equal(greet_parse(p, 1, &m, &need, &why), -1);
	/* Oversized: refused from the header, before reading the payload. */
	n = link_hello(p, sizeof(p));
	p[PLINK_MAGIC_LEN + 4] = 0;
	p[PLINK_MAGIC_LEN + 5] = 0;
	p[PLINK_MAGIC_LEN + 6] = (GREET_MAX + 1) >> 8;
	p[PLINK_MAGIC_LEN + 7] = (GREET_MAX + 1) & 0xff;
	assert_int_equal(greet_parse(p, PLINK_MAGIC_LEN + FRAME_HDR, &m,
	    &need, &why), -1);
	assert_string_equal(why, "greeting frame too large");
	p[PLINK_MAGIC_LEN + 6] = 0xff;
	p[PLINK_MAGIC_LEN + 4] = 0xff;
	assert_int_equal(greet_parse(p, PLINK_MAGIC_LEN + FRAME_HDR, &m,
	    &need, &why), -1);
	/* Flags not zero. */
	n = link_hello(p, sizeof(p));
	p[PLINK_MAGIC_LEN + 3] = 1;
	assert_int_equal(greet_parse(p, n, &m, &need, &why), -1);
	/* An unknown frame type. */
	n = link_hello(p, sizeof(p));
	p[PLINK_MAGIC_LEN + 1] = 0xee;
	assert_int_equal(greet_parse(p, n, &m, &need, &why), -1);
	/* Required attribute missing: a LINK_HELLO without its proof. */
	link_hello_msg(&m, 9);
	m.have &= ~FA_BIT(FA_PROOF);
	n = greeting(&m, p, sizeof(p));
	assert_int_equal(greet_parse(p, n, &m, &need, &why), -1);
	assert_string_equal(why, "required attribute missing");
	/* A proof of the wrong length (its length field, then the frame's,
	 * one less). */
	n = link_hello(p, sizeof(p));
	p[n - FRAME_KEY - 1] = FRAME_KEY - 1;
	p[PLINK_MAGIC_LEN + 7]--;
	assert_int_equal(greet_parse(p, n - 1, &m, &need, &why), -1);
	/* Counter 0. */
	link_hello_msg(&m, 0);
	n = greeting(&m, p, sizeof(p));
	assert_int_equal(greet_parse(p, n, &m, &need, &why), -1);
	assert_string_equal(why, "an id of 0");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sniff),
		cmocka_unit_test(test_link_hello),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
