/* edge_pool.c - pooled data links.
 *
 * Without a pool, a new client waits while the edge asks its agent
 * (SESS_NEW), the agent dials the edge, and TLS and DATA_HELLO go back
 * and forth. With one, the agent keeps a few idle data links open, and a
 * new client is joined at once: the edge writes SESS_ASSIGN on a parked
 * link and starts relaying.
 *
 * A link must be authenticated before any session exists, so the edge
 * hands the agent one-time tokens over its control channel (POOL_REQ,
 * POOL_GRANT); a new link shows one in POOL_HELLO. A token is erased when
 * used, expires unused after POOL_TOKEN_TTL_MS, and lives no longer than
 * the control connection that got it, as do the links parked with it.
 * Parked links and unused tokens count against lim.max_pool per agent.
 *
 * An agent that got a pool key with HELLO_OK needs no token: it proves
 * each link with a counter and its MAC (poolkey.h), so refilling the
 * pool costs the new link alone, and the edge does not answer such a
 * POOL_HELLO (the agent counts the link parked once it has sent it). */
#include "edge/edge.h"
#include "common/log.h"
#include "common/poolkey.h"
#include "common/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#define POOL_TOKEN_TTL_MS	60000

struct ptoken {
	uint8_t		 tok[FRAME_SECRET];
	struct econn	*agent;
	uint64_t	 expires;
	struct ptoken	*next;
};

static struct ptoken *tokens;
static uint64_t nparked;		/* links parked, all agents */

static void
ptoken_free(struct ptoken **pp)
{
	struct ptoken *t = *pp;

	*pp = t->next;
	if (t->agent->ntokens > 0)
		t->agent->ntokens--;
	OPENSSL_cleanse(t->tok, sizeof(t->tok));
	free(t);
}

void
pool_grant(struct econn *agent)
{
	struct ptoken *t;
	struct msg r;

	msg_init(&r, FT_POOL_GRANT);
	r.have |= FA_BIT(FA_STATUS);
	if (agent->npool + agent->nmux + agent->ntokens >= lim.max_pool) {
		lim_hit(LIM_POOL, "agent %s: pool token refused: %llu pooled "
		    "and multiplexed links and tokens", agent->name,
		    (unsigned long long)(agent->npool + agent->nmux +
		    agent->ntokens));
		r.status = 1;
		msg_set_str(&r, FA_TEXT, "pool limit reached");
		(void)fconn_send(&agent->fc, &r);
		return;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		r.status = 1;
		msg_set_str(&r, FA_TEXT, "edge out of memory");
		(void)fconn_send(&agent->fc, &r);
		return;
	}
	if (RAND_bytes(t->tok, sizeof(t->tok)) != 1)
		log_fatal("RAND_bytes failed");
	t->agent = agent;
	t->expires = ev_now() + POOL_TOKEN_TTL_MS;
	t->next = tokens;
	tokens = t;
	agent->ntokens++;
	edge_stats.pool_tokens++;
	memcpy(r.secret, t->tok, sizeof(r.secret));
	r.have |= FA_BIT(FA_SECRET);
	(void)fconn_send(&agent->fc, &r);
	OPENSSL_cleanse(r.secret, sizeof(r.secret));
}

/* Whether agent may park one more link, from link. */
static int
pool_room(struct econn *link, struct econn *agent, const char **why)
{
	if (link->plain && !agent->plain) {
		*why = "plain pooled link for an agent that uses TLS links";
		return -1;
	}
	if (agent->npool + agent->nmux >= lim.max_pool) {
		lim_hit(LIM_POOL, "agent %s: pooled link from %s refused",
		    agent->name, link->peer);
		*why = "pool limit reached";
		return -1;
	}
	return 0;
}

/* A keyed POOL_HELLO (SESSION = the key id, NONCE = the counter, SECRET =
 * the proof). Returns the agent whose key proves it, or NULL with *why. */
static struct econn *
key_use(struct econn *link, const struct msg *m, const char **why)
{
	struct econn *agent;

	if (!(m->have & FA_BIT(FA_SESSION)) ||
	    (agent = ctl_agent_by_kid(m->session)) == NULL) {
		*why = "unknown pool key";
		return NULL;
	}
	/* The proof first: without the key, nobody gets as far as the
	 * limits (or their log lines). */
	if (poolkey_accept(agent->pool_key, agent->pool_kid, &agent->pool_win,
	    m->nonce, m->secret, why) == -1)
		return NULL;
	if (pool_room(link, agent, why) == -1)
		return NULL;
	return agent;
}

/* Use up the pool token link shows in m (POOL_HELLO or MUX_HELLO).
 * Returns the agent it was granted to, or NULL with *why. */
static struct econn *
token_use(struct econn *link, const struct msg *m, const char **why)
{
	struct ptoken **pp, **found = NULL;
	struct econn *agent;

	/* Compare against every token, in constant time each, so the time
	 * taken does not tell how far a guess got. */
	for (pp = &tokens; *pp != NULL; pp = &(*pp)->next)
		if (CRYPTO_memcmp((*pp)->tok, m->secret, FRAME_SECRET) == 0)
			found = pp;
	if (found == NULL) {
		*why = "unknown pool token";
		return NULL;
	}
	agent = (*found)->agent;
	ptoken_free(found);	/* one use, whatever comes next */
	if (pool_room(link, agent, why) == -1)
		return NULL;
	return agent;
}

void
link_refuse(struct econn *link, const char *why)
{
	edge_stats.data_links_refused++;
	log_warn("data link from %s refused: %s", link->peer, why);
	/* A plain link gets no answer: nothing in plaintext before it is
	 * authenticated. */
	if (!link->plain)
		fconn_send_error(&link->fc, why);
	econn_free(link);
}

