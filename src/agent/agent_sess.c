/* agent_sess.c - sessions seen from inside (agent_sess.h).
 *
 * One session, from SESS_OPEN to the end:
 *
 *   asess_open	   the edge says what the session is; everything it says is
 *		   checked (it may be hostile): a service this agent offers,
 *		   a control session of its own, a request it made. The data
 *		   link's stream (or the plain link) becomes the pump's outer
 *		   side; nothing is read from it yet.
 *   dial	   a backend of the service's own configuration (never an
 *		   address from the edge), the next on failure
 *   join	   the backend (or the FTP filter over it, or the inside
 *		   client of an outbound session) becomes the inner side,
 *		   behind a PROXY header if the service sends one
 *   asess_done	   the pump ended: log it, audit it, count it, give back the
 *		   backend's count and a plain link for the next session
 *
 * A session that cannot be joined is refused on its link (a mux RST, or
 * the refusal on a plain link), with why.
 */
#include "agent/agent_sess.h"
#include "agent/agent_audit.h"
#include "agent/agent_backend.h"
#include "agent/agent_edge.h"
#include "agent/agent_ftp.h"
#include "agent/agent_link.h"
#include "agent/agent_metrics.h"
#include "agent/agent_out.h"
#include "agent/proxy_enc.h"
#include "agent/sess_check.h"
#include "agent/tsrc.h"
#include "common/cidr.h"
#include "common/log.h"
#include "common/mux.h"
#include "common/plink.h"
#include "common/psock.h"
#include "common/pump.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <unistd.h>

/* Sessions at once, all edges together: at most SESS_MAX, or what the
 * descriptor limit fits (two a session, a plain link and a backend,
 * beside SESS_FDS_KEPT for links, listeners and the rest). Each edge is
 * guaranteed an equal share of them: one edge may hold more only while
 * every other edge's unused share stays free, so a hostile edge that
 * floods sessions cannot take another edge's. Of an edge's sessions, at
 * most SETUP_MAX may be dialling a backend at once: bytes wait for those
 * (up to a window each), so this bounds what a flood of them holds. */
#define SESS_MAX	16384
#define SESS_MIN	64
#define SESS_FDS_KEPT	1024
#define SETUP_MAX	1024
/* The agent cuts a session idle this much longer than its service's
 * idle_timeout: the edge, which sees the client, cuts it first; this is
 * for an edge that does not. */
#define IDLE_GRACE_MS	5000

struct asess {
	uint64_t	 id;		/* the edge's */
	uint8_t		 kind;		/* SK_* */
	int		 relaying;
	int		 counted;	/* in the metrics (a known service) */
	struct aedge	*edge;
	char		 svc_name[MSG_NAME_MAX];
	struct cfg_service *svc;	/* while setting up: a reload keeps
					 * the table until no session uses it */
	char		 client[NET_ADDRSTR + 2];
	char		 client_ip[MSG_ADDR_MAX];
	uint16_t	 client_port;
	struct sockaddr_storage client_sa;	/* checked: scheck_open */
	struct sockaddr_storage local_sa;	/* ss_family 0 if not said */
	char		 backend[CFG_STR + 64];
	struct bstate	*bk;		/* counted against, while held */
	int		 bidx_cur;	/* being dialled, in svc */
	uint32_t	 tried;		/* backends tried, by index */
	size_t		 bstart;	/* where the rotation starts */
	struct net_addr	 target;	/* FTP data: the one to dial */
	struct dial	 dial;
	uint64_t	 t_start;
	uint64_t	 t_wall;	/* for the audit log */
	uint64_t	 deadline;	/* set-up must be done by */
	uint64_t	 idle_ms;	/* cut when idle longer; 0 never */
	struct alink_from link;		/* where it came from */
	const char	*link_kind;	/* "tls" or "plain" */
	struct pump	 p;
	struct mux_stream *ms;		/* the outer side: a stream, ... */
	struct plink	 pl;		/* ... or a plain link */
	struct psock	 back;		/* the inner side's socket */
	struct aftp	*ftp;		/* FTP control session */
	/* outbound: what its record says */
	const char	*out_proto;
	char		 out_dest[MSG_HOST_MAX + 16];
	char		 out_addr[MSG_ADDR_MAX];
	LIST_ENTRY(asess) entry;
};

