/* edge_ban.c - bans at the edge (edge_ban.h). */
#include "edge/edge_ban.h"
#include "edge/edge_ctl.h"
#include "edge/edge_limit.h"
#include "edge/edge_sess.h"
#include "edge/edge_stats.h"
#include "common/ban.h"
#include "common/ev.h"
#include "common/log.h"
#include "common/psock.h"

#include <stdio.h>
#include <stdlib.h>
#include <openssl/rand.h>

static struct bantab tab;
static uint64_t last_sweep;

/* Whose a ban is: the pushing agent's name, hashed (FNV-1a). */
static uint32_t
owner_of(const struct eagent *a)
{
	uint32_t h = 2166136261u;
	const char *p;

	for (p = a->name; *p != '\0'; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	return h;
}

/* BAN_SYNC from a: its bans not pushed on this control connection. */
static int
is_stale(struct ban *b, void *arg)
{
	const struct eagent *a = arg;

	return b->owner == owner_of(a) && b->gen != a->serial;
}

static int
is_expired(struct ban *b, void *arg)
{
	return b->until != 0 && b->until <= *(uint64_t *)arg;
}

/* One record of BAN or UNBAN from a. */
static void
ban_one(struct eagent *a, uint16_t type, const struct cidr *c, uint32_t ttl)
{
	struct ban *b = bantab_find(&tab, c, owner_of(a));

	if (type == FT_UNBAN) {
		if (b != NULL)
			bantab_del(&tab, b);
		return;
	}
	if (b == NULL && tab.n >= lim.max_bans) {
		lim_hit(LIM_BANS, "agent %s: ban dropped: %zu bans held",
		    a->name, tab.n);
		return;
	}
	if (b == NULL && ((b = calloc(1, sizeof(*b))) == NULL ||
	    (b->c = *c, b->owner = owner_of(a), bantab_add(&tab, b)) == -1)) {
		free(b);
		log_warn("agent %s: ban dropped: out of memory", a->name);
		return;
	}
	b->gen = a->serial;
	b->until = ttl != 0 ? ev_now() + (uint64_t)ttl * 1000u : 0;
}

int
eban_frame(struct eagent *a, const struct msg *m, char *why, size_t whylen)
{
	char r[BAN_STR_MAX];
	const char *e;
	struct cidr c;
	uint32_t ttl = 0;
	uint64_t seed;
	size_t i, n;

	if (tab.seed == 0) {
		if (RAND_bytes((uint8_t *)&seed, sizeof(seed)) != 1)
			log_fatal("RAND_bytes failed");
		bantab_init(&tab, seed | 1, NULL);
	}
	if (m->type == FT_BAN_SYNC) {
		n = bantab_sweep(&tab, is_stale, a);
		log_info("agent %s: bans in sync (%zu lifted meanwhile; %zu bans "
		    "held)", a->name, n, tab.n);
		return 0;
	}
	if (ban_recs_check(m->bans, m->bans_len, &e) == -1) {
		snprintf(why, whylen, "%s: %s", frame_type_name(m->type), e);
		return -1;
	}
	for (i = 0, n = m->bans_len / BAN_REC; i < n; i++) {
		ban_rec_get(m->bans, i, &c, &ttl);
		ban_one(a, m->type, &c, ttl);
	}
	if (n == 1)
		ban_range_fmt(&c, r, sizeof(r));
	else
		snprintf(r, sizeof(r), "%zu ranges", n);
	log_info("agent %s: %s %s%s (%zu bans held)", a->name, m->type == FT_BAN ?
	    "ban" : "ban lifted:", r, m->type == FT_BAN && n == 1 && ttl == 0 ?
	    " until lifted" : "", tab.n);
	if (m->type == FT_BAN && m->ban_cut)
		(void)esess_cut(eban_match);
	return 0;
}

int
eban_match(const uint8_t a16[16])
{
	return bantab_match(&tab, a16, ev_now()) != NULL;
}

int
eban_refuse(int fd, const struct sockaddr *client, const char *what)
{
	char ip[NET_ADDRSTR];
	uint8_t a16[16];

	if (tab.nlens == 0)
		return 0;
	cidr_sa16(client, a16);
	if (!eban_match(a16))
		return 0;
	psock_reset_now(fd);
	net_fmt(client, ip, sizeof(ip));
	lim_hit(LIM_BANNED, "%s: client %s refused: banned", what, ip);
	return 1;
}

void
eban_tick(uint64_t now)
{
	if (tab.n > 0 && now - last_sweep >= 1000) {
		last_sweep = now;
		(void)bantab_sweep(&tab, is_expired, &now);
	}
}

void
eban_stats(char *out, size_t outlen)
{
	(void)estats_put(out, outlen, "bans", tab.n);
}

void
eban_shutdown(void)
{
	bantab_clear(&tab);
}
