/* fuzz_ban.c - the ban parsers (what an operator types to sallyportctl
 * and the admin API, what ban_file holds, what an agent sends in BANS)
 * and the ban table behind them. The first byte picks the target.
 *
 * Checks, beyond "no crash": a parsed DURATION is 1 s to 10 years and
 * built only of digits and one unit; a parsed range prints and parses
 * back to itself and contains its own network address; checked BANS
 * records re-encode to the same bytes; a parsed ban_file line prints
 * back (as the agent writes it) to a line that parses the same; and the
 * table answers every lookup as a plain list of the same bans does. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/ban.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
str_of(const uint8_t *d, size_t n, char *s, size_t max)
{
	if (n >= max)
		n = max - 1;
	memcpy(s, d, n);
	s[n] = '\0';
}

static void
duration(const uint8_t *d, size_t n)
{
	char s[64];
	const char *why;
	uint32_t v;
	size_t k;

	str_of(d, n, s, sizeof(s));
	if (ban_duration_parse(s, &v, &why) == -1)
		return;
	k = strspn(s, "0123456789");
	if (v == 0 || v > BAN_FOR_MAX || k == 0 || (s[k] != '\0' &&
	    (strchr("smhd", s[k]) == NULL || s[k + 1] != '\0')))
		__builtin_trap();
}

static void
range(const uint8_t *d, size_t n)
{
	char s[128], out[BAN_STR_MAX];
	struct cidr c, c2;
	const char *why;

	str_of(d, n, s, sizeof(s));
	if (ban_range_parse(s, &c, &why) == -1)
		return;
	ban_range_fmt(&c, out, sizeof(out));
	if (ban_range_parse(out, &c2, &why) == -1 ||
	    memcmp(&c, &c2, sizeof(c)) != 0 || !cidr_match(&c, c.addr))
		__builtin_trap();
}

static void
records(const uint8_t *d, size_t n)
{
	static uint8_t again[BAN_FRAME_RECS * BAN_REC];
	struct cidr c;
	const char *why;
	uint32_t ttl;
	size_t i;

	if (ban_recs_check(d, n, &why) == -1)
		return;
	if (n == 0 || n % BAN_REC != 0 || n / BAN_REC > BAN_FRAME_RECS)
		__builtin_trap();
	for (i = 0; i < n / BAN_REC; i++) {
		ban_rec_get(d, i, &c, &ttl);
		if (c.prefix > 128 || !cidr_match(&c, c.addr))
			__builtin_trap();
		ban_rec_put(again + i * BAN_REC, &c, ttl);
	}
	if (memcmp(again, d, n) != 0)
		__builtin_trap();
}

static void
line(const uint8_t *d, size_t n)
{
	char s[512], out[600], r[BAN_REASON_MAX], r2[BAN_REASON_MAX];
	char rs[BAN_STR_MAX];
	uint64_t u, cr, u2, cr2;
	struct cidr c, c2;
	const char *why;

	str_of(d, n, s, sizeof(s));
	if (ban_line_parse(s, &c, &u, &cr, r, &why) == -1)
		return;
	if (!ban_reason_valid(r))
		__builtin_trap();
	ban_range_fmt(&c, rs, sizeof(rs));
	snprintf(out, sizeof(out), "%s %llu %llu %s", rs, (unsigned long long)u,
	    (unsigned long long)cr, r);
	if (ban_line_parse(out, &c2, &u2, &cr2, r2, &why) == -1 ||
	    memcmp(&c, &c2, sizeof(c)) != 0 || u != u2 || cr != cr2 ||
	    strcmp(r, r2) != 0)
		__builtin_trap();
}

/* Table against a list: each 18-byte step is an op (add, lift, look up),
 * an owner bit, a prefix and the first bytes of an address; time moves
 * with the steps, and bans expire. */
static void
table(const uint8_t *d, size_t n)
{
	struct model { struct cidr c; uint32_t owner; uint64_t until; } m[64];
	struct bantab t;
	struct ban *b;
	struct cidr c;
	uint8_t a[16];
	size_t nm = 0, i, j, k;
	uint64_t now = 0;
	int hit;

	bantab_init(&t, 1234, NULL);
	for (i = 0; i + 18 <= n; i += 18, now++) {
		memset(&c, 0, sizeof(c));
		memcpy(c.addr, d + i + 2, 16);
		c.prefix = d[i + 1] % 129;
		for (k = c.prefix; k < 128; k++)
			c.addr[k / 8] &= (uint8_t)~(0x80 >> (k % 8));
		switch (d[i] % 3) {
		case 0:		/* ban, for a while or until lifted */
			if (nm == 64 || bantab_find(&t, &c, d[i] & 8) != NULL)
				break;
			if ((b = calloc(1, sizeof(*b))) == NULL)
				abort();
			b->c = c;
			b->owner = d[i] & 8;
			b->until = d[i] & 16 ? now + (d[i] >> 5) : 0;
			if (bantab_add(&t, b) == -1)
				abort();
			m[nm].c = c;
			m[nm].owner = b->owner;
			m[nm++].until = b->until;
			break;
		case 1:		/* lift */
			if ((b = bantab_find(&t, &c, d[i] & 8)) == NULL)
				break;
			bantab_del(&t, b);
			for (j = 0; j < nm; j++)
				if (memcmp(&m[j].c, &c, sizeof(c)) == 0 &&
				    m[j].owner == (d[i] & 8)) {
					m[j] = m[--nm];
					break;
				}
			break;
		default:	/* look up the address as it came */
			memcpy(a, d + i + 2, 16);
			hit = 0;
			for (j = 0; j < nm; j++)
				if (cidr_match(&m[j].c, a) && (m[j].until == 0 ||
				    m[j].until > now))
					hit = 1;
			if (hit != (bantab_match(&t, a, now) != NULL))
				__builtin_trap();
		}
		if (t.n != nm)
			__builtin_trap();
	}
	bantab_clear(&t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 5) {
	case 0: duration(data + 1, size - 1); break;
	case 1: range(data + 1, size - 1); break;
	case 2: records(data + 1, size - 1); break;
	case 3: line(data + 1, size - 1); break;
	default: table(data + 1, size - 1); break;
	}
	return 0;
}