static LIST_HEAD(, asess) sessions = LIST_HEAD_INITIALIZER(sessions);
static size_t nsessions;
static size_t sess_max;		/* sess_limit() */

static void asess_done(struct pump *p, int side, int clean);
static void backend_dialled(struct dial *d, int fd, int err);

/* --- the end ----------------------------------------------------------- */

/* s no longer dials a backend. */
static void
setup_done(struct asess *s)
{
	if (!s->relaying) {
		s->relaying = 1;
		s->edge->nsetup--;
	}
}

static void
asess_unlink(struct asess *s)
{
	setup_done(s);
	LIST_REMOVE(s, entry);
	nsessions--;
	s->edge->nsess--;
	backend_release(s->bk);
	s->bk = NULL;
	free(s);
}

/* Log, audit and count the end of s. */
static void
asess_record(struct asess *s, enum sess_end code, const char *detail)
{
	uint64_t in = pump_bytes(&s->p, PUMP_OUTER);
	uint64_t out = pump_bytes(&s->p, PUMP_INNER);
	uint64_t ms = ev_now_update() - s->t_start;
	struct aout_record o;
	struct audit_rec a;

	if (s->kind == SK_OUTBOUND) {
		memset(&o, 0, sizeof(o));
		o.id = s->id;
		o.proto = s->out_proto;
		o.client = s->client;
		o.dest = s->out_dest;
		o.addr = s->out_addr;
		o.edge = s->edge->ce->str;
		o.bytes_out = out;
		o.bytes_in = in;
		o.duration_ms = ms;
		o.outcome = code == SE_CLIENT_CLOSED || code == SE_SERVER_CLOSED ?
		    "ok" : "cut";
		o.code = 0;
		o.reason = detail != NULL ? detail : end_name(code);
		aout_audit(&o);
		return;
	}
	if (s->counted)
		metrics_sess_end(s->svc_name, code, in, out);
	log_info("session %llu closed service=%s client=%s backend=%s edge=%s "
	    "bytes_in=%llu bytes_out=%llu duration=%llu.%03llus reason=%s%s%s%s "
	    "link=%s spliced=%llu", (unsigned long long)s->id, s->svc_name,
	    s->client, s->backend[0] ? s->backend : "-", s->edge->ce->str,
	    (unsigned long long)in, (unsigned long long)out,
	    (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
	    end_name(code), detail != NULL ? " detail=\"" : "",
	    detail != NULL ? detail : "", detail != NULL ? "\"" : "",
	    s->link_kind, (unsigned long long)pump_spliced(&s->p));
	memset(&a, 0, sizeof(a));
	a.session = s->id;
	a.service = s->svc_name;
	a.edge = s->edge->ce->str;
	a.client_addr = s->client_ip;
	a.client_port = s->client_port;
	a.backend = s->backend[0] ? s->backend : NULL;
	a.t_start_ms = s->t_wall;
	a.t_end_ms = audit_wall_ms();
	a.bytes_in = in;
	a.bytes_out = out;
	a.reason = end_name(code);
	a.detail = detail;
	audit_session(&a);
}

/* The end of s, whatever ended it: code SE_CLIENT_CLOSED or
 * SE_SERVER_CLOSED for a clean end, else why it was cut (detail: more). */
static void
asess_end(struct asess *s, enum sess_end code, const char *detail)
{
	int clean = code == SE_CLIENT_CLOSED || code == SE_SERVER_CLOSED;
	int fd = -1, reg = 0;

	dial_cancel(&s->dial);
	asess_record(s, code, detail);
	/* Both directions ended with markers: the link carries the next. */
	if (s->ms == NULL && clean)
		fd = plink_take(&s->pl, &reg);
	pump_free(&s->p, clean ? SE_NONE : code, detail);
	aftp_ctl_end(s->ftp);
	if (s->ms == NULL && fd != -1)
		alink_again(s->edge, fd, reg, s->link.kid);
	else if (s->ms == NULL)
		alink_gone(s->edge, s->link.kid);
	asess_unlink(s);
}

/* Refuse s before it relays: on its link, so the edge learns why. */
static void
asess_refuse(struct asess *s, enum sess_end code, const char *why)
{
	struct alink_from l = s->link;

	log_warn("session %llu refused: %s", (unsigned long long)s->id, why);
	dial_cancel(&s->dial);
	asess_record(s, code, why);
	if (s->ms == NULL) {
		/* The plain link was never read or watched: its socket is
		 * the refusal's, not the pump's. */
		l.fd = s->pl.s.io.fd;
		s->pl.s.io.fd = -1;
		pump_free(&s->p, code, why);
		alink_refuse(s->edge, &l, code, why);
	} else
		pump_free(&s->p, code, why);	/* an RST with code and why */
	aftp_ctl_end(s->ftp);
	asess_unlink(s);
}

static void
asess_done(struct pump *p, int side, int clean)
{
	struct asess *s = p->arg;
	/* The outer side's text comes from the edge; outbound, the link
	 * leads to the server. */
	const char *const names[2] = {
		NULL, s->kind == SK_OUTBOUND ? "client" : "backend" };
	enum sess_end code;
	char detail[200];

	code = pump_outcome(p, side, clean, s->kind == SK_OUTBOUND, names,
	    detail, sizeof(detail));
	if (s->ms == NULL && s->pl.broken)
		aedge_violation(s->edge, "session %llu: %s",
		    (unsigned long long)s->id, s->pl.s.e.err);
	asess_end(s, code, clean ? NULL : detail);
}

/* --- backends --------------------------------------------------------- */

/* Dial target from where the service says: the agent, or the client's
 * address (source = client, tsrc.h). 0, or -1 with errno or why. */
static int
dial_backend(struct asess *s, const struct net_addr *target, char *why,
    size_t whylen)
{
	struct net_addr src;

	why[0] = '\0';
	if (s->svc->source == SRC_AGENT)
		return dial_start(&s->dial, target, backend_dialled, s);
	if (tsrc_source(s->svc, target, s->client_ip, s->client_port, &src, why,
	    whylen) != 0)
		return -1;
	return dial_start_from(&s->dial, target, &src, backend_dialled, s);
}

/* Dial the next backend. 0 if a dial is under way, -1 once all were
 * tried. */
static int
backend_next(struct asess *s)
{
	const struct cfg_backend *b;
	char why[300];
	int i;

	while ((i = backend_pick(s->svc, s->tried, s->bstart)) != -1) {
		b = &s->svc->backends[i];
		s->tried |= 1u << i;
		snprintf(s->backend, sizeof(s->backend), "%s", b->str);
		if (dial_backend(s, &b->addr, why, sizeof(why)) == 0) {
			s->bidx_cur = i;
			s->bk = b->st;
			backend_hold(s->bk);
			return 0;
		}
		log_warn("session %llu: backend %s: %s", (unsigned long long)s->id,
		    b->str, why[0] ? why : strerror(errno));
		if (why[0] == '\0')
			health_report(s->svc, b, errno);
	}
	return -1;
}

/* The PROXY header for the backend: the client as the edge saw it, to
 * the address it connected to (or the service's listen address); both
 * checked by scheck_open. */
static int
proxy_header(struct asess *s, struct buf *hdr)
{
	struct sockaddr_storage dst;
	struct net_addr listen;
	uint8_t out[PROXY_ENC_MAX];
	char err[128];
	int n;

	if (s->local_sa.ss_family != 0)
		memcpy(&dst, &s->local_sa, sizeof(dst));
	else {
		if (net_parse(s->svc->listen, &listen, err, sizeof(err)) == -1)
			return -1;
		memcpy(&dst, &listen.ss, sizeof(dst));
	}
	n = proxy_encode(s->svc->proxy_protocol,
	    (struct sockaddr *)&s->client_sa, (struct sockaddr *)&dst, out,
	    sizeof(out));
	if (n <= 0 || buf_append(hdr, out, (size_t)n, sizeof(out)) == -1)
		return -1;
	return 0;
}

/* The backend (fd) answered: it becomes the inner side. */
static void
asess_join(struct asess *s, int fd)
{
	struct buf hdr = { 0 };
	struct pend *inner = &s->back.e;
	char why[MSG_TEXT_MAX + 64];

	if (s->kind == SK_CLIENT && s->svc->proxy_protocol != 0 &&
	    proxy_header(s, &hdr) == -1) {
		close(fd);
		snprintf(why, sizeof(why), "cannot make a PROXY header for "
		    "client %s", s->client);
		asess_refuse(s, SE_ERROR, why);
		return;
	}
	if (s->kind == SK_CLIENT && s->svc->proto != SVC_TCP) {
		/* FTP control: the edge learns the backend's passive slice
		 * before the client can see a byte. */
		struct msg pm;
		const struct cfg_backend *b = &s->svc->backends[s->bidx_cur];

		if ((s->ftp = aftp_ctl_join(s->edge, s->id, s->svc, b,
		    s->client_ip, fd, &s->back, &inner, why,
		    sizeof(why))) == NULL) {
			close(fd);
			asess_refuse(s, SE_ERROR, why);
			return;
		}
		aftp_ports_msg(s->id, b, &pm);
		aedge_send(s->edge, &pm);
	} else
		psock_init(&s->back, fd, 0);
	setup_done(s);
	s->svc = NULL;	/* the table may be retired by a reload from here */
	if (s->counted)
		metrics_sess_joined(ev_now_update() - s->t_start);
	log_info("session %llu joined service=%s client=%s backend=%s link=%s",
	    (unsigned long long)s->id, s->svc_name, s->client, s->backend,
	    s->link_kind);
	/* The backend has just answered: nothing to read from it yet. The
	 * client's bytes waiting on the link go now, behind the header. */
	pump_attach(&s->p, PUMP_INNER, inner, &hdr, 1);
}

static void
backend_dialled(struct dial *d, int fd, int err)
{
	struct asess *s = d->arg;
	char why[300];

	if (s->kind == SK_CLIENT)
		health_report(s->svc, &s->svc->backends[s->bidx_cur],
		    fd == -1 ? err : 0);
	if (fd != -1) {
		asess_join(s, fd);
		return;
	}
	log_warn("session %llu: backend %s: %s", (unsigned long long)s->id,
	    s->backend, strerror(err));
	backend_release(s->bk);
	s->bk = NULL;
	if (s->kind == SK_CLIENT && backend_next(s) == 0)
		return;
	snprintf(why, sizeof(why), "no backend of service %s answered",
	    s->svc_name);
	s->backend[0] = '\0';
	asess_refuse(s, SE_REFUSED, why);
}

/* --- the start ---------------------------------------------------------- */

/* The link's side as the pump's outer endpoint. NULL if out of memory. */
static struct pend *
outer_endpoint(struct asess *s, const struct alink_from *l)
{
	if (l->mux != NULL) {
		if ((s->ms = mux_accept(l->mux, l->sid)) == NULL)
			return NULL;
		s->link_kind = "tls";
		return &s->ms->e;
	}
	plink_init(&s->pl, l->fd, 0, 0);
	s->link_kind = "plain";
	return &s->pl.s.e;
}

/* An outbound session: the client that asked (c, claimed) is the inner
 * side. */
static void
asess_outbound(struct asess *s, const struct msg *m, struct aout_claim *c)
{
	s->id = c->id;
	s->out_proto = c->proto;
	snprintf(s->client, sizeof(s->client), "%s", c->client);
	snprintf(s->out_dest, sizeof(s->out_dest), "%s", c->dest);
	snprintf(s->out_addr, sizeof(s->out_addr), "%s", m->dest_addr);
	s->t_start = c->t_start;
	/* The edge sets no limit on outbound sessions: the agent, which
	 * holds the setting, cuts them itself. */
	s->idle_ms = (uint64_t)agent_cfg.out.idle_timeout * 1000;
	setup_done(s);
	psock_init(&s->back, c->fd, 0);
	log_info("outbound %llu connected client=%s dest=%s addr=%s edge=%s "
	    "link=%s", (unsigned long long)s->id, s->client, s->out_dest,
	    s->out_addr, s->edge->ce->str, s->link_kind);
	/* Our "connected" reaches the client ahead of the first relayed
	 * byte; what it pipelined behind its request waits in its socket. */
	pump_attach(&s->p, PUMP_INNER, &s->back.e, &c->reply, 0);
}

/* A partner's session, or an FTP data connection, of a service of ours
 * (scheck_open checked it): the backend is one of the service's own. In
 * active mode (active_fd) the backend's data connection is there. */
static void
asess_client(struct asess *s, const struct msg *m, int active_fd)
{
	struct aedge *e = s->edge;
	struct net_addr src;
	char why[300], dw[300];

	s->svc = cfg_service(&agent_cfg, m->service);
	s->idle_ms = s->svc->idle_timeout == 0 ? 0 :
	    (uint64_t)s->svc->idle_timeout * 1000 + IDLE_GRACE_MS;
	snprintf(s->svc_name, sizeof(s->svc_name), "%s", m->service);
	snprintf(s->client_ip, sizeof(s->client_ip), "%s", m->client_addr);
	s->client_port = m->client_port;
	snprintf(s->client, sizeof(s->client), strchr(m->client_addr, ':') ?
	    "[%s]:%u" : "%s:%u", m->client_addr, m->client_port);
	log_info("session %llu opened service=%s client=%s edge=%s link=%s%s",
	    (unsigned long long)s->id, s->svc_name, s->client, e->ce->str,
	    s->link_kind, s->kind == SK_FTP_DATA ? " ftp-data" :
	    s->kind == SK_FTP_ACTIVE ? " ftp-active" : "");
	s->counted = 1;
	metrics_sess_open(s->svc_name);
	if (s->kind == SK_FTP_ACTIVE) {
		asess_join(s, active_fd);
		return;
	}
	/* An address the edge must not make us use: refused, not dialled. */
	if (s->svc->source != SRC_AGENT && tsrc_source(s->svc,
	    &s->svc->backends[0].addr, s->client_ip, s->client_port, &src, why,
	    sizeof(why)) == -1) {
		log_warn("session %llu: %s", (unsigned long long)s->id, why);
		asess_refuse(s, SE_REFUSED, why);
		return;
	}
	if (s->kind == SK_CLIENT) {
		s->bstart = s->svc->rr++;
		if (backend_next(s) == -1)
			asess_refuse(s, SE_REFUSED, "no backend could be dialled");
		return;
	}
	/* FTP data: to where its control session said (asess_open). */
	if (dial_backend(s, &s->target, dw, sizeof(dw)) == -1) {
		snprintf(why, sizeof(why), "ftp data: backend %.100s: %.170s",
		    s->backend, dw[0] ? dw : strerror(errno));
		asess_refuse(s, SE_REFUSED, why);
	}
}

/* Sessions at once, all edges: SESS_MAX, or what the descriptor limit
 * fits. */
static size_t
sess_limit(void)
{
	struct rlimit rl;

	if (sess_max != 0)
		return sess_max;
	sess_max = SESS_MAX;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < SESS_FDS_KEPT + 2 * (rlim_t)SESS_MAX)
		sess_max = rl.rlim_cur >= SESS_FDS_KEPT + 2 * (rlim_t)SESS_MIN ?
		    (size_t)(rl.rlim_cur - SESS_FDS_KEPT) / 2 : SESS_MIN;
	return sess_max;
}

