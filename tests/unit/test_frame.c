/* test_frame.c - the frame codec (docs/protocol.md, "Frames") against good
 * and hostile input: every type round-trips, and what a hostile peer may
 * send (ids of 0, unknown SESS_KIND or END, wrong lengths, repeats, a
 * frame whose length is not the bytes it came in) fails closed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "common/end.h"
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
	if (len > 0)
		memcpy(p + 4, v, len);
	return 4u + len;
}

static const uint8_t one64[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
static const uint8_t zero64[8] = { 0 };
static const uint8_t key32[FRAME_KEY] = { 1, 2, 3 };
static const uint8_t bans21[21] = { [10] = 0xff, [11] = 0xff, 192, 0, 2, 7,
    128, 0, 0, 0x02, 0x58 };

/* Encode m, then decode it both ways (header and payload apart, and as
 * one frame); the decoded message is the one encoded, byte for byte. */
static void
roundtrip(const struct msg *m, struct msg *out)
{
	struct buf b = { 0 };
	struct msg d2;
	const char *why = NULL;
	uint16_t type;
	uint32_t len;

	assert_int_equal(msg_encode(m, &b, 1 << 20), 0);
	assert_true(buf_len(&b) >= FRAME_HDR);
	assert_int_equal(frame_hdr_decode(b.data, &type, &len, &why), 0);
	assert_int_equal(type, m->type);
	assert_int_equal(len, buf_len(&b) - FRAME_HDR);
	assert_int_equal(msg_decode(type, b.data + FRAME_HDR, len, out, &why), 0);
	assert_int_equal(msg_decode_frame(b.data, buf_len(&b), &d2, &why), 0);
	/* BANS points into the bytes decoded: compared by content. */
	assert_int_equal(out->bans_len, m->bans_len);
	assert_int_equal(d2.bans_len, m->bans_len);
	if (m->bans_len > 0) {
		assert_memory_equal(out->bans, m->bans, m->bans_len);
		assert_memory_equal(d2.bans, m->bans, m->bans_len);
		assert_ptr_equal(out->bans, b.data + (d2.bans - b.data));
	}
	d2.bans = out->bans = m->bans;
	assert_memory_equal(out, &d2, sizeof(d2));
	assert_memory_equal(out, m, sizeof(*m));
	out->bans = NULL;	/* b is freed */
	buf_free(&b);
}

/* Decode the payload p[0..n) as type; the result, with *why set on -1. */
static int
dec(uint16_t type, const uint8_t *p, size_t n, const char **why)
{
	struct msg m;

	*why = NULL;
	return msg_decode(type, p, n, &m, why);
}

/* Every type, with its required attributes only and then with every
 * attribute a message may carry: what was sent is what arrives. */
