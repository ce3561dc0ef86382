/* fuzz_greet.c - the first bytes of a control-port connection, fed as the
 * edge reads them: greet_sniff on what came, then exactly the bytes
 * greet_parse asks for, one step at a time. Checks: a request is never
 * for nothing new nor beyond the edge's buffer (GREET_BUF), sniffing
 * agrees with parsing, and a greeting that parses is a LINK_HELLO of
 * exactly the bytes read, with its required attributes, and re-encoded
 * it parses to the same message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "edge/greet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg m, d;
	struct buf b = { 0 };
	const char *why;
	size_t have = 0, need, k;
	int r, sn;

	/* Sniffing a prefix never contradicts sniffing more of it. */
	sn = greet_sniff(data, size);
	for (k = 0; k < size && k <= PLINK_MAGIC_LEN; k++) {
		int s = greet_sniff(data, k);

		if (s != GREET_MORE && s != sn)
			abort();
	}
	for (;;) {
		why = NULL;
		r = greet_parse(data, have, &m, &need, &why);
		if (r != 1)
			break;
		/* The edge's buffer holds GREET_BUF bytes: a request beyond
		 * it, or for nothing new, would be a bug. */
		if (need <= have || need > GREET_BUF)
			abort();
		if (need > size)
			break;
		have = need;
	}
	if (r == -1 && why == NULL)
		abort();
	if (r == 0) {
		if (sn != GREET_PLAIN || m.type != FT_LINK_HELLO)
			abort();
		if ((m.have & (FA_BIT(FA_KEY_ID) | FA_BIT(FA_COUNTER) |
		    FA_BIT(FA_PROOF))) != (FA_BIT(FA_KEY_ID) |
		    FA_BIT(FA_COUNTER) | FA_BIT(FA_PROOF)) || m.counter == 0)
			abort();
		/* Exactly the greeting: one byte more is refused. */
		if (have < size &&
		    greet_parse(data, have + 1, &d, &need, &why) != -1)
			abort();
		/* What parsed re-encodes to a greeting that parses the same. */
		if (msg_encode(&m, &b, GREET_MAX + FRAME_HDR) != 0)
			abort();
		{
			uint8_t g[GREET_BUF];

			if (PLINK_MAGIC_LEN + buf_len(&b) > sizeof(g))
				abort();
			memcpy(g, PLINK_MAGIC, PLINK_MAGIC_LEN);
			memcpy(g + PLINK_MAGIC_LEN, b.data, buf_len(&b));
			if (greet_parse(g, PLINK_MAGIC_LEN + buf_len(&b), &d,
			    &need, &why) != 0 || memcmp(&m, &d, sizeof(m)) != 0)
				abort();
		}
		buf_free(&b);
	}
	return 0;
}
