/* ban.c - ban parsers, BANS records and the ban table (ban.h). */
#include "common/ban.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAN_HASH_MIN	1024

int
ban_range_parse(const char *s, struct cidr *c, const char **why)
{
	size_t n = strnlen(s, BAN_STR_MAX);

	if (n == 0 || n >= BAN_STR_MAX) {
		*why = "not an IP address or range";
		return -1;
	}
	return cidr_parse(s, n, c, why);
}

static int
is_mapped(const uint8_t a[16])
{
	static const uint8_t pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(a, pfx, sizeof(pfx)) == 0;
}

void
ban_range_fmt(const struct cidr *c, char *out, size_t outlen)
{
	char a[INET6_ADDRSTRLEN];
	int v4 = is_mapped(c->addr) && c->prefix >= 96;
	unsigned len = v4 ? c->prefix - 96u : c->prefix;

	if (v4)
		(void)inet_ntop(AF_INET, c->addr + 12, a, sizeof(a));
	else
		(void)inet_ntop(AF_INET6, c->addr, a, sizeof(a));
	if (len == (v4 ? 32u : 128u))
		snprintf(out, outlen, "%s", a);
	else
		snprintf(out, outlen, "%s/%u", a, len);
}

int
ban_duration_parse(const char *s, uint32_t *secs, const char **why)
{
	uint64_t v = 0, mul = 1;
	size_t i = 0;

	*why = "a duration is seconds, or a number with s, m, h or d";
	while (s[i] >= '0' && s[i] <= '9' && i < 10)
		v = v * 10 + (uint64_t)(s[i++] - '0');
	if (i == 0)
		return -1;
	switch (s[i]) {
	case '\0': break;
	case 's': i++; break;
	case 'm': mul = 60; i++; break;
	case 'h': mul = 3600; i++; break;
	case 'd': mul = 86400; i++; break;
	default: return -1;
	}
	if (s[i] != '\0')
		return -1;
	v *= mul;
	if (v == 0 || v > BAN_FOR_MAX) {
		*why = "a duration must be 1 second to 10 years";
		return -1;
	}
	*secs = (uint32_t)v;
	return 0;
}

int
ban_reason_valid(const char *s)
{
	size_t i, n = strnlen(s, BAN_REASON_MAX);

	if (n >= BAN_REASON_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] > 0x7e)
			return 0;
	return 1;
}

/* --- records ------------------------------------------------------------- */

static int
range_valid(const struct cidr *c)
{
	unsigned i;

	if (c->prefix > 128)
		return 0;
	for (i = c->prefix; i < 128; i++)
		if (c->addr[i / 8] & (0x80 >> (i % 8)))
			return 0;
	return 1;
}

int
ban_recs_check(const uint8_t *p, size_t len, const char **why)
{
	struct cidr c;
	uint32_t ttl;
	size_t i;

	if (len == 0 || len % BAN_REC != 0 || len / BAN_REC > BAN_FRAME_RECS) {
		*why = "BANS is not 1 to 1024 records of 21 bytes";
		return -1;
	}
	for (i = 0; i < len / BAN_REC; i++) {
		ban_rec_get(p, i, &c, &ttl);
		if (!range_valid(&c)) {
			*why = "BANS holds a range with a bad prefix or host bits";
			return -1;
		}
	}
	return 0;
}

void
ban_rec_get(const uint8_t *p, size_t i, struct cidr *c, uint32_t *ttl)
{
	p += i * BAN_REC;
	memcpy(c->addr, p, 16);
	c->prefix = p[16];
	*ttl = (uint32_t)p[17] << 24 | (uint32_t)p[18] << 16 |
	    (uint32_t)p[19] << 8 | p[20];
}

void
ban_rec_put(uint8_t *p, const struct cidr *c, uint32_t ttl)
{
	memcpy(p, c->addr, 16);
	p[16] = c->prefix;
	p[17] = (uint8_t)(ttl >> 24);
	p[18] = (uint8_t)(ttl >> 16);
	p[19] = (uint8_t)(ttl >> 8);
	p[20] = (uint8_t)ttl;
}

/* --- ban_file lines ------------------------------------------------------ */

/* A decimal u64 of 1..19 digits at *p, followed by a space or the end. */
static int
num_field(const char **p, uint64_t *v)
{
	const char *s = *p;
	size_t i = 0;

	*v = 0;
	while (s[i] >= '0' && s[i] <= '9' && i < 19)
		*v = *v * 10 + (uint64_t)(s[i++] - '0');
	if (i == 0 || (s[i] != ' ' && s[i] != '\0'))
		return -1;
	*p = s + i + (s[i] == ' ');
	return 0;
}

int
ban_line_parse(const char *line, struct cidr *c, uint64_t *until,
    uint64_t *created, char *reason, const char **why)
{
	const char *sp = strchr(line, ' '), *p;
	char range[BAN_STR_MAX];

	*why = "expected RANGE UNTIL CREATED [REASON]";
	if (sp == NULL || (size_t)(sp - line) >= sizeof(range))
		return -1;
	memcpy(range, line, (size_t)(sp - line));
	range[sp - line] = '\0';
	if (ban_range_parse(range, c, why) == -1)
		return -1;
	p = sp + 1;
	if (num_field(&p, until) == -1 || p[-1] != ' ' ||
	    num_field(&p, created) == -1)
		return -1;
	if (!ban_reason_valid(p)) {
		*why = "the reason is too long or not printable ASCII";
		return -1;
	}
	snprintf(reason, BAN_REASON_MAX, "%s", p);
	return 0;
}