static void
test_roundtrip_all_types(void **state)
{
	struct msg m, d;
	uint16_t t;

	(void)state;
	assert_string_equal(frame_type_name(FT_DRAINING), "DRAINING");
	assert_string_equal(frame_type_name(FT_HANDOVER), "HANDOVER");
	for (t = 1; t <= FT_MAX_TYPE; t++) {
		/* Numbers left free between the groups of types (25-26) are
		 * unknown types, refused like any other. */
		if (strcmp(frame_type_name(t), "unknown") == 0) {
			assert_true(t > FT_HANDOVER && t < FT_FTP_DIAL);
			continue;
		}
		msg_init(&m, t);
		m.version = 1; m.status = 1; m.data_link = DATA_LINK_PLAIN;
		m.sess_kind = SK_OUTBOUND; m.end = SE_STOPPING; m.out_code = 6;
		m.client_port = 1; m.local_port = 2; m.pasv_min = 3;
		m.pasv_max = 4; m.ftp_port = 5; m.dest_port = 6;
		m.priority = 7; m.idle_timeout = 8; m.max_sess_ip = 9;
		m.max_rate_ip = 10; m.count = 11; m.session = 12; m.nonce = 13;
		m.key_id = 14; m.counter = 15; m.ftp_ctl = 16; m.request = 17;
		m.ftp_active = 1;
		m.ho_step = HO_STATUS; m.instance = 18; m.processes = 19;
		memset(m.link_key, 0xa5, sizeof(m.link_key));
		memset(m.proof, 0x5a, sizeof(m.proof));
		m.have = FA_BIT(FA_VERSION) | FA_BIT(FA_STATUS) |
		    FA_BIT(FA_SESSION) | FA_BIT(FA_CLIENT_PORT) |
		    FA_BIT(FA_LOCAL_PORT) | FA_BIT(FA_NONCE) |
		    FA_BIT(FA_LINK_KEY) | FA_BIT(FA_KEY_ID) |
		    FA_BIT(FA_COUNTER) | FA_BIT(FA_PROOF) |
		    FA_BIT(FA_DATA_LINK) | FA_BIT(FA_SESS_KIND) |
		    FA_BIT(FA_PRIORITY) | FA_BIT(FA_IDLE_TIMEOUT) |
		    FA_BIT(FA_MAX_SESS_IP) | FA_BIT(FA_MAX_RATE_IP) |
		    FA_BIT(FA_COUNT) | FA_BIT(FA_END) | FA_BIT(FA_PASV_MIN) |
		    FA_BIT(FA_PASV_MAX) | FA_BIT(FA_FTP_CTL) |
		    FA_BIT(FA_FTP_PORT) | FA_BIT(FA_REQUEST) |
		    FA_BIT(FA_DEST_PORT) | FA_BIT(FA_OUT_CODE) |
		    FA_BIT(FA_FTP_ACTIVE) | FA_BIT(FA_HO_STEP) |
		    FA_BIT(FA_INSTANCE) | FA_BIT(FA_PROCESSES);
		msg_set_str(&m, FA_NAME, "edge-1");
		msg_set_str(&m, FA_TEXT, "");
		msg_set_str(&m, FA_SERVICE, "sftp");
		msg_set_str(&m, FA_LISTEN, "[::]:22");
		msg_set_str(&m, FA_CLIENT_ADDR, "192.0.2.1");
		msg_set_str(&m, FA_LOCAL_ADDR, "198.51.100.1");
		msg_set_str(&m, FA_ALLOW, "10.0.0.0/8");
		msg_set_str(&m, FA_DENY, "");
		msg_set_str(&m, FA_ACCEPT_PROXY, "::1");
		msg_set_str(&m, FA_STATS, "a=1");
		msg_set_str(&m, FA_PROTOCOL, "ftps");
		msg_set_str(&m, FA_OUT_ALLOW, "*:443");
		msg_set_str(&m, FA_DEST_HOST, "files.example.com");
		msg_set_str(&m, FA_DEST_ADDR, "203.0.113.9:443");
		m.bans = bans21;
		m.bans_len = sizeof(bans21);
		msg_have(&m, FA_BANS);
		msg_set_int(&m, FA_BAN_CUT, 1);
		roundtrip(&m, &d);
		assert_int_equal(d.type, t);
	}
}

