/* edge_sess.c - sessions (edge_sess.h).
 *
 * One session, from the accept to the end:
 *
 *   esess_start	   the partner's socket becomes the outer side of a pump
 *   join	   an agent is picked (edge_lis.c); SESS_OPEN goes on one of
 *		   its data links (edge_link.c), whose endpoint becomes the
 *		   inner side: the pump relays from here on
 *   esess_done	   the pump ended (both sides closed, one failed, or the
 *		   agent refused): log it, count it, give back what it held,
 *		   and park a plain link again for the next session
 */
#include "edge/edge_sess.h"
#include "edge/edge_ctl.h"
#include "edge/edge_handover.h"
#include "edge/edge_limit.h"
#include "edge/edge_link.h"
#include "edge/edge_lis.h"
#include "edge/edge_stats.h"
#include "common/log.h"
#include "common/plink.h"
#include "common/psock.h"
#include "common/pump.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

struct esess {
	uint64_t	 id;
	uint8_t		 kind;		/* SK_* */
	unsigned	 joined:1;	/* on a data link */
	unsigned	 fixed:1;	/* only agent may take it */
	unsigned	 handed:1;	/* FTP control, told to a new process */
	char		 svc[MSG_NAME_MAX];	/* "" for outbound */
	char		 ip[NET_ADDRSTR];	/* the partner, or destination */
	uint16_t	 port;
	char		 addr[NET_ADDRSTR];	/* ip:port, [ip]:port */
	uint8_t		 a16[16];	/* ip, as bans see it */
	char		 lip[NET_ADDRSTR];	/* where it connected, or "" */
	uint16_t	 lport;
	struct eagent	*agent;		/* who has it, or is to; NULL: gone */
	char		 aname[MSG_NAME_MAX];	/* a gone agent's, and */
	uint64_t	 ainst;		/* process: it may take it back */
	uint64_t	 kid;		/* the key its link was proved with */
	uint64_t	 ftp_ctl;
	uint16_t	 ftp_port;
	uint64_t	 request;
	struct adm_hold	 adm;
	uint64_t	 t_start;	/* waits for a link until + claim_ms */
	uint64_t	 idle_ms;	/* 0: no idle limit */
	const char	*link;		/* "tls" or "plain" */
	struct pump	 p;
	struct psock	 outer;
	struct plink	 pl;		/* the inner side on a plain link */
	struct eftp_ports ftp;		/* FTP control: its data ports */
	TAILQ_ENTRY(esess) q;		/* waiting (FIFO) or joined */
};

static TAILQ_HEAD(, esess) waiting = TAILQ_HEAD_INITIALIZER(waiting);
static TAILQ_HEAD(, esess) joined = TAILQ_HEAD_INITIALIZER(joined);
static uint64_t next_id = 1;
static uint64_t nsessions;
static uint64_t last_idle_scan;

uint64_t
esess_new_id(void)
{
	return next_id++;
}

uint64_t
esess_ids_from(uint64_t next)
{
	if (next > next_id)
		next_id = next;
	return next_id;
}

uint64_t
esess_live(int waits)
{
	return !waits ? nsessions : !TAILQ_EMPTY(&waiting);
}

int
esess_full(const char *svc, uint64_t npending)
{
	/* Pending per service: a service whose agents have no link free
	 * must not keep clients of the others out. */
	if (nsessions >= lim.max_sessions)
		lim_hit(LIM_SESSIONS, "service %s: client refused: %llu sessions "
		    "open", svc, (unsigned long long)nsessions);
	else if (npending >= lim.max_pending)
		lim_hit(LIM_PENDING, "service %s: client refused: %llu clients "
		    "waiting for a data link", svc, (unsigned long long)npending);
	else
		return 0;
	return 1;
}

