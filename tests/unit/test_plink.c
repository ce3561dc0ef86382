/* test_plink.c - the plain data-link greeting: the first bytes an
 * unauthenticated peer sends to the edge's control port. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "common/plink.h"

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

static size_t
data_hello(uint8_t *out, size_t outlen)
{
	struct msg m;

	msg_init(&m, FT_DATA_HELLO);
	m.session = 42;
	memset(m.secret, 0x5a, sizeof(m.secret));
	m.have |= FA_BIT(FA_SESSION) | FA_BIT(FA_SECRET);
	return greeting(&m, out, outlen);
}

static void
test_sniff(void **state)
{
	const uint8_t tls[] = { 0x16, 0x03, 0x01 };

	(void)state;
	assert_int_equal(plink_sniff(NULL, 0), PLINK_MORE);
	assert_int_equal(plink_sniff(tls, 1), PLINK_TLS);
	assert_int_equal(plink_sniff(tls, 3), PLINK_TLS);
	assert_int_equal(plink_sniff((const uint8_t *)"S", 1), PLINK_MORE);
	assert_int_equal(plink_sniff((const uint8_t *)"SPD", 3), PLINK_MORE);
	assert_int_equal(plink_sniff((const uint8_t *)"SPD1", 4), PLINK_PLAIN);
	assert_int_equal(plink_sniff((const uint8_t *)"SPD1xyz", 7), PLINK_PLAIN);
	assert_int_equal(plink_sniff((const uint8_t *)"SPD2", 4), PLINK_BAD);
	assert_int_equal(plink_sniff((const uint8_t *)"SX", 2), PLINK_BAD);
	assert_int_equal(plink_sniff((const uint8_t *)"GET ", 4), PLINK_BAD);
	assert_int_equal(plink_sniff((const uint8_t *)"\0", 1), PLINK_BAD);
}

static void
test_data_hello(void **state)
{
	uint8_t p[PLINK_BUF];
	struct msg m;
	const char *why = NULL;
	size_t n, need, k;

	(void)state;
	n = data_hello(p, sizeof(p));
	assert_int_equal(plink_greeting(p, n, &m, &need, &why), 0);
	assert_int_equal(m.type, FT_DATA_HELLO);
	assert_int_equal(m.session, 42);
	assert_int_equal(m.secret[31], 0x5a);
	/* Every prefix asks for more, never for a byte past the greeting,
	 * and never for more than the edge's buffer holds. */
	for (k = 0; k < n; k++) {
		need = 0;
		assert_int_equal(plink_greeting(p, k, &m, &need, &why), 1);
		assert_true(need > k);
		assert_true(need <= n);
		assert_true(need <= PLINK_BUF);
	}
	/* One byte of payload behind the greeting: a reader that asked for
	 * exactly what it needed never has it, so it is an error. */
	p[n] = 'x';
	assert_int_equal(plink_greeting(p, n + 1, &m, &need, &why), -1);
}

static void
test_pool_hello(void **state)
{
	uint8_t p[PLINK_BUF];
	struct msg m;
	const char *why;
	size_t n, need;

	(void)state;
	msg_init(&m, FT_POOL_HELLO);
	memset(m.secret, 7, sizeof(m.secret));
	m.have |= FA_BIT(FA_SECRET);
	n = greeting(&m, p, sizeof(p));
	assert_int_equal(plink_greeting(p, n, &m, &need, &why), 0);
	assert_int_equal(m.type, FT_POOL_HELLO);
	assert_int_equal(m.secret[0], 7);
}

static void
test_hostile(void **state)
{
	uint8_t p[PLINK_BUF + 64];
	struct msg m;
	const char *why;
	size_t n, need;

	(void)state;
	/* Only DATA_HELLO and POOL_HELLO may be sent in the clear. */
	msg_init(&m, FT_HELLO);
	m.version = 1;
	m.have |= FA_BIT(FA_VERSION);
	msg_set_str(&m, FA_NAME, "x");
	n = greeting(&m, p, sizeof(p));
	why = NULL;
	assert_int_equal(plink_greeting(p, n, &m, &need, &why), -1);
	assert_non_null(why);
	msg_init(&m, FT_OUT_OPEN);
	msg_set_str(&m, FA_DEST_HOST, "example.com");
	m.dest_port = 22;
	m.have |= FA_BIT(FA_DEST_PORT) | FA_BIT(FA_SECRET);
	n = greeting(&m, p, sizeof(p));
	assert_int_equal(plink_greeting(p, n, &m, &need, &why), -1);
	/* A bad magic is refused after its first wrong byte. */
	n = data_hello(p, sizeof(p));
	p[2] = 'X';
	assert_int_equal(plink_greeting(p, 3, &m, &need, &why), -1);
	/* TLS is not a plain greeting. */
	p[0] = 0x16;
	assert_int_equal(plink_greeting(p, 1, &m, &need, &why), -1);
	/* Oversized: refused from the header, before reading the payload. */
	n = data_hello(p, sizeof(p));
	p[PLINK_MAGIC_LEN + 4] = 0;
	p[PLINK_MAGIC_LEN + 5] = 0;
	p[PLINK_MAGIC_LEN + 6] = (PLINK_GREET_MAX + 1) >> 8;
	p[PLINK_MAGIC_LEN + 7] = (PLINK_GREET_MAX + 1) & 0xff;
	assert_int_equal(plink_greeting(p, PLINK_MAGIC_LEN + FRAME_HDR, &m,
	    &need, &why), -1);
	p[PLINK_MAGIC_LEN + 6] = 0xff;
	p[PLINK_MAGIC_LEN + 4] = 0xff;
	assert_int_equal(plink_greeting(p, PLINK_MAGIC_LEN + FRAME_HDR, &m,
	    &need, &why), -1);
	/* Flags not zero. */
	n = data_hello(p, sizeof(p));
	p[PLINK_MAGIC_LEN + 3] = 1;
	assert_int_equal(plink_greeting(p, n, &m, &need, &why), -1);
	/* An unknown frame type. */
	n = data_hello(p, sizeof(p));
	p[PLINK_MAGIC_LEN + 1] = 0xee;
	assert_int_equal(plink_greeting(p, n, &m, &need, &why), -1);
	/* Required attribute missing: a DATA_HELLO without its secret. */
	msg_init(&m, FT_DATA_HELLO);
	m.session = 9;
	m.have |= FA_BIT(FA_SESSION);
	n = greeting(&m, p, sizeof(p));
	assert_int_equal(plink_greeting(p, n, &m, &need, &why), -1);
	/* A secret of the wrong length. */
	n = data_hello(p, sizeof(p));
	p[n - FRAME_SECRET - 1] = FRAME_SECRET - 1;	/* its length field */
	assert_int_equal(plink_greeting(p, n, &m, &need, &why), -1);
	/* Session id 0. */
	msg_init(&m, FT_DATA_HELLO);
	m.have |= FA_BIT(FA_SESSION) | FA_BIT(FA_SECRET);
	n = greeting(&m, p, sizeof(p));
	assert_int_equal(plink_greeting(p, n, &m, &need, &why), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sniff),
		cmocka_unit_test(test_data_hello),
		cmocka_unit_test(test_pool_hello),
		cmocka_unit_test(test_hostile),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