/* The messages of a session's life, with what each must carry. */
static void
test_roundtrip_session(void **state)
{
	struct msg m, d;
	uint8_t p[128];
	const char *why;
	size_t n;
	uint8_t k;

	(void)state;
	msg_init(&m, FT_HELLO);
	m.version = FRAME_VERSION;
	m.data_link = DATA_LINK_PLAIN;
	msg_have(&m, FA_VERSION);
	msg_have(&m, FA_DATA_LINK);
	msg_set_str(&m, FA_NAME, "in-1");
	roundtrip(&m, &d);
	assert_int_equal(d.data_link, DATA_LINK_PLAIN);

	msg_init(&m, FT_HELLO_OK);
	m.version = FRAME_VERSION;
	m.key_id = 0xfedcba9876543210ull;
	memset(m.link_key, 3, sizeof(m.link_key));
	msg_have(&m, FA_VERSION);
	msg_have(&m, FA_KEY_ID);
	msg_have(&m, FA_LINK_KEY);
	msg_set_str(&m, FA_NAME, "dmz");
	roundtrip(&m, &d);
	assert_int_equal(d.key_id, 0xfedcba9876543210ull);
	assert_int_equal(d.link_key[31], 3);

	msg_init(&m, FT_LINK_HELLO);
	m.key_id = 0;		/* a key id may be anything, 0 included */
	m.counter = 1;
	memset(m.proof, 0x77, sizeof(m.proof));
	msg_have(&m, FA_KEY_ID);
	msg_have(&m, FA_COUNTER);
	msg_have(&m, FA_PROOF);
	roundtrip(&m, &d);
	assert_int_equal(d.counter, 1);

	for (k = SK_CLIENT; k <= SK_MAX; k++) {
		msg_init(&m, FT_SESS_OPEN);
		m.session = 0x0102030405060708ull;
		m.sess_kind = k;
		m.client_port = 54321;
		msg_have(&m, FA_SESSION);
		msg_have(&m, FA_SESS_KIND);
		msg_have(&m, FA_CLIENT_PORT);
		msg_set_str(&m, FA_SERVICE, "sftp");
		msg_set_str(&m, FA_CLIENT_ADDR, "2001:db8::1");
		roundtrip(&m, &d);
		assert_int_equal(d.sess_kind, k);
		assert_int_equal(d.session, m.session);
	}

	/* SESS_OPEN without its kind, or without its session. */
	n = attr(p, FA_SESSION, one64, 8);
	assert_int_equal(dec(FT_SESS_OPEN, p, n, &why), -1);
	assert_string_equal(why, "required attribute missing");
	n = attr(p, FA_SESS_KIND, "\0", 1);
	assert_int_equal(dec(FT_SESS_OPEN, p, n, &why), -1);
	assert_string_equal(why, "required attribute missing");
	/* LINK_HELLO without its proof; a proof one byte short. */
	n = attr(p, FA_KEY_ID, one64, 8);
	n += attr(p + n, FA_COUNTER, one64, 8);
	assert_int_equal(dec(FT_LINK_HELLO, p, n, &why), -1);
	n += attr(p + n, FA_PROOF, key32, FRAME_KEY - 1);
	assert_int_equal(dec(FT_LINK_HELLO, p, n, &why), -1);
	assert_string_equal(why, "attribute has the wrong length");
	/* Types that need nothing take nothing. */
	assert_int_equal(dec(FT_STATS_REQ, p, 0, &why), 0);
}

/* Values the tables cannot say: ids that are never 0, and enumerations
 * with a known range. Each is refused whatever the type it comes in. */
