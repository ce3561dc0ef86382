/* stats_parse.h - the counters an edge reports to its agents (FA_STATS).
 *
 * Wire form: "name=value" tokens separated by single spaces, e.g.
 * "sessions_accepted_total=12 agents_connected=1". A name is 1-48 bytes
 * of [a-z0-9_] starting with a letter; a value is a decimal u64 without
 * sign or leading zeros. A name ending in "_total" is a counter, any
 * other a gauge: the agent exposes counters the edge adds later without
 * knowing them in advance. */
#ifndef SP_STATS_PARSE_H
#define SP_STATS_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define STATS_NAME_MAX	49	/* 48 bytes + NUL */
#define STATS_MAX	64	/* tokens per frame */

struct stats_kv {
	char		name[STATS_NAME_MAX];
	uint64_t	value;
};

/* Parse s (at most len bytes, need not be NUL-terminated) into kv[0..max).
 * Strict: empty names, bad characters, double spaces, leading/trailing
 * spaces, overflow, duplicates or more than max tokens fail with -1 and
 * *why set; on success *n is the number of tokens. An empty string is
 * valid and has no tokens. */
int	stats_parse(const char *s, size_t len, struct stats_kv *kv, size_t max,
	    size_t *n, const char **why);
/* 1 if name is a valid counter name. */
int	stats_valid_name(const char *name, size_t len);

#endif
