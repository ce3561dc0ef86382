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
#include "common/proxy.h"
#include "common/tlsx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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


struct asess {
	uint64_t	 id;
	enum asess_state state;
	struct aedge	*edge;
	struct cfg_service *svc;	/* until relaying; may be retired */
	int		 counted;	/* known service: in the metrics */
	char		 svc_name[MSG_NAME_MAX];
	char		 client[NET_ADDRSTR];
	char		 client_ip[MSG_ADDR_MAX];
	uint16_t	 client_port;
	char		 local_ip[MSG_ADDR_MAX];	/* "" if the edge did not say */
	uint16_t	 local_port;
	uint64_t	 t_wall;	/* start, for the audit log */
	size_t		 proxy_len;	/* PROXY header bytes sent to the backend */
	char		 backend[CFG_STR];
	char		 edge_str[CFG_STR];
	uint8_t		 secret[FRAME_SECRET];	/* or the pool token */
	uint64_t	 pool_ctr;	/* keyed pooled link: its counter;
					 * secret holds its proof */
	int		 pool;		/* on a pooled link */
	int		 plain;		/* the data link is plain */
	/* A reusable plain link (relay.h, RELAY_FRAMED), proved with key
	 * pool_kid; lent: counted in its edge's pool_lent while it carries
	 * a session, to come back to the pool when it ends. */
	int		 reuse;
	int		 again;		/* parked again after a session */
	int		 lent;
	uint64_t	 pool_kid;
	int		 link_fd;	/* pooled: the link, until relaying */
	SSL		*link_ssl;
	const char	*link_mode;	/* relaying: "plain", "tls", "ktls" */
	struct ev_io	 lio;		/* AS_REFUSED: the link, for its close */
	struct net_addr	 edge_addr;
	char		 edge_host[CFG_STR];
	uint32_t	 tried;		/* backends tried, by index */
	size_t		 bidx;		/* where the tie-break rotation starts */
	struct cfg_backend *bk;		/* being dialled or used; counted in
					 * its active, always in a live table */
	int		 backend_fd;
	struct dial	 dial;
	struct fconn	 fc;
	struct relay	 relay;
	struct mux_stream *ms;		/* on a multiplexed link: the stream,
					 * instead of link_fd and the relay */
	/* FTP: a control session's state, or a data session's fixed
	 * target (agent_ftp.c). */
	struct aftp	*ftp;
	int		 ftp_data;
	struct net_addr	 ftp_addr;
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
static void asess_mux_join(struct asess *s);
static void asess_joined(struct asess *s, const char *mode);
static void asess_mux_done(struct mux_stream *ms, int first, const char *err,
    int refused);
static void pool_drop(struct asess *s, const char *why, int failed);
static void pool_again(struct asess *old, int fd, int registered);
static unsigned pool_keep(void);

static const struct fconn_ops link_ops = {
	link_ready, link_frame, link_lost,
};
static const struct fconn_ops pool_ops = {
	pool_ready, pool_frame, pool_lost,
};

static void asess_unlink_free(struct asess *s);
static void backend_release(struct asess *s);

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
	backend_release(s);
	s->svc = NULL;
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

/* Stop counting s against its backend. */
static void
backend_release(struct asess *s)
{
	if (s->bk != NULL && s->bk->active > 0)
		s->bk->active--;
	s->bk = NULL;
}

/* Move s's count to the same backend (service name and address) of the
 * configuration now in force, or drop it if that backend is gone: a
 * session may outlive the table it started from (a reload retires it). */
static void
backend_rebind(struct asess *s)
{
	struct cfg_service *svc;
	struct cfg_backend *nb = NULL;
	size_t i;

	if (s->bk == NULL)
		return;
	if ((svc = cfg_service(&agent_cfg, s->svc_name)) != NULL)
		for (i = 0; i < svc->nbackends; i++)
			if (strcmp(svc->backends[i].str, s->bk->str) == 0) {
				nb = &svc->backends[i];
				break;
			}
	if (nb == s->bk)
		return;
	backend_release(s);
	if (nb != NULL) {
		s->bk = nb;
		nb->active++;
	}
}

static void
asess_unlink_free(struct asess *s)
{
	backend_release(s);
	if (s->lent && s->edge->pool_lent > 0)
		s->edge->pool_lent--;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
	free(s);
}

/* The end of a session, in the log, the metrics and the audit log.
 * reason is the log's; areason one of the audit log's words
 * (client-closed, backend-closed, error, timeout, killed), adetail NULL
 * or more words on it. */
static void
asess_log_end(struct asess *s, uint64_t in, uint64_t out, const char *reason,
    enum sess_outcome o, const char *areason, const char *adetail)
{
	uint64_t ms = ev_now_update() - s->t_start;
	struct audit_rec a;

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
	    (unsigned long long)(s->state == AS_RELAY && s->ms == NULL ?
	    relay_spliced(&s->relay, 0) + relay_spliced(&s->relay, 1) : 0));
	memset(&a, 0, sizeof(a));
	a.session = s->id;
	a.service = s->svc_name;
	a.edge = s->edge_str;
	a.client_addr = s->client_ip;
	a.client_port = s->client_port;
	a.backend = s->backend[0] ? s->backend : NULL;
	a.t_start_ms = s->t_wall;
	a.t_end_ms = audit_wall_ms();
	a.bytes_in = in;
	a.bytes_out = out;
	a.reason = areason;
	a.detail = adetail;
	audit_session(&a);
}

