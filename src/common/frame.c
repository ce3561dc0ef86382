/* frame.c - control protocol encoder and decoder.
 * The decoder is the first code to see bytes from a peer, so every read
 * is bounded by the payload length and every attribute length is checked
 * against its tag's exact or maximum size before it is copied. */
#include "common/frame.h"
#include "common/end.h"

#include <stdlib.h>
#include <string.h>

/* AK_NONE (zero) marks a tag this version does not know: skipped. */
enum attr_kind { AK_NONE, AK_U8, AK_U16, AK_U32, AK_U64, AK_STR, AK_SERVICE,
    AK_BYTES, AK_VIEW };

struct attr_def {
	enum attr_kind	kind;
	size_t		max;	/* strings, views: max bytes; bytes: exact */
	size_t		off;	/* offset of the field in struct msg */
};

#define AOFF(f) offsetof(struct msg, f)

static const struct attr_def attr_defs[FA_MAX_TAG + 1] = {
	[FA_VERSION]	 = { AK_U16, 2, AOFF(version) },
	[FA_NAME]	 = { AK_STR, MSG_NAME_MAX - 1, AOFF(name) },
	[FA_TEXT]	 = { AK_STR, MSG_TEXT_MAX - 1, AOFF(text) },
	[FA_SERVICE]	 = { AK_SERVICE, MSG_NAME_MAX - 1, AOFF(service) },
	[FA_LISTEN]	 = { AK_STR, MSG_ADDR_MAX - 1, AOFF(listen) },
	[FA_STATUS]	 = { AK_U8, 1, AOFF(status) },
	[FA_SESSION]	 = { AK_U64, 8, AOFF(session) },
	[FA_CLIENT_ADDR] = { AK_STR, MSG_ADDR_MAX - 1, AOFF(client_addr) },
	[FA_CLIENT_PORT] = { AK_U16, 2, AOFF(client_port) },
	[FA_LOCAL_ADDR]	 = { AK_STR, MSG_ADDR_MAX - 1, AOFF(local_addr) },
	[FA_LOCAL_PORT]	 = { AK_U16, 2, AOFF(local_port) },
	[FA_NONCE]	 = { AK_U64, 8, AOFF(nonce) },
	[FA_LINK_KEY]	 = { AK_BYTES, FRAME_KEY, AOFF(link_key) },
	[FA_KEY_ID]	 = { AK_U64, 8, AOFF(key_id) },
	[FA_COUNTER]	 = { AK_U64, 8, AOFF(counter) },
	[FA_PROOF]	 = { AK_BYTES, FRAME_KEY, AOFF(proof) },
	[FA_DATA_LINK]	 = { AK_U8, 1, AOFF(data_link) },
	[FA_SESS_KIND]	 = { AK_U8, 1, AOFF(sess_kind) },
	[FA_PRIORITY]	 = { AK_U32, 4, AOFF(priority) },
	[FA_IDLE_TIMEOUT] = { AK_U32, 4, AOFF(idle_timeout) },
	[FA_ALLOW]	 = { AK_STR, MSG_CIDRS_MAX - 1, AOFF(allow) },
	[FA_DENY]	 = { AK_STR, MSG_CIDRS_MAX - 1, AOFF(deny) },
	[FA_ACCEPT_PROXY] = { AK_STR, MSG_CIDRS_MAX - 1, AOFF(accept_proxy) },
	[FA_MAX_SESS_IP] = { AK_U32, 4, AOFF(max_sess_ip) },
	[FA_MAX_RATE_IP] = { AK_U32, 4, AOFF(max_rate_ip) },
	[FA_COUNT]	 = { AK_U32, 4, AOFF(count) },
	[FA_END]	 = { AK_U8, 1, AOFF(end) },
	[FA_STATS]	 = { AK_STR, MSG_STATS_MAX - 1, AOFF(stats) },
	[FA_PROTOCOL]	 = { AK_STR, MSG_PROTO_MAX - 1, AOFF(protocol) },
	[FA_PASV_MIN]	 = { AK_U16, 2, AOFF(pasv_min) },
	[FA_PASV_MAX]	 = { AK_U16, 2, AOFF(pasv_max) },
	[FA_FTP_CTL]	 = { AK_U64, 8, AOFF(ftp_ctl) },
	[FA_FTP_PORT]	 = { AK_U16, 2, AOFF(ftp_port) },
	[FA_OUT_ALLOW]	 = { AK_STR, MSG_POLICY_MAX - 1, AOFF(out_allow) },
	[FA_REQUEST]	 = { AK_U64, 8, AOFF(request) },
	[FA_DEST_HOST]	 = { AK_STR, MSG_HOST_MAX - 1, AOFF(dest_host) },
	[FA_DEST_PORT]	 = { AK_U16, 2, AOFF(dest_port) },
	[FA_DEST_ADDR]	 = { AK_STR, MSG_ADDR_MAX - 1, AOFF(dest_addr) },
	[FA_OUT_CODE]	 = { AK_U8, 1, AOFF(out_code) },
	[FA_LINKS_KEEP]	 = { AK_U16, 2, AOFF(links_keep) },
	[FA_FTP_ACTIVE]	 = { AK_U8, 1, AOFF(ftp_active) },
	[FA_BANS]	 = { AK_VIEW, MSG_BANS_MAX, AOFF(bans) },
	[FA_BAN_CUT]	 = { AK_U8, 1, AOFF(ban_cut) },
	[FA_HO_STEP]	 = { AK_U8, 1, AOFF(ho_step) },
	[FA_INSTANCE]	 = { AK_U64, 8, AOFF(instance) },
	[FA_PROCESSES]	 = { AK_U32, 4, AOFF(processes) },
};

