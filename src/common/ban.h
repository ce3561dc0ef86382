/* ban.h - bans: address ranges refused at every edge for a time or until
 * lifted (docs/protocol.md, "Bans").
 *
 * Shared by both daemons: the agent keeps the operator's bans (with their
 * reason, in ban_file if asked) and pushes them; the edge keeps what its
 * agents pushed, in memory only, and looks every new client up. Three
 * pieces, all without I/O:
 *
 *  - parsers of what an operator types or a file holds: a range, a
 *    DURATION ("90", "90s", "15m", "12h", "7d") and a ban_file line;
 *  - the BANS attribute's records: 21 bytes each, the range's 16-byte
 *    form (cidr.h), its prefix length in IPv6 terms, and the seconds the
 *    ban has left (u32, 0: until lifted);
 *  - a table of bans hashed by (range, prefix length): a lookup masks the
 *    address once per prefix length in use and probes one chain, so its
 *    cost follows the number of distinct lengths (two or three in
 *    practice), not the number of bans. */
#ifndef SP_BAN_H
#define SP_BAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/cidr.h"

#define BAN_REC		21		/* bytes of one record in BANS */
#define BAN_FRAME_RECS	1024		/* records in one BAN or UNBAN frame */
#define BAN_FOR_MAX	(10u * 366 * 86400)	/* a DURATION: at most ~10 years */
#define BAN_REASON_MAX	201		/* a reason: up to 200 bytes + NUL */
#define BAN_STR_MAX	64		/* a range as text, NUL included */

/* A ban as a table holds it; the holder embeds it first in its own
 * struct (the agent adds a reason) and gives the table a release
 * function. */
struct ban {
	struct cidr	 c;
	uint32_t	 owner;		/* edge: the agent that pushed it */
	uint64_t	 gen;		/* edge: its control connection */
	uint64_t	 until;		/* holder's clock; 0: until lifted */
	struct ban	*next;		/* hash chain */
};

struct bantab {
	struct ban	**hash;
	size_t		 nbucket;	/* a power of two, or 0 before the first */
	size_t		 n;
	uint32_t	 nlen[129];	/* bans per prefix length */
	uint8_t		 lens[129];	/* the lengths in use, longest first */
	size_t		 nlens;
	uint64_t	 seed;
	void		(*release)(struct ban *);	/* NULL: free() */
};

/* Parse a range typed by an operator or read from a file: an address, or
 * an address with /len whose host bits are zero. 0, or -1 with *why. */
int	ban_range_parse(const char *s, struct cidr *c, const char **why);
/* The range as text: "192.0.2.7", "192.0.2.0/24", "2001:db8::/32". */
void	ban_range_fmt(const struct cidr *c, char *out, size_t outlen);
/* A DURATION: decimal seconds, or a number followed by s, m, h or d;
 * 1 second to BAN_FOR_MAX. 0, or -1 with *why. */
int	ban_duration_parse(const char *s, uint32_t *secs, const char **why);
/* A reason: 0..200 bytes of printable ASCII. 1 if valid. */
int	ban_reason_valid(const char *s);

/* Check a BANS value: 1..BAN_FRAME_RECS whole records, each a valid range
 * (prefix at most 128, no host bits). 0, or -1 with *why. */
int	ban_recs_check(const uint8_t *p, size_t len, const char **why);
/* Record i of a checked value. */
void	ban_rec_get(const uint8_t *p, size_t i, struct cidr *c, uint32_t *ttl);
/* Write one record at p (BAN_REC bytes). */
void	ban_rec_put(uint8_t *p, const struct cidr *c, uint32_t ttl);

/* A ban_file line: "RANGE UNTIL CREATED [REASON]", UNTIL and CREATED in
 * seconds since 1970 (UNTIL 0: until lifted), single spaces. 0, or -1
 * with *why. reason gets at least BAN_REASON_MAX bytes. */
int	ban_line_parse(const char *line, struct cidr *c, uint64_t *until,
	    uint64_t *created, char *reason, const char **why);

/* An empty table (seed: random, from the caller). */
void	bantab_init(struct bantab *t, uint64_t seed, void (*release)(struct ban *));
/* Free every ban. */
void	bantab_clear(struct bantab *t);
/* The ban of range c held for owner, or NULL. */
struct ban *bantab_find(const struct bantab *t, const struct cidr *c,
	    uint32_t owner);
/* Insert b (its range and owner set, not in the table). 0, or -1 out of
 * memory (b not inserted). */
int	bantab_add(struct bantab *t, struct ban *b);
/* Unlink b and release it. */
void	bantab_del(struct bantab *t, struct ban *b);
/* The ban in force at now (until 0 or later than now) whose range holds
 * addr (16-byte form), or NULL. */
const struct ban *bantab_match(const struct bantab *t, const uint8_t addr[16],
	    uint64_t now);
/* Call fn for every ban; a ban for which it returns 1 is unlinked and
 * released. Returns how many were. */
size_t	bantab_sweep(struct bantab *t, int (*fn)(struct ban *, void *),
	    void *arg);

#endif
