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
#include <unistd.h>

/* Sessions at once, all edges: what a flood from an edge can cost. */
#define SESS_MAX	16384

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
	char		 local_ip[MSG_ADDR_MAX];	/* "" if not said */
	uint16_t	 local_port;
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

static void asess_done(struct pump *p, int side, int clean);
static void backend_dialled(struct dial *d, int fd, int err);

/* --- checking what the edge says ----------------------------------------- */

/* A numeric IPv4 or IPv6 address and a port, as a sockaddr. 0 or -1. */
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

/* What SESS_OPEN m must carry for its kind. NULL if it does, else why. */
static const char *
open_check(const struct msg *m)
{
	struct sockaddr_storage ss;
	uint64_t need;

	switch (m->sess_kind) {
	case SK_CLIENT:
		need = FA_BIT(FA_SERVICE) | FA_BIT(FA_CLIENT_ADDR) |
		    FA_BIT(FA_CLIENT_PORT);
		break;
	case SK_FTP_DATA:
		need = FA_BIT(FA_SERVICE) | FA_BIT(FA_CLIENT_ADDR) |
		    FA_BIT(FA_CLIENT_PORT) | FA_BIT(FA_FTP_CTL) |
		    FA_BIT(FA_FTP_PORT);
		break;
	default:
		need = FA_BIT(FA_REQUEST) | FA_BIT(FA_DEST_ADDR);
		break;
	}
	if ((m->have & need) != need)
		return "SESS_OPEN without what its kind needs";
	if ((m->have & FA_BIT(FA_CLIENT_ADDR)) &&
	    sa_from(m->client_addr, m->client_port, &ss) == -1)
		return "SESS_OPEN with a client address that is not numeric";
	if ((m->have & FA_BIT(FA_LOCAL_ADDR)) &&
	    (!(m->have & FA_BIT(FA_LOCAL_PORT)) ||
	    sa_from(m->local_addr, m->local_port, &ss) == -1))
		return "SESS_OPEN with a bad local address";
	return NULL;
}

/* --- the end ----------------------------------------------------------- */

static void
asess_unlink(struct asess *s)
{
	LIST_REMOVE(s, entry);
	nsessions--;
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
	asess_end(s, code, clean ? NULL : detail);
}

/* --- backends --------------------------------------------------------- */

/* Dial the next backend. 0 if a dial is under way, -1 once all were
 * tried. */
static int
backend_next(struct asess *s)
{
	const struct cfg_backend *b;
	int i;

	while ((i = backend_pick(s->svc, s->tried, s->bstart)) != -1) {
		b = &s->svc->backends[i];
		s->tried |= 1u << i;
		snprintf(s->backend, sizeof(s->backend), "%s", b->str);
		if (dial_start(&s->dial, &b->addr, backend_dialled, s) == 0) {
			s->bidx_cur = i;
			s->bk = b->st;
			backend_hold(s->bk);
			return 0;
		}
		log_warn("session %llu: backend %s: %s", (unsigned long long)s->id,
		    b->str, strerror(errno));
		health_report(s->svc, b, errno);
	}
	return -1;
}

/* The PROXY header for the backend: the client as the edge saw it, to
 * the address it connected to (or the service's listen address). */
