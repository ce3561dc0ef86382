/* agent_link.c - data links to the edges (agent_link.h).
 *
 * A link is dialled to the edge's control address and proved with
 * LINK_HELLO: the key id of this agent's control connection there, the
 * next counter, and HMAC-SHA256 over both with the link key (linkkey.h).
 * The edge does not answer: it keeps the link or closes it. So a link
 * that closes before it carried anything counts as a refusal, and the
 * next one waits for a back-off (0.5 s doubling to 30 s).
 *
 * A TLS link then carries mux frames: the edge opens a stream per
 * session, with its SESS_OPEN as the stream's metadata. A plain link is
 * parked: the agent reads SESS_OPEN from it, exactly, and hands the
 * socket to the session; a link that comes back clean is parked again. */
#include "agent/agent_link.h"
#include "agent/agent_edge.h"
#include "agent/agent_sess.h"
#include "common/log.h"
#include "common/mux.h"
#include "common/plink.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>

#define BACKOFF_MIN_MS	500
#define BACKOFF_MAX_MS	30000
#define REFUSED_MS	10000	/* a refused plain link waits this long for
				 * the edge to close it */
/* The edge keeps plain links that come back from their sessions while
 * the agent's links there number fewer than this many times data_links
 * (at most CFG_LINKS_MAX, the edge's default --max-links), and closes
 * the rest: a burst of concurrent sessions finds links left by the last
 * one. The edge decides, since it is the side that puts a session on a
 * link. */
#define KEEP_FACTOR	4

enum alink_state { AL_DIAL, AL_GREET, AL_UP, AL_REFUSED };

struct alink {
	enum alink_state state;
	struct aedge	*e;
	int		 plain;
	int		 orphan;	/* its control connection went */
	int		 used;		/* it carried a session */
	uint64_t	 kid;
	struct dial	 dial;
	struct fconn	 fc;		/* the greeting; a parked plain link */
	struct mux	*mux;		/* TLS, up */
	struct ev_io	 rio;		/* AL_REFUSED: the edge's close */
	uint64_t	 deadline;
	LIST_ENTRY(alink) entry;
};

static LIST_HEAD(, alink) links = LIST_HEAD_INITIALIZER(links);

static int alink_ready(struct fconn *fc);
static int alink_frame(struct fconn *fc, struct msg *m);
static void alink_lost_fc(struct fconn *fc, const char *why);
static const struct fconn_ops alink_ops = {
	alink_ready, alink_frame, alink_lost_fc,
};

unsigned
alink_keep_max(void)
{
	unsigned n = agent_cfg.data_links * KEEP_FACTOR;

	return n < CFG_LINKS_MAX ? n : CFG_LINKS_MAX;
}

/* A link of e failed before it carried a session: back off. */
static void
backoff(struct aedge *e)
{
	e->link_backoff_ms = e->link_backoff_ms == 0 ? BACKOFF_MIN_MS :
	    e->link_backoff_ms * 2;
	if (e->link_backoff_ms > BACKOFF_MAX_MS)
		e->link_backoff_ms = BACKOFF_MAX_MS;
	e->link_next = ev_now() + e->link_backoff_ms;
}

static void
alink_free(struct alink *l, const char *why)
{
	struct aedge *e = l->e;

	if (why != NULL) {
		if (l->state == AL_UP && !l->used)
			log_warn("edge %s: data link closed before use (a "
			    "refusal is in the edge's log): %s", e->ce->str, why);
		else if (l->state == AL_UP)
			log_info("edge %s: data link closed: %s", e->ce->str, why);
		else
			log_warn("edge %s: data link failed: %s", e->ce->str, why);
		if (!l->used && !l->orphan)
			backoff(e);
	}
	if (!l->orphan) {
		if (l->state == AL_DIAL || l->state == AL_GREET)
			e->links_opening--;
		else if (l->state == AL_UP)
			e->links_up--;
	}
	dial_cancel(&l->dial);
	if (l->state == AL_GREET || (l->state == AL_UP && l->plain))
		fconn_close(&l->fc);
	if (l->mux != NULL) {
		mux_free(l->mux);
		free(l->mux);
	}
	if (l->state == AL_REFUSED) {
		ev_forget(&l->rio);
		close(l->rio.fd);
		e->links_refused--;
	}
	LIST_REMOVE(l, entry);
	free(l);
}

/* --- multiplexed links -------------------------------------------------- */

