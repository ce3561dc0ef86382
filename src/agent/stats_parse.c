/* stats_parse.c - "name=value" counter lists from an edge (stats_parse.h).
 * The edge may be hostile, so the parser checks every byte against the
 * grammar and never reads past len. */
#include "agent/stats_parse.h"

#include <stdio.h>
#include <string.h>

int
stats_valid_name(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || len >= STATS_NAME_MAX || name[0] < 'a' || name[0] > 'z')
		return 0;
	for (i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return 0;
	}
	return 1;
}

/* A decimal u64: 1-20 digits, no leading zero unless "0", no overflow. */
static int
stats_value(const char *p, size_t len, uint64_t *v)
{
	uint64_t x = 0, d;
	size_t i;

	if (len == 0 || len > 20 || (len > 1 && p[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		d = (uint64_t)(p[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*v = x;
	return 0;
}

int
stats_parse(const char *s, size_t len, struct stats_kv *kv, size_t max,
    size_t *n, const char **why)
{
	size_t pos = 0, end, eq, i, k = 0;

	*n = 0;
	while (pos < len) {
		if (k > 0) {
			/* exactly one space between tokens, none at the end */
			if (s[pos] != ' ' || pos + 1 == len) {
				*why = "stats: tokens must be separated by one space";
				return -1;
			}
			pos++;
		}
		for (end = pos; end < len && s[end] != ' '; end++)
			;
		for (eq = pos; eq < end && s[eq] != '='; eq++)
			;
		if (eq == end) {
			*why = "stats: token without '='";
			return -1;
		}
		if (!stats_valid_name(s + pos, eq - pos)) {
			*why = "stats: invalid counter name";
			return -1;
		}
		if (k == max) {
			*why = "stats: too many counters";
			return -1;
		}
		memcpy(kv[k].name, s + pos, eq - pos);
		kv[k].name[eq - pos] = '\0';
		if (stats_value(s + eq + 1, end - eq - 1, &kv[k].value) == -1) {
			*why = "stats: value is not a decimal u64";
			return -1;
		}
		for (i = 0; i < k; i++)
			if (strcmp(kv[i].name, kv[k].name) == 0) {
				*why = "stats: repeated counter";
				return -1;
			}
		k++;
		pos = end;
	}
	*n = k;
	return 0;
}
