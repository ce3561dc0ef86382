/* fuzz_plink.c - the plain data-link greeting, fed as the edge reads it:
 * exactly the bytes plink_greeting asks for, one step at a time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/plink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg m;
	const char *why;
	size_t have = 0, need;
	int r;

	(void)plink_sniff(data, size);
	for (;;) {
		r = plink_greeting(data, have, &m, &need, &why);
		if (r != 1)
			break;
		/* The edge's buffer holds PLINK_BUF bytes: a request beyond
		 * it, or for nothing new, would be a bug. */
		if (need <= have || need > PLINK_BUF)
			abort();
		if (need > size)
			break;
		have = need;
	}
	if (r == 0 && m.type != FT_DATA_HELLO && m.type != FT_POOL_HELLO)
		abort();
	return 0;
}
