/* edge_adm.c - admission of clients (edge_adm.h).
 *
 * An address's entry counts its sessions on every service (the edge's
 * --max-per-ip) and, under it, per service with a per-address limit, its
 * sessions there and a GCRA "theoretical arrival time" for the
 * new-sessions-per-minute limit. Entries with no session sit on an idle
 * list in order of last use. */
#include "edge/edge_adm.h"
#include "edge/edge_limit.h"
#include "common/ev.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <openssl/rand.h>

#define ADM_HASH	16384		/* power of two */
#define MINUTE_US	60000000ull

_Static_assert(MSG_CIDRS_MAX == CIDR_STR_MAX, "CIDR list sizes differ");

struct adm_svc {
	char		 svc[MSG_NAME_MAX];
	uint32_t	 live;		/* sessions of the address there */
	uint64_t	 tat_us;	/* GCRA: when the bucket is full again */
	struct adm_svc	*next;
};

struct adm_ip {
	uint8_t		 addr[16];
	uint64_t	 live;		/* sessions of the address, all services */
	struct adm_svc	*svcs;
	LIST_ENTRY(adm_ip) h;		/* hash chain */
	/* On the idle list, least recently used first, exactly while it
	 * holds no session (live == 0). */
	TAILQ_ENTRY(adm_ip) q;
};

static LIST_HEAD(, adm_ip) hash[ADM_HASH];
static TAILQ_HEAD(, adm_ip) idle = TAILQ_HEAD_INITIALIZER(idle);
static size_t count;
static uint64_t seed;
static int seeded;

int
adm_policy_load(struct cpol *p, const struct msg *def, char *err,
    size_t errlen)
{
	char e[256];

	/* An attribute left out decodes as "": an empty list. */
	memset(p, 0, sizeof(*p));
	if (cidr_list_parse(def->allow, &p->allow, e, sizeof(e)) == -1) {
		snprintf(err, errlen, "allow: %s", e);
		return -1;
	}
	if (cidr_list_parse(def->deny, &p->deny, e, sizeof(e)) == -1) {
		snprintf(err, errlen, "deny: %s", e);
		return -1;
	}
	if (cidr_list_parse(def->accept_proxy, &p->accept_proxy, e,
	    sizeof(e)) == -1) {
		snprintf(err, errlen, "accept_proxy_from: %s", e);
		return -1;
	}
	p->max_sess = def->max_sess_ip;
	p->max_rate = def->max_rate_ip;
	return 0;
}

static size_t
bucket(const uint8_t addr[16])
{
	/* FNV-1a, seeded. */
	uint64_t h = 1469598103934665603ull ^ seed;
	size_t i;

	for (i = 0; i < 16; i++)
		h = (h ^ addr[i]) * 1099511628211ull;
	return (size_t)(h ^ (h >> 29)) & (ADM_HASH - 1);
}

/* Forget an idle entry. */
static void
ip_free(struct adm_ip *e)
{
	struct adm_svc *s;

	LIST_REMOVE(e, h);
	TAILQ_REMOVE(&idle, e, q);
	while ((s = e->svcs) != NULL) {
		e->svcs = s->next;
		free(s);
	}
	count--;
	free(e);
}

