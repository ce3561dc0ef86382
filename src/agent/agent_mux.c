/* agent_mux.c - multiplexed data links, the agent's side.
 *
 * With data_mux = N (and TLS data links) the agent keeps N TLS links open
 * to each edge, each proved by a one-time pool token in MUX_HELLO. The
 * edge opens a stream on one of them for every new client, with the
 * session's SESS_ASSIGN as the stream's metadata; agent_sess.c dials a
 * backend and joins it to the stream (docs/protocol.md, "Multiplexed
 * links"). A link that fails ends the sessions on it; the pool logic of
 * agent_edge.c opens a new one. */
#include "agent/agent.h"
#include "common/log.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>
#include <openssl/crypto.h>

enum amux_state { AM_DIAL, AM_GREET, AM_UP };

struct amux {
	enum amux_state	 state;
	struct aedge	*e;
	int		 counted;	/* in e->pool_links */
	struct dial	 dial;
	struct fconn	 fc;
	struct mux	 mux;
	uint8_t		 token[FRAME_SECRET];
	uint64_t	 deadline;
	LIST_ENTRY(amux) entry;
};

static LIST_HEAD(, amux) links = LIST_HEAD_INITIALIZER(links);

static int amux_ready(struct fconn *fc);
static int amux_frame(struct fconn *fc, struct msg *m);
static void amux_fc_lost(struct fconn *fc, const char *why);
static const struct fconn_ops amux_fc_ops = {
	amux_ready, amux_frame, amux_fc_lost,
};

static void
amux_uncount(struct amux *l)
{
	if (l->counted && l->e->pool_links > 0)
		l->e->pool_links--;
	l->counted = 0;
}

/* Forget l; failed: count toward the back-off of its edge. */
static void
amux_free(struct amux *l, const char *why, int failed)
{
	struct aedge *e = l->e;

	if (why != NULL)
		log_warn("edge %s: multiplexed data link %s: %s", e->ce->str,
		    l->state == AM_UP ? "lost" : "failed", why);
	if (l->counted && failed)
		edge_pool_failed(e, l->state != AM_UP);
	amux_uncount(l);
	dial_cancel(&l->dial);
	if (l->state == AM_GREET)
		fconn_close(&l->fc);
	else if (l->state == AM_UP)
		mux_free(&l->mux);
	LIST_REMOVE(l, entry);
	OPENSSL_cleanse(l->token, sizeof(l->token));
	free(l);
}

static void
amux_open_cb(struct mux *m, uint32_t sid, const uint8_t *p, size_t n)
{
	struct amux *l = m->arg;
	struct msg *a;
	const char *why = "bad SESS_ASSIGN";
	uint16_t type;
	uint32_t len;

	/* struct msg is large; not on the stack of the event loop. */
	if ((a = malloc(sizeof(*a))) == NULL) {
		mux_refuse(m, sid, "agent out of memory");
		return;
	}
	if (n < FRAME_HDR || frame_hdr_decode(p, &type, &len, &why) == -1 ||
	    type != FT_SESS_ASSIGN || len != n - FRAME_HDR ||
	    msg_decode(type, p + FRAME_HDR, len, a, &why) == -1) {
		log_warn("edge %s: stream %u refused: %s", l->e->ce->str, sid, why);
		mux_refuse(m, sid, why);
		free(a);
		return;
	}
	sess_mux_open(l->e, m, sid, a);
	free(a);
}

static void
amux_lost(struct mux *m, const char *why)
{
	struct amux *l = m->arg;

	amux_free(l, strcmp(why, "closed when idle") == 0 ? NULL : why, 1);
}

static const struct mux_ops amux_ops = { amux_open_cb, amux_lost };

