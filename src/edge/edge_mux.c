/* edge_mux.c - multiplexed data links.
 *
 * An agent with data_mux keeps a few TLS links open to the edge, each
 * proved by a one-time pool token (MUX_HELLO), and the edge opens one
 * stream on one of them per client: no handshake and no round trip per
 * session, and no TLS state per idle session (docs/protocol.md,
 * "Multiplexed links"). The edge is the side that opens streams.
 *
 * A link lives on when its agent's control channel goes: the sessions on
 * it do not depend on the control channel. It takes no new session from
 * then on and closes when its last stream ends. */
#include "edge/edge.h"
#include "common/log.h"
#include "common/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

struct emux {
	struct mux	 mux;
	struct econn	*agent;		/* NULL once its control channel went */
	char		 peer[NET_ADDRSTR];
	char		 name[MSG_NAME_MAX];
	LIST_ENTRY(emux) entry;
};

static LIST_HEAD(, emux) links = LIST_HEAD_INITIALIZER(links);
static uint64_t nlinks;
static uint64_t links_total;

static void
emux_unlink(struct emux *l)
{
	LIST_REMOVE(l, entry);
	if (l->agent != NULL && l->agent->nmux > 0)
		l->agent->nmux--;
	l->agent = NULL;
	nlinks--;
}

static void
emux_open_cb(struct mux *m, uint32_t sid, const uint8_t *p, size_t n)
{
	/* The edge opens streams; mux.c refuses an OPEN from the agent
	 * before it gets here. */
	(void)p;
	(void)n;
	mux_refuse(m, sid, "the edge opens streams");
}

static void
emux_lost(struct mux *m, const char *why)
{
	struct emux *l = m->arg;

	if (strcmp(why, "closed when idle") == 0)
		log_info("multiplexed data link of agent %s from %s closed: "
		    "its agent is gone and its last session ended", l->name,
		    l->peer);
	else
		log_warn("multiplexed data link of agent %s from %s lost: %s",
		    l->name, l->peer, why);
	emux_unlink(l);
	mux_free(&l->mux);
	free(l);
}

static const struct mux_ops emux_ops = { emux_open_cb, emux_lost };

void
emux_start(struct econn *link, struct econn *agent)
{
	struct emux *l;
	struct msg ok;
	struct buf pending;
	SSL *ssl;
	int fd;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		edge_stats.data_links_refused++;
		fconn_send_error(&link->fc, "edge out of memory");
		econn_free(link);
		return;
	}
	msg_init(&ok, FT_POOL_OK);
	if (fconn_send(&link->fc, &ok) == -1) {
		free(l);
		econn_drop(link, "cannot send POOL_OK");
		return;
	}
	snprintf(l->peer, sizeof(l->peer), "%s", link->peer);
	snprintf(l->name, sizeof(l->name), "%s", agent->name);
	fconn_detach(&link->fc, &fd, &ssl, &pending);
	econn_free(link);
	if (mux_start(&l->mux, fd, ssl, 1, &pending, &emux_ops, l) == -1) {
		log_warn("multiplexed data link of agent %s from %s: cannot "
		    "start", l->name, l->peer);
		free(l);
		return;
	}
	l->agent = agent;
	agent->nmux++;
	LIST_INSERT_HEAD(&links, l, entry);
	nlinks++;
	links_total++;
	log_info("multiplexed data link of agent %s from %s up (%llu for it)",
	    l->name, l->peer, (unsigned long long)agent->nmux);
}

struct emux *
emux_pick(struct econn *agent)
{
	struct emux *l, *best = NULL;

	if (agent->nmux == 0)
		return NULL;
	LIST_FOREACH(l, &links, entry)
		if (l->agent == agent && !l->mux.failed && !l->mux.closing &&
		    (best == NULL || l->mux.nstreams < best->mux.nstreams))
			best = l;
	return best;
}

struct mux_stream *
emux_open(struct emux *l, int fd, const struct msg *m, mux_done_cb *done,
    void *arg)
{
	struct mux_stream *s;
	struct buf b = { 0 };

	if (msg_encode(m, &b, MUX_CTL_MAX) == -1)
		return NULL;
	s = mux_open(&l->mux, fd, b.data, buf_len(&b), done, arg);
	buf_free(&b);
	return s;
}

void
emux_agent_lost(struct econn *agent)
{
	struct emux *l;

	LIST_FOREACH(l, &links, entry)
		if (l->agent == agent) {
			l->agent = NULL;
			mux_close_when_idle(&l->mux);
		}
	agent->nmux = 0;
}

void
emux_tick(uint64_t now)
{
	struct emux *l, *next;

	for (l = LIST_FIRST(&links); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		(void)mux_tick(&l->mux, now);	/* may free l */
	}
}

void
emux_shutdown(void)
{
	struct emux *l;

	while ((l = LIST_FIRST(&links)) != NULL) {
		emux_unlink(l);
		mux_free(&l->mux);
		free(l);
	}
}

void
emux_stats(char *out, size_t outlen)
{
	struct emux *l;
	uint64_t nstreams = 0;

	LIST_FOREACH(l, &links, entry)
		nstreams += l->mux.nstreams;
	(void)stats_append(out, outlen, "mux_links", nlinks);
	(void)stats_append(out, outlen, "mux_links_total", links_total);
	(void)stats_append(out, outlen, "mux_streams", nstreams);
}