/* Why e may not open one more session now, or NULL. */
static const char *
admit(const struct aedge *e)
{
	size_t max = sess_limit(), n = aedge_count(), share = max / n, spare = 0;
	const struct aedge *o;
	size_t i;

	if (nsessions >= max)
		return "agent: too many sessions";
	if (e->nsetup >= SETUP_MAX)
		return "agent: too many sessions of this edge being set up";
	if (e->nsess < share)
		return NULL;
	/* Over its share: only from what no other edge may still claim. */
	for (i = 0; i < n; i++)
		if ((o = aedge_get(i)) != e && o->nsess < share)
			spare += share - o->nsess;
	return nsessions + spare >= max ? "agent: this edge holds its share "
	    "of sessions" : NULL;
}

/* A session refused at once, not for a violation (a limit, an FTP data
 * connection whose control session is gone): one line a second at
 * most, whatever the rate. */
static void
limit_log(const struct aedge *e, uint64_t id, const char *why)
{
	static uint64_t last, held;
	uint64_t now = ev_now();

	if (last != 0 && now - last < 1000) {
		held++;
		return;
	}
	log_warn("edge %s: session %llu refused: %s (%llu more since the last "
	    "line)", e->ce->str, (unsigned long long)id, why,
	    (unsigned long long)held);
	last = now;
	held = 0;
}