/* Bytes of the client's delivered to the backend: the relay counts the
 * PROXY header too. Side 0 is the data link, side 1 the backend. */
static uint64_t
client_bytes(const struct asess *s)
{
	uint64_t n = relay_bytes(&s->relay, 0);

	if (s->ms != NULL)
		return s->ms->bytes[1];	/* the stream does not count it */
	return n > s->proxy_len ? n - s->proxy_len : 0;
}

/* Bytes of the backend's delivered to the client. */
static uint64_t
backend_bytes(const struct asess *s)
{
	return s->ms != NULL ? s->ms->bytes[0] : relay_bytes(&s->relay, 1);
}

/* Cut a relaying session: both sides reset, the end logged. */
static void
asess_cut(struct asess *s, const char *reason, enum sess_outcome o,
    const char *areason, const char *detail)
{
	asess_log_end(s, client_bytes(s), backend_bytes(s), reason, o, areason,
	    detail);
	if (s->ms != NULL)
		mux_stream_free(s->ms, 1);
	else
		relay_free(&s->relay, 1);
	s->ms = NULL;
	ftp_ctl_end(s->ftp, 1);
	asess_unlink_free(s);
}

/* Give up on a session before it relays: tell the edge so the client is
 * closed at once rather than at the claim time-out. */
static void
asess_abort_full(struct asess *s, const char *why, const char *reason,
    enum sess_outcome o, const char *areason)
{
	struct msg m;
	struct linger lg = { 1, 0 };

