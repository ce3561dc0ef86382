/* test_proxy.c - the PROXY protocol: the edge's parser (proxy_parse.c)
 * and the agent's encoder (proxy_enc.c), each against the other, with hostile
 * input: truncation at every offset, oversize, bad signatures and
 * families. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "agent/proxy_enc.h"
#include "edge/proxy_parse.h"

static const uint8_t sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

/* Every strict prefix of a valid header must say "need more", never
 * "invalid" nor a length. */
static void
assert_prefixes_incomplete(const uint8_t *p, size_t n)
{
	struct proxy_hdr h;
	const char *why = NULL;
	size_t i;

	for (i = 0; i < n; i++)
		assert_int_equal(proxy_parse(p, i, &h, &why), 0);
}

static void
test_v1_tcp4(void **state)
{
	const char *s = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /";
	size_t hl = strlen("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n");
	struct proxy_hdr h;
	const char *why = NULL;
	uint8_t a[4];

	(void)state;
	assert_int_equal(proxy_parse((const uint8_t *)s, strlen(s), &h, &why),
	    (int)hl);
	assert_int_equal(h.version, 1);
	assert_int_equal(h.local, 0);
	assert_int_equal(h.family, AF_INET);
	inet_pton(AF_INET, "192.0.2.7", a);
	assert_memory_equal(h.src, a, 4);
	inet_pton(AF_INET, "198.51.100.1", a);
	assert_memory_equal(h.dst, a, 4);
	assert_int_equal(h.sport, 56324);
	assert_int_equal(h.dport, 443);
	assert_prefixes_incomplete((const uint8_t *)s, hl);
}

static void
test_v1_tcp6(void **state)
{
	const char *s = "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n";
	struct proxy_hdr h;
	const char *why = NULL;
	uint8_t a[16];

	(void)state;
	assert_int_equal(proxy_parse((const uint8_t *)s, strlen(s), &h, &why),
	    (int)strlen(s));
	assert_int_equal(h.family, AF_INET6);
	inet_pton(AF_INET6, "2001:db8::1", a);
	assert_memory_equal(h.src, a, 16);
	assert_int_equal(h.sport, 65535);
	assert_int_equal(h.dport, 0);
	assert_prefixes_incomplete((const uint8_t *)s, strlen(s));
}

static void
test_v1_unknown(void **state)
{
	const char *a = "PROXY UNKNOWN\r\n";
	const char *b = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
	struct proxy_hdr h;
	const char *why = NULL;

	(void)state;
	assert_int_equal(proxy_parse((const uint8_t *)a, strlen(a), &h, &why),
	    (int)strlen(a));
	assert_int_equal(h.local, 1);
	assert_int_equal(proxy_parse((const uint8_t *)b, strlen(b), &h, &why),
	    (int)strlen(b));
	assert_int_equal(h.local, 1);
}

static void
test_v1_longest(void **state)
{
	/* The longest TCP header (104 bytes), and the longest legal one,
	 * UNKNOWN with the longest addresses: exactly 107 bytes. */
	const char *s = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	const char *u = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	struct proxy_hdr h;
	const char *why = NULL;

	(void)state;
	assert_int_equal(proxy_parse((const uint8_t *)s, strlen(s), &h, &why),
	    (int)strlen(s));
	assert_int_equal(h.sport, 65535);
	assert_int_equal(strlen(u), PROXY_V1_MAX);
	assert_int_equal(proxy_parse((const uint8_t *)u, strlen(u), &h, &why),
	    PROXY_V1_MAX);
	assert_int_equal(h.local, 1);
}

static void
test_v1_bad(void **state)
{
	static const char *const bad[] = {
		"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n",	/* LF only */
		"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\rX",
		"PROXY TCP4 192.0.2.7  198.51.100.1 56324 443\r\n",	/* 2 spaces */
		"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",		/* no port */
		"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 9\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",	/* port */
		"PROXY TCP4 192.0.2.7 198.51.100.1 -1 443\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 123456 443\r\n",
		"PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",		/* family */
		"PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n",
		"PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n",
		"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
		"PROXY \r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 \r\n",
		"PROXY TCP4 192.0.2.7\t198.51.100.1 1 2\r\n",	/* control */
		"PROXYTCP4 192.0.2.7 198.51.100.1 1 2\r\n",		/* signature */
		"proxy TCP4 192.0.2.7 198.51.100.1 1 2\r\n",
		"GET / HTTP/1.0\r\n",
		"SSH-2.0-OpenSSH_9.2\r\n",
	};
	struct proxy_hdr h;
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		assert_int_equal(proxy_parse((const uint8_t *)bad[i],
		    strlen(bad[i]), &h, &why), -1);
		assert_non_null(why);
	}
}