/* What a SESS_OPEN that passed its gate brings to its session. */
struct gate {
	struct scheck	 chk;
	struct net_addr	 target;		/* FTP data: the backend */
	char		 backend[CFG_STR + 64];
	struct aout_claim c;			/* outbound: the client */
	int		 active_fd;		/* FTP active: the backend */
	char		 why[300];
};

/* The edge's word, checked against our configuration; then the limits;
 * then what only we know: an FTP control session, an outbound request
 * of ours waiting there. 0 with g filled, or -1: refused on its link. A
 * session refused here was never one: counted and logged as a violation
 * (one line), or as a limit, not audited. */
static int
gate(struct aedge *e, const struct msg *m, const struct alink_from *l,
    struct gate *g)
{
	const char *why;

	g->active_fd = -1;
	if (scheck_open(&agent_cfg, m, &g->chk) == -1) {
		aedge_violation(e, "%s (session %llu)", g->chk.why,
		    (unsigned long long)m->session);
		alink_refuse(e, l, SE_REFUSED, g->chk.why);
		goto active;
	}
	if ((why = admit(e)) != NULL) {
		limit_log(e, m->session, why);
		alink_refuse(e, l, SE_LIMIT, why);
		goto active;
	}
	/* An FTP data connection goes where its control session says. Not
	 * the edge's fault if there is none: it cannot know which ports the
	 * filter handed out, and a control session may have just ended. But
	 * as many as an edge may send, so no more lines than a limit's. */
	if (m->sess_kind == SK_FTP_DATA && aftp_data_target(e, m, &g->target,
	    g->backend, sizeof(g->backend), g->why, sizeof(g->why)) == -1) {
		limit_log(e, m->session, g->why);
		alink_refuse(e, l, SE_REFUSED, g->why);
		return -1;
	}
	/* Active mode: the backend's data connection waits for it; an
	 * edge that names a request it was never sent breaks the protocol. */
	if (m->sess_kind == SK_FTP_ACTIVE && (g->active_fd = aftp_active_claim(e,
	    m, g->backend, sizeof(g->backend), g->why, sizeof(g->why))) < 0) {
		if (g->active_fd == -2)
			aedge_violation(e, "%s (session %llu)", g->why,
			    (unsigned long long)m->session);
		else
			limit_log(e, m->session, g->why);
		alink_refuse(e, l, SE_REFUSED, g->why);
		return -1;
	}
	if (m->sess_kind == SK_OUTBOUND && aout_claim(e, m->request, &g->c) == -1) {
		if (aout_given_up(m->request)) {
			snprintf(g->why, sizeof(g->why), "outbound request %llu "
			    "was given up before the edge's answer",
			    (unsigned long long)m->request);
			limit_log(e, m->session, g->why);
		} else
			aedge_violation(e, "SESS_OPEN for outbound request %llu, "
			    "which was not asked there",
			    (unsigned long long)m->request);
		alink_refuse(e, l, SE_REFUSED, "no such outbound request");
		return -1;
	}
	return 0;
active:
	/* An active data connection refused: its server need not wait. */
	if (m->sess_kind == SK_FTP_ACTIVE && (m->have & FA_BIT(FA_REQUEST)))
		aftp_active_refused(e, m->request, "its session was refused");
	return -1;
}