	/* The edge learns why at once (for a pooled session, before its
	 * link is closed, which would say only that it was cut). */
	if (s->ms != NULL) {
		/* On a multiplexed link the refusal goes on the stream. */
		mux_stream_refuse(s->ms, why);
		s->ms = NULL;
	} else if (s->state != AS_GREET) {
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
	asess_log_end(s, 0, 0, reason, o, areason, why);
	if (s->link_fd != -1 && s->edge->state == AE_READY &&
	    o == SO_REFUSED && refused_linger(s) == 0)
		return;
	link_reset(s);
	asess_unlink_free(s);
}

static void
asess_abort_as(struct asess *s, const char *why, const char *reason,
    enum sess_outcome o)
{
	asess_abort_full(s, why, reason, o, o == SO_KILLED ? "killed" : "error");
}

static void
asess_abort(struct asess *s, const char *why)
{
	asess_abort_as(s, why, "error", SO_REFUSED);
}

static void backend_dialled(struct dial *d, int fd, int err);

/* The backend to try next for s, or -1 once all have been tried. Healthy
 * backends come first, and among them the one with the fewest sessions;
 * the service's rotating cursor breaks ties. A backend marked down is
 * tried only after every other has failed: a health verdict alone never
 * refuses a client. */
static int
backend_pick(const struct asess *s)
{
	const struct cfg_backend *b, *best = NULL;
	size_t k, i, n = s->svc->nbackends;
	int besti = -1, down, best_down = 0;

	for (k = 0; k < n; k++) {
		i = (s->bidx + k) % n;
		if (s->tried & (1u << i))
			continue;
		b = &s->svc->backends[i];
		down = health_down(s->svc, b);
		if (best == NULL || down < best_down ||
		    (down == best_down && b->active < best->active)) {
			best_down = down;
			best = b;
			besti = (int)i;
		}
	}
	return besti;
}

/* Start dialling the next backend. Returns 0 if a dial is under way, -1
 * once all have been tried. */
static int
backend_next(struct asess *s)
{
	struct cfg_backend *b;
	int i, err;

	if (s->ftp_data)
		return -1;	/* one target, dialled in sess_new */
	while ((i = backend_pick(s)) != -1) {
		b = &s->svc->backends[i];
		s->tried |= 1u << i;
		snprintf(s->backend, sizeof(s->backend), "%s", b->str);
		if (dial_start(&s->dial, &b->addr, backend_dialled, s) == 0) {
			s->bk = b;
			b->active++;
			return 0;
		}
		err = errno;
		log_warn("session %llu: backend %s: %s", (unsigned long long)s->id,
		    b->str, strerror(err));
		health_report(s->svc, b, err);
	}
	return -1;
}

int
link_start(struct fconn *fc, int fd, int plain, int ktls, const char *host,
    const struct fconn_ops *ops, void *owner, const char **why)
{
	SSL *ssl = NULL;

	if (!plain) {
		if ((ssl = tlsx_new(agent_tls, fd, 0, host)) == NULL) {
			close(fd);
			*why = "TLS set-up failed";
			return -1;
		}
		if (ktls)
			tlsx_data_link(ssl);
		else
			tlsx_bulk(ssl);
	}
	if (fconn_start(fc, fd, ssl, ops, owner) == -1) {
		SSL_free(ssl);
		close(fd);
		*why = "cannot watch socket";
		return -1;
	}
	return 0;
}

static void
link_dialled(struct dial *d, int fd, int err)
{
	struct asess *s = d->arg;
	char msg[300];
	const char *why;

	if (fd == -1) {
		snprintf(msg, sizeof(msg), "data link to edge %s: %s",
		    s->edge_str, strerror(err));
		asess_abort(s, msg);
		return;
	}
	s->state = AS_GREET;
	if (link_start(&s->fc, fd, s->plain, 1, s->edge_host, &link_ops, s,
	    &why) == -1) {
		s->state = AS_LINK;
		snprintf(msg, sizeof(msg), "data link: %s", why);
		asess_abort(s, msg);
		return;
	}
	if (s->plain)
		(void)link_ready(&s->fc);	/* no handshake to wait for */
}

static void
backend_dialled(struct dial *d, int fd, int err)
{
	struct asess *s = d->arg;
	char why[300];

	health_report(s->svc, s->bk, fd == -1 ? err : 0);
	if (fd == -1) {
		log_warn("session %llu: backend %s: %s", (unsigned long long)s->id,
		    s->backend, strerror(err));
		backend_release(s);
		if (backend_next(s) == 0)
			return;
		snprintf(why, sizeof(why), "no backend of service %s answered",
		    s->svc_name);
		s->backend[0] = '\0';
		asess_abort(s, why);
		return;
	}
	s->backend_fd = fd;
	if (s->ms != NULL) {
		asess_mux_join(s);
		return;
	}
	if (s->pool) {
		/* The link is joined already: relay from here. */
		asess_relay(s, s->link_fd, s->link_ssl);
		return;
	}
	s->state = AS_LINK;
	if (s->svc->proto != SVC_TCP && !s->ftp_data && s->bk != NULL) {
		/* FTP control: the edge learns the backend's passive slice
		 * before the client can see a byte. */
		struct msg pm;

		ftp_ports_msg(s->id, s->bk, &pm);
		edge_send(s->edge, &pm);
	}
	if (dial_start(&s->dial, &s->edge_addr, link_dialled, s) == -1) {
		snprintf(why, sizeof(why), "data link to edge %s: %s", s->edge_str,
		    strerror(errno));
		asess_abort(s, why);
	}
}

/* The first frame of a data link: DATA_HELLO for a session, POOL_HELLO
 * for a pooled link (session 0 leaves the SESSION attribute out). The
 * one-time secret is wiped as soon as it is queued. */
static int
link_greet(struct fconn *fc, uint16_t type)
{
	struct asess *s = fc->owner;
	struct msg m;

	msg_init(&m, type);
	memcpy(m.secret, s->secret, sizeof(m.secret));
	m.have |= FA_BIT(FA_SECRET);
	if (type == FT_DATA_HELLO) {
		m.session = s->id;
		m.have |= FA_BIT(FA_SESSION);
	} else if (s->pool_ctr != 0) {
		m.session = s->edge->pool_kid;
		m.nonce = s->pool_ctr;
		m.have |= FA_BIT(FA_SESSION) | FA_BIT(FA_NONCE);
		if (s->reuse) {
			m.link_reuse = 1;
			m.have |= FA_BIT(FA_LINK_REUSE);
		}
	}
	if (s->plain)
		(void)fconn_send_raw(fc, PLINK_MAGIC, PLINK_MAGIC_LEN);
	(void)fconn_send(fc, &m);
	OPENSSL_cleanse(m.secret, sizeof(m.secret));
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
	return 0;
}

static int
link_ready(struct fconn *fc)
{
	return link_greet(fc, FT_DATA_HELLO);
}

static void
relay_done(struct relay *r, int first, const char *err)
{
	struct asess *s = r->arg;
	char reason[300];
	int fd, reg;

	/* Both ends marked on a reusable link: park it for the next. */
	if (err == NULL && s->lent && (fd = relay_take_link(r, 0, &reg)) != -1)
		pool_again(s, fd, reg);
	ftp_ctl_end(s->ftp, err != NULL);
	s->ftp = NULL;
	/* Side 0 is the data link (the client), side 1 the backend; the
	 * PROXY header, if any, is not the client's and is not counted. */
	if (err != NULL)
		snprintf(reason, sizeof(reason), "error(%s: %s)",
		    first == 0 ? "data link" : "backend", err);
	else
		snprintf(reason, sizeof(reason), "%s",
		    first == 0 ? "client-closed" : "backend-closed");
	asess_log_end(s, client_bytes(s), relay_bytes(r, 1), reason,
	    err != NULL ? SO_FAILED : SO_COMPLETED,
	    err != NULL ? "error" : reason, err != NULL ? reason : NULL);
	relay_free(r, err != NULL);
	asess_unlink_free(s);
}

/* The FTP filter between the backend and the relay failed. */
static void
sess_ftp_failed(void *arg, const char *why)
{
	struct asess *s = arg;
	char reason[320];

	snprintf(reason, sizeof(reason), "error(backend: %s)", why);
	asess_log_end(s, client_bytes(s), backend_bytes(s), reason,
	    SO_FAILED, "error", reason);
	relay_free(&s->relay, 1);
	ftp_ctl_end(s->ftp, 1);
	asess_unlink_free(s);
}

/* Fill ss from a numeric address and a port. 0 or -1. */
static int
sa_from(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		return 0;
	}
	return -1;
}