static void
test_v1_oversize(void **state)
{
	uint8_t p[300];
	struct proxy_hdr h;
	const char *why = NULL;

	(void)state;
	/* 200 bytes without CRLF: refused once 107 have arrived, whatever
	 * comes after; not before (it could still be a short header). */
	memset(p, 'a', sizeof(p));
	memcpy(p, "PROXY UNKNOWN ", 14);
	assert_int_equal(proxy_parse(p, 106, &h, &why), 0);
	assert_int_equal(proxy_parse(p, 107, &h, &why), -1);
	assert_int_equal(proxy_parse(p, 200, &h, &why), -1);
	/* CRLF where the LF would be the 108th byte */
	p[106] = '\r';
	p[107] = '\n';
	assert_int_equal(proxy_parse(p, 106, &h, &why), 0);
	assert_int_equal(proxy_parse(p, 107, &h, &why), -1);
	assert_int_equal(proxy_parse(p, 108, &h, &why), -1);
	/* and at 107 bytes it is fine */
	p[105] = '\r';
	p[106] = '\n';
	assert_int_equal(proxy_parse(p, 107, &h, &why), 107);
}

static size_t
v2(uint8_t *p, uint8_t vercmd, uint8_t fam, const uint8_t *body, uint16_t len)
{
	memcpy(p, sig, 12);
	p[12] = vercmd;
	p[13] = fam;
	p[14] = (uint8_t)(len >> 8);
	p[15] = (uint8_t)len;
	if (body != NULL)
		memcpy(p + 16, body, len);
	return 16u + len;
}

static void
test_v2_ipv4_tlvs(void **state)
{
	uint8_t body[12 + 9] = {
		192, 0, 2, 7,  198, 51, 100, 1,  0xdc, 0x04,  0x01, 0xbb,
		/* TLVs: ALPN "h2", NOOP of 2 bytes: skipped */
		0x01, 0x00, 0x02, 'h', '2',  0x04, 0x00, 0x01, 0x00,
	};
	uint8_t p[64 + 8];
	struct proxy_hdr h;
	const char *why = NULL;
	size_t n = v2(p, 0x21, 0x11, body, sizeof(body));

	(void)state;
	memcpy(p + n, "SSH-2.0", 7);	/* client bytes: not consumed */
	assert_int_equal(proxy_parse(p, n + 7, &h, &why), (int)n);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.local, 0);
	assert_int_equal(h.family, AF_INET);
	assert_memory_equal(h.src, body, 4);
	assert_memory_equal(h.dst, body + 4, 4);
	assert_int_equal(h.sport, 0xdc04);
	assert_int_equal(h.dport, 443);
	assert_prefixes_incomplete(p, n);
}

static void
test_v2_ipv6(void **state)
{
	uint8_t body[36], p[64];
	struct proxy_hdr h;
	const char *why = NULL;
	size_t n;

	(void)state;
	inet_pton(AF_INET6, "2001:db8::7", body);
	inet_pton(AF_INET6, "2001:db8::1", body + 16);
	body[32] = 0x30; body[33] = 0x39;	/* 12345 */
	body[34] = 0x00; body[35] = 0x16;	/* 22 */
	n = v2(p, 0x21, 0x21, body, sizeof(body));
	assert_int_equal(proxy_parse(p, n, &h, &why), (int)n);
	assert_int_equal(h.family, AF_INET6);
	assert_memory_equal(h.src, body, 16);
	assert_memory_equal(h.dst, body + 16, 16);
	assert_int_equal(h.sport, 12345);
	assert_int_equal(h.dport, 22);
	assert_prefixes_incomplete(p, n);
}