int
asess_open(struct aedge *e, const struct msg *m, const struct alink_from *l)
{
	struct gate g;
	struct asess *s;
	struct pend *outer;

	if (gate(e, m, l, &g) == -1)
		return -1;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto oom;
	s->id = m->session;
	s->kind = m->sess_kind;
	s->edge = e;
	s->link = *l;
	s->t_start = ev_now();
	s->t_wall = audit_wall_ms();
	s->deadline = s->t_start + agent_cfg.connect_timeout_ms;
	s->bidx_cur = -1;
	memcpy(&s->client_sa, &g.chk.client, sizeof(s->client_sa));
	memcpy(&s->local_sa, &g.chk.local, sizeof(s->local_sa));
	if (m->sess_kind == SK_FTP_DATA)
		s->target = g.target;
	if (m->sess_kind == SK_FTP_DATA || m->sess_kind == SK_FTP_ACTIVE)
		snprintf(s->backend, sizeof(s->backend), "%s", g.backend);
	pump_init(&s->p, asess_done, s);
	if ((outer = outer_endpoint(s, l)) == NULL) {
		free(s);
		goto oom;
	}
	/* Nothing is read from the link before the inner side is there:
	 * the client's first bytes wait (back-pressure). */
	pump_attach(&s->p, PUMP_OUTER, outer, NULL, 0);
	LIST_INSERT_HEAD(&sessions, s, entry);
	nsessions++;
	e->nsess++;
	e->nsetup++;
	if (s->kind == SK_OUTBOUND)
		asess_outbound(s, m, &g.c);
	else
		asess_client(s, m, g.active_fd);
	return 0;
oom:
	if (m->sess_kind == SK_OUTBOUND) {
		close(g.c.fd);
		buf_free(&g.c.reply);
	}
	if (m->sess_kind == SK_FTP_ACTIVE)
		close(g.active_fd);
	alink_refuse(e, l, SE_REFUSED, "agent out of memory");
	return -1;
}