/* --- the table ------------------------------------------------------------ */

/* The bucket of (a, prefix) among nb: FNV-1a, seeded. */
static size_t
ban_hash(uint64_t seed, const uint8_t a[16], uint8_t prefix, size_t nb)
{
	uint64_t h = 1469598103934665603ull ^ seed;
	size_t i;

	for (i = 0; i < 16; i++)
		h = (h ^ a[i]) * 1099511628211ull;
	h = (h ^ prefix) * 1099511628211ull;
	return (size_t)(h ^ (h >> 31)) & (nb - 1);
}

#define ban_bucket(t, a, p) ban_hash((t)->seed, (a), (p), (t)->nbucket)

static void
mask(const uint8_t a[16], unsigned prefix, uint8_t out[16])
{
	unsigned i;

	for (i = 0; i < 16; i++) {
		if (prefix >= 8 * (i + 1))
			out[i] = a[i];
		else if (prefix <= 8 * i)
			out[i] = 0;
		else
			out[i] = (uint8_t)(a[i] & (0xff00 >> (prefix - 8 * i)));
	}
}

static void
lens_rebuild(struct bantab *t)
{
	int l;

	t->nlens = 0;
	for (l = 128; l >= 0; l--)
		if (t->nlen[l] > 0)
			t->lens[t->nlens++] = (uint8_t)l;
}

void
bantab_init(struct bantab *t, uint64_t seed, void (*release)(struct ban *))
{
	memset(t, 0, sizeof(*t));
	t->seed = seed;
	t->release = release;
}

static void
ban_release(const struct bantab *t, struct ban *b)
{
	if (t->release != NULL)
		t->release(b);
	else
		free(b);
}

static int
drop_all(struct ban *b, void *arg)
{
	(void)b;
	(void)arg;
	return 1;
}

void
bantab_clear(struct bantab *t)
{
	(void)bantab_sweep(t, drop_all, NULL);
	free(t->hash);
	t->hash = NULL;
	t->nbucket = 0;
}

struct ban *
bantab_find(const struct bantab *t, const struct cidr *c, uint32_t owner)
{
	struct ban *b;

	if (t->nbucket == 0)
		return NULL;
	for (b = t->hash[ban_bucket(t, c->addr, c->prefix)]; b != NULL;
	    b = b->next)
		if (b->owner == owner && b->c.prefix == c->prefix &&
		    memcmp(b->c.addr, c->addr, 16) == 0)
			return b;
	return NULL;
}

/* Double the buckets (or make the first ones). -1 out of memory. */
static int
grow(struct bantab *t)
{
	size_t nb = t->nbucket ? t->nbucket * 2 : BAN_HASH_MIN, i, k;
	struct ban **h, *b, *next;

	if ((h = calloc(nb, sizeof(*h))) == NULL)
		return -1;
	for (i = 0; i < t->nbucket; i++)
		for (b = t->hash[i]; b != NULL; b = next) {
			next = b->next;
			k = ban_hash(t->seed, b->c.addr, b->c.prefix, nb);
			b->next = h[k];
			h[k] = b;
		}
	free(t->hash);
	t->hash = h;
	t->nbucket = nb;
	return 0;
}

int
bantab_add(struct bantab *t, struct ban *b)
{
	size_t k;

	if (t->n >= t->nbucket && grow(t) == -1)
		return -1;
	k = ban_bucket(t, b->c.addr, b->c.prefix);
	b->next = t->hash[k];
	t->hash[k] = b;
	t->n++;
	if (t->nlen[b->c.prefix]++ == 0)
		lens_rebuild(t);
	return 0;
}

static void
counted_out(struct bantab *t, const struct ban *b)
{
	t->n--;
	if (--t->nlen[b->c.prefix] == 0)
		lens_rebuild(t);
}

void
bantab_del(struct bantab *t, struct ban *b)
{
	struct ban **pp = &t->hash[ban_bucket(t, b->c.addr, b->c.prefix)];

	for (; *pp != NULL; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			counted_out(t, b);
			ban_release(t, b);
			return;
		}
}

const struct ban *
bantab_match(const struct bantab *t, const uint8_t addr[16], uint64_t now)
{
	const struct ban *b;
	uint8_t m[16];
	size_t i;

	for (i = 0; i < t->nlens; i++) {
		mask(addr, t->lens[i], m);
		for (b = t->hash[ban_bucket(t, m, t->lens[i])]; b != NULL;
		    b = b->next)
			if (b->c.prefix == t->lens[i] &&
			    memcmp(b->c.addr, m, 16) == 0 &&
			    (b->until == 0 || b->until > now))
				return b;
	}
	return NULL;
}

size_t
bantab_sweep(struct bantab *t, int (*fn)(struct ban *, void *), void *arg)
{
	struct ban **pp, *b;
	size_t i, n = 0;

	for (i = 0; i < t->nbucket; i++)
		for (pp = &t->hash[i]; (b = *pp) != NULL;) {
			if (fn(b, arg)) {
				*pp = b->next;
				counted_out(t, b);
				ban_release(t, b);
				n++;
			} else
				pp = &b->next;
		}
	return n;
}
