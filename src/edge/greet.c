/* greet.c - how a control-port connection begins (greet.h). */
#include "edge/greet.h"

#include <string.h>

int
greet_sniff(const uint8_t *p, size_t n)
{
	size_t k = n < PLINK_MAGIC_LEN ? n : PLINK_MAGIC_LEN;

	if (n == 0)
		return GREET_MORE;
	if (p[0] == 0x16)
		return GREET_TLS;
	if (memcmp(p, PLINK_MAGIC, k) != 0)
		return GREET_BAD;
	return n < PLINK_MAGIC_LEN ? GREET_MORE : GREET_PLAIN;
}

int
greet_parse(const uint8_t *p, size_t n, struct msg *m, size_t *need,
    const char **why)
{
	uint16_t type;
	uint32_t plen;
	size_t total;

	switch (greet_sniff(p, n)) {
	case GREET_MORE:
		*need = PLINK_MAGIC_LEN;
		return 1;
	case GREET_PLAIN:
		break;
	default:
		*why = "not a plain data-link greeting";
		return -1;
	}
	if (n < PLINK_MAGIC_LEN + FRAME_HDR) {
		*need = PLINK_MAGIC_LEN + FRAME_HDR;
		return 1;
	}
	if (frame_hdr_decode(p + PLINK_MAGIC_LEN, &type, &plen, why) == -1)
		return -1;
	if (type != FT_LINK_HELLO) {
		*why = "a plain link must start with LINK_HELLO";
		return -1;
	}
	if (plen > GREET_MAX) {
		*why = "greeting frame too large";
		return -1;
	}
	total = PLINK_MAGIC_LEN + FRAME_HDR + plen;
	if (n < total) {
		*need = total;
		return 1;
	}
	if (n > total) {
		*why = "bytes beyond the greeting";
		return -1;
	}
	return msg_decode(type, p + PLINK_MAGIC_LEN + FRAME_HDR, plen, m, why);
}