static struct adm_ip *
ip_get(const uint8_t addr[16])
{
	struct adm_ip *e;
	size_t b;

	if (!seeded) {
		if (RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1)
			log_fatal("RAND_bytes failed");
		seeded = 1;
	}
	b = bucket(addr);
	LIST_FOREACH(e, &hash[b], h)
		if (memcmp(e->addr, addr, 16) == 0)
			return e;
	/* The table may hold more addresses than ADM_TABLE_MAX only when
	 * the edge allows more sessions than that: each session pins its
	 * address. */
	if (count >= ADM_TABLE_MAX && count >= lim.max_sessions) {
		/* Full: forget the least recently used idle address. Its
		 * rate history is lost (it may start afresh), which fails
		 * open for one old address instead of closed for new ones. */
		if (TAILQ_EMPTY(&idle))
			return NULL;
		ip_free(TAILQ_FIRST(&idle));
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	memcpy(e->addr, addr, 16);
	LIST_INSERT_HEAD(&hash[b], e, h);
	count++;
	/* Idle until it holds a session: if the caller refuses, it is
	 * reclaimed like any other. */
	TAILQ_INSERT_TAIL(&idle, e, q);
	return e;
}

static struct adm_svc *
svc_get(struct adm_ip *e, const char *svc)
{
	struct adm_svc *s;

	for (s = e->svcs; s != NULL; s = s->next)
		if (strcmp(s->svc, svc) == 0)
			return s;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	snprintf(s->svc, sizeof(s->svc), "%s", svc);
	s->next = e->svcs;
	e->svcs = s;
	return s;
}

/* The service's per-address limits; 0 to admit. */
static int
svc_limits(struct adm_svc *s, const struct cpol *p, uint64_t now,
    char *why, size_t whylen)
{
	uint64_t t, tau, tat;

	if (p->max_sess > 0 && s->live >= p->max_sess) {
		snprintf(why, whylen, "%u sessions from this address",
		    p->max_sess);
		return -1;
	}
	if (p->max_rate > 0) {
		/* GCRA: one session every t, bursts of up to max_rate. A
		 * refused attempt does not use up the allowance. */
		t = MINUTE_US / p->max_rate;
		tau = MINUTE_US - t;
		tat = s->tat_us > now ? s->tat_us : now;
		if (tat - now > tau) {
			snprintf(why, whylen, "more than %u new sessions per "
			    "minute from this address", p->max_rate);
			return -1;
		}
		s->tat_us = tat + t;
	}
	return 0;
}

int
adm_admit(const uint8_t addr[16], const char *svc, const struct cpol *p,
    struct adm_hold *h, enum sess_end *code, char *why, size_t whylen)
{
	struct adm_ip *e;
	struct adm_svc *s = NULL;
	uint64_t now = ev_now() * 1000;

	memset(h, 0, sizeof(*h));
	*code = SE_DENIED;
	if (p != NULL && cidr_list_match(&p->deny, addr)) {
		snprintf(why, whylen, "address matches deny");
		return -1;
	}
	if (p != NULL && p->allow.n > 0 && !cidr_list_match(&p->allow, addr)) {
		snprintf(why, whylen, "address not in allow");
		return -1;
	}
	*code = SE_LIMIT;
	if ((e = ip_get(addr)) == NULL) {
		snprintf(why, whylen, "too many client addresses tracked");
		return -1;
	}
	if (e->live >= lim.max_per_ip) {
		lim_hit(LIM_PER_IP, "service %s: client refused: %llu sessions "
		    "from that address", svc, (unsigned long long)e->live);
		return -2;
	}
	if (p != NULL && (p->max_sess > 0 || p->max_rate > 0)) {
		if ((s = svc_get(e, svc)) == NULL) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		if (svc_limits(s, p, now, why, whylen) == -1)
			return -1;
		s->live++;
	}
	if (e->live++ == 0)
		TAILQ_REMOVE(&idle, e, q);
	h->ip = e;
	h->svc = s;
	return 0;
}

void
adm_release(struct adm_hold *h)
{
	struct adm_ip *e = h->ip;

	if (e == NULL)
		return;
	if (e->live == 0 || (h->svc != NULL && h->svc->live == 0))
		log_fatal("admission: a session count below zero");
	if (h->svc != NULL)
		h->svc->live--;
	if (--e->live == 0)
		TAILQ_INSERT_TAIL(&idle, e, q);
	h->ip = NULL;
	h->svc = NULL;
}

/* Whether an idle entry still holds rate history. */
static int
has_history(const struct adm_ip *e, uint64_t now)
{
	const struct adm_svc *s;

	for (s = e->svcs; s != NULL; s = s->next)
		if (s->tat_us > now)
			return 1;
	return 0;
}

void
adm_tick(uint64_t now_ms)
{
	uint64_t now = now_ms * 1000;
	int n = 0;

	/* Oldest first; stop at the first entry still holding history. The
	 * order is of last use, not of expiry, so a few entries may live a
	 * little longer than needed: harmless, and bounded work. */
	while (!TAILQ_EMPTY(&idle) && !has_history(TAILQ_FIRST(&idle), now) &&
	    n++ < 4096)
		ip_free(TAILQ_FIRST(&idle));
}

size_t
adm_tracked(void)
{
	return count;
}