static void
test_hostile_values(void **state)
{
	uint8_t p[128], v;
	const char *why;
	size_t n, base;

	(void)state;
	/* SESS_OPEN with session 0. */
	n = attr(p, FA_SESSION, zero64, 8);
	n += attr(p + n, FA_SESS_KIND, "\0", 1);
	assert_int_equal(dec(FT_SESS_OPEN, p, n, &why), -1);
	assert_string_equal(why, "an id of 0");
	/* An unknown SESS_KIND: one past the last, and 0xff. */
	n = attr(p, FA_SESSION, one64, 8);
	base = n;
	v = SK_MAX + 1;
	n += attr(p + n, FA_SESS_KIND, &v, 1);
	assert_int_equal(dec(FT_SESS_OPEN, p, n, &why), -1);
	assert_string_equal(why, "unknown session kind");
	v = 0xff;
	n = base + attr(p + base, FA_SESS_KIND, &v, 1);
	assert_int_equal(dec(FT_SESS_OPEN, p, n, &why), -1);
	v = SK_MAX;
	n = base + attr(p + base, FA_SESS_KIND, &v, 1);
	assert_int_equal(dec(FT_SESS_OPEN, p, n, &why), 0);
	/* A SESS_KIND of the wrong length. */
	n = base + attr(p + base, FA_SESS_KIND, "\0\0", 2);
	assert_int_equal(dec(FT_SESS_OPEN, p, n, &why), -1);

	/* END: SE_NONE is not an end, nor anything past SE_STOPPING. */
	for (v = 0; ; v++) {
		n = attr(p, FA_SESSION, one64, 8);
		n += attr(p + n, FA_SERVICE, "s", 1);
		n += attr(p + n, FA_CLIENT_ADDR, "192.0.2.1", 9);
		n += attr(p + n, FA_CLIENT_PORT, "\0\1", 2);
		n += attr(p + n, FA_TEXT, "t", 1);
		n += attr(p + n, FA_END, &v, 1);
		if (v >= SE_CLIENT_CLOSED && v < SE_COUNT)
			assert_int_equal(dec(FT_SESS_DENIED, p, n, &why), 0);
		else {
			assert_int_equal(dec(FT_SESS_DENIED, p, n, &why), -1);
			assert_string_equal(why, "unknown END code");
		}
		if (v == 0xff)
			break;
	}

	/* COUNTER 0 (a replayed-looking first link), REQUEST 0, FTP_CTL 0,
	 * DEST_PORT 0. */
	n = attr(p, FA_KEY_ID, one64, 8);
	n += attr(p + n, FA_COUNTER, zero64, 8);
	n += attr(p + n, FA_PROOF, key32, FRAME_KEY);
	assert_int_equal(dec(FT_LINK_HELLO, p, n, &why), -1);
	assert_string_equal(why, "an id of 0");
	n = attr(p, FA_REQUEST, zero64, 8);
	n += attr(p + n, FA_OUT_CODE, "\1", 1);
	assert_int_equal(dec(FT_OUT_FAIL, p, n, &why), -1);
	assert_string_equal(why, "an id of 0");
	n = attr(p, FA_SESSION, one64, 8);
	n += attr(p + n, FA_SESS_KIND, "\1", 1);
	n += attr(p + n, FA_FTP_CTL, zero64, 8);
	assert_int_equal(dec(FT_SESS_OPEN, p, n, &why), -1);
	assert_string_equal(why, "an id of 0");
	n = attr(p, FA_REQUEST, one64, 8);
	n += attr(p + n, FA_DEST_HOST, "a", 1);
	n += attr(p + n, FA_DEST_PORT, "\0\0", 2);
	assert_int_equal(dec(FT_OUT_REQ, p, n, &why), -1);
	assert_string_equal(why, "destination port 0");
	/* DATA_LINK other than TLS or plain. */
	n = attr(p, FA_VERSION, "\0\1", 2);
	n += attr(p + n, FA_NAME, "a", 1);
	n += attr(p + n, FA_DATA_LINK, "\2", 1);
	assert_int_equal(dec(FT_HELLO, p, n, &why), -1);
	assert_string_equal(why, "unknown data link kind");
	/* FTP_ACTIVE: 1 or absent, nothing else. */
	n = attr(p, FA_SERVICE, "f", 1);
	n += attr(p + n, FA_LISTEN, "*:21", 4);
	base = n;
	n += attr(p + n, FA_FTP_ACTIVE, "\1", 1);
	assert_int_equal(dec(FT_SVC_OPEN, p, n, &why), 0);
	n = base + attr(p + base, FA_FTP_ACTIVE, "\0", 1);
	assert_int_equal(dec(FT_SVC_OPEN, p, n, &why), -1);
	assert_string_equal(why, "FTP_ACTIVE not 1");
	n = base + attr(p + base, FA_FTP_ACTIVE, "\2", 1);
	assert_int_equal(dec(FT_SVC_OPEN, p, n, &why), -1);
	/* FTP_DIAL: REQUEST, FTP_CTL and DEST_PORT, none 0; its failure
	 * needs REQUEST and OUT_CODE. */
	n = attr(p, FA_REQUEST, one64, 8);
	n += attr(p + n, FA_FTP_CTL, one64, 8);
	base = n;
	assert_int_equal(dec(FT_FTP_DIAL, p, n, &why), -1);
	assert_string_equal(why, "required attribute missing");
	n += attr(p + n, FA_DEST_PORT, "\x9c\x40", 2);
	assert_int_equal(dec(FT_FTP_DIAL, p, n, &why), 0);
	n = base + attr(p + base, FA_DEST_PORT, "\0\0", 2);
	assert_int_equal(dec(FT_FTP_DIAL, p, n, &why), -1);
	assert_string_equal(why, "destination port 0");
	n = attr(p, FA_REQUEST, one64, 8);
	n += attr(p + n, FA_FTP_CTL, zero64, 8);
	n += attr(p + n, FA_DEST_PORT, "\x9c\x40", 2);
	assert_int_equal(dec(FT_FTP_DIAL, p, n, &why), -1);
	assert_string_equal(why, "an id of 0");
	n = attr(p, FA_REQUEST, one64, 8);
	assert_int_equal(dec(FT_FTP_DIAL_FAIL, p, n, &why), -1);
	n += attr(p + n, FA_OUT_CODE, "\2", 1);
	assert_int_equal(dec(FT_FTP_DIAL_FAIL, p, n, &why), 0);
	/* A hand-over step of 0 or past the last; an agent instance of 0. */
	for (v = 0; ; v++) {
		n = attr(p, FA_HO_STEP, &v, 1);
		if (v >= 1 && v <= HO_STEP_MAX)
			assert_int_equal(dec(FT_HANDOVER, p, n, &why), 0);
		else {
			assert_int_equal(dec(FT_HANDOVER, p, n, &why), -1);
			assert_string_equal(why, "unknown hand-over step");
		}
		if (v == 0xff)
			break;
	}
	assert_int_equal(dec(FT_HANDOVER, p, 0, &why), -1);
	assert_string_equal(why, "required attribute missing");
	n = attr(p, FA_VERSION, "\0\1", 2);
	n += attr(p + n, FA_NAME, "a", 1);
	n += attr(p + n, FA_INSTANCE, zero64, 8);
	assert_int_equal(dec(FT_HELLO, p, n, &why), -1);
	assert_string_equal(why, "an id of 0");
	/* DRAINING carries nothing it must have; TEXT if anything. */
	assert_int_equal(dec(FT_DRAINING, p, 0, &why), 0);
}

