/* edge_policy.c - the per-service client policy the agent pushes in
 * SVC_OPEN (allow, deny, per-address limits), applied at accept time so
 * that a denied or excess client never costs a round trip to the inside.
 *
 * Per-address state lives in one bounded table keyed by (service,
 * address): a live session count, which pins the entry, and a GCRA
 * "theoretical arrival time" for the new-sessions-per-minute limit.
 * Entries with no live session sit on an idle list in order of last use;
 * they are freed once their rate history has expired, or taken over
 * first when the table is full, so a flood of addresses cannot grow the
 * table past POL_IPS_MAX and cannot lock out a new address while idle
 * entries exist. */
#include "edge/edge.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#define POL_HASH	16384		/* power of two */
#define POL_IPS_MAX	65536
#define POL_MINUTE_US	60000000ull

_Static_assert(MSG_CIDRS_MAX == CIDR_STR_MAX, "CIDR list sizes differ");

struct pol_ip {
	uint8_t		 addr[16];
	char		 svc[MSG_NAME_MAX];
	uint32_t	 live;		/* sessions of this address now */
	uint64_t	 tat_us;	/* GCRA: earliest time the bucket is full */
	int		 idle;		/* on the idle list (live == 0) */
	struct pol_ip	*hnext;
	struct pol_ip	*prev, *next;	/* idle list, least recently used first */
};

static struct pol_ip *pol_hash[POL_HASH];
static struct pol_ip *idle_head, *idle_tail;
static size_t pol_count;
static uint64_t pol_seed;
static int pol_seeded;

int
pol_load(struct cpol *p, const struct msg *def, char *err, size_t errlen)
{
	char e[256];

	memset(p, 0, sizeof(*p));
	if ((def->have & FA_BIT(FA_ALLOW)) &&
	    cidr_list_parse(def->allow, &p->allow, e, sizeof(e)) == -1) {
		snprintf(err, errlen, "allow: %s", e);
		return -1;
	}
	if ((def->have & FA_BIT(FA_DENY)) &&
	    cidr_list_parse(def->deny, &p->deny, e, sizeof(e)) == -1) {
		snprintf(err, errlen, "deny: %s", e);
		return -1;
	}
	if ((def->have & FA_BIT(FA_ACCEPT_PROXY)) &&
	    cidr_list_parse(def->accept_proxy, &p->accept_proxy, e,
	    sizeof(e)) == -1) {
		snprintf(err, errlen, "accept_proxy_from: %s", e);
		return -1;
	}
	if (def->have & FA_BIT(FA_MAX_SESS_IP))
		p->max_sess = def->max_sess_ip;
	if (def->have & FA_BIT(FA_MAX_RATE_IP))
		p->max_rate = def->max_rate_ip;
	return 0;
}

static size_t
pol_bucket(const char *svc, const uint8_t addr[16])
{
	/* FNV-1a with a per-process random seed: the addresses are chosen
	 * by clients, who must not be able to aim at one chain. */
	uint64_t h = 1469598103934665603ull ^ pol_seed;
	size_t i;

	for (i = 0; i < 16; i++)
		h = (h ^ addr[i]) * 1099511628211ull;
	for (i = 0; svc[i] != '\0'; i++)
		h = (h ^ (uint8_t)svc[i]) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29)) & (POL_HASH - 1);
}

static void
idle_unlink(struct pol_ip *e)
{
	if (!e->idle)
		return;
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		idle_head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		idle_tail = e->prev;
	e->prev = e->next = NULL;
	e->idle = 0;
}

static void
idle_append(struct pol_ip *e)
{
	e->prev = idle_tail;
	e->next = NULL;
	if (idle_tail != NULL)
		idle_tail->next = e;
	else
		idle_head = e;
	idle_tail = e;
	e->idle = 1;
}

static void
pol_free_entry(struct pol_ip *e)
{
	struct pol_ip **pp = &pol_hash[pol_bucket(e->svc, e->addr)];

	for (; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	idle_unlink(e);
	pol_count--;
	free(e);
}

static struct pol_ip *
pol_get(const char *svc, const uint8_t addr[16])
{
	struct pol_ip *e;
	size_t b;

	if (!pol_seeded) {
		if (RAND_bytes((unsigned char *)&pol_seed, sizeof(pol_seed)) != 1)
			log_fatal("RAND_bytes failed");
		pol_seeded = 1;
	}
	b = pol_bucket(svc, addr);
	for (e = pol_hash[b]; e != NULL; e = e->hnext)
		if (memcmp(e->addr, addr, 16) == 0 && strcmp(e->svc, svc) == 0)
			return e;
	if (pol_count >= POL_IPS_MAX) {
		/* Full: forget the least recently used idle address. Its
		 * rate history is lost (it may start afresh), which fails
		 * open for one old address instead of closed for new ones. */
		if (idle_head == NULL)
			return NULL;
		pol_free_entry(idle_head);
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	memcpy(e->addr, addr, 16);
	snprintf(e->svc, sizeof(e->svc), "%s", svc);
	e->hnext = pol_hash[b];
	pol_hash[b] = e;
	pol_count++;
	/* A new entry is idle until it holds a session: if the caller
	 * denies, it is reclaimed like any other. */
	idle_append(e);
	return e;
}

int
pol_admit(const struct cpol *p, const char *svc, const uint8_t addr[16],
    uint64_t now_ms, struct pol_ip **ent, char *why, size_t whylen)
{
	struct pol_ip *e;
	uint64_t now = now_ms * 1000, t, tau, tat;

	*ent = NULL;
	if (p->deny.n > 0 && cidr_list_match(&p->deny, addr)) {
		snprintf(why, whylen, "denied: address matches deny");
		return -1;
	}
	if (p->allow.n > 0 && !cidr_list_match(&p->allow, addr)) {
		snprintf(why, whylen, "denied: address not in allow");
		return -1;
	}
	if (p->max_sess == 0 && p->max_rate == 0)
		return 0;
	if ((e = pol_get(svc, addr)) == NULL) {
		snprintf(why, whylen, "limit: too many client addresses tracked");
		return -1;
	}
	if (p->max_sess > 0 && e->live >= p->max_sess) {
		snprintf(why, whylen, "limit: %u sessions from this address",
		    p->max_sess);
		return -1;
	}
	if (p->max_rate > 0) {
		/* GCRA: one session every t, bursts of up to max_rate. A
		 * refused attempt does not use up the allowance. */
		t = POL_MINUTE_US / p->max_rate;
		tau = POL_MINUTE_US - t;
		tat = e->tat_us > now ? e->tat_us : now;
		if (tat - now > tau) {
			snprintf(why, whylen, "limit: more than %u new sessions "
			    "per minute from this address", p->max_rate);
			return -1;
		}
		e->tat_us = tat + t;
	}
	idle_unlink(e);
	e->live++;
	*ent = e;
	return 0;
}

void
pol_release(struct pol_ip *e)
{
	if (e == NULL)
		return;
	if (e->live == 0)
		log_fatal("policy: session count of an address below zero");
	if (--e->live == 0)
		idle_append(e);
}

void
pol_tick(uint64_t now_ms)
{
	uint64_t now = now_ms * 1000;
	int n = 0;

	/* Oldest first; stop at the first entry still holding rate history.
	 * The order is of last use, not of expiry, so a few entries may
	 * live a little longer than needed: harmless, and bounded work. */
	while (idle_head != NULL && idle_head->tat_us <= now && n++ < 4096)
		pol_free_entry(idle_head);
}

size_t
pol_tracked(void)
{
	return pol_count;
}
