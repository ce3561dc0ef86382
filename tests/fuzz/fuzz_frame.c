/* fuzz_frame.c - libFuzzer harness for the control-frame decoder: the
 * first code on the edge that reads bytes sent by a peer. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg m, d;
	struct buf b = { 0 };
	const char *why;
	uint16_t type;
	uint32_t len;

	if (size < FRAME_HDR)
		return 0;
	if (frame_hdr_decode(data, &type, &len, &why) == -1)
		return 0;
	if (len > size - FRAME_HDR)
		len = (uint32_t)(size - FRAME_HDR);
	if (msg_decode(type, data + FRAME_HDR, len, &m, &why) == -1)
		return 0;
	/* Whatever decodes must re-encode and decode to the same message. */
	if (msg_encode(&m, &b, FRAME_HDR + FRAME_MAX) == 0) {
		if (frame_hdr_decode(b.data, &type, &len, &why) != 0 ||
		    msg_decode(type, b.data + FRAME_HDR, len, &d, &why) != 0 ||
		    memcmp(&m, &d, sizeof(m)) != 0)
			__builtin_trap();
	}
	buf_free(&b);
	return 0;
}
