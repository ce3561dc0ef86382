/* ctl_check.c - frames on an edge's control connection checked against
 * what the agent asked and what it has (ctl_check.h). */
#include "agent/ctl_check.h"
#include "agent/sess_check.h"
#include "agent/stats_parse.h"
#include "common/end.h"

#include <stdlib.h>
#include <string.h>

void
actl_asked(struct actl *c, uint16_t type, uint64_t nonce)
{
	unsigned *n = NULL;

	switch (type) {
	case FT_PING:
		/* The older of two unanswered PINGs is forgotten: a correct
		 * edge answers in order, and one two PINGs behind (4 s) is
		 * nearly dead anyway. */
		c->nonce[1] = c->nonce[0];
		c->nonce[0] = nonce;
		return;
	case FT_SVC_OPEN: n = &c->svc_asked; break;
	case FT_STATS_REQ: n = &c->stats_asked; break;
	case FT_OUT_POLICY: n = &c->policy_asked; break;
	default: return;
	}
	if (*n < ACTL_ASKED_MAX)
		(*n)++;
}

/* One answer to a request of the kind n counts. */
static int
answered(unsigned *n)
{
	if (*n == 0)
		return -1;
	(*n)--;
	return 0;
}

static long
service_index(const struct cfg *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nservices && i < CFG_MAX_SERVICES; i++)
		if (strcmp(cfg->services[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* SESS_DENIED and DENIED_SUMMARY: refusals of a service of ours, at
 * most as fast as the edge reports them. */
static enum actl_verdict
refusal(struct actl *c, const struct cfg *cfg, const struct msg *m,
    uint64_t now_ms, const char **why)
{
	struct sockaddr_storage ss;
	long i;

	if (now_ms / 1000 != c->second) {
		c->second = now_ms / 1000;
		memset(c->denied, 0, sizeof(c->denied));
		memset(c->summaries, 0, sizeof(c->summaries));
	}
	if ((i = service_index(cfg, m->service)) == -1) {
		*why = "refusal reported for a service this agent does not offer";
		return ACTL_IGNORE;
	}
	if (m->type == FT_DENIED_SUMMARY) {
		if (m->count == 0 || c->summaries[i] >= ACTL_SUMMARY_PER_S) {
			*why = m->count == 0 ? "DENIED_SUMMARY of no refusal" :
			    "DENIED_SUMMARY more often than once a second";
			return ACTL_IGNORE;
		}
		c->summaries[i]++;
		return ACTL_OK;
	}
	if (m->end != SE_DENIED && m->end != SE_LIMIT &&
	    m->end != SE_TIMEOUT && m->end != SE_ERROR) {
		*why = "SESS_DENIED with a reason the edge does not refuse for";
		return ACTL_IGNORE;
	}
	if (scheck_addr(m->client_addr, m->client_port, &ss) == -1) {
		*why = "SESS_DENIED with a client address that is not one";
		return ACTL_IGNORE;
	}
	if (c->denied[i] >= ACTL_DENIED_PER_S) {
		*why = "SESS_DENIED faster than the edge reports refusals";
		return ACTL_IGNORE;
	}
	c->denied[i]++;
	return ACTL_OK;
}

enum actl_verdict
actl_frame(struct actl *c, const struct cfg *cfg, const struct msg *m,
    uint64_t now_ms, const char **why)
{
	struct stats_kv *kv;
	size_t n;
	int k;

	if (!c->ready) {
		/* The one frame a correct edge sends first, or ERROR. */
		if (m->type == FT_HELLO_OK) {
			c->ready = 1;
			return ACTL_OK;
		}
		if (m->type == FT_ERROR)
			return ACTL_OK;
		*why = "a frame other than HELLO_OK first";
		return ACTL_DROP;
	}
	switch (m->type) {
	case FT_ERROR:
		return ACTL_OK;	/* the edge closes; not a violation */
	case FT_PONG:
		for (k = 0; k < 2; k++)
			if (c->nonce[k] != 0 && m->nonce == c->nonce[k]) {
				c->nonce[k] = 0;
				if (k == 0)
					c->nonce[1] = 0;	/* in order */
				return ACTL_OK;
			}
		*why = "PONG for no PING of ours";
		return ACTL_IGNORE;
	case FT_SVC_RESULT:
		if (service_index(cfg, m->service) == -1 ||
		    answered(&c->svc_asked) == -1) {
			*why = "SVC_RESULT for no SVC_OPEN of ours";
			return ACTL_IGNORE;
		}
		return ACTL_OK;
	case FT_STATS:
		if (answered(&c->stats_asked) == -1) {
			*why = "STATS for no STATS_REQ of ours";
			return ACTL_IGNORE;
		}
		/* struct stats_kv[STATS_MAX] is 3.6 KiB: not on the stack of
		 * the event loop's callback. */
		if ((kv = calloc(STATS_MAX, sizeof(*kv))) == NULL) {
			*why = "out of memory";
			return ACTL_IGNORE;
		}
		k = stats_parse(m->stats, strnlen(m->stats, sizeof(m->stats)),
		    kv, STATS_MAX, &n, why);
		free(kv);
		return k == 0 ? ACTL_OK : ACTL_IGNORE;
	case FT_OUT_POLICY_OK:
		if (answered(&c->policy_asked) == -1) {
			*why = "OUT_POLICY_OK for no OUT_POLICY of ours";
			return ACTL_IGNORE;
		}
		return ACTL_OK;
	case FT_SESS_DENIED:
	case FT_DENIED_SUMMARY:
		return refusal(c, cfg, m, now_ms, why);
	case FT_OUT_FAIL:
	case FT_FTP_DIAL_FAIL:
		return ACTL_OK;	/* its request is checked where it waits */
	case FT_DRAINING:
		return ACTL_OK;	/* the agent reconnects (paced: agent_edge.c) */
	case FT_HELLO_OK:
		*why = "HELLO_OK again";
		return ACTL_DROP;
	default:
		/* The agent's own frames, and SESS_OPEN or LINK_HELLO, which
		 * belong on data links: an edge that sends them here is not
		 * speaking the protocol. */
		*why = "a frame the edge never sends on a control connection";
		return ACTL_DROP;
	}
}
