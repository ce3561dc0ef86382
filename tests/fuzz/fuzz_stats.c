/* fuzz_stats.c - the agent's parser of the edge's counters (STATS), on
 * any bytes. The grammar is strict, so what parses is canonical: written
 * back from what was parsed (name=value, single spaces) it is the input,
 * byte for byte. Names are valid and unique, at most STATS_MAX. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "agent/stats_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stats_kv kv[STATS_MAX];
	static char out[STATS_MAX * (STATS_NAME_MAX + 22)];
	const char *why = NULL;
	size_t n, i, k, pos = 0;
	int w;

	if (stats_parse((const char *)data, size, kv, STATS_MAX, &n, &why) != 0) {
		if (why == NULL)
			__builtin_trap();
		return 0;
	}
	if (n > STATS_MAX)
		__builtin_trap();
	for (i = 0; i < n; i++) {
		if (!stats_valid_name(kv[i].name, strlen(kv[i].name)))
			__builtin_trap();
		for (k = 0; k < i; k++)
			if (strcmp(kv[i].name, kv[k].name) == 0)
				__builtin_trap();
		w = snprintf(out + pos, sizeof(out) - pos, "%s%s=%llu",
		    i > 0 ? " " : "", kv[i].name,
		    (unsigned long long)kv[i].value);
		if (w < 0 || (size_t)w >= sizeof(out) - pos)
			__builtin_trap();
		pos += (size_t)w;
	}
	if (pos != size || memcmp(out, data, size) != 0)
		__builtin_trap();
	return 0;
}
