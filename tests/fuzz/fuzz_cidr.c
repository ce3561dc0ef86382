/* fuzz_cidr.c - libFuzzer harness for CIDR list parsing and matching. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cidr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct cidr_list l;
	char s[CIDR_STR_MAX + 1], err[256];
	uint8_t a[16] = { 0 };
	size_t i, n = size < CIDR_STR_MAX ? size : CIDR_STR_MAX;

	memcpy(s, data, n);
	s[n] = '\0';
	if (cidr_list_parse(s, &l, err, sizeof(err)) == -1)
		return 0;
	if (l.n > CIDR_LIST_MAX)
		abort();
	/* every range contains its own network address */
	for (i = 0; i < l.n; i++) {
		if (l.e[i].prefix > 128 || !cidr_match(&l.e[i], l.e[i].addr))
			abort();
	}
	(void)cidr_list_match(&l, a);
	return 0;
}