static void
mux_open_cb(struct mux *m, uint32_t sid, const uint8_t *p, size_t n)
{
	struct alink *l = m->arg;
	struct alink_from sl = { m, sid, -1, l->kid };
	struct msg *sm;
	const char *why;

	/* struct msg is large: not on the event loop's stack. */
	if ((sm = malloc(sizeof(*sm))) == NULL) {
		mux_refuse(m, sid, SE_REFUSED, "agent out of memory");
		return;
	}
	why = NULL;
	if (msg_decode_frame(p, n, sm, &why) == -1 ||
	    sm->type != FT_SESS_OPEN) {
		aedge_violation(l->e, "stream %u opened with a bad SESS_OPEN: %s",
		    sid, why == NULL ? frame_type_name(sm->type) : why);
		mux_refuse(m, sid, SE_ERROR, "bad SESS_OPEN");
	} else if (asess_open(l->e, sm, &sl) == 0) {
		l->used = 1;
		l->e->link_backoff_ms = 0;
	}
	free(sm);
	/* Its last stream id: the link ends with its last session, and
	 * another takes its place now. */
	if (m->spent && !l->orphan) {
		log_info("edge %s: data link's stream ids used up: opening "
		    "another", l->e->ce->str);
		l->e->links_up--;
		l->orphan = 1;
	}
}

static void
mux_lost_cb(struct mux *m, const char *why)
{
	struct alink *l = m->arg;

	if (m->broken)
		aedge_violation(l->e, "data link: %s", why);
	alink_free(l, strcmp(why, "closed when idle") == 0 ? NULL : why);
}

static const struct mux_ops amux_ops = { mux_open_cb, mux_lost_cb };

/* --- greeting ------------------------------------------------------------ */

static int
alink_ready(struct fconn *fc)
{
	struct alink *l = fc->owner;
	struct aedge *e = l->e;
	struct buf pending;
	struct msg m;
	SSL *ssl;
	int fd;

	msg_init(&m, FT_LINK_HELLO);
	m.key_id = l->kid;
	m.counter = ++e->ctr;
	msg_have(&m, FA_KEY_ID);
	msg_have(&m, FA_COUNTER);
	msg_have(&m, FA_PROOF);
	if (linkkey_proof(e->key, l->kid, m.counter, l->plain ?
	    DATA_LINK_PLAIN : DATA_LINK_TLS, m.proof) == -1) {
		alink_free(l, "cannot compute the link proof");
		return -1;
	}
	(void)fconn_send(fc, &m);
	/* No answer comes: the link is up (or the edge closes it). */
	e->links_opening--;
	e->links_up++;
	l->state = AL_UP;
	if (l->plain) {
		log_debug("edge %s: plain data link ready (%u idle)", e->ce->str,
		    e->links_up);
		return 0;
	}
	fconn_detach(fc, &fd, &ssl, &pending);
	if ((l->mux = calloc(1, sizeof(*l->mux))) == NULL) {
		buf_free(&pending);
		SSL_free(ssl);
		close(fd);
		alink_free(l, "out of memory");
		return -1;
	}
	/* mux_start owns fd and ssl from here, also when it fails. */
	if (mux_start(l->mux, fd, ssl, 0, &pending, &amux_ops, l) == -1) {
		free(l->mux);
		l->mux = NULL;
		alink_free(l, "cannot start");
		return -1;
	}
	log_info("edge %s: multiplexed data link up (%s)", e->ce->str,
	    SSL_get_cipher_name(ssl));
	return -1;
}

/* A parked plain link: SESS_OPEN hands it to a session. */
static int
alink_frame(struct fconn *fc, struct msg *m)
{
	struct alink *l = fc->owner;
	struct aedge *e = l->e;
	struct alink_from sl = { NULL, 0, -1, l->kid };
	struct buf pending;
	SSL *ssl;

	if (l->state != AL_UP || !l->plain || m->type != FT_SESS_OPEN) {
		aedge_violation(e, "%s on a data link", frame_type_name(m->type));
		alink_free(l, "unexpected frame");
		return -1;
	}
	fconn_detach(fc, &sl.fd, &ssl, &pending);
	buf_free(&pending);
	if (!l->orphan) {
		e->links_up--;
		e->links_lent++;
	}
	l->state = AL_DIAL;	/* nothing left to count or close */
	l->orphan = 1;
	LIST_REMOVE(l, entry);
	free(l);
	/* A session refused at once (a violation, or a limit) took a link
	 * for nothing: the next one waits, longer each time, so an edge
	 * that keeps doing it does not have the agent dial it in a loop. */
	if (asess_open(e, m, &sl) == 0)
		e->link_backoff_ms = 0;
	else
		backoff(e);
	alink_fill(e);
	return -1;
}

static void
alink_lost_fc(struct fconn *fc, const char *why)
{
	struct alink *l = fc->owner;

	if (fc->bad)
		aedge_violation(l->e, "data link: %s", why);
	alink_free(l, why);
}

