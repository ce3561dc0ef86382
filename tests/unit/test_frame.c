/* test_frame.c - the control-frame codec against good and hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "common/frame.h"

static void
hdr(uint8_t *p, uint16_t type, uint16_t flags, uint32_t len)
{
	p[0] = (uint8_t)(type >> 8); p[1] = (uint8_t)type;
	p[2] = (uint8_t)(flags >> 8); p[3] = (uint8_t)flags;
	p[4] = (uint8_t)(len >> 24); p[5] = (uint8_t)(len >> 16);
	p[6] = (uint8_t)(len >> 8); p[7] = (uint8_t)len;
}

static size_t
attr(uint8_t *p, uint16_t tag, const void *v, uint16_t len)
{
	p[0] = (uint8_t)(tag >> 8); p[1] = (uint8_t)tag;
	p[2] = (uint8_t)(len >> 8); p[3] = (uint8_t)len;
	memcpy(p + 4, v, len);
	return 4u + len;
}

/* Encode m, then decode header and payload; returns the decoded msg. */
static void
roundtrip(const struct msg *m, struct msg *out)
{
	struct buf b = { 0 };
	const char *why = NULL;
	uint16_t type;
	uint32_t len;

	assert_int_equal(msg_encode(m, &b, 1 << 20), 0);
	assert_true(buf_len(&b) >= FRAME_HDR);
	assert_int_equal(frame_hdr_decode(b.data, &type, &len, &why), 0);
	assert_int_equal(type, m->type);
	assert_int_equal(len, buf_len(&b) - FRAME_HDR);
	assert_int_equal(msg_decode(type, b.data + FRAME_HDR, len, out, &why), 0);
	buf_free(&b);
}

static void
test_roundtrip_fast_path(void **state)
{
	struct msg m, d;

	(void)state;
	msg_init(&m, FT_HELLO);
	m.version = 1;
	m.data_link = DATA_LINK_PLAIN;
	m.have |= FA_BIT(FA_VERSION) | FA_BIT(FA_DATA_LINK);
	msg_set_str(&m, FA_NAME, "in-1");
	roundtrip(&m, &d);
	assert_true(d.have & FA_BIT(FA_DATA_LINK));
	assert_int_equal(d.data_link, DATA_LINK_PLAIN);

	msg_init(&m, FT_POOL_GRANT);
	m.status = 0;
	memset(m.secret, 3, sizeof(m.secret));
	m.have |= FA_BIT(FA_STATUS) | FA_BIT(FA_SECRET);
	roundtrip(&m, &d);
	assert_int_equal(d.secret[31], 3);

	msg_init(&m, FT_SESS_ASSIGN);
	m.session = 77;
	m.client_port = 4242;
	m.have |= FA_BIT(FA_SESSION) | FA_BIT(FA_CLIENT_PORT);
	msg_set_str(&m, FA_SERVICE, "sftp");
	msg_set_str(&m, FA_CLIENT_ADDR, "192.0.2.1");
	roundtrip(&m, &d);
	assert_int_equal(d.session, 77);
	assert_string_equal(d.client_addr, "192.0.2.1");

	/* Required attributes: SESS_ASSIGN without its client, POOL_HELLO
	 * without a token, DATA_LINK of the wrong size. */
	{
		uint8_t p[64];
		const char *why;
		size_t n = attr(p, FA_SESSION, "\0\0\0\0\0\0\0\1", 8);

		n += attr(p + n, FA_SERVICE, "sftp", 4);
		assert_int_equal(msg_decode(FT_SESS_ASSIGN, p, n, &d, &why), -1);
		assert_int_equal(msg_decode(FT_POOL_HELLO, p, 0, &d, &why), -1);
		assert_int_equal(msg_decode(FT_POOL_REQ, p, 0, &d, &why), 0);
		assert_int_equal(msg_decode(FT_POOL_OK, p, 0, &d, &why), 0);
		n = attr(p, FA_DATA_LINK, "\0\1", 2);
		assert_int_equal(msg_decode(FT_POOL_OK, p, n, &d, &why), -1);
	}
}