static void
test_v2_local(void **state)
{
	uint8_t p[64], body[12] = { 0 };
	struct proxy_hdr h;
	const char *why = NULL;
	size_t n;

	(void)state;
	/* LOCAL with no addresses (health check) */
	n = v2(p, 0x20, 0x00, NULL, 0);
	assert_int_equal(proxy_parse(p, n, &h, &why), 16);
	assert_int_equal(h.local, 1);
	/* LOCAL with an address block: ignored, still consumed */
	n = v2(p, 0x20, 0x11, body, sizeof(body));
	assert_int_equal(proxy_parse(p, n, &h, &why), 28);
	assert_int_equal(h.local, 1);
	/* PROXY with UNSPEC: keep the peer too */
	n = v2(p, 0x21, 0x00, NULL, 0);
	assert_int_equal(proxy_parse(p, n, &h, &why), 16);
	assert_int_equal(h.local, 1);
}

static void
test_v2_bad(void **state)
{
	uint8_t p[64], body[36] = { 0 };
	struct proxy_hdr h;
	const char *why;
	size_t n;

	(void)state;
	/* version 1 in the v2 format */
	v2(p, 0x11, 0x11, body, 12);
	assert_int_equal(proxy_parse(p, 13, &h, &why), -1);
	/* unknown command: refused as soon as byte 13 is there */
	v2(p, 0x22, 0x11, body, 12);
	assert_int_equal(proxy_parse(p, 13, &h, &why), -1);
	/* bad families: refused from the 16 first bytes */
	v2(p, 0x21, 0x31, body, 36);
	assert_int_equal(proxy_parse(p, 16, &h, &why), -1);	/* UNIX */
	v2(p, 0x21, 0x41, body, 36);
	assert_int_equal(proxy_parse(p, 16, &h, &why), -1);	/* 4 */
	v2(p, 0x21, 0xf1, body, 36);
	assert_int_equal(proxy_parse(p, 16, &h, &why), -1);
	/* datagram */
	v2(p, 0x21, 0x12, body, 12);
	assert_int_equal(proxy_parse(p, 16, &h, &why), -1);
	/* length shorter than the addresses */
	n = v2(p, 0x21, 0x11, body, 11);
	assert_int_equal(proxy_parse(p, n, &h, &why), -1);
	n = v2(p, 0x21, 0x21, body, 35);
	assert_int_equal(proxy_parse(p, n, &h, &why), -1);
	/* bad signature at each of its 12 bytes */
	for (size_t i = 0; i < 12; i++) {
		n = v2(p, 0x21, 0x11, body, 12);
		p[i] ^= 0x40;
		why = NULL;
		assert_int_equal(proxy_parse(p, n, &h, &why), -1);
		assert_non_null(why);
		/* and as soon as the bad byte is there */
		assert_int_equal(proxy_parse(p, i + 1, &h, &why), -1);
	}
}

static void
test_v2_oversize(void **state)
{
	static uint8_t p[PROXY_MAX + 64];
	struct proxy_hdr h;
	const char *why = NULL;

	(void)state;
	memset(p, 0, sizeof(p));
	/* The longest accepted header... */
	v2(p, 0x21, 0x11, NULL, PROXY_V2_LEN_MAX);
	assert_int_equal(proxy_parse(p, 16, &h, &why), 0);
	assert_int_equal(proxy_parse(p, PROXY_MAX, &h, &why), PROXY_MAX);
	/* ...and one byte more is refused from the first 16 bytes. */
	v2(p, 0x21, 0x11, NULL, PROXY_V2_LEN_MAX + 1);
	assert_int_equal(proxy_parse(p, 16, &h, &why), -1);
	v2(p, 0x21, 0x11, NULL, 0xffff);
	assert_int_equal(proxy_parse(p, 16, &h, &why), -1);
}

static void
test_empty_and_other(void **state)
{
	struct proxy_hdr h;
	const char *why = NULL;
	uint8_t z = 0;

	(void)state;
	assert_int_equal(proxy_parse(&z, 0, &h, &why), 0);
	assert_int_equal(proxy_parse(&z, 1, &h, &why), -1);
	assert_int_equal(proxy_parse((const uint8_t *)"\x16\x03\x01", 3, &h,
	    &why), -1);	/* a TLS ClientHello */
}