/* The PROXY header for the backend: the client as the edge saw it (or
 * as the edge's load balancer said), to the address it connected to.
 * Returns 0 with hdr filled, or -1. */
static int
proxy_header(struct asess *s, struct buf *hdr)
{
	struct sockaddr_storage src, dst;
	struct net_addr listen;
	uint8_t out[PROXY_V1_MAX + 1];
	char err[128];
	int n;

	if (sa_from(s->client_ip, s->client_port, &src) == -1)
		return -1;
	if (s->local_ip[0] == '\0' ||
	    sa_from(s->local_ip, s->local_port, &dst) == -1) {
		/* An edge that does not send its local address: the
		 * service's listen address is the next best thing. */
		if (net_parse(s->svc->listen, &listen, err, sizeof(err)) == -1)
			return -1;
		memcpy(&dst, &listen.ss, sizeof(dst));
	}
	n = proxy_encode(s->svc->proxy_protocol, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, out, sizeof(out));
	if (n <= 0 || buf_append(hdr, out, (size_t)n, sizeof(out)) == -1)
		return -1;
	s->proxy_len = (size_t)n;
	return 0;
}

/* Backend and data link are both up: relay. The data link is side 0 so
 * that the PROXY header, primed for side 1, reaches the backend before
 * any byte of the client's. */