/* --- the rest of the API -------------------------------------------------- */

void
asess_denied(struct aedge *e, const struct msg *m)
{
	struct audit_rec a;

	/* actl_frame checked it: a service of ours, a reason the edge may
	 * refuse for, a client address, no faster than the edge reports. */
	if (m->type == FT_DENIED_SUMMARY) {
		log_info("edge %s: %u more clients of service %s refused (not "
		    "reported one by one)", e->ce->str, m->count, m->service);
		audit_denied_summary(m->service, e->ce->str, m->count);
		return;
	}
	log_info("session %llu refused by edge %s service=%s client=%s%s%s:%u "
	    "reason=%s (%s)", (unsigned long long)m->session, e->ce->str,
	    m->service, strchr(m->client_addr, ':') ? "[" : "", m->client_addr,
	    strchr(m->client_addr, ':') ? "]" : "", m->client_port,
	    end_name((enum sess_end)m->end), m->text);
	memset(&a, 0, sizeof(a));
	a.session = m->session;
	a.service = m->service;
	a.edge = e->ce->str;
	a.client_addr = m->client_addr;
	a.client_port = m->client_port;
	a.t_start_ms = a.t_end_ms = audit_wall_ms();
	a.reason = end_name((enum sess_end)m->end);
	a.detail = m->text[0] != '\0' ? m->text : NULL;
	audit_session(&a);
}

