/* agent_sess.c - a client session seen from inside: dial a backend,
 * open a data link out to the edge that asked, prove the session with
 * its one-time secret, then relay.
 *
 * Or, faster, the session arrives on a pooled link: an idle data link
 * opened ahead of time with a one-time pool token, on which the edge
 * writes SESS_ASSIGN when a client comes. The link is then already
 * joined; the agent dials a backend and relays. It does not read the
 * link before the backend answers, so the client's first bytes wait in
 * the socket (back-pressure); if no backend answers, the link is reset
 * and the client sees its connection closed.
 *
 * A data link is TLS (as the control channel) or, with data_link = plain,
 * a plain TCP connection that starts with the magic "SPD1" and is proved
 * by the secret or token alone (docs/protocol.md, "Fast path"). */
#include "agent/agent.h"
#include "common/log.h"
#include "common/plink.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>

/* AS_POOL_*: a pooled link with no session yet (dialling the edge,
 * greeting it, parked). Then, either way: AS_BACKEND dialling a backend,
 * AS_LINK dialling the edge, AS_GREET greeting it, AS_RELAY. */
enum asess_state { AS_POOL_DIAL, AS_POOL_GREET, AS_POOL_IDLE, AS_BACKEND,
    AS_LINK, AS_GREET, AS_RELAY, AS_REFUSED };

/* A refused pooled session keeps its link (unread) until the edge, told
 * by SESS_REFUSE, closes it, or this long: the refusal reaches the edge
 * before the link goes, so the edge logs and counts it as a refusal. */
#define REFUSED_LINGER_MS	10000

#define POOL_BACKOFF_MIN_MS	500
#define POOL_BACKOFF_MAX_MS	30000

struct asess {
	uint64_t	 id;
	enum asess_state state;
	struct aedge	*edge;
	struct cfg_service *svc;	/* until relaying; may be retired */
	struct cfg_backend *bcur;	/* the backend being dialled */
	int		 counted;	/* known service: in the metrics */
	char		 svc_name[MSG_NAME_MAX];
	char		 client[NET_ADDRSTR];
	char		 backend[CFG_STR];
	char		 edge_str[CFG_STR];
	uint8_t		 secret[FRAME_SECRET];	/* or the pool token */
	int		 pool;		/* on a pooled link */
	int		 plain;		/* the data link is plain */
	int		 link_fd;	/* pooled: the link, until relaying */
	SSL		*link_ssl;
	const char	*link_mode;	/* relaying: "plain", "tls", "ktls" */
	struct ev_io	 lio;		/* AS_REFUSED: the link, for its close */
	struct net_addr	 edge_addr;
	char		 edge_host[CFG_STR];
	size_t		 tries;
	size_t		 bidx;
	int		 backend_fd;
	struct dial	 dial;
	struct fconn	 fc;
	struct relay	 relay;
	uint64_t	 t_start;
	uint64_t	 deadline;
	struct asess	*prev, *next;
};

static struct asess *sessions;

static int link_ready(struct fconn *fc);
static int link_frame(struct fconn *fc, struct msg *m);
static void link_lost(struct fconn *fc, const char *why);
static int pool_ready(struct fconn *fc);
static int pool_frame(struct fconn *fc, struct msg *m);
static void pool_lost(struct fconn *fc, const char *why);

static void asess_relay(struct asess *s, int lfd, SSL *ssl);
static void pool_drop(struct asess *s, const char *why, int failed);

static const struct fconn_ops link_ops = {
	link_ready, link_frame, link_lost,
};
static const struct fconn_ops pool_ops = {
	pool_ready, pool_frame, pool_lost,
};

static void asess_unlink_free(struct asess *s);

static int
is_pool_link(const struct asess *s)
{
	return s->state == AS_POOL_DIAL || s->state == AS_POOL_GREET ||
	    s->state == AS_POOL_IDLE;
}