static int
proxy_header(struct asess *s, struct buf *hdr)
{
	struct sockaddr_storage src, dst;
	struct net_addr listen;
	uint8_t out[PROXY_ENC_MAX];
	char err[128];
	int n;

	if (sa_from(s->client_ip, s->client_port, &src) == -1)
		return -1;
	if (s->local_ip[0] == '\0' ||
	    sa_from(s->local_ip, s->local_port, &dst) == -1) {
		if (net_parse(s->svc->listen, &listen, err, sizeof(err)) == -1)
			return -1;
		memcpy(&dst, &listen.ss, sizeof(dst));
	}
	n = proxy_encode(s->svc->proxy_protocol, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, out, sizeof(out));
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
	s->relaying = 1;
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

/* An outbound session: the client that asked is the inner side. */
static void
asess_outbound(struct asess *s, const struct msg *m)
{
	struct aout_claim c;

	if (aout_claim(s->edge, m->request, &c) == -1) {
		aedge_violation(s->edge, "SESS_OPEN for outbound request %llu, "
		    "which was not asked there", (unsigned long long)m->request);
		asess_refuse(s, SE_REFUSED, "no such outbound request");
		return;
	}
	s->id = c.id;
	s->out_proto = c.proto;
	snprintf(s->client, sizeof(s->client), "%s", c.client);
	snprintf(s->out_dest, sizeof(s->out_dest), "%s", c.dest);
	snprintf(s->out_addr, sizeof(s->out_addr), "%s", m->dest_addr);
	s->t_start = c.t_start;
	s->relaying = 1;
	psock_init(&s->back, c.fd, 0);
	log_info("outbound %llu connected client=%s dest=%s addr=%s edge=%s "
	    "link=%s", (unsigned long long)s->id, s->client, s->out_dest,
	    s->out_addr, s->edge->ce->str, s->link_kind);
	/* Our "connected" reaches the client ahead of the first relayed
	 * byte; what it pipelined behind its request waits in its socket. */
	pump_attach(&s->p, PUMP_INNER, &s->back.e, &c.reply, 0);
}

/* A partner's session, or an FTP data connection: the backend is one of
 * the service's own. */
static void
asess_client(struct asess *s, const struct msg *m)
{
	struct aedge *e = s->edge;
	char why[300];

	snprintf(s->svc_name, sizeof(s->svc_name), "%s", m->service);
	snprintf(s->client_ip, sizeof(s->client_ip), "%s", m->client_addr);
	s->client_port = m->client_port;
	snprintf(s->client, sizeof(s->client), strchr(m->client_addr, ':') ?
	    "[%s]:%u" : "%s:%u", m->client_addr, m->client_port);
	if (m->have & FA_BIT(FA_LOCAL_ADDR)) {
		snprintf(s->local_ip, sizeof(s->local_ip), "%s", m->local_addr);
		s->local_port = m->local_port;
	}
	log_info("session %llu opened service=%s client=%s edge=%s link=%s%s",
	    (unsigned long long)s->id, s->svc_name, s->client, e->ce->str,
	    s->link_kind, s->kind == SK_FTP_DATA ? " ftp-data" : "");
	/* Only configured services: the edge cannot make the agent dial
	 * anything else, nor make the metrics grow by inventing names. */
	if ((s->svc = cfg_service(&agent_cfg, m->service)) == NULL) {
		aedge_violation(e, "session %llu for service %s, which this agent "
		    "does not offer", (unsigned long long)s->id, m->service);
		asess_refuse(s, SE_REFUSED, "unknown service");
		return;
	}
	s->counted = 1;
	metrics_sess_open(s->svc_name);
	if (s->kind == SK_CLIENT) {
		s->bstart = s->svc->rr++;
		if (backend_next(s) == -1)
			asess_refuse(s, SE_REFUSED, "no backend could be dialled");
		return;
	}
	/* An FTP data connection goes where its control session says. Not
	 * the edge's fault if not: it cannot know which ports the filter
	 * handed out, and a control session may have just ended. A service
	 * that is not FTP is. */
	if (s->svc->proto == SVC_TCP) {
		aedge_violation(e, "session %llu: ftp data for service %s, which "
		    "is not FTP", (unsigned long long)s->id, s->svc_name);
		asess_refuse(s, SE_REFUSED, "ftp data for a service that is "
		    "not FTP");
		return;
	}
	if (aftp_data_target(e, m, &s->target, s->backend, sizeof(s->backend),
	    why, sizeof(why)) == -1) {
		s->backend[0] = '\0';
		asess_refuse(s, SE_REFUSED, why);
		return;
	}
	if (dial_start(&s->dial, &s->target, backend_dialled, s) == -1) {
		snprintf(why, sizeof(why), "ftp data: backend %.200s: %s",
		    s->backend, strerror(errno));
		asess_refuse(s, SE_REFUSED, why);
	}
}

void
asess_open(struct aedge *e, const struct msg *m, const struct alink_from *l)
{
	struct asess *s;
	struct pend *outer;
	const char *bad;

	if ((bad = open_check(m)) != NULL) {
		aedge_violation(e, "%s (session %llu)", bad,
		    (unsigned long long)m->session);
		alink_refuse(e, l, SE_ERROR, bad);
		return;
	}
	if (nsessions >= SESS_MAX) {
		log_warn("edge %s: session %llu refused: %d sessions open",
		    e->ce->str, (unsigned long long)m->session, SESS_MAX);
		alink_refuse(e, l, SE_LIMIT, "agent: too many sessions");
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		alink_refuse(e, l, SE_REFUSED, "agent out of memory");
		return;
	}
	s->id = m->session;
	s->kind = m->sess_kind;
	s->edge = e;
	s->link = *l;
	s->t_start = ev_now();
	s->t_wall = audit_wall_ms();
	s->deadline = s->t_start + agent_cfg.connect_timeout_ms;
	s->bidx_cur = -1;
	pump_init(&s->p, asess_done, s);
	if ((outer = outer_endpoint(s, l)) == NULL) {
		free(s);
		alink_refuse(e, l, SE_REFUSED, "agent out of memory");
		return;
	}
	/* Nothing is read from the link before the inner side is there:
	 * the client's first bytes wait (back-pressure). */
	pump_attach(&s->p, PUMP_OUTER, outer, NULL, 0);
	LIST_INSERT_HEAD(&sessions, s, entry);
	nsessions++;
	if (s->kind == SK_OUTBOUND)
		asess_outbound(s, m);
	else
		asess_client(s, m);
}

/* --- the rest of the API -------------------------------------------------- */

void
asess_denied(struct aedge *e, const struct msg *m)
{
	struct audit_rec a;
	enum sess_end code;

	if (m->type == FT_DENIED_SUMMARY) {
		log_info("edge %s: %u more clients of service %s refused (not "
		    "reported one by one)", e->ce->str, m->count, m->service);
		audit_denied_summary(m->service, e->ce->str, m->count);
		return;
	}
	/* Only what the edge may refuse for: a policy or a limit. */
	code = (enum sess_end)m->end;
	if (code != SE_DENIED && code != SE_LIMIT && code != SE_TIMEOUT &&
	    code != SE_ERROR) {
		aedge_violation(e, "SESS_DENIED with reason %s", end_name(code));
		return;
	}
	log_info("session %llu refused by edge %s service=%s client=%s%s%s:%u "
	    "reason=%s (%s)", (unsigned long long)m->session, e->ce->str,
	    m->service, strchr(m->client_addr, ':') ? "[" : "", m->client_addr,
	    strchr(m->client_addr, ':') ? "]" : "", m->client_port,
	    end_name(code), m->text);
	memset(&a, 0, sizeof(a));
	a.session = m->session;
	a.service = m->service;
	a.edge = e->ce->str;
	a.client_addr = m->client_addr;
	a.client_port = m->client_port;
	a.t_start_ms = a.t_end_ms = audit_wall_ms();
	a.reason = end_name(code);
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

size_t
asess_kill(uint64_t id)
{
	struct asess *s, *next;
	size_t n = 0;

	for (s = LIST_FIRST(&sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, entry);
		if (s->id != id || s->kind == SK_OUTBOUND)
			continue;
		n++;
		/* Both sides are reset: the client must see a cut, not a
		 * clean end that could pass for a complete transfer. */
		log_warn("session %llu killed by the operator",
		    (unsigned long long)s->id);
		if (s->relaying)
			asess_end(s, SE_KILLED, "killed by the operator");
		else
			asess_refuse(s, SE_KILLED, "killed by the operator");
	}
	return n;
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