/* The SESS_OPEN that tells the agent what s is. */
static void
open_msg(const struct esess *s, struct msg *m)
{
	msg_init(m, FT_SESS_OPEN);
	msg_set_int(m, FA_SESSION, s->id);
	msg_set_int(m, FA_SESS_KIND, s->kind);
	if (s->kind == SK_OUTBOUND || s->kind == SK_FTP_ACTIVE)
		msg_set_int(m, FA_REQUEST, s->request);
	if (s->kind == SK_OUTBOUND) {
		msg_set_str(m, FA_DEST_ADDR, s->addr);
		return;
	}
	msg_set_str(m, FA_SERVICE, s->svc);
	msg_set_str(m, FA_CLIENT_ADDR, s->ip);
	msg_set_int(m, FA_CLIENT_PORT, s->port);
	if (s->lip[0] != '\0') {
		msg_set_str(m, FA_LOCAL_ADDR, s->lip);
		msg_set_int(m, FA_LOCAL_PORT, s->lport);
	}
	/* SK_FTP_DATA or SK_FTP_ACTIVE: the control session's. */
	if (s->kind != SK_CLIENT)
		msg_set_int(m, FA_FTP_CTL, s->ftp_ctl);
	if (s->kind == SK_FTP_DATA)
		msg_set_int(m, FA_FTP_PORT, s->ftp_port);
}

/* a->sessions counts the sessions whose agent is a (the same a again:
 * one less, one more). */
static void
set_agent(struct esess *s, struct eagent *a)
{
	if (s->agent != NULL && s->agent->sessions > 0)
		s->agent->sessions--;
	s->agent = a;
	if (a != NULL)
		a->sessions++;
}

static void
log_new(const struct esess *s)
{
	int out = s->kind == SK_OUTBOUND;
	char more[80] = "";

	if (s->kind == SK_FTP_DATA)
		snprintf(more, sizeof(more), " ftp-data control=%llu port=%u",
		    (unsigned long long)s->ftp_ctl, s->ftp_port);
	else if (s->kind == SK_FTP_ACTIVE)
		snprintf(more, sizeof(more), " ftp-active control=%llu "
		    "request=%llu", (unsigned long long)s->ftp_ctl,
		    (unsigned long long)s->request);
	else if (out)
		snprintf(more, sizeof(more), " request=%llu",
		    (unsigned long long)s->request);
	log_info("session %llu new %s%s %s=%s agent=%s link=%s%s",
	    (unsigned long long)s->id, out ? "outbound" : "service=",
	    out ? "" : s->svc, out ? "dest" : "client", s->addr,
	    s->agent->name, s->link, more);
}

/* Put waiting s on a data link of its agent (or the agent its service
 * picks), and on the joined list. 1 joined, 0 waiting for a link of
 * s->agent, -1 no agent to wait for. */
static int
join(struct esess *s)
{
	struct eagent *a = s->fixed ? s->agent : esvc_pick_agent(s->svc);
	struct pend *inner;
	struct msg *m;

	if (a == NULL)
		return -1;
	set_agent(s, a);
	s->kid = a->kid;
	/* struct msg is large: not on the event loop's stack. */
	if ((m = malloc(sizeof(*m))) == NULL)
		return 0;
	open_msg(s, m);
	inner = elink_open(a, m, &s->pl, &s->link);
	free(m);
	if (inner == NULL)
		return 0;
	TAILQ_REMOVE(&waiting, s, q);
	TAILQ_INSERT_TAIL(&joined, s, q);
	esvc_pending(s->svc, -1);
	s->joined = 1;
	edge_stats.sessions_joined++;
	log_new(s);
	/* The partner's first bytes go out right behind SESS_OPEN. */
	pump_attach(&s->p, PUMP_INNER, inner, NULL, 0);
	return 1;
}

/* The end of s, whatever ended it: code SE_CLIENT_CLOSED or
 * SE_SERVER_CLOSED for a clean end, else why it was cut (detail: more). */