struct type_def {
	const char	*name;
	uint64_t	 required;
};

static const struct type_def type_defs[FT_MAX_TYPE + 1] = {
	[FT_HELLO]	 = { "HELLO", FA_BIT(FA_VERSION) | FA_BIT(FA_NAME) },
	[FT_HELLO_OK]	 = { "HELLO_OK", FA_BIT(FA_VERSION) | FA_BIT(FA_NAME) |
	    FA_BIT(FA_LINK_KEY) | FA_BIT(FA_KEY_ID) },
	[FT_ERROR]	 = { "ERROR", FA_BIT(FA_TEXT) },
	[FT_SVC_OPEN]	 = { "SVC_OPEN", FA_BIT(FA_SERVICE) | FA_BIT(FA_LISTEN) },
	[FT_SVC_RESULT]	 = { "SVC_RESULT", FA_BIT(FA_SERVICE) | FA_BIT(FA_STATUS) },
	[FT_SVC_CLOSE]	 = { "SVC_CLOSE", FA_BIT(FA_SERVICE) },
	[FT_PING]	 = { "PING", FA_BIT(FA_NONCE) },
	[FT_PONG]	 = { "PONG", FA_BIT(FA_NONCE) },
	[FT_STATS_REQ]	 = { "STATS_REQ", 0 },
	[FT_STATS]	 = { "STATS", FA_BIT(FA_STATS) },
	[FT_LINK_HELLO]	 = { "LINK_HELLO", FA_BIT(FA_KEY_ID) | FA_BIT(FA_COUNTER) |
	    FA_BIT(FA_PROOF) },
	/* What else a SESS_OPEN must carry depends on its kind: the agent
	 * checks that (agent_sess.c). */
	[FT_SESS_OPEN]	 = { "SESS_OPEN", FA_BIT(FA_SESSION) | FA_BIT(FA_SESS_KIND) },
	[FT_SESS_DENIED] = { "SESS_DENIED", FA_BIT(FA_SESSION) |
	    FA_BIT(FA_SERVICE) | FA_BIT(FA_CLIENT_ADDR) |
	    FA_BIT(FA_CLIENT_PORT) | FA_BIT(FA_END) | FA_BIT(FA_TEXT) },
	[FT_DENIED_SUMMARY] = { "DENIED_SUMMARY", FA_BIT(FA_SERVICE) |
	    FA_BIT(FA_COUNT) },
	[FT_FTP_PORTS]	 = { "FTP_PORTS", FA_BIT(FA_SESSION) | FA_BIT(FA_PASV_MIN) |
	    FA_BIT(FA_PASV_MAX) },
	[FT_OUT_POLICY]	 = { "OUT_POLICY", FA_BIT(FA_OUT_ALLOW) },
	[FT_OUT_POLICY_OK] = { "OUT_POLICY_OK", FA_BIT(FA_STATUS) },
	[FT_OUT_REQ]	 = { "OUT_REQ", FA_BIT(FA_REQUEST) | FA_BIT(FA_DEST_HOST) |
	    FA_BIT(FA_DEST_PORT) },
	[FT_OUT_FAIL]	 = { "OUT_FAIL", FA_BIT(FA_REQUEST) | FA_BIT(FA_OUT_CODE) },
	[FT_FTP_DIAL]	 = { "FTP_DIAL", FA_BIT(FA_REQUEST) | FA_BIT(FA_FTP_CTL) |
	    FA_BIT(FA_DEST_PORT) },
	[FT_FTP_DIAL_FAIL] = { "FTP_DIAL_FAIL", FA_BIT(FA_REQUEST) |
	    FA_BIT(FA_OUT_CODE) },
	[FT_BAN]	 = { "BAN", FA_BIT(FA_BANS) },
	[FT_UNBAN]	 = { "UNBAN", FA_BIT(FA_BANS) },
	[FT_BAN_SYNC]	 = { "BAN_SYNC", 0 },
	[FT_DRAINING]	 = { "DRAINING", 0 },
	/* What else a step needs, hosock_check says. */
	[FT_HANDOVER]	 = { "HANDOVER", FA_BIT(FA_HO_STEP) },
};