static void
asess_relay(struct asess *s, int lfd, SSL *ssl)
{
	struct buf hdr;
	char why[MSG_TEXT_MAX + 64];
	unsigned flags;
	int bfd;

	memset(&hdr, 0, sizeof(hdr));
	if (s->svc->proxy_protocol != 0 && proxy_header(s, &hdr) == -1) {
		buf_free(&hdr);
		snprintf(why, sizeof(why), "cannot make a PROXY header for "
		    "client %s", s->client);
		/* The link is the session's either way: reset with it. */
		s->link_fd = lfd;
		s->link_ssl = ssl;
		asess_abort(s, why);
		return;
	}
	if (s->svc->proto != SVC_TCP && !s->ftp_data && s->bk != NULL &&
	    (s->ftp = ftp_ctl_join(s->edge, s->id, s->svc, s->bk,
	    s->client_ip, &s->backend_fd, sess_ftp_failed, s, why,
	    sizeof(why))) == NULL) {
		buf_free(&hdr);
		s->link_fd = lfd;
		s->link_ssl = ssl;
		asess_abort(s, why);
		return;
	}
	bfd = s->backend_fd;
	s->backend_fd = -1;
	s->link_fd = -1;
	s->link_ssl = NULL;
	if (ssl != NULL)
		note_ktls(ssl);
	asess_joined(s, link_mode(s, ssl));
	/* The backend has just answered: nothing to read from it yet. */
	flags = RELAY_QUIET(1);
	if (s->reuse) {
		/* Keep the link for the pool while the pool has room (see
		 * POOL_KEEP_FACTOR); otherwise end with a FIN, which tells
		 * the edge not to keep it either. */
		flags |= RELAY_FRAMED(0);
		if (s->edge->pool_links + s->edge->pool_lent < pool_keep()) {
			s->lent = 1;
			s->edge->pool_lent++;
		} else
			flags |= RELAY_FIN(0);
	}
	(void)relay_start(&s->relay, lfd, ssl, bfd, NULL,
	    s->proxy_len > 0 ? &hdr : NULL, flags, relay_done, s);
	buf_free(&hdr);
}

/* The session relays from here on, over a link of kind mode. */
static void
asess_joined(struct asess *s, const char *mode)
{
	s->link_mode = mode;
	s->state = AS_RELAY;
	/* The service table is not needed from here on: a reload may retire
	 * it while this session runs. */
	backend_rebind(s);
	s->svc = NULL;
	if (s->counted)
		metrics_sess_joined(ev_now_update() - s->t_start);
	log_info("session %llu joined service=%s client=%s backend=%s link=%s%s",
	    (unsigned long long)s->id, s->svc_name, s->client, s->backend,
	    s->link_mode, s->pool ? " pooled" : "");
}

/* The backend answered a session on a multiplexed link: join it to the
 * stream, behind the PROXY header if the service sends one. */
static void
asess_mux_join(struct asess *s)
{
	struct buf hdr;
	char why[MSG_TEXT_MAX + 64];
	int bfd;

	memset(&hdr, 0, sizeof(hdr));
	if (s->svc->proto != SVC_TCP) {
		/* The edge sends FTP sessions with SESS_NEW only. */
		asess_abort(s, "FTP service on a multiplexed link");
		return;
	}
	if (s->svc->proxy_protocol != 0 && proxy_header(s, &hdr) == -1) {
		buf_free(&hdr);
		snprintf(why, sizeof(why), "cannot make a PROXY header for "
		    "client %s", s->client);
		asess_abort(s, why);
		return;
	}
	bfd = s->backend_fd;
	s->backend_fd = -1;
	asess_joined(s, "mux");
	/* On failure the stream has ended and asess_mux_done freed s. */
	(void)mux_stream_attach(s->ms, bfd, s->proxy_len > 0 ? &hdr : NULL);
	buf_free(&hdr);
}

/* The stream of a session on a multiplexed link ended: relayed to the
 * end, or cut (the client went, the link failed) before the backend
 * answered. */