static void
esess_end(struct esess *s, enum sess_end code, const char *detail)
{
	int clean = code == SE_CLIENT_CLOSED || code == SE_SERVER_CLOSED;
	uint64_t ms = ev_now_update() - s->t_start;
	struct eagent *a = s->agent;
	int fd = -1, reg = 0;

	if (s->joined)
		TAILQ_REMOVE(&joined, s, q);
	else {
		TAILQ_REMOVE(&waiting, s, q);
		esvc_pending(s->svc, -1);
	}
	nsessions--;
	adm_release(&s->adm);
	set_agent(s, NULL);
	if (code == SE_REFUSED && s->joined)
		edge_stats.sessions_refused++;
	edge_stats.bytes_from_clients += pump_bytes(&s->p, PUMP_OUTER);
	edge_stats.bytes_to_clients += pump_bytes(&s->p, PUMP_INNER);
	log_info("session %llu closed %s%s %s=%s bytes_in=%llu bytes_out=%llu "
	    "duration=%llu.%03llus reason=%s%s%s%s link=%s spliced=%llu",
	    (unsigned long long)s->id, s->kind == SK_OUTBOUND ? "outbound" :
	    "service=", s->kind == SK_OUTBOUND ? "" : s->svc,
	    s->kind == SK_OUTBOUND ? "dest" : "client", s->addr,
	    (unsigned long long)pump_bytes(&s->p, PUMP_OUTER),
	    (unsigned long long)pump_bytes(&s->p, PUMP_INNER),
	    (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
	    end_name(code), detail != NULL ? " detail=\"" : "",
	    detail != NULL ? detail : "", detail != NULL ? "\"" : "",
	    s->link != NULL ? s->link : "-",
	    (unsigned long long)pump_spliced(&s->p));
	if (s->handed)
		eho_ftp_end(s->id);
	/* Both directions ended with markers: the link carries the next. */
	if (clean && s->link != NULL && strcmp(s->link, "plain") == 0)
		fd = plink_take(&s->pl, &reg);
	pump_free(&s->p, clean ? SE_NONE : code, detail);
	/* A link proved on an earlier control connection of the agent (it
	 * came back meanwhile) is one the agent has closed: not parked. */
	if (fd != -1)
		elink_again(a != NULL && a->kid == s->kid ? a : NULL, fd, reg);
	free(s);
}

static void
esess_done(struct pump *p, int side, int clean)
{
	struct esess *s = p->arg;
	/* The inner side's text comes from the agent (its backend failed, it
	 * refused) or says the data link broke. */
	const char *const names[2] = {
		s->kind == SK_OUTBOUND ? "destination" : "client", NULL };
	char detail[200];

	esess_end(s, pump_outcome(p, side, clean, s->kind == SK_OUTBOUND,
	    names, detail, sizeof(detail)), clean ? NULL : detail);
}

void
esess_start(int fd, const struct sockaddr *client, const struct sockaddr *local,
    const struct esess_req *r)
{
	struct esess *s;
	struct adm_hold h = r->adm;
	int rc;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warn("session: out of memory");
		adm_release(&h);
		close(fd);
		return;
	}
	s->id = next_id++;
	s->kind = r->kind;
	s->fixed = r->agent != NULL;
	snprintf(s->svc, sizeof(s->svc), "%s", r->svc != NULL ? r->svc : "");
	net_fmt_ip(client, s->ip, sizeof(s->ip), &s->port);
	net_fmt(client, s->addr, sizeof(s->addr));
	cidr_sa16(client, s->a16);
	if (local != NULL)
		net_fmt_ip(local, s->lip, sizeof(s->lip), &s->lport);
	s->ftp_ctl = r->ftp_ctl;
	s->ftp_port = r->ftp_port;
	s->request = r->request;
	s->adm = h;
	s->t_start = ev_now();
	s->idle_ms = s->kind == SK_OUTBOUND ? 0 : esvc_idle_ms(s->svc);
	nsessions++;
	edge_stats.sessions_accepted++;
	pump_init(&s->p, esess_done, s);
	psock_init(&s->outer, fd, 0);
	/* Not read until it has a data link: the bytes wait in the kernel. */
	pump_attach(&s->p, PUMP_OUTER, &s->outer.e, NULL, 0);
	set_agent(s, r->agent);
	TAILQ_INSERT_TAIL(&waiting, s, q);
	esvc_pending(s->svc, 1);
	if ((rc = join(s)) == 0)
		log_debug("session %llu from %s waits for a data link of agent "
		    "%s", (unsigned long long)s->id, s->ip, s->agent->name);
	else if (rc == -1) {
		/* No agent at all (every one's channel is failing): refuse
		 * now rather than let the client wait for the time-out. */
		edge_stats.sessions_agent_lost++;
		esess_end(s, SE_REFUSED, "no agent reachable");
	}
}

