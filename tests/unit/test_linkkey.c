/* test_linkkey.c - data-link proofs: the MAC (with the kind of link in
 * it), and the anti-replay window an edge keeps per agent, with hostile
 * counters and proofs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "common/linkkey.h"

#define KID	0x0102030405060708ull
#define TLS	0	/* the kind byte: DATA_LINK_TLS */
#define PLAIN	1	/* DATA_LINK_PLAIN */

static uint8_t key[LINKKEY_LEN];

static int
setup(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)i;
	return 0;
}

/* 0 if ctr with its right proof is accepted. */
static int
take(struct linkkey_win *w, uint64_t ctr, const char **why)
{
	uint8_t proof[LINKKEY_LEN];

	assert_int_equal(linkkey_proof(key, KID, ctr, TLS, proof), 0);
	return linkkey_accept(key, KID, w, ctr, TLS, proof, why);
}

static void
test_proof(void **state)
{
	/* HMAC-SHA256(00..1f, "sallyport data link" || KID || 1 || kind),
	 * from Python's hmac module: the construction the protocol
	 * documents, for kind 0 (TLS) and 1 (plain). */
	static const uint8_t want_tls[LINKKEY_LEN] = {
		0x46, 0xb4, 0x27, 0x2b, 0xc9, 0x75, 0xdc, 0x46, 0x01, 0xb3,
		0x3f, 0x62, 0x4c, 0x00, 0x9c, 0x12, 0x6b, 0x45, 0xe7, 0xa1,
		0x39, 0x93, 0x9e, 0xa1, 0x75, 0x5e, 0x9c, 0x40, 0x23, 0xe2,
		0xa2, 0xfe,
	};
	static const uint8_t want_plain[LINKKEY_LEN] = {
		0x74, 0xaf, 0x7e, 0xd3, 0xec, 0xbb, 0x6d, 0x08, 0xc4, 0x82,
		0x7d, 0xd3, 0x96, 0x57, 0xcb, 0xa4, 0x18, 0xcb, 0x81, 0xc7,
		0xdc, 0x8e, 0x34, 0x71, 0xbc, 0x59, 0x24, 0x44, 0x83, 0xc5,
		0x52, 0x81,
	};
	uint8_t a[LINKKEY_LEN], b[LINKKEY_LEN], k2[LINKKEY_LEN];

	(void)state;
	assert_int_equal(linkkey_init(), 0);
	assert_int_equal(linkkey_proof(key, KID, 1, TLS, a), 0);
	assert_memory_equal(a, want_tls, sizeof(want_tls));
	assert_int_equal(linkkey_proof(key, KID, 1, PLAIN, b), 0);
	assert_memory_equal(b, want_plain, sizeof(want_plain));
	/* Counter, key id, key and kind each change it. */
	assert_int_equal(linkkey_proof(key, KID, 2, TLS, b), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(linkkey_proof(key, KID + 1, 1, TLS, b), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(linkkey_proof(key, KID, 1, 2, b), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	memcpy(k2, key, sizeof(k2));
	k2[31] ^= 1;
	assert_int_equal(linkkey_proof(k2, KID, 1, TLS, b), 0);
	assert_memory_not_equal(a, b, sizeof(a));
}

/* A proof made for one kind of link is worth nothing on the other: a
 * plain link's proof, seen on the wire, cannot open a TLS link (nor the
 * other way round), and the refusal marks no counter. */
static void
test_kind(void **state)
{
	struct linkkey_win w = { 0, 0 }, before;
	uint8_t proof[LINKKEY_LEN];
	const char *why = NULL;

	(void)state;
	assert_int_equal(linkkey_proof(key, KID, 1, TLS, proof), 0);
	assert_int_equal(linkkey_accept(key, KID, &w, 1, PLAIN, proof, &why),
	    -1);
	assert_string_equal(why, "wrong link proof");
	assert_int_equal(w.top, 0);
	assert_int_equal(linkkey_accept(key, KID, &w, 1, TLS, proof, &why), 0);

	assert_int_equal(linkkey_proof(key, KID, 2, PLAIN, proof), 0);
	before = w;
	assert_int_equal(linkkey_accept(key, KID, &w, 2, TLS, proof, &why), -1);
	assert_string_equal(why, "wrong link proof");
	assert_memory_equal(&w, &before, sizeof(w));
	assert_int_equal(linkkey_accept(key, KID, &w, 2, 0xff, proof, &why),
	    -1);
	assert_int_equal(linkkey_accept(key, KID, &w, 2, PLAIN, proof, &why),
	    0);
	/* Once taken, the counter is gone for both kinds. */
	assert_int_equal(linkkey_accept(key, KID, &w, 2, PLAIN, proof, &why),
	    -1);
	assert_string_equal(why, "link counter used already");
	assert_int_equal(linkkey_proof(key, KID, 2, TLS, proof), 0);
	assert_int_equal(linkkey_accept(key, KID, &w, 2, TLS, proof, &why), -1);
	assert_string_equal(why, "link counter used already");
}

static void
test_in_order_and_replay(void **state)
{
	struct linkkey_win w = { 0, 0 };
	const char *why = NULL;
	uint64_t c;

	(void)state;
	for (c = 1; c <= 200; c++)
		assert_int_equal(take(&w, c, &why), 0);
	assert_int_equal(w.top, 200);
	/* Every one of them again: used, or below the window. */
	for (c = 1; c <= 200; c++) {
		assert_int_equal(take(&w, c, &why), -1);
		assert_string_equal(why, c + LINKKEY_WINDOW <= 200 ?
		    "link counter below the window" :
		    "link counter used already");
	}
	assert_int_equal(take(&w, 0, &why), -1);
	assert_string_equal(why, "link counter 0");
}

static void
test_out_of_order(void **state)
{
	struct linkkey_win w = { 0, 0 };
	const char *why = NULL;

	(void)state;
	/* Links dialled together arrive in any order; a hole (a dial
	 * that failed) stays usable until it falls out of the window. */
	assert_int_equal(take(&w, 3, &why), 0);
	assert_int_equal(take(&w, 1, &why), 0);
	assert_int_equal(take(&w, 5, &why), 0);
	assert_int_equal(take(&w, 4, &why), 0);
	assert_int_equal(take(&w, 4, &why), -1);
	assert_int_equal(take(&w, 2, &why), 0);
	assert_int_equal(take(&w, 2, &why), -1);
	/* The edge of the window: top - 63 passes, top - 64 does not. */
	assert_int_equal(take(&w, 100, &why), 0);
	assert_int_equal(take(&w, 100 - LINKKEY_WINDOW + 1, &why), 0);
	assert_int_equal(take(&w, 100 - LINKKEY_WINDOW, &why), -1);
	assert_string_equal(why, "link counter below the window");
	/* A jump of exactly the window, and a huge one, forget the rest. */
	assert_int_equal(take(&w, 100 + LINKKEY_WINDOW, &why), 0);
	assert_int_equal(take(&w, 100, &why), -1);
	assert_int_equal(take(&w, UINT64_MAX, &why), 0);
	assert_int_equal(take(&w, UINT64_MAX, &why), -1);
	assert_int_equal(take(&w, UINT64_MAX - 1, &why), 0);
}

static void
test_hostile_proofs(void **state)
{
	struct linkkey_win w = { 0, 0 }, before;
	uint8_t proof[LINKKEY_LEN], other[LINKKEY_LEN];
	const char *why = NULL;

	(void)state;
	assert_int_equal(take(&w, 1, &why), 0);
	before = w;
	/* A wrong proof, one flipped bit, the proof of another counter or
	 * of another key id: refused, and nothing is marked, so a stranger
	 * cannot use up counters the agent will send. */
	memset(proof, 0, sizeof(proof));
	assert_int_equal(linkkey_accept(key, KID, &w, 2, TLS, proof, &why), -1);
	assert_string_equal(why, "wrong link proof");
	assert_int_equal(linkkey_proof(key, KID, 2, TLS, proof), 0);
	proof[0] ^= 0x80;
	assert_int_equal(linkkey_accept(key, KID, &w, 2, TLS, proof, &why), -1);
	assert_int_equal(linkkey_proof(key, KID, 3, TLS, other), 0);
	assert_int_equal(linkkey_accept(key, KID, &w, 2, TLS, other, &why), -1);
	assert_int_equal(linkkey_proof(key, KID + 1, 2, TLS, other), 0);
	assert_int_equal(linkkey_accept(key, KID, &w, 2, TLS, other, &why), -1);
	/* Far ahead with a wrong proof: the window does not move. */
	assert_int_equal(linkkey_accept(key, KID, &w, 1000, TLS, proof, &why), -1);
	assert_memory_equal(&w, &before, sizeof(w));
	/* The agent's own counter 2 still passes. */
	assert_int_equal(take(&w, 2, &why), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_proof),
		cmocka_unit_test(test_kind),
		cmocka_unit_test(test_in_order_and_replay),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_hostile_proofs),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