/* msg_decode_frame takes exactly one whole frame: not a byte less, not
 * a byte more, and the header's length must be what came. */
static void
test_decode_frame_exact(void **state)
{
	uint8_t f[FRAME_HDR + 64];
	struct msg m;
	const char *why;
	size_t n, plen, k;

	(void)state;
	plen = attr(f + FRAME_HDR, FA_NONCE, one64, 8);
	hdr(f, FT_PING, 0, (uint32_t)plen);
	n = FRAME_HDR + plen;
	assert_int_equal(msg_decode_frame(f, n, &m, &why), 0);
	assert_int_equal(m.type, FT_PING);
	assert_int_equal(m.nonce, 1);
	/* Every shorter prefix fails, the header ones included. */
	for (k = 0; k < n; k++) {
		why = NULL;
		assert_int_equal(msg_decode_frame(f, k, &m, &why), -1);
		assert_non_null(why);
	}
	assert_int_equal(msg_decode_frame(f, FRAME_HDR - 1, &m, &why), -1);
	assert_string_equal(why, "truncated frame header");
	/* A byte beyond it. */
	f[n] = 0;
	assert_int_equal(msg_decode_frame(f, n + 1, &m, &why), -1);
	assert_string_equal(why, "frame length does not match");
	/* The header says one byte less, or one more, than came. */
	hdr(f, FT_PING, 0, (uint32_t)plen - 1);
	assert_int_equal(msg_decode_frame(f, n, &m, &why), -1);
	assert_string_equal(why, "frame length does not match");
	hdr(f, FT_PING, 0, (uint32_t)plen + 1);
	assert_int_equal(msg_decode_frame(f, n, &m, &why), -1);
	/* A length that wraps when added to the header. */
	hdr(f, FT_PING, 0, 0xfffffff8u);
	assert_int_equal(msg_decode_frame(f, n, &m, &why), -1);
	/* Header checks apply: flags, type. */
	hdr(f, FT_PING, 0x8000, (uint32_t)plen);
	assert_int_equal(msg_decode_frame(f, n, &m, &why), -1);
	assert_string_equal(why, "frame flags not zero");
	hdr(f, FT_MAX_TYPE + 1, 0, (uint32_t)plen);
	assert_int_equal(msg_decode_frame(f, n, &m, &why), -1);
	assert_string_equal(why, "unknown frame type");
	/* A frame with an empty payload is a whole frame. */
	hdr(f, FT_STATS_REQ, 0, 0);
	assert_int_equal(msg_decode_frame(f, FRAME_HDR, &m, &why), 0);
	assert_int_equal(m.type, FT_STATS_REQ);
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
	assert_int_equal(type, FT_PING);
	assert_int_equal(len, FRAME_MAX);
	hdr(h, FT_PING, 0, FRAME_MAX + 1);		/* oversized */
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	assert_string_equal(why, "frame too large");
	hdr(h, FT_PING, 0, 0xffffffffu);
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	hdr(h, 0, 0, 0);				/* unknown types */
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	hdr(h, FT_MAX_TYPE + 1, 0, 0);
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	hdr(h, 0xffff, 0, 0);
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	assert_string_equal(why, "unknown frame type");
	hdr(h, FT_PING, 1, 0);				/* flags set */
	assert_int_equal(frame_hdr_decode(h, &type, &len, &why), -1);
	assert_string_equal(frame_type_name(0), "unknown");
	assert_string_equal(frame_type_name(FT_MAX_TYPE + 1), "unknown");
	assert_string_equal(frame_type_name(FT_SESS_OPEN), "SESS_OPEN");
}