static void
test_roundtrip_sess_new(void **state)
{
	struct msg m, d;

	(void)state;
	msg_init(&m, FT_SESS_NEW);
	m.session = 0x0102030405060708ull;
	m.client_port = 54321;
	memset(m.secret, 0xa5, sizeof(m.secret));
	m.have |= FA_BIT(FA_SESSION) | FA_BIT(FA_CLIENT_PORT) | FA_BIT(FA_SECRET);
	msg_set_str(&m, FA_SERVICE, "sftp");
	msg_set_str(&m, FA_CLIENT_ADDR, "2001:db8::1");
	roundtrip(&m, &d);
	assert_int_equal(d.session, m.session);
	assert_int_equal(d.client_port, 54321);
	assert_string_equal(d.service, "sftp");
	assert_string_equal(d.client_addr, "2001:db8::1");
	assert_memory_equal(d.secret, m.secret, sizeof(m.secret));
}

static void
test_roundtrip_all_types(void **state)
{
	static const uint16_t types[] = { FT_HELLO, FT_HELLO_OK, FT_ERROR,
	    FT_SVC_OPEN, FT_SVC_RESULT, FT_SVC_CLOSE, FT_SESS_NEW,
	    FT_SESS_REFUSE, FT_PING, FT_PONG, FT_DATA_HELLO, FT_DATA_OK,
	    FT_POOL_REQ, FT_POOL_GRANT, FT_POOL_HELLO, FT_POOL_OK,
	    FT_SESS_ASSIGN, FT_SESS_DENIED, FT_DENIED_SUMMARY };
	struct msg m, d;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		msg_init(&m, types[i]);
		m.version = 1; m.status = 1; m.session = 7; m.nonce = 99;
		m.client_port = 1;
		m.have = FA_BIT(FA_VERSION) | FA_BIT(FA_STATUS) |
		    FA_BIT(FA_SESSION) | FA_BIT(FA_NONCE) | FA_BIT(FA_CLIENT_PORT) |
		    FA_BIT(FA_SECRET) | FA_BIT(FA_COUNT);
		msg_set_str(&m, FA_NAME, "n");
		msg_set_str(&m, FA_TEXT, "");
		msg_set_str(&m, FA_SERVICE, "s");
		msg_set_str(&m, FA_LISTEN, "127.0.0.1:1");
		msg_set_str(&m, FA_CLIENT_ADDR, "127.0.0.1");
		roundtrip(&m, &d);
		assert_int_equal(d.type, types[i]);
		assert_int_equal(d.have, m.have);
	}
}

