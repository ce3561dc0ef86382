/* edge_link.c - data links (edge_link.h).
 *
 * A link is taken only with a proof made with the link key of a connected
 * agent's control channel, for a counter not used before (linkkey.h); a
 * link that does not prove itself is closed unanswered. A link lives on
 * when its agent's control channel goes (its sessions do not depend on
 * it), but takes no new session from then on. */
#include "edge/edge_link.h"
#include "edge/edge_ctl.h"
#include "edge/edge_handover.h"
#include "edge/edge_limit.h"
#include "edge/edge_sess.h"
#include "edge/edge_stats.h"
#include "common/log.h"
#include "common/mux.h"
#include "common/plink.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

/* A multiplexed link. */
struct emux {
	struct mux	 mux;
	struct eagent	*a;		/* NULL once its control channel went */
	char		 peer[NET_ADDRSTR];
	char		 name[MSG_NAME_MAX];
	LIST_ENTRY(emux) entry;
};

/* A plain link between sessions: nothing is read from it; a byte or the
 * end from the agent closes it. */
struct eparked {
	struct ev_io	 io;
	struct eagent	*a;
	LIST_ENTRY(eparked) entry;
};

static LIST_HEAD(, emux) muxes = LIST_HEAD_INITIALIZER(muxes);
static uint64_t nparked;

static void
refuse(int fd, SSL *ssl, struct buf *pending, const char *peer,
    const char *why)
{
	edge_stats.data_links_refused++;
	log_warn("data link from %s refused: %s", peer, why);
	/* No answer: the agent learns from the close, and nothing is said
	 * in the clear to a connection that did not prove itself. */
	buf_free(pending);
	SSL_free(ssl);
	close(fd);
}

/* --- multiplexed links -------------------------------------------------- */

static void
emux_free(struct emux *l)
{
	LIST_REMOVE(l, entry);
	if (l->a != NULL)
		l->a->nlinks--;
	mux_free(&l->mux);
	free(l);
}

static void
emux_lost(struct mux *m, const char *why)
{
	struct emux *l = m->arg;

	if (m->spent && strcmp(why, "closed when idle") == 0)
		log_info("multiplexed data link of agent %s from %s closed: its "
		    "stream ids are used up and its last session ended",
		    l->name, l->peer);
	else if (strcmp(why, "closed when idle") == 0)
		log_info("multiplexed data link of agent %s from %s closed: its "
		    "agent is gone and its last session ended", l->name, l->peer);
	else
		log_msg(eho_draining() ? LOG_INFO : LOG_WARN, "multiplexed data "
		    "link of agent %s from %s lost: %s", l->name, l->peer, why);
	emux_free(l);
}

/* The edge opens every stream: mux.c refuses an OPEN from the agent. */
static const struct mux_ops emux_ops = { NULL, emux_lost };

static void
mux_up(int fd, SSL *ssl, struct buf *pending, const char *peer,
    struct eagent *a)
{
	struct emux *l;

	if ((l = calloc(1, sizeof(*l))) == NULL) {
		refuse(fd, ssl, pending, peer, "out of memory");
		return;
	}
	snprintf(l->peer, sizeof(l->peer), "%s", peer);
	snprintf(l->name, sizeof(l->name), "%s", a->name);
	if (mux_start(&l->mux, fd, ssl, 1, pending, &emux_ops, l) == -1) {
		log_warn("multiplexed data link of agent %s from %s: cannot "
		    "start", l->name, l->peer);
		free(l);
		return;
	}
	l->a = a;
	a->nlinks++;
	LIST_INSERT_HEAD(&muxes, l, entry);
	edge_stats.links_mux++;
	log_info("multiplexed data link of agent %s from %s up (%llu for it)",
	    l->name, l->peer, (unsigned long long)a->nlinks);
	esess_links_ready(a);
}

/* --- plain links -------------------------------------------------------- */

static void
unpark(struct eparked *pk)
{
	LIST_REMOVE(pk, entry);
	nparked--;
	pk->a->nlinks--;
}

static void
parked_close(struct eparked *pk)
{
	unpark(pk);
	ev_forget(&pk->io);
	close(pk->io.fd);
	free(pk);
}

static void
parked_io(struct ev_io *io, uint32_t events)
{
	struct eparked *pk = (struct eparked *)(void *)io;

	(void)events;
	log_debug("plain data link of agent %s closed while idle", pk->a->name);
	parked_close(pk);
}

/* Park plain link fd (registered: as by ev_release) for a. 0, or -1 with
 * fd closed. */
static int
park(struct eagent *a, int fd, int registered)
{
	struct eparked *pk;

	if ((pk = calloc(1, sizeof(*pk))) == NULL) {
		close(fd);
		return -1;
	}
	ev_io_init(&pk->io, fd, parked_io);
	ev_adopt(&pk->io, registered);
	pk->a = a;
	LIST_INSERT_HEAD(&a->parked, pk, entry);
	a->nlinks++;
	nparked++;
	if (ev_set(&pk->io, EPOLLIN | EPOLLRDHUP) == -1) {
		parked_close(pk);
		return -1;
	}
	return 0;
}