struct eftp_ports *
esess_ftp_ports(uint64_t id, const struct eagent *a, struct esess_peer *peer)
{
	struct esess *s;

	/* Once per FTP transfer: a scan, as esess_ftp_match does. */
	TAILQ_FOREACH(s, &joined, q)
		if (s->id == id)
			break;
	if (s == NULL || s->kind != SK_CLIENT || s->agent != a)
		return NULL;
	peer->svc = s->svc;
	peer->ip = s->ip;
	peer->lip = s->lip;
	return &s->ftp;
}

int
esess_ftp_match(const char *svc, const char *ip, uint16_t port,
    struct eagent **a, uint64_t *id)
{
	struct esess *s, *best = NULL;

	/* An address may hold several control sessions: the one whose
	 * ports were set last. */
	TAILQ_FOREACH(s, &joined, q)
		if (s->ftp.pmin != 0 && port >= s->ftp.pmin &&
		    port <= s->ftp.pmax && s->agent != NULL &&
		    strcmp(s->ip, ip) == 0 && strcmp(s->svc, svc) == 0 &&
		    (best == NULL || s->ftp.stamp > best->ftp.stamp))
			best = s;
	if (best == NULL)
		return eho_ftp_match(svc, ip, port, a, id);
	*a = best->agent;
	*id = best->id;
	return 0;
}

void
esess_each_ftp(void (*cb)(uint64_t id, const char *svc, const char *ip,
    const char *agent, uint64_t instance, const struct eftp_ports *p))
{
	struct esess *s;

	TAILQ_FOREACH(s, &joined, q)
		if (s->kind == SK_CLIENT && s->agent != NULL &&
		    esvc_ftp(s->svc) != NULL) {
			s->handed = 1;
			cb(s->id, s->svc, s->ip, s->agent->name,
			    s->agent->instance, &s->ftp);
		}
}

void
esess_links_ready(struct eagent *a)
{
	struct esess *s, *next;

	for (s = TAILQ_FIRST(&waiting); s != NULL; s = next) {
		next = TAILQ_NEXT(s, q);
		if (s->agent != a && (s->fixed || !esvc_offered_by(s->svc, a)))
			continue;
		/* No link free at this agent: the rest wait too. */
		if (join(s) == 0 && s->agent == a)
			break;
	}
}

void
esess_agent_lost(struct eagent *a)
{
	struct esess *s, *next;
	/* The same process, connected again before this channel was seen
	 * gone (a silent blip: both sides wait out the same 6 s). */
	struct eagent *heir = a->instance != 0 ?
	    ectl_agent_find(a->name, a->instance) : NULL;

	/* Joined sessions do not depend on their agent's control channel;
	 * the same process has them, or may come back for them
	 * (esess_agent_back). */
	TAILQ_FOREACH(s, &joined, q)
		if (s->agent == a) {
			snprintf(s->aname, sizeof(s->aname), "%s", a->name);
			s->ainst = a->instance;
			set_agent(s, heir);
		}
	/* A waiting one goes to another agent of its service (the caller
	 * has withdrawn this one) or ends; an FTP data connection or an
	 * outbound session belongs to this agent alone. */
	for (s = TAILQ_FIRST(&waiting); s != NULL; s = next) {
		next = TAILQ_NEXT(s, q);
		if (s->agent != a)
			continue;
		set_agent(s, NULL);
		if (!s->fixed && join(s) != -1)
			continue;
		edge_stats.sessions_agent_lost++;
		esess_end(s, SE_ERROR, "agent lost");
	}
}

