/* edge_ban.c - bans at the edge (edge_ban.h). */
#include "edge/edge_ban.h"
#include "edge/edge_ctl.h"
#include "edge/edge_limit.h"
#include "edge/edge_sess.h"
#include "edge/edge_stats.h"
#include "common/ban.h"
#include "common/ev.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/rand.h>

#define OWNERS_MAX	255

static struct bantab tab;
static int inited;
static char owners[OWNERS_MAX][MSG_NAME_MAX];
static uint32_t owner_gen[OWNERS_MAX];
static size_t nowners;
static uint64_t last_sweep;

/* The slot of agent name, made if new; -1 when all are taken. */
static int
owner_of(const char *name)
{
	size_t i;

	for (i = 0; i < nowners; i++)
		if (strcmp(owners[i], name) == 0)
			return (int)i;
	if (nowners == OWNERS_MAX)
		return -1;
	snprintf(owners[nowners], sizeof(owners[0]), "%s", name);
	return (int)nowners++;
}

static void
tab_init(void)
{
	uint64_t seed;

	if (inited)
		return;
	if (RAND_bytes((uint8_t *)&seed, sizeof(seed)) != 1)
		log_fatal("RAND_bytes failed");
	bantab_init(&tab, seed, NULL);
	inited = 1;
}

void
eban_hello(const char *name)
{
	int o = owner_of(name);

	if (o != -1)
		owner_gen[o]++;
}

struct stale {
	uint8_t		 owner;
	uint32_t	 gen;
};

static int
is_stale(struct ban *b, void *arg)
{
	const struct stale *s = arg;

	return b->owner == s->owner && b->gen != s->gen;
}

static int
is_expired(struct ban *b, void *arg)
{
	return b->until != 0 && b->until <= *(uint64_t *)arg;
}

static int
cut_match(const uint8_t a16[16])
{
	return eban_match(a16);
}

/* One record of BAN or UNBAN. */
static void
ban_one(struct eagent *a, uint8_t owner, uint16_t type, const struct cidr *c,
    uint32_t ttl)
{
	struct ban *b = bantab_find(&tab, c, owner);
	char r[BAN_STR_MAX];

	if (type == FT_UNBAN) {
		if (b != NULL)
			bantab_del(&tab, b);
		return;
	}
	if (b == NULL) {
		if (tab.n >= lim.max_bans) {
			ban_range_fmt(c, r, sizeof(r));
			lim_hit(LIM_BANS, "agent %s: ban of %s dropped: %llu bans "
			    "held", a->name, r, (unsigned long long)tab.n);
			return;
		}
		if ((b = calloc(1, sizeof(*b))) == NULL) {
			log_warn("agent %s: ban dropped: out of memory", a->name);
			return;
		}
		b->c = *c;
		b->owner = owner;
		if (bantab_add(&tab, b) == -1) {
			free(b);
			log_warn("agent %s: ban dropped: out of memory", a->name);
			return;
		}
	}
	b->gen = owner_gen[owner];
	b->until = ttl != 0 ? ev_now() + (uint64_t)ttl * 1000u : 0;
}

int
eban_frame(struct eagent *a, const struct msg *m, char *why, size_t whylen)
{
	struct stale st;
	struct cidr c;
	char r[BAN_STR_MAX];
	const char *e;
	uint32_t ttl = 0;
	size_t i, n;
	int o;

	tab_init();
	if ((o = owner_of(a->name)) == -1) {
		lim_hit(LIM_BANS, "agent %s: bans ignored: %d agents hold bans",
		    a->name, OWNERS_MAX);
		return 0;
	}
	if (m->type == FT_BAN_SYNC) {
		st.owner = (uint8_t)o;
		st.gen = owner_gen[o];
		n = bantab_sweep(&tab, is_stale, &st);
		log_info("agent %s: bans in sync (%zu lifted meanwhile; %zu bans "
		    "held)", a->name, n, tab.n);
		return 0;
	}
	if (ban_recs_check(m->bans, m->bans_len, &e) == -1) {
		snprintf(why, whylen, "%s: %s", frame_type_name(m->type), e);
		return -1;
	}
	n = m->bans_len / BAN_REC;
	for (i = 0; i < n; i++) {
		ban_rec_get(m->bans, i, &c, &ttl);
		ban_one(a, (uint8_t)o, m->type, &c, ttl);
	}
	if (n == 1) {
		ban_range_fmt(&c, r, sizeof(r));
		log_info("agent %s: %s %s%s", a->name, m->type == FT_BAN ? "ban" :
		    "ban lifted:", r, m->type == FT_BAN && ttl == 0 ?
		    " until lifted" : "");
	} else
		log_info("agent %s: %zu %s (%zu bans held)", a->name, n,
		    m->type == FT_BAN ? "bans" : "bans lifted", tab.n);
	if (m->type == FT_BAN && m->ban_cut)
		(void)esess_cut(cut_match);
	return 0;
}

int
eban_match(const uint8_t a16[16])
{
	return tab.nlens > 0 && bantab_match(&tab, a16, ev_now()) != NULL;
}

int
eban_refuse(int fd, const struct sockaddr *client, const char *what)
{
	struct linger lg = { 1, 0 };
	char ip[NET_ADDRSTR];
	uint8_t a16[16];

	if (tab.nlens == 0)
		return 0;
	cidr_sa16(client, a16);
	if (!eban_match(a16))
		return 0;
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	net_fmt(client, ip, sizeof(ip));
	lim_hit(LIM_BANNED, "%s: client %s refused: banned", what, ip);
	return 1;
}

void
eban_tick(uint64_t now)
{
	if (tab.n == 0 || now - last_sweep < 1000)
		return;
	last_sweep = now;
	(void)bantab_sweep(&tab, is_expired, &now);
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