/* Write SESS_OPEN (encoded in b) on a parked link of a and make the link
 * the inner endpoint pl. NULL if a has no parked link that takes it. */
static struct pend *
plain_open(struct eagent *a, const struct buf *b, struct plink *pl)
{
	struct eparked *pk;
	ssize_t n;

	while ((pk = LIST_FIRST(&a->parked)) != NULL) {
		/* The session's chunks follow SESS_OPEN right away, so it must
		 * go whole: an idle socket takes it at once. */
		n = send(pk->io.fd, b->data, buf_len(b), MSG_NOSIGNAL);
		if (n == (ssize_t)buf_len(b))
			break;
		log_debug("plain data link of agent %s: %s", a->name,
		    n == -1 ? strerror(errno) : "short write");
		parked_close(pk);
	}
	if (pk == NULL)
		return NULL;
	unpark(pk);
	/* The pump takes the registration over. */
	plink_init(pl, pk->io.fd, ev_release(&pk->io), 1);
	free(pk);
	return &pl->s.e;
}

void
elink_again(struct eagent *a, int fd, int registered)
{
	if (a == NULL || a->nlinks >= a->links_keep) {
		/* Closing tells the agent its end is not needed either (the
		 * agent never closes a link it gave back: only this side
		 * knows whether a session is about to be put on it). */
		log_debug("plain data link closed after its session");
		close(fd);
		return;
	}
	if (park(a, fd, registered) == -1)
		return;
	edge_stats.links_reused++;
	log_debug("plain data link parked for agent %s (reused)", a->name);
	esess_links_ready(a);
}

/* --- both --------------------------------------------------------------- */

void
elink_hello(int fd, SSL *ssl, struct buf *pending, const char *peer,
    const struct msg *m)
{
	struct eagent *a = ectl_agent_by_kid(m->key_id);
	const char *why = "unknown link key";

	/* The proof first: without the key, nobody gets as far as the
	 * limits (or their log lines). */
	if (a == NULL || linkkey_accept(a->key, a->kid, &a->win, m->counter,
	    ssl != NULL ? DATA_LINK_TLS : DATA_LINK_PLAIN, m->proof,
	    &why) == -1) {
		refuse(fd, ssl, pending, peer, why);
		return;
	}
	if ((ssl == NULL) != (a->plain != 0)) {
		refuse(fd, ssl, pending, peer, ssl == NULL ? "a plain link "
		    "from an agent of TLS links" : "a TLS link from an agent "
		    "of plain links");
		return;
	}
	if (a->nlinks >= lim.max_links) {
		lim_hit(LIM_LINKS, "agent %s: data link from %s refused",
		    a->name, peer);
		refuse(fd, ssl, pending, peer, "data link limit reached");
		return;
	}
	if (ssl != NULL) {
		mux_up(fd, ssl, pending, peer, a);
		return;
	}
	buf_free(pending);
	if (park(a, fd, 0) == -1)
		return;
	edge_stats.links_plain++;
	log_debug("plain data link from %s parked for agent %s", peer, a->name);
	esess_links_ready(a);
}

struct pend *
elink_open(struct eagent *a, const struct msg *m, struct plink *pl,
    const char **kind)
{
	static struct buf b;
	struct emux *l, *best = NULL;
	struct mux_stream *s;

	*kind = a->plain ? "plain" : "tls";
	b.rpos = b.wpos = 0;
	if (msg_encode(m, &b, MUX_CTL_MAX) == -1)
		return NULL;
	if (a->plain)
		return plain_open(a, &b, pl);
	/* The agent's link with the fewest streams. */
	LIST_FOREACH(l, &muxes, entry)
		if (l->a == a && !l->mux.failed && !l->mux.closing &&
		    (best == NULL || l->mux.nstreams < best->mux.nstreams))
			best = l;
	if (best == NULL ||
	    (s = mux_open(&best->mux, b.data, buf_len(&b))) == NULL)
		return NULL;
	return &s->e;
}

void
elink_agent_lost(struct eagent *a)
{
	struct emux *l;

	while (!LIST_EMPTY(&a->parked))
		parked_close(LIST_FIRST(&a->parked));
	LIST_FOREACH(l, &muxes, entry)
		if (l->a == a) {
			l->a = NULL;
			a->nlinks--;
			mux_close_when_idle(&l->mux);
		}
}

void
elink_tick(uint64_t now)
{
	struct emux *l;

	LIST_FOREACH(l, &muxes, entry)
		mux_tick(&l->mux, now);
}

void
elink_shutdown(void)
{
	/* Every session has ended (esess_shutdown): no stream is left. */
	while (!LIST_EMPTY(&muxes))
		emux_free(LIST_FIRST(&muxes));
}

void
elink_stats(char *out, size_t outlen)
{
	struct emux *l;
	uint64_t nmux = 0, nstreams = 0;

	LIST_FOREACH(l, &muxes, entry) {
		nmux++;
		nstreams += l->mux.nstreams;
	}
	(void)estats_put(out, outlen, "mux_links", nmux);
	(void)estats_put(out, outlen, "mux_streams", nstreams);
	(void)estats_put(out, outlen, "plain_links_parked", nparked);
}