#define NTYPES (sizeof(type_defs) / sizeof(type_defs[0]))

static uint64_t
get_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static void
put_be(uint8_t *p, uint64_t v, size_t n)
{
	while (n-- > 0) {
		p[n] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

const char *
frame_type_name(uint16_t type)
{
	if (type < NTYPES && type_defs[type].name != NULL)
		return type_defs[type].name;
	return "unknown";
}

int
frame_valid_service(const char *s)
{
	size_t i, n = strnlen(s, MSG_NAME_MAX);

	if (n == 0 || n >= MSG_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

int
frame_hdr_decode(const uint8_t *hdr, uint16_t *type, uint32_t *len,
    const char **why)
{
	uint16_t t = (uint16_t)get_be(hdr, 2);
	uint16_t flags = (uint16_t)get_be(hdr + 2, 2);
	uint32_t l = (uint32_t)get_be(hdr + 4, 4);

	if (flags != 0) {
		*why = "frame flags not zero";
		return -1;
	}
	if (l > FRAME_MAX) {
		*why = "frame too large";
		return -1;
	}
	if (t >= NTYPES || type_defs[t].name == NULL) {
		*why = "unknown frame type";
		return -1;
	}
	*type = t;
	*len = l;
	return 0;
}

static int
attr_store(struct msg *m, const struct attr_def *d, const uint8_t *v,
    size_t n, const char **why)
{
	uint8_t *field = (uint8_t *)m + d->off;
	size_t i;

	switch (d->kind) {
	case AK_NONE:
		return 0;
	case AK_VIEW:
		/* BANS, the one view: ban.c checks its records. */
		if (n == 0 || n > d->max) {
			*why = "BANS is empty or too long";
			return -1;
		}
		m->bans = v;
		m->bans_len = (uint32_t)n;
		return 0;
	case AK_U8:
	case AK_U16:
	case AK_U32:
	case AK_U64:
	case AK_BYTES:
		if (n != d->max) {
			*why = "attribute has the wrong length";
			return -1;
		}
		if (d->kind == AK_U8)
			*field = v[0];
		else if (d->kind == AK_U16)
			*(uint16_t *)(void *)field = (uint16_t)get_be(v, 2);
		else if (d->kind == AK_U32)
			*(uint32_t *)(void *)field = (uint32_t)get_be(v, 4);
		else if (d->kind == AK_U64)
			*(uint64_t *)(void *)field = get_be(v, 8);
		else
			memcpy(field, v, n);
		return 0;
	case AK_STR:
	case AK_SERVICE:
		if (n > d->max) {
			*why = "string attribute too long";
			return -1;
		}
		for (i = 0; i < n; i++)
			if (v[i] < 0x20 || v[i] > 0x7e) {
				*why = "string attribute has a control byte";
				return -1;
			}
		memcpy(field, v, n);
		field[n] = '\0';
		if (d->kind == AK_SERVICE && !frame_valid_service((char *)field)) {
			*why = "invalid service name";
			return -1;
		}
		return 0;
	}
	*why = "internal: bad attribute kind";
	return -1;
}

/* Values the tables cannot say: ids that are never 0, and enumerations
 * with a known range. */
static int
msg_check_values(const struct msg *m, const char **why)
{
	enum sess_end e;

	if (((m->have & FA_BIT(FA_SESSION)) && m->session == 0) ||
	    ((m->have & FA_BIT(FA_COUNTER)) && m->counter == 0) ||
	    ((m->have & FA_BIT(FA_REQUEST)) && m->request == 0) ||
	    ((m->have & FA_BIT(FA_FTP_CTL)) && m->ftp_ctl == 0) ||
	    ((m->have & FA_BIT(FA_INSTANCE)) && m->instance == 0)) {
		*why = "an id of 0";
		return -1;
	}
	if ((m->have & FA_BIT(FA_DEST_PORT)) && m->dest_port == 0) {
		*why = "destination port 0";
		return -1;
	}
	if ((m->have & FA_BIT(FA_SESS_KIND)) && m->sess_kind > SK_MAX) {
		*why = "unknown session kind";
		return -1;
	}
	if ((m->have & FA_BIT(FA_END)) && end_from_wire(m->end, &e) == -1) {
		*why = "unknown END code";
		return -1;
	}
	if ((m->have & FA_BIT(FA_HO_STEP)) &&
	    (m->ho_step == 0 || m->ho_step > HO_STEP_MAX)) {
		*why = "unknown hand-over step";
		return -1;
	}
	if ((m->have & FA_BIT(FA_DATA_LINK)) && m->data_link > DATA_LINK_PLAIN) {
		*why = "unknown data link kind";
		return -1;
	}
	if ((m->have & FA_BIT(FA_FTP_ACTIVE)) && m->ftp_active != 1) {
		*why = "FTP_ACTIVE not 1";
		return -1;
	}
	return 0;
}

int
msg_decode(uint16_t type, const uint8_t *p, size_t len, struct msg *m,
    const char **why)
{
	size_t pos = 0, alen;
	uint16_t tag;
	uint64_t req;

	memset(m, 0, sizeof(*m));
	if (type >= NTYPES || type_defs[type].name == NULL) {
		*why = "unknown frame type";
		return -1;
	}
	if (len > FRAME_MAX) {
		*why = "frame too large";
		return -1;
	}
	m->type = type;
	while (pos < len) {
		if (len - pos < 4) {
			*why = "truncated attribute header";
			return -1;
		}
		tag = (uint16_t)get_be(p + pos, 2);
		alen = (size_t)get_be(p + pos + 2, 2);
		pos += 4;
		if (alen > len - pos) {
			*why = "attribute runs past the frame";
			return -1;
		}
		if (tag >= 1 && tag <= FA_MAX_TAG && attr_defs[tag].kind != AK_NONE) {
			if (m->have & FA_BIT(tag)) {
				*why = "repeated attribute";
				return -1;
			}
			if (attr_store(m, &attr_defs[tag], p + pos, alen, why) == -1)
				return -1;
			m->have |= FA_BIT(tag);
		}
		pos += alen;
	}
	req = type_defs[type].required;
	if ((m->have & req) != req) {
		*why = "required attribute missing";
		return -1;
	}
	return msg_check_values(m, why);
}

int
msg_decode_frame(const uint8_t *p, size_t n, struct msg *m, const char **why)
{
	uint16_t type;
	uint32_t len;

	if (n < FRAME_HDR) {
		*why = "truncated frame header";
		return -1;
	}
	if (frame_hdr_decode(p, &type, &len, why) == -1)
		return -1;
	if (len != n - FRAME_HDR) {
		*why = "frame length does not match";
		return -1;
	}
	return msg_decode(type, p + FRAME_HDR, len, m, why);
}

void
msg_init(struct msg *m, uint16_t type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
}

void
msg_set_str(struct msg *m, int tag, const char *s)
{
	const struct attr_def *d = &attr_defs[tag];
	char *field = (char *)m + d->off;

	if (d->kind != AK_STR && d->kind != AK_SERVICE)
		abort();	/* a caller bug: not a string attribute */
	/* strnlen + memcpy: callers pass our own strings, but a long one
	 * must be cut to the attribute's limit, never overflow it. */
	size_t n = strnlen(s, d->max);
	memcpy(field, s, n);
	field[n] = '\0';
	m->have |= FA_BIT(tag);
}

void
msg_set_int(struct msg *m, int tag, uint64_t v)
{
	const struct attr_def *d = &attr_defs[tag];
	uint8_t *field = (uint8_t *)m + d->off;

	if (d->kind == AK_U8)
		*field = (uint8_t)v;
	else if (d->kind == AK_U16)
		*(uint16_t *)(void *)field = (uint16_t)v;
	else if (d->kind == AK_U32)
		*(uint32_t *)(void *)field = (uint32_t)v;
	else if (d->kind == AK_U64)
		*(uint64_t *)(void *)field = v;
	else
		abort();	/* a caller bug: not a number attribute */
	m->have |= FA_BIT(tag);
}

int
msg_encode(const struct msg *m, struct buf *out, size_t max)
{
	uint8_t tmp[FRAME_HDR + FRAME_MAX];
	const struct attr_def *d;
	const uint8_t *field;
	size_t pos = FRAME_HDR, n;
	int tag;

	for (tag = 1; tag <= FA_MAX_TAG; tag++) {
		d = &attr_defs[tag];
		if (!(m->have & FA_BIT(tag)) || d->kind == AK_NONE)
			continue;
		field = (const uint8_t *)m + d->off;
		n = (d->kind == AK_STR || d->kind == AK_SERVICE) ?
		    strnlen((const char *)field, d->max) : d->max;
		if (d->kind == AK_VIEW) {
			field = m->bans;
			n = m->bans_len <= d->max ? m->bans_len : d->max;
		}
		if (sizeof(tmp) - pos < 4 + n)
			return -1;
		put_be(tmp + pos, (uint64_t)tag, 2);
		put_be(tmp + pos + 2, n, 2);
		switch (d->kind) {
		case AK_U8:
			tmp[pos + 4] = *field;
			break;
		case AK_U16:
			put_be(tmp + pos + 4, *(const uint16_t *)(const void *)field, 2);
			break;
		case AK_U32:
			put_be(tmp + pos + 4, *(const uint32_t *)(const void *)field, 4);
			break;
		case AK_U64:
			put_be(tmp + pos + 4, *(const uint64_t *)(const void *)field, 8);
			break;
		default:
			memcpy(tmp + pos + 4, field, n);
			break;
		}
		pos += 4 + n;
	}
	put_be(tmp, m->type, 2);
	put_be(tmp + 2, 0, 2);
	put_be(tmp + 4, pos - FRAME_HDR, 4);
	return buf_append(out, tmp, pos, max);
}