static void
test_truncated_payloads(void **state)
{
	uint8_t p[128], proof[FRAME_KEY] = { 0 };
	struct msg m;
	const char *why;
	size_t n = 0, cut;

	(void)state;
	n += attr(p + n, FA_KEY_ID, one64, 8);
	n += attr(p + n, FA_COUNTER, one64, 8);
	n += attr(p + n, FA_PROOF, proof, sizeof(proof));
	assert_int_equal(msg_decode(FT_LINK_HELLO, p, n, &m, &why), 0);
	/* Every shorter prefix must fail, never read past the end. */
	for (cut = 0; cut < n; cut++)
		assert_int_equal(msg_decode(FT_LINK_HELLO, p, cut, &m, &why), -1);
}

static void
test_attribute_rejects(void **state)
{
	uint8_t p[256], v[300];
	struct msg m;
	const char *why;
	size_t n;

	(void)state;
	memset(v, 'a', sizeof(v));
	/* wrong fixed length */
	n = attr(p, FA_NONCE, one64, 4);
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), -1);
	/* repeated */
	n = attr(p, FA_NONCE, one64, 8);
	n += attr(p + n, FA_NONCE, one64, 8);
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), -1);
	assert_string_equal(why, "repeated attribute");
	/* missing required */
	n = attr(p, FA_TEXT, "x", 1);
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), -1);
	assert_string_equal(why, "required attribute missing");
	/* control and high bytes in a string */
	n = attr(p, FA_TEXT, "a\nb", 3);
	assert_int_equal(msg_decode(FT_ERROR, p, n, &m, &why), -1);
	n = attr(p, FA_TEXT, "a\x7f", 2);
	assert_int_equal(msg_decode(FT_ERROR, p, n, &m, &why), -1);
	n = attr(p, FA_TEXT, "a\0b", 3);
	assert_int_equal(msg_decode(FT_ERROR, p, n, &m, &why), -1);
	n = attr(p, FA_TEXT, "", 0);
	assert_int_equal(msg_decode(FT_ERROR, p, n, &m, &why), 0);
	/* service name with a slash, empty, and one too long */
	n = attr(p, FA_SERVICE, "../x", 4);
	assert_int_equal(msg_decode(FT_SVC_CLOSE, p, n, &m, &why), -1);
	assert_string_equal(why, "invalid service name");
	n = attr(p, FA_SERVICE, "", 0);
	assert_int_equal(msg_decode(FT_SVC_CLOSE, p, n, &m, &why), -1);
	n = attr(p, FA_SERVICE, v, 64);
	assert_int_equal(msg_decode(FT_SVC_CLOSE, p, n, &m, &why), -1);
	n = attr(p, FA_SERVICE, v, 63);
	assert_int_equal(msg_decode(FT_SVC_CLOSE, p, n, &m, &why), 0);
	/* unknown tags, in and beyond the reserved range, are skipped, and
	 * so is tag 0 */
	n = attr(p, 200, "zz", 2);
	n += attr(p + n, FA_BAN_CUT + 1, "z", 1);
	n += attr(p + n, FA_MAX_TAG, "", 0);
	n += attr(p + n, 0, "q", 1);
	n += attr(p + n, 0xffff, "", 0);
	n += attr(p + n, FA_NONCE, one64, 8);
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), 0);
	assert_int_equal(m.nonce, 1);
	assert_int_equal(m.have, FA_BIT(FA_NONCE));
	/* unknown type */
	assert_int_equal(msg_decode(0, p, n, &m, &why), -1);
	assert_int_equal(msg_decode(FT_MAX_TYPE + 1, p, n, &m, &why), -1);
	/* attribute length past the payload; an attribute header cut */
	n = attr(p, FA_NONCE, one64, 8);
	p[3] = 9;
	assert_int_equal(msg_decode(FT_PING, p, n, &m, &why), -1);
	assert_string_equal(why, "attribute runs past the frame");
	n = attr(p, FA_NONCE, one64, 8);
	assert_int_equal(msg_decode(FT_PING, p, n + 3, &m, &why), -1);
	/* BANS: never empty, at most 1024 records (what is in them is
	 * ban.c's to check), and BAN and UNBAN need it */
	n = attr(p, FA_BANS, "", 0);
	assert_int_equal(msg_decode(FT_BAN, p, n, &m, &why), -1);
	assert_int_equal(msg_decode(FT_UNBAN, p, 0, &m, &why), -1);
	assert_string_equal(why, "required attribute missing");
	{
		static uint8_t big[FRAME_MAX], zeros[MSG_BANS_MAX + 1];
		size_t k = MSG_BANS_MAX + 1;

		n = attr(big, FA_BANS, zeros, (uint16_t)k);
		assert_int_equal(msg_decode(FT_BAN, big, n, &m, &why), -1);
		n = attr(big, FA_BANS, zeros, (uint16_t)(k - 1));
		assert_int_equal(msg_decode(FT_BAN, big, n, &m, &why), 0);
		assert_int_equal(m.bans_len, MSG_BANS_MAX);
		assert_ptr_equal(m.bans, big + 4);
	}
	assert_int_equal(msg_decode(FT_BAN_SYNC, p, 0, &m, &why), 0);
	/* a payload over FRAME_MAX, whatever it holds */
	assert_int_equal(msg_decode(FT_STATS_REQ, p, FRAME_MAX + 1, &m, &why),
	    -1);
	assert_string_equal(why, "frame too large");
}

