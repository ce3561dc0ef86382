/* fuzz_stats.c - libFuzzer harness for the edge counter list parser. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/stats.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stats_kv kv[STATS_MAX];
	const char *why;
	size_t n, i;

	if (stats_parse((const char *)data, size, kv, STATS_MAX, &n, &why) == 0) {
		if (n > STATS_MAX)
			__builtin_trap();
		for (i = 0; i < n; i++)
			if (!stats_valid_name(kv[i].name, strlen(kv[i].name)))
				__builtin_trap();
	}
	return 0;
}