void
asess_tick(uint64_t now)
{
	struct asess *s, *next;

	for (s = LIST_FIRST(&sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		if (!s->relaying && now > s->deadline)
			asess_refuse(s, SE_TIMEOUT, "set-up timed out");
		else if (s->relaying && s->idle_ms != 0 && !s->p.ended &&
		    s->p.last_active < now &&
		    now - s->p.last_active > s->idle_ms)
			/* An outbound record's reason is its detail, or
			 * else the END name: "timeout" says it all. */
			asess_end(s, SE_TIMEOUT, s->kind == SK_OUTBOUND ? NULL :
			    "idle beyond the service's idle_timeout (the edge "
			    "did not cut it)");
	}
}

void
asess_stop(const char *why)
{
	struct asess *s;

	while ((s = LIST_FIRST(&sessions)) != NULL) {
		if (s->relaying)
			asess_end(s, SE_STOPPING, why);
		else
			asess_refuse(s, SE_STOPPING, why);
	}
}

size_t
asess_count(void)
{
	return nsessions;
}

void
asess_foreach(asess_visit_cb *cb, void *arg)
{
	struct asess_info si;
	struct asess *s, *next;
	uint64_t now = ev_now_update();

	for (s = LIST_FIRST(&sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		if (s->kind == SK_OUTBOUND)
			continue;	/* in the outbound records */
		memset(&si, 0, sizeof(si));
		si.id = s->id;
		si.service = s->svc_name;
		si.client = s->client;
		si.backend = s->backend;
		si.edge = s->edge->ce->str;
		si.state = s->relaying ? "relay" : "setup";
		si.bytes_to_backend = pump_bytes(&s->p, PUMP_OUTER);
		si.bytes_to_client = pump_bytes(&s->p, PUMP_INNER);
		si.age_ms = now - s->t_start;
		cb(&si, arg);
	}
}

/* Cut every partner's session of id (c NULL), or whose client is in c,
 * for why. How many. */
static size_t
kill_sessions(uint64_t id, const struct cidr *c, const char *why)
{
	struct asess *s, *next;
	uint8_t a16[16];
	size_t n = 0;

	for (s = LIST_FIRST(&sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		if (s->kind == SK_OUTBOUND || (c == NULL && s->id != id))
			continue;
		cidr_sa16((struct sockaddr *)&s->client_sa, a16);
		if (c != NULL && !cidr_match(c, a16))
			continue;
		n++;
		/* Both sides are reset: the client must see a cut, not a
		 * clean end that could pass for a complete transfer. */
		log_warn("session %llu killed: %s", (unsigned long long)s->id,
		    why);
		if (s->relaying)
			asess_end(s, SE_KILLED, why);
		else
			asess_refuse(s, SE_KILLED, why);
	}
	return n;
}

size_t
asess_kill(uint64_t id)
{
	return kill_sessions(id, NULL, "killed by the operator");
}

size_t
asess_cut(const struct cidr *c)
{
	return kill_sessions(0, c, "client banned");
}

int
asess_uses(const struct cfg_service *arr, size_t n)
{
	struct asess *s;

	LIST_FOREACH(s, &sessions, entry)
		if (s->svc != NULL && s->svc >= arr && s->svc < arr + n)
			return 1;
	return 0;
}
