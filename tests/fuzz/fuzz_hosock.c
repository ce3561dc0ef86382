/* fuzz_hosock.c - what a process reads from another on the hand-over
 * socket (hosock_check): the first input byte says how many descriptors
 * came with the message (as the kernel reports them), the rest is the
 * message.
 *
 * Checks: what passes is a HANDOVER frame of a known step that carries
 * what its step needs; descriptors pass only with HO_LISTENERS and only
 * as many as it announces; an FTP record's passive range has both ends,
 * in order; whatever passes re-encodes and passes again the same. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/hosock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg m, d;
	struct buf b = { 0 };
	const char *why;
	size_t nfds;

	if (size < 1)
		return 0;
	nfds = data[0] % (HOSOCK_FDS_MAX + 2);
	if (hosock_check(data + 1, size - 1, nfds, &m, &why) == -1)
		return 0;
	if (m.type != FT_HANDOVER || m.ho_step < 1 || m.ho_step > HO_STEP_MAX)
		__builtin_trap();
	if (nfds > 0 && (m.ho_step != HO_LISTENERS || m.count != nfds ||
	    nfds > HOSOCK_FDS_MAX))
		__builtin_trap();
	if (m.ho_step == HO_LISTENERS && nfds == 0)
		__builtin_trap();
	if (m.ho_step == HO_FTP && (!(m.have & FA_BIT(FA_FTP_CTL)) ||
	    m.ftp_ctl == 0 || !(m.have & FA_BIT(FA_NAME)) ||
	    !(m.have & FA_BIT(FA_CLIENT_ADDR)) || m.pasv_min > m.pasv_max ||
	    !(m.have & FA_BIT(FA_PASV_MIN)) != !(m.have & FA_BIT(FA_PASV_MAX))))
		__builtin_trap();
	if ((m.ho_step == HO_STATUS || m.ho_step == HO_OFFERED) &&
	    !(m.have & FA_BIT(FA_COUNT)))
		__builtin_trap();
	if (m.ho_step == HO_REFUSED && !(m.have & FA_BIT(FA_TEXT)))
		__builtin_trap();
	if (msg_encode(&m, &b, HOSOCK_MSG_MAX + FRAME_MAX) != 0 ||
	    hosock_check(b.data, buf_len(&b), nfds, &d, &why) != 0)
		__builtin_trap();
	/* BANS is a view into the bytes decoded: compared by content. */
	if (d.bans_len != m.bans_len || (m.bans_len > 0 &&
	    memcmp(d.bans, m.bans, m.bans_len) != 0))
		__builtin_trap();
	d.bans = m.bans;
	if (memcmp(&m, &d, sizeof(m)) != 0)
		__builtin_trap();
	buf_free(&b);
	return 0;
}