static void
test_roundtrip_policy(void **state)
{
	static char big[MSG_CIDRS_MAX];
	struct msg m, d;
	struct buf b = { 0 };
	const char *why;
	uint8_t p[64];
	size_t n;

	(void)state;
	msg_init(&m, FT_SVC_OPEN);
	msg_set_str(&m, FA_SERVICE, "sftp");
	msg_set_str(&m, FA_LISTEN, "0.0.0.0:22");
	msg_set_str(&m, FA_ALLOW, "10.0.0.0/8, 2001:db8::/32");
	msg_set_str(&m, FA_DENY, "10.9.0.0/16");
	/* the longest list an attribute carries */
	memset(big, '1', sizeof(big) - 1);
	msg_set_str(&m, FA_ACCEPT_PROXY, big);
	m.max_sess_ip = 5;
	m.max_rate_ip = 0xfffffffe;
	m.have |= FA_BIT(FA_MAX_SESS_IP) | FA_BIT(FA_MAX_RATE_IP);
	roundtrip(&m, &d);
	assert_string_equal(d.allow, "10.0.0.0/8, 2001:db8::/32");
	assert_string_equal(d.deny, "10.9.0.0/16");
	assert_int_equal(strlen(d.accept_proxy), MSG_CIDRS_MAX - 1);
	assert_int_equal(d.max_sess_ip, 5);
	assert_int_equal(d.max_rate_ip, 0xfffffffe);
	/* the whole struct compares equal: the edge's memcmp relies on it */
	assert_memory_equal(&d, &m, sizeof(m));

	msg_init(&m, FT_SESS_DENIED);
	m.session = 9;
	m.client_port = 4242;
	m.have |= FA_BIT(FA_SESSION) | FA_BIT(FA_CLIENT_PORT);
	msg_set_str(&m, FA_SERVICE, "sftp");
	msg_set_str(&m, FA_CLIENT_ADDR, "192.0.2.1");
	msg_set_str(&m, FA_TEXT, "limit: 5 sessions from this address");
	roundtrip(&m, &d);
	assert_string_equal(d.text, "limit: 5 sessions from this address");

	/* SESS_DENIED without its TEXT, a u32 of the wrong size, a list one
	 * byte too long: refused */
	msg_init(&m, FT_SESS_DENIED);
	m.session = 9;
	m.client_port = 1;
	m.have |= FA_BIT(FA_SESSION) | FA_BIT(FA_CLIENT_PORT);
	msg_set_str(&m, FA_SERVICE, "s");
	msg_set_str(&m, FA_CLIENT_ADDR, "192.0.2.1");
	assert_int_equal(msg_encode(&m, &b, 1 << 20), 0);
	assert_int_equal(msg_decode(FT_SESS_DENIED, b.data + FRAME_HDR,
	    buf_len(&b) - FRAME_HDR, &d, &why), -1);
	buf_free(&b);
	n = attr(p, FA_SERVICE, "s", 1);
	n += attr(p + n, FA_COUNT, "\0\0\1", 3);
	assert_int_equal(msg_decode(FT_DENIED_SUMMARY, p, n, &d, &why), -1);
	{
		static uint8_t q[MSG_CIDRS_MAX + 64];
		static char s4[MSG_CIDRS_MAX];

		memset(s4, '1', sizeof(s4));
		n = attr(q, FA_SERVICE, "s", 1);
		n += attr(q + n, FA_LISTEN, "127.0.0.1:1", 11);
		n += attr(q + n, FA_ALLOW, s4, MSG_CIDRS_MAX);
		assert_int_equal(msg_decode(FT_SVC_OPEN, q, n, &d, &why), -1);
	}
}

static void
test_header_rejects(void **state)
{
	uint8_t h[FRAME_HDR];
	const char *why;
	uint16_t type;
	uint32_t len;

	(void)state;
	hdr(h, FT_PING, 0, FRAME_MAX);
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), 0);
	hdr(h, FT_PING, 0, FRAME_MAX + 1);		/* oversized */
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	assert_string_equal(why, "frame too large");
	hdr(h, FT_PING, 0, 0xffffffffu);
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	hdr(h, 0, 0, 0);				/* unknown types */
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	hdr(h, 11, 0, 0);
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	hdr(h, 0xffff, 0, 0);
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	assert_string_equal(why, "unknown frame type");
	hdr(h, FT_PING, 1, 0);				/* flags set */
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
}

static void
test_truncated_payloads(void **state)
{
	uint8_t p[64], secret[FRAME_SECRET] = { 0 };
	uint8_t id[8] = { 0, 0, 0, 0, 0, 0, 0, 5 };
	struct msg m;
	const char *why;
	size_t n = 0, cut;

	(void)state;
	n += attr(p + n, FA_SESSION, id, 8);
	n += attr(p + n, FA_SECRET, secret, sizeof(secret));
	assert_int_equal(msg_decode(FT_DATA_HELLO, p, n, &m, &why), 0);
	/* Every shorter prefix must fail, never read past the end. */
	for (cut = 0; cut < n; cut++)
		assert_int_equal(msg_decode(FT_DATA_HELLO, p, cut, &m, &why), -1);
}