static void
test_roundtrip_policy(void **state)
{
	static char big[MSG_CIDRS_MAX];
	static uint8_t q[MSG_CIDRS_MAX + 64];
	static char s4[MSG_CIDRS_MAX];
	uint8_t four[4] = { 0, 1, 0, 2 }, p[64];
	struct msg m, d;
	const char *why;
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
	msg_set_str(&m, FA_PROTOCOL, "ftp");
	m.max_sess_ip = 5;
	m.max_rate_ip = 0xfffffffe;
	m.priority = 0xfffffffeu;
	m.pasv_min = 50000;
	m.pasv_max = 50999;
	msg_have(&m, FA_MAX_SESS_IP);
	msg_have(&m, FA_MAX_RATE_IP);
	msg_have(&m, FA_PRIORITY);
	msg_have(&m, FA_PASV_MIN);
	msg_have(&m, FA_PASV_MAX);
	/* roundtrip compares the whole struct: the edge's memcmp of two
	 * definitions relies on it */
	roundtrip(&m, &d);
	assert_int_equal(strlen(d.accept_proxy), MSG_CIDRS_MAX - 1);

	/* PRIORITY big-endian; absent: zero and not marked */
	n = attr(p, FA_SERVICE, "s", 1);
	n += attr(p + n, FA_LISTEN, "*:1", 3);
	n += attr(p + n, FA_PRIORITY, four, 4);
	assert_int_equal(msg_decode(FT_SVC_OPEN, p, n, &d, &why), 0);
	assert_int_equal(d.priority, 0x00010002u);
	n = attr(p, FA_SERVICE, "s", 1);
	n += attr(p + n, FA_LISTEN, "*:1", 3);
	assert_int_equal(msg_decode(FT_SVC_OPEN, p, n, &d, &why), 0);
	assert_false(d.have & FA_BIT(FA_PRIORITY));
	assert_int_equal(d.priority, 0);
	n += attr(p + n, FA_PRIORITY, "12345", 5);
	assert_int_equal(msg_decode(FT_SVC_OPEN, p, n, &d, &why), -1);
	/* a u32 of the wrong size; a list one byte too long */
	n = attr(p, FA_SERVICE, "s", 1);
	n += attr(p + n, FA_COUNT, "\0\0\1", 3);
	assert_int_equal(msg_decode(FT_DENIED_SUMMARY, p, n, &d, &why), -1);
	memset(s4, '1', sizeof(s4));
	n = attr(q, FA_SERVICE, "s", 1);
	n += attr(q + n, FA_LISTEN, "127.0.0.1:1", 11);
	n += attr(q + n, FA_ALLOW, s4, MSG_CIDRS_MAX);
	assert_int_equal(msg_decode(FT_SVC_OPEN, q, n, &d, &why), -1);
	assert_string_equal(why, "string attribute too long");
}