static void
test_encode(void **state)
{
	struct sockaddr_in a = { 0 }, b = { 0 };
	struct sockaddr_in6 c = { 0 };
	struct proxy_hdr h;
	const char *why = NULL;
	uint8_t out[PROXY_MAX];
	int n;

	(void)state;
	a.sin_family = b.sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.5", &a.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &b.sin_addr);
	a.sin_port = htons(40000);
	b.sin_port = htons(2222);
	n = proxy_encode(1, (struct sockaddr *)&a, (struct sockaddr *)&b, out,
	    sizeof(out));
	assert_int_equal(n, (int)strlen("PROXY TCP4 127.0.0.5 127.0.0.1 40000 2222\r\n"));
	assert_memory_equal(out, "PROXY TCP4 127.0.0.5 127.0.0.1 40000 2222\r\n",
	    (size_t)n);
	/* v2 round trip */
	n = proxy_encode(2, (struct sockaddr *)&a, (struct sockaddr *)&b, out,
	    sizeof(out));
	assert_int_equal(n, 28);
	assert_int_equal(proxy_parse(out, (size_t)n, &h, &why), 28);
	assert_int_equal(h.family, AF_INET);
	assert_memory_equal(h.src, &a.sin_addr, 4);
	assert_int_equal(h.sport, 40000);
	assert_int_equal(h.dport, 2222);
	/* mixed families: IPv4 becomes IPv4-mapped */
	c.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::9", &c.sin6_addr);
	c.sin6_port = htons(22);
	n = proxy_encode(1, (struct sockaddr *)&a, (struct sockaddr *)&c, out,
	    sizeof(out));
	assert_true(n > 0);
	assert_memory_equal(out, "PROXY TCP6 ::ffff:127.0.0.5 2001:db8::9 40000 22\r\n",
	    (size_t)n);
	assert_int_equal(proxy_parse(out, (size_t)n, &h, &why), n);
	n = proxy_encode(2, (struct sockaddr *)&a, (struct sockaddr *)&c, out,
	    sizeof(out));
	assert_int_equal(n, 52);
	assert_int_equal(proxy_parse(out, (size_t)n, &h, &why), 52);
	assert_int_equal(h.family, AF_INET6);
	/* too small an output, bad version */
	assert_int_equal(proxy_encode(2, (struct sockaddr *)&a,
	    (struct sockaddr *)&b, out, 27), -1);
	assert_int_equal(proxy_encode(1, (struct sockaddr *)&a,
	    (struct sockaddr *)&b, out, 20), -1);
	assert_int_equal(proxy_encode(3, (struct sockaddr *)&a,
	    (struct sockaddr *)&b, out, sizeof(out)), -1);
}

/* The longest header the agent writes fits PROXY_ENC_MAX, and the edge's
 * parser reads back what the encoder wrote, both versions. */
static void
test_encode_longest(void **state)
{
	struct sockaddr_in6 a = { 0 }, b = { 0 };
	struct proxy_hdr h;
	const char *why = NULL;
	uint8_t out[PROXY_ENC_MAX];
	int n, v;

	(void)state;
	a.sin6_family = b.sin6_family = AF_INET6;
	memset(&a.sin6_addr, 0xff, sizeof(a.sin6_addr));
	memset(&b.sin6_addr, 0xfe, sizeof(b.sin6_addr));
	a.sin6_port = b.sin6_port = htons(65535);
	for (v = 1; v <= 2; v++) {
		n = proxy_encode(v, (struct sockaddr *)&a,
		    (struct sockaddr *)&b, out, sizeof(out));
		assert_true(n > 0 && n <= PROXY_ENC_MAX);
		assert_int_equal(proxy_parse(out, (size_t)n, &h, &why), n);
		assert_int_equal(h.version, v);
		assert_int_equal(h.family, AF_INET6);
		assert_memory_equal(h.src, &a.sin6_addr, 16);
		assert_memory_equal(h.dst, &b.sin6_addr, 16);
		assert_int_equal(h.sport, 65535);
		assert_int_equal(h.dport, 65535);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6),
		cmocka_unit_test(test_v1_unknown),
		cmocka_unit_test(test_v1_longest),
		cmocka_unit_test(test_v1_bad),
		cmocka_unit_test(test_v1_oversize),
		cmocka_unit_test(test_v2_ipv4_tlvs),
		cmocka_unit_test(test_v2_ipv6),
		cmocka_unit_test(test_v2_local),
		cmocka_unit_test(test_v2_bad),
		cmocka_unit_test(test_v2_oversize),
		cmocka_unit_test(test_empty_and_other),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_encode_longest),
	};
	return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