static void
test_attribute_rejects(void **state)
{
	uint8_t p[256], v[300];
	uint8_t id[8] = { 0 }, one[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
	struct msg m;
	const char *why;
	size_t n;

	(void)state;
	memset(v, 'a', sizeof(v));
	/* wrong fixed length */
	n = attr(p, FA_NONCE, one, 4);
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), -1);
	/* repeated */
	n = attr(p, FA_NONCE, one, 8);
	n += attr(p + n, FA_NONCE, one, 8);
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), -1);
	assert_string_equal(why, "repeated attribute");
	/* missing required */
	n = attr(p, FA_TEXT, "x", 1);
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), -1);
	assert_string_equal(why, "required attribute missing");
	/* session id 0 */
	n = attr(p, FA_SESSION, id, 8);
	assert_int_equal(msg_decode(FT_DATA_OK, p, n, &m, &why), -1);
	/* control byte in a string */
	n = attr(p, FA_TEXT, "a\nb", 3);
	assert_int_equal(msg_decode(FT_ERROR, p, n, &m, &why), -1);
	/* service name with a slash, and one too long */
	n = attr(p, FA_SERVICE, "../x", 4);
	assert_int_equal(msg_decode(FT_SVC_CLOSE, p, n, &m, &why), -1);
	n = attr(p, FA_SERVICE, v, 64);
	assert_int_equal(msg_decode(FT_SVC_CLOSE, p, n, &m, &why), -1);
	n = attr(p, FA_SERVICE, v, 63);
	assert_int_equal(msg_decode(FT_SVC_CLOSE, p, n, &m, &why), 0);
	/* unknown tags, in and beyond the reserved range, are skipped */
	n = attr(p, 200, "zz", 2);
	n += attr(p + n, 15, "z", 1);
	n += attr(p + n, 63, "", 0);
	n += attr(p + n, FA_NONCE, one, 8);
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), 0);
	assert_int_equal(m.nonce, 1);
	/* unknown type */
	assert_int_equal(msg_decode(12, p, n, &m, &why), -1);
	/* attribute length past the payload */
	n = attr(p, FA_NONCE, one, 8);
	p[3] = 9;
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), -1);
	assert_string_equal(why, "attribute runs past the frame");
}

/* PRIORITY (tag 12): a u32 on SVC_OPEN, exactly 4 bytes, big-endian. */
static void
test_priority(void **state)
{
	uint8_t p[256], four[4] = { 0, 1, 0, 2 };
	struct msg m, d;
	const char *why;
	size_t n;

	(void)state;
	msg_init(&m, FT_SVC_OPEN);
	msg_set_str(&m, FA_SERVICE, "sftp");
	msg_set_str(&m, FA_LISTEN, "*:22");
	m.priority = 0xfffffffeu;
	m.have |= FA_BIT(FA_PRIORITY);
	roundtrip(&m, &d);
	assert_true(d.have & FA_BIT(FA_PRIORITY));
	assert_int_equal(d.priority, 0xfffffffeu);

	n = attr(p, FA_SERVICE, "s", 1);
	n += attr(p + n, FA_LISTEN, "*:1", 3);
	n += attr(p + n, FA_PRIORITY, four, 4);
	assert_int_equal(msg_decode(FT_SVC_OPEN, p, n, &d, &why), 0);
	assert_int_equal(d.priority, 0x00010002u);
	/* absent: zero and not marked */
	n = attr(p, FA_SERVICE, "s", 1);
	n += attr(p + n, FA_LISTEN, "*:1", 3);
	assert_int_equal(msg_decode(FT_SVC_OPEN, p, n, &d, &why), 0);
	assert_false(d.have & FA_BIT(FA_PRIORITY));
	assert_int_equal(d.priority, 0);
	/* wrong lengths and repeats fail closed */
	n = attr(p, FA_SERVICE, "s", 1);
	n += attr(p + n, FA_LISTEN, "*:1", 3);
	n += attr(p + n, FA_PRIORITY, four, 2);
	assert_int_equal(msg_decode(FT_SVC_OPEN, p, n, &d, &why), -1);
	n = attr(p, FA_SERVICE, "s", 1);
	n += attr(p + n, FA_LISTEN, "*:1", 3);
	n += attr(p + n, FA_PRIORITY, "12345", 5);
	assert_int_equal(msg_decode(FT_SVC_OPEN, p, n, &d, &why), -1);
	n = attr(p, FA_SERVICE, "s", 1);
	n += attr(p + n, FA_LISTEN, "*:1", 3);
	n += attr(p + n, FA_PRIORITY, four, 4);
	n += attr(p + n, FA_PRIORITY, four, 4);
	assert_int_equal(msg_decode(FT_SVC_OPEN, p, n, &d, &why), -1);
	assert_string_equal(why, "repeated attribute");
}