/* Put link (EC_POOL) in agent's pool. */
static void
pool_park(struct econn *link, struct econn *agent)
{
	link->pool_agent = agent;
	link->pool_next = agent->pool_head;
	if (agent->pool_head != NULL)
		agent->pool_head->pool_prev = link;
	agent->pool_head = link;
	agent->npool++;
	nparked++;
	snprintf(link->name, sizeof(link->name), "%s", agent->name);
}

void
pool_hello(struct econn *link, const struct msg *m)
{
	struct econn *agent;
	struct msg ok;
	const char *why;
	int keyed = (m->have & FA_BIT(FA_NONCE)) != 0;

	if ((agent = keyed ? key_use(link, m, &why) :
	    token_use(link, m, &why)) == NULL) {
		link_refuse(link, why);
		return;
	}
	ctl_identified(link, EC_POOL);
	if (link->plain)
		edge_stats.data_links_plain++;
	/* Only keyed plain links are reused: the key, not a token used up
	 * once, is what stays valid for the link's whole life. */
	link->reuse = keyed && link->plain &&
	    (m->have & FA_BIT(FA_LINK_REUSE)) && m->link_reuse == 1;
	pool_park(link, agent);
	log_debug("pooled %s data link from %s parked for agent %s%s%s",
	    link->plain ? "plain" : "TLS", link->peer, agent->name,
	    keyed ? " (keyed)" : "", link->reuse ? " (reusable)" : "");
	if (keyed) {
		edge_stats.pool_links_keyed++;
		return;		/* no answer: see the top of this file */
	}
	msg_init(&ok, FT_POOL_OK);
	if (fconn_send(&link->fc, &ok) == -1)
		econn_drop(link, "cannot send POOL_OK");
}

void
pool_mux_hello(struct econn *link, const struct msg *m)
{
	struct econn *agent;
	const char *why;

	if (link->plain) {
		/* plink_greeting lets no MUX_HELLO through; say why anyway. */
		link_refuse(link, "multiplexed links are TLS only");
		return;
	}
	if ((agent = token_use(link, m, &why)) == NULL) {
		link_refuse(link, why);
		return;
	}
	/* emux_start answers POOL_OK and takes or frees link. */
	emux_start(link, agent);
}

static void
pool_unlink(struct econn *link)
{
	struct econn *agent = link->pool_agent;

	if (agent == NULL)
		return;
	if (link->pool_prev != NULL)
		link->pool_prev->pool_next = link->pool_next;
	else
		agent->pool_head = link->pool_next;
	if (link->pool_next != NULL)
		link->pool_next->pool_prev = link->pool_prev;
	link->pool_prev = link->pool_next = NULL;
	link->pool_agent = NULL;
	if (agent->npool > 0)
		agent->npool--;
	if (nparked > 0)
		nparked--;
}

struct econn *
pool_take(struct econn *agent)
{
	struct econn *link;

	while ((link = agent->pool_head) != NULL) {
		pool_unlink(link);
		if (!link->fc.failed)
			return link;
		econn_free(link);
	}
	return NULL;
}

void
pool_again(struct econn *agent, int fd, int registered, const char *peer)
{
	struct econn *link;

	/* The agent parked its end when the session ended; closing ours
	 * tells it the link is gone (a parked link that closes). */
	if (agent->npool + agent->nmux >= lim.max_pool) {
		lim_hit(LIM_POOL, "agent %s: reused link from %s closed",
		    agent->name, peer);
		close(fd);
		return;
	}
	if ((link = ctl_link_again(fd, registered, peer)) == NULL) {
		log_warn("agent %s: reused link from %s closed: out of memory",
		    agent->name, peer);
		return;
	}
	pool_park(link, agent);
	edge_stats.pool_links_reused++;
	log_debug("pooled plain data link from %s parked for agent %s "
	    "(reused)", peer, agent->name);
}

void
pool_link_lost(struct econn *link)
{
	pool_unlink(link);
}

void
pool_agent_lost(struct econn *agent)
{
	struct ptoken **pp = &tokens;

	while (*pp != NULL) {
		if ((*pp)->agent == agent)
			ptoken_free(pp);
		else
			pp = &(*pp)->next;
	}
	/* Its links were authenticated by its control connection's tokens:
	 * they go with it. A running session does not depend on them. */
	while (agent->pool_head != NULL)
		econn_drop(agent->pool_head, "agent gone");
}

void
pool_tick(uint64_t now)
{
	struct ptoken **pp = &tokens;

	while (*pp != NULL) {
		if (now >= (*pp)->expires)
			ptoken_free(pp);
		else
			pp = &(*pp)->next;
	}
}

void
pool_stats(char *out, size_t outlen)
{
	struct ptoken *t;
	uint64_t ntok = 0;

	for (t = tokens; t != NULL; t = t->next)
		ntok++;
	(void)stats_append(out, outlen, "sessions_pooled_total",
	    edge_stats.sessions_pooled);
	(void)stats_append(out, outlen, "pool_tokens_granted_total",
	    edge_stats.pool_tokens);
	(void)stats_append(out, outlen, "pool_tokens_unused", ntok);
	(void)stats_append(out, outlen, "pool_links_keyed_total",
	    edge_stats.pool_links_keyed);
	(void)stats_append(out, outlen, "pool_links_reused_total",
	    edge_stats.pool_links_reused);
	(void)stats_append(out, outlen, "pool_links_parked", nparked);
}
