/* fuzz_frame.c - the frame codec, the first code on either daemon that
 * reads a peer's frames. The input is a frame as it comes off the wire.
 *
 * Checks: frame_hdr_decode and msg_decode_frame agree (the latter only
 * on an exact length); whatever decodes re-encodes (never larger than it
 * came: unknown attributes are dropped), and the re-encoded frame
 * decodes to the same message and is canonical (encoding it again gives
 * the same bytes); what decodes respects the rules the tables cannot
 * say (ids not 0, known SESS_KIND, END, DATA_LINK and hand-over step,
 * FTP_ACTIVE 1, required attributes present; BANS never empty, never
 * longer than 1024 records). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/end.h"
#include "common/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* a and b hold the same message: BANS, which points into the bytes it was
 * decoded from, is compared by content. */
static int
same_msg(const struct msg *a, const struct msg *b)
{
	struct msg x = *a, y = *b;

	if (a->bans_len != b->bans_len || (a->bans_len > 0 &&
	    memcmp(a->bans, b->bans, a->bans_len) != 0))
		return 0;
	x.bans = y.bans = NULL;
	return memcmp(&x, &y, sizeof(x)) == 0;
}

static void
check_values(const struct msg *m)
{
	enum sess_end e;

	if (((m->have & FA_BIT(FA_SESSION)) && m->session == 0) ||
	    ((m->have & FA_BIT(FA_COUNTER)) && m->counter == 0) ||
	    ((m->have & FA_BIT(FA_REQUEST)) && m->request == 0) ||
	    ((m->have & FA_BIT(FA_FTP_CTL)) && m->ftp_ctl == 0) ||
	    ((m->have & FA_BIT(FA_INSTANCE)) && m->instance == 0) ||
	    ((m->have & FA_BIT(FA_HO_STEP)) &&
	    (m->ho_step == 0 || m->ho_step > HO_STEP_MAX)) ||
	    ((m->have & FA_BIT(FA_SESS_KIND)) && m->sess_kind > SK_MAX) ||
	    ((m->have & FA_BIT(FA_END)) && end_from_wire(m->end, &e) != 0) ||
	    ((m->have & FA_BIT(FA_DATA_LINK)) &&
	    m->data_link > DATA_LINK_PLAIN) ||
	    ((m->have & FA_BIT(FA_FTP_ACTIVE)) && m->ftp_active != 1))
		__builtin_trap();
	if (m->type == FT_SESS_OPEN && (m->have & (FA_BIT(FA_SESSION) |
	    FA_BIT(FA_SESS_KIND))) != (FA_BIT(FA_SESSION) |
	    FA_BIT(FA_SESS_KIND)))
		__builtin_trap();
	if (m->type == FT_LINK_HELLO && !(m->have & FA_BIT(FA_PROOF)))
		__builtin_trap();
	if ((m->type == FT_BAN || m->type == FT_UNBAN) &&
	    !(m->have & FA_BIT(FA_BANS)))
		__builtin_trap();
	if ((m->have & FA_BIT(FA_BANS)) && (m->bans == NULL ||
	    m->bans_len == 0 || m->bans_len > MSG_BANS_MAX))
		__builtin_trap();
	if (m->type == FT_HANDOVER && !(m->have & FA_BIT(FA_HO_STEP)))
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg m, d, f;
	struct buf b = { 0 }, b2 = { 0 };
	const char *why;
	uint16_t type;
	uint32_t len;
	int whole, exact;

	if (size < FRAME_HDR) {
		if (msg_decode_frame(data, size, &f, &why) != -1)
			__builtin_trap();
		return 0;
	}
	whole = msg_decode_frame(data, size, &f, &why) == 0;
	if (frame_hdr_decode(data, &type, &len, &why) == -1) {
		if (whole)
			__builtin_trap();
		return 0;
	}
	exact = len == size - FRAME_HDR;
	if (whole && !exact)
		__builtin_trap();
	/* The payload as far as the input holds it. */
	if (len > size - FRAME_HDR)
		len = (uint32_t)(size - FRAME_HDR);
	if (msg_decode(type, data + FRAME_HDR, len, &m, &why) == -1) {
		if (whole)
			__builtin_trap();
		return 0;
	}
	if (m.type != type)
		__builtin_trap();
	check_values(&m);
	/* The same frame, exact, decodes the same whole. */
	if (exact && (!whole || !same_msg(&m, &f)))
		__builtin_trap();
	/* Whatever decodes must re-encode, no larger than it came, and
	 * decode to the same message; encoding that again is the same. */
	if (msg_encode(&m, &b, FRAME_HDR + FRAME_MAX) != 0 ||
	    buf_len(&b) > FRAME_HDR + (size_t)len ||
	    msg_decode_frame(b.data, buf_len(&b), &d, &why) != 0 ||
	    !same_msg(&m, &d) ||
	    msg_encode(&d, &b2, FRAME_HDR + FRAME_MAX) != 0 ||
	    buf_len(&b2) != buf_len(&b) ||
	    memcmp(b.data, b2.data, buf_len(&b)) != 0)
		__builtin_trap();
	buf_free(&b);
	buf_free(&b2);
	return 0;
}