/* Reset a pooled link that will carry nothing: the edge passes a reset
 * on to the client, never a clean end. */
static void
link_reset(struct asess *s)
{
	struct linger lg = { 1, 0 };

	if (s->link_fd == -1)
		return;
	(void)setsockopt(s->link_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	SSL_free(s->link_ssl);
	s->link_ssl = NULL;
	close(s->link_fd);
	s->link_fd = -1;
}

/* AS_REFUSED: the edge closed the link (or reset it): done. */
static void
refused_io(struct ev_io *io, uint32_t events)
{
	struct asess *s = (struct asess *)(void *)((char *)io -
	    offsetof(struct asess, lio));

	(void)events;
	ev_del(&s->lio);
	link_reset(s);
	asess_unlink_free(s);
}

/* Keep a refused pooled session's link until the edge closes it. Returns
 * 0, or -1 if it cannot be watched (the caller resets it). */
static int
refused_linger(struct asess *s)
{
	ev_io_init(&s->lio, s->link_fd, refused_io);
	/* Only its end is of interest: its bytes are never read. */
	if (ev_set(&s->lio, EPOLLRDHUP) == -1)
		return -1;
	s->state = AS_REFUSED;
	s->deadline = ev_now() + REFUSED_LINGER_MS;
	s->svc = NULL;
	s->bcur = NULL;
	return 0;
}

/* Which kind of data link a relay runs over, for the logs. */
static const char *
link_mode(const struct asess *s, SSL *ssl)
{
	if (s->plain)
		return "plain";
	return ssl != NULL ? tlsx_link_mode(ssl) : "tls";
}

/* Say once per run whether TLS data links get kernel TLS (and splice), so
 * an operator can tell from the log which path the bytes take. */
static void
note_ktls(SSL *ssl)
{
	static int said;
	const char *mode = tlsx_link_mode(ssl);

	if (said)
		return;
	said = 1;
	if (strcmp(mode, "ktls") == 0)
		log_info("TLS data links use kernel TLS: bytes are spliced, "
		    "not copied");
	else
		log_info("TLS data links in user space (kernel TLS %s): bytes "
		    "are copied through OpenSSL", strcmp(mode, "tls") == 0 ?
		    "not available: no tls ULP in this kernel" : "one way only");
}

static void
asess_unlink_free(struct asess *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
	free(s);
}

static void
asess_log_end(struct asess *s, uint64_t in, uint64_t out, const char *reason,
    enum sess_outcome o)
{
	uint64_t ms = ev_now_update() - s->t_start;

	if (s->counted)
		metrics_sess_end(s->svc_name, o, in, out);

	log_info("session %llu closed service=%s client=%s backend=%s edge=%s "
	    "bytes_in=%llu bytes_out=%llu duration=%llu.%03llus reason=%s "
	    "link=%s spliced=%llu",
	    (unsigned long long)s->id, s->svc_name, s->client,
	    s->backend[0] ? s->backend : "-", s->edge_str,
	    (unsigned long long)in, (unsigned long long)out,
	    (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
	    reason, s->link_mode != NULL ? s->link_mode : "-",
	    (unsigned long long)(s->state == AS_RELAY ?
	    s->relay.spliced[0] + s->relay.spliced[1] : 0));
}

/* Give up on a session before it relays: tell the edge so the client is
 * closed at once rather than at the claim time-out. */
static void
asess_abort_as(struct asess *s, const char *why, const char *reason,
    enum sess_outcome o)
{
	struct msg m;
	struct linger lg = { 1, 0 };

	/* The edge learns why at once (for a pooled session, before the
	 * reset of its link arrives and says only that it was cut). */
	if (s->state != AS_GREET) {
		msg_init(&m, FT_SESS_REFUSE);
		m.session = s->id;
		m.have |= FA_BIT(FA_SESSION);
		msg_set_str(&m, FA_TEXT, why);
		edge_send(s->edge, &m);
	}
	dial_cancel(&s->dial);
	if (s->state == AS_GREET)
		fconn_close(&s->fc);
	if (s->backend_fd != -1) {
		/* The backend saw a connection that carries nothing: reset it
		 * rather than make it look like a client that said nothing. */
		(void)setsockopt(s->backend_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(s->backend_fd);
	}
	log_warn("session %llu failed: %s", (unsigned long long)s->id, why);
	asess_log_end(s, 0, 0, reason, o);
	if (s->link_fd != -1 && s->edge->state == AE_READY &&
	    o == SO_REFUSED && refused_linger(s) == 0)
		return;
	link_reset(s);
	asess_unlink_free(s);
}

static void
asess_abort(struct asess *s, const char *why)
{
	asess_abort_as(s, why, "error", SO_REFUSED);
}

static void
backend_health(struct cfg_backend *b, int err)
{
	enum backend_health h = err == 0 ? BH_UP : BH_DOWN;

	if (b == NULL)
		return;
	if (h != b->health) {
		b->health = h;
		b->health_at = ev_now();
	}
	if (err != 0)
		snprintf(b->last_error, sizeof(b->last_error), "%s", strerror(err));
}

static void backend_dialled(struct dial *d, int fd, int err);

/* Try the next backend, starting from the service's round-robin cursor.
 * Returns 0 if a dial is under way, -1 once all have been tried. */
static int
backend_next(struct asess *s)
{
	struct cfg_backend *b;

	while (s->tries < s->svc->nbackends) {
		b = &s->svc->backends[(s->bidx + s->tries) % s->svc->nbackends];
		s->tries++;
		s->bcur = b;
		snprintf(s->backend, sizeof(s->backend), "%s", b->str);
		if (dial_start(&s->dial, &b->addr, backend_dialled, s) == 0)
			return 0;
		backend_health(b, errno);
		log_warn("session %llu: backend %s: %s", (unsigned long long)s->id,
		    b->str, strerror(errno));
	}
	return -1;
}

static void
link_dialled(struct dial *d, int fd, int err)
{
	struct asess *s = d->arg;
	char why[300];
	SSL *ssl;

	if (fd == -1) {
		snprintf(why, sizeof(why), "data link to edge %s: %s", s->edge_str,
		    strerror(err));
		asess_abort(s, why);
		return;
	}
	if (s->plain) {
		s->state = AS_GREET;
		if (fconn_start(&s->fc, fd, NULL, &link_ops, s) == -1) {
			close(fd);
			s->state = AS_LINK;
			asess_abort(s, "data link: cannot watch socket");
			return;
		}
		(void)link_ready(&s->fc);
		return;
	}
	if ((ssl = tlsx_new(agent_tls, fd, 0, s->edge_host)) == NULL) {
		close(fd);
		asess_abort(s, "data link: TLS set-up failed");
		return;
	}
	tlsx_data_link(ssl);
	s->state = AS_GREET;
	if (fconn_start(&s->fc, fd, ssl, &link_ops, s) == -1) {
		SSL_free(ssl);
		close(fd);
		s->state = AS_LINK;
		asess_abort(s, "data link: cannot watch socket");
	}
}

static void
backend_dialled(struct dial *d, int fd, int err)
{
	struct asess *s = d->arg;
	char why[300];

	backend_health(s->bcur, fd == -1 ? err : 0);
	if (fd == -1) {
		log_warn("session %llu: backend %s: %s", (unsigned long long)s->id,
		    s->backend, strerror(err));
		if (backend_next(s) == 0)
			return;
		snprintf(why, sizeof(why), "no backend of service %s answered",
		    s->svc_name);
		s->backend[0] = '\0';
		asess_abort(s, why);
		return;
	}
	s->backend_fd = fd;
	if (s->pool) {
		/* The link is joined already: relay from here. */
		asess_relay(s, s->link_fd, s->link_ssl);
		return;
	}
	s->state = AS_LINK;
	if (dial_start(&s->dial, &s->edge_addr, link_dialled, s) == -1) {
		snprintf(why, sizeof(why), "data link to edge %s: %s", s->edge_str,
		    strerror(errno));
		asess_abort(s, why);
	}
}

static int
link_ready(struct fconn *fc)
{
	struct asess *s = fc->owner;
	struct msg m;

	msg_init(&m, FT_DATA_HELLO);
	m.session = s->id;
	memcpy(m.secret, s->secret, sizeof(m.secret));
	m.have |= FA_BIT(FA_SESSION) | FA_BIT(FA_SECRET);
	if (s->plain)
		(void)fconn_send_raw(fc, PLINK_MAGIC, PLINK_MAGIC_LEN);
	(void)fconn_send(fc, &m);
	OPENSSL_cleanse(m.secret, sizeof(m.secret));
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
	return 0;
}

static void
relay_done(struct relay *r, int first, const char *err)
{
	struct asess *s = r->arg;
	char reason[300];

	/* Side 0 is the backend, side 1 the data link (the client). */
	if (err != NULL)
		snprintf(reason, sizeof(reason), "error(%s: %s)",
		    first == 0 ? "backend" : "data link", err);
	else
		snprintf(reason, sizeof(reason), "%s",
		    first == 0 ? "backend-closed" : "client-closed");
	asess_log_end(s, r->bytes[1], r->bytes[0], reason,
	    err != NULL ? SO_FAILED : SO_COMPLETED);
	relay_free(r, err != NULL);
	asess_unlink_free(s);
}

/* Backend and data link are both up: relay. Side 0 is the backend, side
 * 1 the data link. */
static void
asess_relay(struct asess *s, int lfd, SSL *ssl)
{
	int bfd = s->backend_fd;
	const char *mode = link_mode(s, ssl);

	s->link_mode = mode;
	s->backend_fd = -1;
	s->link_fd = -1;
	s->link_ssl = NULL;
	s->state = AS_RELAY;
	/* The service table is not needed from here on: a reload may retire
	 * it while this session runs. */
	s->svc = NULL;
	s->bcur = NULL;
	if (s->counted)
		metrics_sess_joined(ev_now_update() - s->t_start);
	if (ssl != NULL)
		note_ktls(ssl);
	log_info("session %llu joined service=%s client=%s backend=%s link=%s%s",
	    (unsigned long long)s->id, s->svc_name, s->client, s->backend,
	    mode, s->pool ? " pooled" : "");
	(void)relay_start(&s->relay, bfd, NULL, lfd, ssl, NULL, relay_done, s);
}

static int
link_frame(struct fconn *fc, struct msg *m)
{
	struct asess *s = fc->owner;
	struct buf pending;
	char why[MSG_TEXT_MAX + 64];
	SSL *ssl;
	int fd;

	if (m->type != FT_DATA_OK || m->session != s->id) {
		snprintf(why, sizeof(why), "edge refused the data link: %s",
		    m->type == FT_ERROR ? m->text : frame_type_name(m->type));
		asess_abort(s, why);
		return -1;
	}
	fconn_detach(fc, &fd, &ssl, &pending);
	buf_free(&pending);
	asess_relay(s, fd, ssl);
	return -1;
}

static void
link_lost(struct fconn *fc, const char *why)
{
	char msg[300];

	snprintf(msg, sizeof(msg), "data link: %s", why);
	asess_abort(fc->owner, msg);
}

void
sess_new(struct aedge *e, const struct msg *m)
{
	struct asess *s;
	struct msg r;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		msg_init(&r, FT_SESS_REFUSE);
		r.session = m->session;
		r.have |= FA_BIT(FA_SESSION);
		msg_set_str(&r, FA_TEXT, "agent out of memory");
		edge_send(e, &r);
		return;
	}
	s->id = m->session;
	s->edge = e;
	s->plain = e->plain;
	s->backend_fd = -1;
	s->link_fd = -1;
	s->t_start = ev_now();
	s->deadline = s->t_start + agent_cfg.connect_timeout_ms;
	s->edge_addr = e->addr;
	snprintf(s->edge_host, sizeof(s->edge_host), "%s", e->ce->host);
	snprintf(s->edge_str, sizeof(s->edge_str), "%s", e->ce->str);
	snprintf(s->svc_name, sizeof(s->svc_name), "%s", m->service);
	snprintf(s->client, sizeof(s->client), strchr(m->client_addr, ':') ?
	    "[%s]:%u" : "%s:%u", m->client_addr, m->client_port);
	memcpy(s->secret, m->secret, sizeof(s->secret));
	s->next = sessions;
	if (sessions != NULL)
		sessions->prev = s;
	sessions = s;
	log_info("session %llu opened service=%s client=%s edge=%s",
	    (unsigned long long)s->id, s->svc_name, s->client, s->edge_str);
	/* Only configured services are counted: the edge cannot make the
	 * metrics grow by inventing names. */
	if ((s->svc = cfg_service(&agent_cfg, m->service)) == NULL) {
		asess_abort(s, "unknown service");
		return;
	}
	s->counted = 1;
	metrics_sess_open(s->svc_name);
	s->bidx = s->svc->rr++;
	if (backend_next(s) == -1) {
		s->backend[0] = '\0';
		asess_abort(s, "no backend could be dialled");
	}
}

/* --- pooled links ------------------------------------------------------ */

/* A pooled link goes without a session: the edge closed it, it failed,
 * or the agent is stopping. failed: a link that never got parked counts
 * towards the back-off, so a refusing edge is not hammered. */
static void
pool_drop(struct asess *s, const char *why, int failed)
{
	struct aedge *e = s->edge;
	uint64_t now = ev_now();

	if (why != NULL) {
		if (s->state == AS_POOL_IDLE)
			log_debug("edge %s: pooled data link closed: %s",
			    s->edge_str, why);
		else
			log_warn("edge %s: pooled data link failed: %s",
			    s->edge_str, why);
	}
	if (s->state == AS_POOL_IDLE && e->pool_idle > 0)
		e->pool_idle--;
	if (e->pool_links > 0)
		e->pool_links--;
	if (failed && s->state != AS_POOL_IDLE) {
		e->pool_backoff_ms = e->pool_backoff_ms == 0 ?
		    POOL_BACKOFF_MIN_MS : e->pool_backoff_ms * 2;
		if (e->pool_backoff_ms > POOL_BACKOFF_MAX_MS)
			e->pool_backoff_ms = POOL_BACKOFF_MAX_MS;
		e->pool_next = now + e->pool_backoff_ms;
	}
	dial_cancel(&s->dial);
	if (s->state != AS_POOL_DIAL)
		fconn_close(&s->fc);
	asess_unlink_free(s);
}

static void
pool_dialled(struct dial *d, int fd, int err)
{
	struct asess *s = d->arg;
	SSL *ssl = NULL;

	if (fd == -1) {
		pool_drop(s, strerror(err), 1);
		return;
	}
	if (!s->plain) {
		if ((ssl = tlsx_new(agent_tls, fd, 0, s->edge_host)) == NULL) {
			close(fd);
			pool_drop(s, "TLS set-up failed", 1);
			return;
		}
		tlsx_data_link(ssl);
	}
	s->state = AS_POOL_GREET;
	if (fconn_start(&s->fc, fd, ssl, &pool_ops, s) == -1) {
		SSL_free(ssl);
		close(fd);
		s->state = AS_POOL_DIAL;
		pool_drop(s, "cannot watch socket", 1);
		return;
	}
	if (s->plain)
		(void)pool_ready(&s->fc);
}

static int
pool_ready(struct fconn *fc)
{
	struct asess *s = fc->owner;
	struct msg m;

	msg_init(&m, FT_POOL_HELLO);
	memcpy(m.secret, s->secret, sizeof(m.secret));
	m.have |= FA_BIT(FA_SECRET);
	if (s->plain)
		(void)fconn_send_raw(fc, PLINK_MAGIC, PLINK_MAGIC_LEN);
	(void)fconn_send(fc, &m);
	OPENSSL_cleanse(m.secret, sizeof(m.secret));
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
	return 0;
}

/* SESS_ASSIGN on a parked link: it becomes a session, joined already. */
static void
pool_assign(struct asess *s, const struct msg *m)
{
	struct aedge *e = s->edge;
	struct buf pending;

	if (e->pool_idle > 0)
		e->pool_idle--;
	if (e->pool_links > 0)
		e->pool_links--;
	/* The link is not read again before the backend answers. */
	fconn_detach(&s->fc, &s->link_fd, &s->link_ssl, &pending);
	buf_free(&pending);
	s->pool = 1;
	s->state = AS_BACKEND;
	s->id = m->session;
	s->t_start = ev_now();
	s->deadline = s->t_start + agent_cfg.connect_timeout_ms;
	snprintf(s->svc_name, sizeof(s->svc_name), "%s", m->service);
	snprintf(s->client, sizeof(s->client), strchr(m->client_addr, ':') ?
	    "[%s]:%u" : "%s:%u", m->client_addr, m->client_port);
	log_info("session %llu opened service=%s client=%s edge=%s pooled",
	    (unsigned long long)s->id, s->svc_name, s->client, s->edge_str);
	/* One used, one more asked for. */
	e->pool_refused = 0;
	edge_pool_fill(e);
	if ((s->svc = cfg_service(&agent_cfg, m->service)) == NULL) {
		asess_abort(s, "unknown service");
		return;
	}
	s->counted = 1;
	metrics_sess_open(s->svc_name);
	s->bidx = s->svc->rr++;
	if (backend_next(s) == -1) {
		s->backend[0] = '\0';
		asess_abort(s, "no backend could be dialled");
	}
}

static int
pool_frame(struct fconn *fc, struct msg *m)
{
	struct asess *s = fc->owner;
	struct aedge *e = s->edge;
	char why[MSG_TEXT_MAX + 64];

	if (s->state == AS_POOL_GREET && m->type == FT_POOL_OK) {
		s->state = AS_POOL_IDLE;
		e->pool_idle++;
		e->pool_backoff_ms = 0;
		log_debug("edge %s: pooled %s data link ready (%u idle)",
		    s->edge_str, s->plain ? "plain" : "TLS", e->pool_idle);
		return 0;
	}
	if (s->state == AS_POOL_IDLE && m->type == FT_SESS_ASSIGN) {
		pool_assign(s, m);
		return -1;
	}
	snprintf(why, sizeof(why), "edge sent %s%s%s", frame_type_name(m->type),
	    m->type == FT_ERROR ? ": " : "", m->type == FT_ERROR ? m->text : "");
	pool_drop(s, why, 1);
	return -1;
}

static void
pool_lost(struct fconn *fc, const char *why)
{
	pool_drop(fc->owner, why, 1);
}

void
sess_pool_open(struct aedge *e, const uint8_t *token)
{
	struct asess *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return;
	s->state = AS_POOL_DIAL;
	s->edge = e;
	s->plain = e->plain;
	s->backend_fd = -1;
	s->link_fd = -1;
	s->t_start = ev_now();
	s->deadline = s->t_start + agent_cfg.connect_timeout_ms;
	s->edge_addr = e->addr;
	snprintf(s->edge_host, sizeof(s->edge_host), "%s", e->ce->host);
	snprintf(s->edge_str, sizeof(s->edge_str), "%s", e->ce->str);
	memcpy(s->secret, token, sizeof(s->secret));
	s->next = sessions;
	if (sessions != NULL)
		sessions->prev = s;
	sessions = s;
	e->pool_links++;
	if (dial_start(&s->dial, &s->edge_addr, pool_dialled, s) == -1)
		pool_drop(s, strerror(errno), 1);
}

void
sess_pool_close(struct aedge *e)
{
	struct asess *s, *next;

	for (s = sessions; s != NULL; s = next) {
		next = s->next;
		if (s->edge == e && is_pool_link(s))
			pool_drop(s, NULL, 0);
		else if (s->edge == e && s->state == AS_REFUSED)
			refused_io(&s->lio, 0);
	}
	e->pool_links = e->pool_idle = 0;
}

void
sess_tick(uint64_t now)
{
	struct asess *s, *next;

	for (s = sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state == AS_RELAY || now <= s->deadline)
			continue;
		if (s->state == AS_POOL_IDLE)
			continue;		/* parked: no deadline */
		if (s->state == AS_REFUSED)
			refused_io(&s->lio, 0);
		else if (is_pool_link(s))
			pool_drop(s, "set-up timed out", 1);
		else
			asess_abort(s, "set-up timed out");
	}
}

void
sess_stop(void)
{
	struct asess *s;

	while ((s = sessions) != NULL) {
		if (is_pool_link(s))
			pool_drop(s, NULL, 0);
		else if (s->state == AS_REFUSED)
			refused_io(&s->lio, 0);
		else if (s->state == AS_RELAY) {
			asess_log_end(s, s->relay.bytes[1], s->relay.bytes[0],
			    "agent-stopping", SO_STOPPED);
			relay_free(&s->relay, 1);
			asess_unlink_free(s);
		} else
			asess_abort_as(s, "agent stopping", "agent-stopping",
			    SO_STOPPED);
	}
}

void
sess_foreach(sess_visit_cb *cb, void *arg)
{
	struct sess_info si;
	struct asess *s, *next;
	uint64_t now = ev_now_update();

	for (s = sessions; s != NULL; s = next) {
		next = s->next;
		if (is_pool_link(s) || s->state == AS_REFUSED)
			continue;	/* not a session (yet, or any more) */
		memset(&si, 0, sizeof(si));
		si.id = s->id;
		si.service = s->svc_name;
		si.client = s->client;
		si.backend = s->backend;
		si.edge = s->edge_str;
		si.state = s->state == AS_RELAY ? "relay" : "setup";
		if (s->state == AS_RELAY) {
			si.bytes_to_backend = s->relay.bytes[1];
			si.bytes_to_client = s->relay.bytes[0];
		}
		si.age_ms = now - s->t_start;
		cb(&si, arg);
	}
}

size_t
sess_kill(uint64_t id)
{
	struct asess *s, *next;
	size_t n = 0;

	for (s = sessions; s != NULL; s = next) {
		next = s->next;
		if (s->id != id || is_pool_link(s) || s->state == AS_REFUSED)
			continue;
		n++;
		if (s->state == AS_RELAY) {
			/* Reset both sides: the client must see a cut, not a
			 * clean end that could pass for a complete transfer. */
			log_warn("session %llu killed by the operator",
			    (unsigned long long)s->id);
			asess_log_end(s, s->relay.bytes[1], s->relay.bytes[0],
			    "killed", SO_KILLED);
			relay_free(&s->relay, 1);
			asess_unlink_free(s);
		} else
			asess_abort_as(s, "killed by the operator", "killed",
			    SO_KILLED);
	}
	return n;
}

int
sess_uses(const struct cfg_service *arr, size_t n)
{
	struct asess *s;

	for (s = sessions; s != NULL; s = s->next)
		if (s->svc != NULL && s->svc >= arr && s->svc < arr + n)
			return 1;
	return 0;
}