static void
asess_mux_done(struct mux_stream *ms, int first, const char *err, int refused)
{
	struct asess *s = ms->arg;
	char reason[300];

	(void)refused;	/* the agent is the side that refuses */
	if (s->state != AS_RELAY) {
		dial_cancel(&s->dial);
		backend_release(s);
		snprintf(reason, sizeof(reason), "before a backend answered: %s",
		    err != NULL ? err : "client closed");
		log_warn("session %llu failed: %s", (unsigned long long)s->id,
		    reason);
		asess_log_end(s, 0, 0, "error", SO_FAILED, "error", reason);
		mux_stream_free(ms, 1);
		s->ms = NULL;
		asess_unlink_free(s);
		return;
	}
	/* Side 0 is the backend here, side 1 the edge (the client). */
	if (err != NULL)
		snprintf(reason, sizeof(reason), "error(%s: %s)",
		    first == 0 ? "backend" : "data link", err);
	else
		snprintf(reason, sizeof(reason), "%s",
		    first == 0 ? "backend-closed" : "client-closed");
	asess_log_end(s, client_bytes(s), backend_bytes(s), reason,
	    err != NULL ? SO_FAILED : SO_COMPLETED,
	    err != NULL ? "error" : reason, err != NULL ? reason : NULL);
	mux_stream_free(ms, err != NULL);
	s->ms = NULL;
	asess_unlink_free(s);
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

/* A new session or pooled link of edge e, on the list. */
static void
asess_init(struct asess *s, struct aedge *e)
{
	s->edge = e;
	s->plain = e->plain;
	s->backend_fd = -1;
	s->link_fd = -1;
	s->t_start = ev_now();
	s->deadline = s->t_start + agent_cfg.connect_timeout_ms;
	s->edge_addr = e->addr;
	snprintf(s->edge_host, sizeof(s->edge_host), "%s", e->ce->host);
	snprintf(s->edge_str, sizeof(s->edge_str), "%s", e->ce->str);
	s->next = sessions;
	if (sessions != NULL)
		sessions->prev = s;
	sessions = s;
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
	asess_init(s, e);
	s->id = m->session;
	snprintf(s->svc_name, sizeof(s->svc_name), "%s", m->service);
	snprintf(s->client, sizeof(s->client), strchr(m->client_addr, ':') ?
	    "[%s]:%u" : "%s:%u", m->client_addr, m->client_port);
	snprintf(s->client_ip, sizeof(s->client_ip), "%s", m->client_addr);
	s->client_port = m->client_port;
	if ((m->have & FA_BIT(FA_LOCAL_ADDR)) && (m->have & FA_BIT(FA_LOCAL_PORT))) {
		snprintf(s->local_ip, sizeof(s->local_ip), "%s", m->local_addr);
		s->local_port = m->local_port;
	}
	s->t_wall = audit_wall_ms();
	memcpy(s->secret, m->secret, sizeof(s->secret));
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
	if (m->have & FA_BIT(FA_FTP_CTL)) {
		/* A passive data connection: one backend, one port. */
		char why[300];

		s->ftp_data = 1;
		if (s->svc->proto == SVC_TCP) {
			asess_abort(s, "ftp data for a service that is not FTP");
			return;
		}
		if (ftp_data_target(e, m, &s->ftp_addr, s->backend,
		    sizeof(s->backend), why, sizeof(why)) == -1) {
			s->backend[0] = '\0';
			asess_abort(s, why);
			return;
		}
		if (dial_start(&s->dial, &s->ftp_addr, backend_dialled, s) == -1) {
			snprintf(why, sizeof(why), "ftp data: backend %s: %s",
			    s->backend, strerror(errno));
			asess_abort(s, why);
		}
		return;
	}
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

	if (why != NULL) {
		if (s->state == AS_POOL_IDLE && s->pool_ctr != 0 && failed)
			log_info("edge %s: pooled data link closed before use "
			    "(a refusal is in the edge's log): %s", s->edge_str,
			    why);
		else if (s->state == AS_POOL_IDLE)
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
	/* A keyed link is never confirmed: the edge closing it before a
	 * session came is a refusal as much as a failed greeting is. */
	if (failed)
		edge_pool_failed(e, s->state != AS_POOL_IDLE || s->pool_ctr != 0);
	dial_cancel(&s->dial);
	if (s->state != AS_POOL_DIAL)
		fconn_close(&s->fc);
	asess_unlink_free(s);
}

static void
pool_dialled(struct dial *d, int fd, int err)
{
	struct asess *s = d->arg;
	const char *why;

	if (fd == -1) {
		pool_drop(s, strerror(err), 1);
		return;
	}
	s->state = AS_POOL_GREET;
	if (link_start(&s->fc, fd, s->plain, 1, s->edge_host, &pool_ops, s,
	    &why) == -1) {
		s->state = AS_POOL_DIAL;
		pool_drop(s, why, 1);
		return;
	}
	if (s->plain)
		(void)pool_ready(&s->fc);
}

/* The link is parked at the edge (POOL_OK), or taken to be (keyed). */
static void
pool_parked(struct asess *s)
{
	s->state = AS_POOL_IDLE;
	s->edge->pool_idle++;
	log_debug("edge %s: pooled %s data link ready (%u idle)", s->edge_str,
	    s->plain ? "plain" : "TLS", s->edge->pool_idle);
}

/* How many reusable links an edge's pool keeps, idle and lent. */
static unsigned
pool_keep(void)
{
	unsigned n = agent_cfg.data_pool * POOL_KEEP_FACTOR;

	return n < CFG_POOL_MAX ? n : CFG_POOL_MAX;
}

/* s's reusable link came back clean from its session: park it again,
 * as a new pooled link of the same edge, if the control connection that
 * keyed it is still the edge's (a new one means the edge forgot it). */
static void
pool_again(struct asess *old, int fd, int registered)
{
	struct aedge *e = old->edge;
	struct asess *s;

	if (e->state != AE_READY || !e->pool_keyed ||
	    e->pool_kid != old->pool_kid || (s = calloc(1, sizeof(*s))) == NULL) {
		log_debug("edge %s: reusable data link closed after its session",
		    old->edge_str);
		close(fd);
		return;
	}
	asess_init(s, e);
	s->reuse = 1;
	s->again = 1;
	s->pool_kid = old->pool_kid;
	s->pool_ctr = old->pool_ctr;
	s->state = AS_POOL_IDLE;
	if (fconn_start_handed(&s->fc, fd, NULL, &pool_ops, s,
	    registered) == -1) {
		close(fd);
		asess_unlink_free(s);
		return;
	}
	e->pool_links++;
	pool_parked(s);
}

static int
pool_ready(struct fconn *fc)
{
	struct asess *s = fc->owner;

	(void)link_greet(fc, FT_POOL_HELLO);
	/* A keyed POOL_HELLO gets no answer: the link is parked unless
	 * the edge closes it. */
	if (s->pool_ctr != 0)
		pool_parked(s);
	return 0;
}

static void asess_assigned(struct asess *s, const struct msg *m);

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
	/* One used, one more asked for: by edges_tick, in a turn of the
	 * loop with nothing else to do, so the refill does not delay this
	 * session's set-up.
	 * The edge took the link, so its pool works: no back-off. */
	e->pool_refused = 0;
	edge_pool_ok(e);
	asess_assigned(s, m);
}

/* A session the edge joined at once (SESS_ASSIGN m, on a pooled link or
 * a multiplexed stream): dial its backend. */
static void
asess_assigned(struct asess *s, const struct msg *m)
{
	s->pool = 1;
	s->state = AS_BACKEND;
	s->id = m->session;
	s->t_start = ev_now();
	s->deadline = s->t_start + agent_cfg.connect_timeout_ms;
	snprintf(s->svc_name, sizeof(s->svc_name), "%s", m->service);
	snprintf(s->client, sizeof(s->client), strchr(m->client_addr, ':') ?
	    "[%s]:%u" : "%s:%u", m->client_addr, m->client_port);
	snprintf(s->client_ip, sizeof(s->client_ip), "%s", m->client_addr);
	s->client_port = m->client_port;
	if ((m->have & FA_BIT(FA_LOCAL_ADDR)) && (m->have & FA_BIT(FA_LOCAL_PORT))) {
		snprintf(s->local_ip, sizeof(s->local_ip), "%s", m->local_addr);
		s->local_port = m->local_port;
	}
	s->t_wall = audit_wall_ms();
	log_info("session %llu opened service=%s client=%s edge=%s %s",
	    (unsigned long long)s->id, s->svc_name, s->client, s->edge_str,
	    s->ms != NULL ? "mux" : "pooled");
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

	if (s->state == AS_POOL_GREET && s->pool_ctr == 0 &&
	    m->type == FT_POOL_OK) {
		pool_parked(s);
		edge_pool_ok(e);
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
	struct asess *s = fc->owner;

	/* The edge may close a link that came back (its pool is full, or
	 * it lost this agent): not a refusal to back off from. */
	pool_drop(s, why, !s->again);
}

void
sess_mux_open(struct aedge *e, struct mux *m, uint32_t sid, const struct msg *a)
{
	struct asess *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		mux_refuse(m, sid, "agent out of memory");
		return;
	}
	if ((s->ms = mux_stream_accept(m, sid, asess_mux_done, s)) == NULL) {
		free(s);
		mux_refuse(m, sid, "agent out of memory");
		return;
	}
	asess_init(s, e);
	asess_assigned(s, a);
}

int
sess_pool_open(struct aedge *e, const uint8_t *token)
{
	struct asess *s;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		edge_pool_failed(e, 1);		/* back off: no busy retry */
		return -1;
	}
	asess_init(s, e);
	s->state = AS_POOL_DIAL;
	e->pool_links++;
	if (token != NULL) {
		memcpy(s->secret, token, sizeof(s->secret));
	} else {
		s->pool_ctr = ++e->pool_ctr;
		s->reuse = s->plain && e->pool_reuse;
		s->pool_kid = e->pool_kid;
		if (poolkey_proof(e->pool_key, e->pool_kid, s->pool_ctr,
		    s->secret) == -1) {
			pool_drop(s, "cannot compute the pool proof", 1);
			return -1;
		}
	}
	if (dial_start(&s->dial, &s->edge_addr, pool_dialled, s) == -1) {
		pool_drop(s, strerror(errno), 1);
		return -1;
	}
	return 0;
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
			asess_abort_full(s, "set-up timed out", "error",
			    SO_REFUSED, "timeout");
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
		else if (s->state == AS_RELAY)
			asess_cut(s, "agent-stopping", SO_STOPPED, "error",
			    "agent stopping");
		else
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
			si.bytes_to_backend = client_bytes(s);
			si.bytes_to_client = backend_bytes(s);
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
			asess_cut(s, "killed", SO_KILLED, "killed",
			    "killed by the operator");
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

void
sess_denied(struct aedge *e, const struct msg *m)
{
	static const char *const reasons[] = { "denied", "limit", "timeout",
	    "error" };
	struct audit_rec a;
	const char *reason = "denied", *detail = NULL;
	char word[16];
	size_t i, n;

	if (m->type == FT_DENIED_SUMMARY) {
		log_info("edge %s: %u more clients of service %s refused (not "
		    "reported one by one)", e->ce->str, m->count, m->service);
		audit_denied_summary(m->service, e->ce->str, m->count);
		return;
	}
	/* TEXT is "REASON: detail"; an unknown REASON is kept as detail. */
	n = strcspn(m->text, ":");
	if (n < sizeof(word)) {
		memcpy(word, m->text, n);
		word[n] = '\0';
		for (i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
			if (strcmp(word, reasons[i]) == 0)
				reason = reasons[i];
	}
	detail = m->text;
	if (strncmp(detail, reason, strlen(reason)) == 0 &&
	    detail[strlen(reason)] == ':') {
		detail += strlen(reason) + 1;
		detail += strspn(detail, " ");
	}
	log_info("session %llu refused by edge %s service=%s client=%s%s%s:%u "
	    "reason=%s (%s)", (unsigned long long)m->session, e->ce->str,
	    m->service, strchr(m->client_addr, ':') ? "[" : "", m->client_addr,
	    strchr(m->client_addr, ':') ? "]" : "", m->client_port, reason,
	    detail);
	memset(&a, 0, sizeof(a));
	a.session = m->session;
	a.service = m->service;
	a.edge = e->ce->str;
	a.client_addr = m->client_addr;
	a.client_port = m->client_port;
	a.t_start_ms = a.t_end_ms = audit_wall_ms();
	a.reason = reason;
	a.detail = detail[0] != '\0' ? detail : NULL;
	audit_session(&a);
}

void
sess_reloaded(void)
{
	struct asess *s;

	/* Sessions still being set up keep their (retired) table alive and
	 * are moved when they join; relaying ones must move now. */
	for (s = sessions; s != NULL; s = s->next)
		if (s->svc == NULL)
			backend_rebind(s);
}