static int
amux_ready(struct fconn *fc)
{
	struct amux *l = fc->owner;
	struct msg m;

	msg_init(&m, FT_MUX_HELLO);
	memcpy(m.secret, l->token, sizeof(m.secret));
	m.have |= FA_BIT(FA_SECRET);
	(void)fconn_send(fc, &m);
	OPENSSL_cleanse(m.secret, sizeof(m.secret));
	OPENSSL_cleanse(l->token, sizeof(l->token));
	return 0;
}

static int
amux_frame(struct fconn *fc, struct msg *m)
{
	struct amux *l = fc->owner;
	struct buf pending;
	char why[MSG_TEXT_MAX + 64];
	SSL *ssl;
	int fd;

	if (m->type != FT_POOL_OK) {
		snprintf(why, sizeof(why), "edge sent %s%s%s",
		    frame_type_name(m->type), m->type == FT_ERROR ? ": " : "",
		    m->type == FT_ERROR ? m->text : "");
		amux_free(l, why, 1);
		return -1;
	}
	fconn_detach(fc, &fd, &ssl, &pending);
	if (mux_start(&l->mux, fd, ssl, 0, &pending, &amux_ops, l) == -1) {
		l->state = AM_DIAL;	/* nothing left to close */
		amux_free(l, "cannot start", 1);
		return -1;
	}
	l->state = AM_UP;
	edge_pool_ok(l->e);
	log_info("edge %s: multiplexed data link up (%s, %s)", l->e->ce->str,
	    tlsx_link_mode(ssl), SSL_get_cipher_name(ssl));
	return -1;
}

static void
amux_fc_lost(struct fconn *fc, const char *why)
{
	amux_free(fc->owner, why, 1);
}

static void
amux_dialled(struct dial *d, int fd, int err)
{
	struct amux *l = d->arg;
	const char *why;

	if (fd == -1) {
		amux_free(l, strerror(err), 1);
		return;
	}
	/* No kernel TLS: the link's records carry frames of many sessions,
	 * which only user space can take apart. */
	l->state = AM_GREET;
	if (link_start(&l->fc, fd, 0, 0, l->e->ce->host, &amux_fc_ops, l,
	    &why) == -1) {
		l->state = AM_DIAL;
		amux_free(l, why, 1);
	}
}

void
amux_open(struct aedge *e, const uint8_t *token)
{
	struct amux *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return;
	l->state = AM_DIAL;
	l->e = e;
	l->counted = 1;
	e->pool_links++;
	l->deadline = ev_now() + agent_cfg.connect_timeout_ms;
	memcpy(l->token, token, sizeof(l->token));
	LIST_INSERT_HEAD(&links, l, entry);
	if (dial_start(&l->dial, &e->addr, amux_dialled, l) == -1)
		amux_free(l, strerror(errno), 1);
}

void
amux_edge_lost(struct aedge *e)
{
	struct amux *l, *next;

	for (l = LIST_FIRST(&links); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if (l->e != e)
			continue;
		if (l->state != AM_UP) {
			amux_free(l, NULL, 0);
			continue;
		}
		/* Its sessions go on; it ends with the last of them. */
		amux_uncount(l);
		mux_close_when_idle(&l->mux);
	}
}

void
amux_tick(uint64_t now)
{
	struct amux *l, *next;

	for (l = LIST_FIRST(&links); l != NULL; l = next) {
		next = LIST_NEXT(l, entry);
		if (l->state == AM_UP)
			(void)mux_tick(&l->mux, now);	/* may free l */
		else if (now > l->deadline)
			amux_free(l, "set-up timed out", 1);
	}
}

void
amux_stop(void)
{
	while (!LIST_EMPTY(&links))
		amux_free(LIST_FIRST(&links), NULL, 0);
}

size_t
amux_count(const struct aedge *e, uint64_t *streams)
{
	struct amux *l;
	size_t n = 0;

	*streams = 0;
	LIST_FOREACH(l, &links, entry)
		if (l->e == e && l->state == AM_UP) {
			n++;
			*streams += l->mux.nstreams;
		}
	return n;
}