static void
test_encode_bounded(void **state)
{
	struct buf b = { 0 };
	struct msg m;

	(void)state;
	msg_init(&m, FT_PING);
	m.have |= FA_BIT(FA_NONCE);
	/* A queue bound smaller than the frame refuses it whole. */
	assert_int_equal(msg_encode(&m, &b, 10), -1);
	assert_int_equal(buf_len(&b), 0);
	assert_int_equal(msg_encode(&m, &b, 20), 0);
	assert_int_equal(buf_len(&b), FRAME_HDR + 12);
	buf_free(&b);
}

static void
test_roundtrip_outbound(void **state)
{
	struct msg m, d;
	const char *why;
	uint8_t p[64];
	size_t n;

	(void)state;
	msg_init(&m, FT_OUT_OPEN);
	msg_set_str(&m, FA_DEST_HOST, "files.partner.example");
	m.dest_port = 22;
	memset(m.secret, 0x5a, sizeof(m.secret));
	m.have |= FA_BIT(FA_DEST_PORT) | FA_BIT(FA_SECRET);
	roundtrip(&m, &d);
	assert_string_equal(d.dest_host, "files.partner.example");
	assert_int_equal(d.dest_port, 22);

	msg_init(&m, FT_OUT_RESULT);
	m.status = 1;
	m.out_code = 2;
	m.have |= FA_BIT(FA_STATUS) | FA_BIT(FA_OUT_CODE);
	msg_set_str(&m, FA_DEST_ADDR, "[2001:db8::1]:22");
	roundtrip(&m, &d);
	assert_int_equal(d.out_code, 2);
	assert_string_equal(d.dest_addr, "[2001:db8::1]:22");

	msg_init(&m, FT_OUT_POLICY);
	msg_set_str(&m, FA_OUT_ALLOW, "");
	roundtrip(&m, &d);
	assert_true(d.have & FA_BIT(FA_OUT_ALLOW));
	assert_string_equal(d.out_allow, "");

	/* OUT_OPEN without its token is refused; a 256-byte host too */
	n = attr(p, FA_DEST_HOST, "a", 1);
	n += attr(p + n, FA_DEST_PORT, "\0\x16", 2);
	assert_int_equal(msg_decode(FT_OUT_OPEN, p, n, &d, &why), -1);
	{
		uint8_t big[4 + 256], host[256];
		memset(host, 'a', sizeof(host));
		n = attr(big, FA_DEST_HOST, host, 256);
		assert_int_equal(msg_decode(FT_OUT_OPEN, big, n, &d, &why), -1);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_outbound),
		cmocka_unit_test(test_roundtrip_sess_new),
		cmocka_unit_test(test_roundtrip_fast_path),
		cmocka_unit_test(test_roundtrip_all_types),
		cmocka_unit_test(test_roundtrip_policy),
		cmocka_unit_test(test_header_rejects),
		cmocka_unit_test(test_truncated_payloads),
		cmocka_unit_test(test_attribute_rejects),
		cmocka_unit_test(test_priority),
		cmocka_unit_test(test_encode_bounded),
	};
	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