static void
alink_dialled(struct dial *d, int fd, int err)
{
	struct alink *l = d->arg;
	SSL *ssl = NULL;

	if (fd == -1) {
		alink_free(l, strerror(err));
		return;
	}
	if (!l->plain) {
		if ((ssl = tlsx_new(agent_tls, fd, 0, l->e->ce->host)) == NULL) {
			close(fd);
			alink_free(l, "TLS set-up failed");
			return;
		}
		tlsx_bulk(ssl);
	}
	l->state = AL_GREET;
	if (fconn_start(&l->fc, fd, ssl, &alink_ops, l) == -1) {
		SSL_free(ssl);
		close(fd);
		l->state = AL_DIAL;
		alink_free(l, "cannot watch the socket");
		return;
	}
	if (l->plain)
		(void)alink_ready(&l->fc);	/* nothing to negotiate */
}

/* --- the pool ------------------------------------------------------------ */

static struct alink *
alink_new(struct aedge *e)
{
	struct alink *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->e = e;
	l->plain = agent_cfg.data_plain;
	l->kid = e->kid;
	l->deadline = ev_now() + agent_cfg.connect_timeout_ms;
	LIST_INSERT_HEAD(&links, l, entry);
	return l;
}

void
alink_fill(struct aedge *e)
{
	struct alink *l;

	while (e->state == AE_READY && ev_now() >= e->link_next &&
	    e->links_up + e->links_opening < agent_cfg.data_links) {
		if ((l = alink_new(e)) == NULL) {
			backoff(e);
			return;
		}
		e->links_opening++;
		if (dial_start(&l->dial, &e->addr, alink_dialled, l) == -1) {
			alink_free(l, strerror(errno));
			return;
		}
	}
}

void
alink_again(struct aedge *e, int fd, int registered, uint64_t kid)
{
	struct alink *l;

	e->links_lent--;
	if (e->state != AE_READY || e->kid != kid || (l = alink_new(e)) == NULL) {
		log_debug("edge %s: plain data link closed after its session",
		    e->ce->str);
		close(fd);
		return;
	}
	l->used = 1;
	l->state = AL_UP;
	if (fconn_start_handed(&l->fc, fd, NULL, &alink_ops, l,
	    registered) == -1) {
		close(fd);
		l->state = AL_DIAL;	/* fd is closed: no fconn_close */
		l->orphan = 1;		/* counted neither opening nor up */
		alink_free(l, NULL);
		return;
	}
	e->links_up++;
}

void
alink_gone(struct aedge *e, uint64_t kid)
{
	(void)kid;
	e->links_lent--;
}

/* A refused plain link: whatever the edge still sends is read and
 * dropped until it closes (a close with unread bytes would reset the
 * link, and the edge could lose the refusal). */
static void
refused_io(struct ev_io *io, uint32_t events)
{
	struct alink *l = (struct alink *)(void *)((char *)io -
	    offsetof(struct alink, rio));
	uint8_t sink[4096];
	ssize_t n;

	(void)events;
	while ((n = recv(io->fd, sink, sizeof(sink), 0)) > 0)
		;
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		alink_free(l, NULL);
}

void
alink_refuse(struct aedge *e, const struct alink_from *sl, enum sess_end code,
    const char *why)
{
	struct alink *l;

	if (sl->mux != NULL) {
		mux_refuse(sl->mux, sl->sid, code, why);
		return;
	}
	e->links_lent--;
	/* A refused link lingers until the edge closes it, at most
	 * CFG_LINKS_MAX of an edge at once: past that, an edge that keeps
	 * sending sessions to be refused gets a reset instead. */
	if (e->links_refused >= CFG_LINKS_MAX ||
	    plink_refuse(sl->fd, code, why) == -1 || (l = alink_new(e)) == NULL) {
		psock_reset_now(sl->fd);
		return;
	}
	e->links_refused++;
	l->state = AL_REFUSED;
	l->orphan = 1;
	l->deadline = ev_now() + REFUSED_MS;
	ev_io_init(&l->rio, sl->fd, refused_io);
	if (ev_set(&l->rio, EPOLLIN | EPOLLRDHUP) == -1)
		alink_free(l, NULL);
}

void
alink_edge_lost(struct aedge *e)
{
	struct alink *l, *next;

	for (l = LIST_FIRST(&links); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if (l->e != e || l->orphan)
			continue;
		if (l->state == AL_UP && !l->plain) {
			/* Its sessions go on; it ends with the last of them. */
			e->links_up--;
			l->orphan = 1;
			mux_close_when_idle(l->mux);
			continue;
		}
		alink_free(l, NULL);
	}
	e->link_backoff_ms = 0;
}

void
alink_tick(uint64_t now)
{
	struct alink *l, *next;

	for (l = LIST_FIRST(&links); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if (l->mux != NULL)
			mux_tick(l->mux, now);
		else if (l->state != AL_UP && now > l->deadline)
			alink_free(l, l->state == AL_REFUSED ? NULL :
			    "set-up timed out");
	}
}

void
alink_stop(void)
{
	while (!LIST_EMPTY(&links))
		alink_free(LIST_FIRST(&links), NULL);
}