void
esess_agent_back(struct eagent *a)
{
	struct esess *s;
	size_t n = 0;

	if (a->instance == 0)
		return;		/* no process named: nothing is its for sure */
	TAILQ_FOREACH(s, &joined, q)
		if (s->agent == NULL && s->ainst == a->instance &&
		    strcmp(s->aname, a->name) == 0) {
			set_agent(s, a);
			n++;
		}
	if (n > 0)
		log_info("agent %s: %zu running sessions of its process are "
		    "its again", a->name, n);
}

size_t
esess_cut(int (*match)(const uint8_t a16[16]))
{
	struct esess *s, *next;
	size_t n = 0;
	int q;

	for (q = 0; q < 2; q++)
		for (s = q ? TAILQ_FIRST(&waiting) : TAILQ_FIRST(&joined);
		    s != NULL; s = next) {
			next = TAILQ_NEXT(s, q);
			if (s->kind != SK_OUTBOUND && match(s->a16)) {
				esess_end(s, SE_KILLED, "client banned");
				n++;
			}
		}
	return n;
}

void
esess_tick(uint64_t now)
{
	struct esess *s, *next;
	char why[96];

	while ((s = TAILQ_FIRST(&waiting)) != NULL &&
	    now >= s->t_start + lim.claim_ms) {
		snprintf(why, sizeof(why), "no data link within %llu ms",
		    (unsigned long long)lim.claim_ms);
		lim_hit(LIM_CLAIM_TIMEOUT, "session %llu from %s: %s",
		    (unsigned long long)s->id, s->ip, why);
		esess_end(s, SE_TIMEOUT, why);
	}
	/* Idle sessions: a scan a second is cheap next to the relaying. */
	if (now - last_idle_scan < 1000)
		return;
	last_idle_scan = now;
	for (s = TAILQ_FIRST(&joined); s != NULL; s = next) {
		next = TAILQ_NEXT(s, q);
		/* last_active may be later than now: a pump that moved
		 * bytes after this turn's clock was read. */
		if (s->idle_ms == 0 || s->p.last_active >= now ||
		    now - s->p.last_active < s->idle_ms)
			continue;
		snprintf(why, sizeof(why), "idle for %llu s",
		    (unsigned long long)(s->idle_ms / 1000));
		lim_hit(LIM_IDLE, "session %llu from %s %s",
		    (unsigned long long)s->id, s->ip, why);
		esess_end(s, SE_TIMEOUT, why);
	}
}

void
esess_shutdown(const char *why)
{
	struct esess *s;
	uint64_t n;

	while ((s = TAILQ_FIRST(&waiting)) != NULL)
		esess_end(s, SE_STOPPING, why);
	n = nsessions;		/* every one left has joined */
	while ((s = TAILQ_FIRST(&joined)) != NULL)
		esess_end(s, SE_STOPPING, why);
	if (n > 0)
		log_info("%llu running sessions cut", (unsigned long long)n);
}

void
esess_stats(char *out, size_t outlen)
{
	uint64_t in = edge_stats.bytes_from_clients;
	uint64_t outb = edge_stats.bytes_to_clients;
	uint64_t n = 0;
	struct esess *s;

	/* Running sessions count too, so a long transfer shows as it goes. */
	TAILQ_FOREACH(s, &joined, q) {
		in += pump_bytes(&s->p, PUMP_OUTER);
		outb += pump_bytes(&s->p, PUMP_INNER);
		n++;
	}
	(void)estats_put(out, outlen, "bytes_from_clients_total", in);
	(void)estats_put(out, outlen, "bytes_to_clients_total", outb);
	(void)estats_put(out, outlen, "sessions_active", n);
}