static void
test_roundtrip_outbound(void **state)
{
	uint8_t big[4 + 256], host[256];
	struct msg m, d;
	const char *why;
	uint8_t p[64];
	size_t n;

	(void)state;
	msg_init(&m, FT_OUT_REQ);
	m.request = 99;
	m.dest_port = 22;
	msg_have(&m, FA_REQUEST);
	msg_have(&m, FA_DEST_PORT);
	msg_set_str(&m, FA_DEST_HOST, "files.partner.example");
	roundtrip(&m, &d);
	assert_string_equal(d.dest_host, "files.partner.example");

	msg_init(&m, FT_OUT_FAIL);
	m.request = 99;
	m.out_code = 2;
	msg_have(&m, FA_REQUEST);
	msg_have(&m, FA_OUT_CODE);
	msg_set_str(&m, FA_TEXT, "not allowed");
	roundtrip(&m, &d);
	assert_int_equal(d.out_code, 2);

	msg_init(&m, FT_SESS_OPEN);
	m.session = 5;
	m.sess_kind = SK_OUTBOUND;
	m.request = 99;
	msg_have(&m, FA_SESSION);
	msg_have(&m, FA_SESS_KIND);
	msg_have(&m, FA_REQUEST);
	msg_set_str(&m, FA_DEST_ADDR, "[2001:db8::1]:22");
	roundtrip(&m, &d);
	assert_string_equal(d.dest_addr, "[2001:db8::1]:22");

	msg_init(&m, FT_OUT_POLICY);
	msg_set_str(&m, FA_OUT_ALLOW, "");
	roundtrip(&m, &d);
	assert_true(d.have & FA_BIT(FA_OUT_ALLOW));

	/* OUT_REQ without its request id; a 256-byte host */
	n = attr(p, FA_DEST_HOST, "a", 1);
	n += attr(p + n, FA_DEST_PORT, "\0\x16", 2);
	assert_int_equal(msg_decode(FT_OUT_REQ, p, n, &d, &why), -1);
	memset(host, 'a', sizeof(host));
	n = attr(big, FA_DEST_HOST, host, 255);
	assert_int_equal(msg_decode(FT_OUT_FAIL, big, n, &d, &why), -1);
	n = attr(big, FA_DEST_HOST, host, 256);
	assert_int_equal(msg_decode(FT_OUT_FAIL, big, n, &d, &why), -1);
	assert_string_equal(why, "string attribute too long");
}

static void
test_encode_bounded(void **state)
{
	struct buf b = { 0 };
	struct msg m;

	(void)state;
	msg_init(&m, FT_PING);
	msg_have(&m, FA_NONCE);
	/* A queue bound smaller than the frame refuses it whole. */
	assert_int_equal(msg_encode(&m, &b, 10), -1);
	assert_int_equal(buf_len(&b), 0);
	assert_int_equal(msg_encode(&m, &b, 20), 0);
	assert_int_equal(buf_len(&b), FRAME_HDR + 12);
	/* A second frame behind it, within the bound or not at all. */
	assert_int_equal(msg_encode(&m, &b, 39), -1);
	assert_int_equal(buf_len(&b), 20);
	assert_int_equal(msg_encode(&m, &b, 40), 0);
	assert_int_equal(buf_len(&b), 40);
	buf_free(&b);
	/* msg_set_str cuts a string to its attribute's limit. */
	{
		char longname[200];

		memset(longname, 'n', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		msg_init(&m, FT_SVC_CLOSE);
		msg_set_str(&m, FA_NAME, longname);
		assert_int_equal(strlen(m.name), MSG_NAME_MAX - 1);
	}
	assert_true(frame_valid_service("a.b-c_9"));
	assert_false(frame_valid_service(""));
	assert_false(frame_valid_service("a b"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_all_types),
		cmocka_unit_test(test_roundtrip_session),
		cmocka_unit_test(test_hostile_values),
		cmocka_unit_test(test_decode_frame_exact),
		cmocka_unit_test(test_header_rejects),
		cmocka_unit_test(test_truncated_payloads),
		cmocka_unit_test(test_attribute_rejects),
		cmocka_unit_test(test_roundtrip_policy),
		cmocka_unit_test(test_roundtrip_outbound),
		cmocka_unit_test(test_encode_bounded),
	};
	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
