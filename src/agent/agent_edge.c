/* agent_edge.c - one control connection per configured edge, dialled
 * from inside, kept up forever: any error closes it and a new attempt
 * follows after an exponential back-off with jitter. */
#include "agent/agent_edge.h"
#include "agent/agent_ban.h"
#include "agent/agent_ftp.h"
#include "agent/agent_handover.h"
#include "agent/agent_link.h"
#include "agent/agent_out.h"
#include "agent/agent_sess.h"
#include "agent/stats_parse.h"
#include "common/log.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#define BACKOFF_MIN_MS		500
#define BACKOFF_MAX_MS		30000
#define DRAIN_REPEAT_MS		5000	/* a second DRAINING this soon waits */
#define PING_EVERY_MS		2000
#define DEAD_AFTER_MS		6000

static struct aedge edges[CFG_MAX_EDGES];
static size_t nedges;
/* This process, for the edges: two agents of one name (a hand-over)
 * are told apart by it. */
static uint64_t instance;

static int aedge_ready(struct fconn *fc);
static int aedge_frame(struct fconn *fc, struct msg *m);
static void aedge_lost(struct fconn *fc, const char *why);

static const struct fconn_ops aedge_ops = {
	aedge_ready, aedge_frame, aedge_lost,
};

static uint64_t
jitter(uint64_t ms)
{
	uint32_t r;

	/* Half fixed, half random: agents restarted together (after an
	 * edge restart, say) do not all come back in the same instant. */
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		r = (uint32_t)rand();
	return ms / 2 + (ms / 2 ? r % (ms / 2 + 1) : 0);
}

static void
aedge_schedule(struct aedge *e)
{
	uint64_t delay = jitter(e->backoff_ms);

	e->state = AE_WAIT;
	e->next_try = ev_now() + delay;
	e->backoff_ms = e->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS :
	    e->backoff_ms * 2;
	log_info("edge %s: reconnecting in %llu.%03llus", e->ce->str,
	    (unsigned long long)(delay / 1000), (unsigned long long)(delay % 1000));
}

static void
aedge_fail(struct aedge *e, const char *why)
{
	snprintf(e->last_error, sizeof(e->last_error), "%s", why);
	if (e->state == AE_READY)
		log_warn("edge %s lost: %s", e->ce->str, why);
	else
		log_warn("edge %s: cannot connect: %s", e->ce->str, why);
	dial_cancel(&e->dial);
	if (e->state == AE_HELLO || e->state == AE_READY)
		fconn_close(&e->fc);
	/* Links were proved with this control connection's key: the edge
	 * takes no new session on them any more. */
	alink_edge_lost(e);
	aout_edge_lost(e);
	aftp_edge_down(e, "edge lost");
	e->out_ok = 0;
	e->kid = 0;
	OPENSSL_cleanse(e->key, sizeof(e->key));
	aban_edge_down(e);
	aedge_schedule(e);
}

static void
aedge_dialled(struct dial *d, int fd, int err)
{
	struct aedge *e = d->arg;
	SSL *ssl;

	if (fd == -1) {
		aedge_fail(e, strerror(err));
		return;
	}
	if ((ssl = tlsx_new(agent_tls, fd, 0, e->ce->host)) == NULL) {
		close(fd);
		aedge_fail(e, "TLS set-up failed");
		return;
	}
	e->state = AE_HELLO;
	memset(&e->ctl, 0, sizeof(e->ctl));
	if (fconn_start(&e->fc, fd, ssl, &aedge_ops, e) == -1) {
		SSL_free(ssl);
		close(fd);
		e->state = AE_CONNECT;
		aedge_fail(e, strerror(errno));
	}
}

static void
aedge_resolved(void *arg, const struct net_addr *a, const char *err)
{
	struct aedge *e = arg;

	e->lookup = NULL;
	/* Too late for the attempt that asked: the next asks again. */
	if (e->state != AE_CONNECT)
		return;
	if (a == NULL) {
		aedge_fail(e, err);
		return;
	}
	e->addr = *a;
	if (dial_start(&e->dial, &e->addr, aedge_dialled, e) == -1)
		aedge_fail(e, strerror(errno));
}

/* The edge's name is looked up again on every attempt (its address may
 * have moved), off the loop: a slow DNS server holds up no session. The
 * lookup counts against connect_timeout; one that outlives an attempt
 * goes on, and the next attempt waits for it rather than ask again, so
 * an edge has one lookup at most. */
static void
aedge_try(struct aedge *e)
{
	e->deadline = ev_now() + agent_cfg.connect_timeout_ms;
	e->state = AE_CONNECT;
	if (e->lookup != NULL)
		return;
	e->lookup = dial_lookup(e->ce->host, e->ce->port, aedge_resolved, e);
	if (e->lookup == NULL)
		aedge_fail(e, errno == EBUSY ? "too many name lookups at once" :
		    strerror(errno));
}

static int
out_policy_msg(struct msg *m)
{
	msg_init(m, FT_OUT_POLICY);
	msg_set_str(m, FA_OUT_ALLOW, agent_cfg.out.allow);
	return 0;
}

static int
aedge_ready(struct fconn *fc)
{
	struct aedge *e = fc->owner;
	struct msg m;

	msg_init(&m, FT_HELLO);
	msg_set_int(&m, FA_VERSION, FRAME_VERSION);
	msg_set_str(&m, FA_NAME, agent_cfg.name);
	if (instance != 0)
		msg_set_int(&m, FA_INSTANCE, instance);
	if (agent_cfg.data_plain) {
		msg_set_int(&m, FA_DATA_LINK, DATA_LINK_PLAIN);
		/* The edge decides which links outlive a session, so that it
		 * never writes a session on a link this side is closing. */
		msg_set_int(&m, FA_LINKS_KEEP, alink_keep_max());
	}
	(void)fconn_send(&e->fc, &m);
	return 0;
}

/* The one place a service's SVC_OPEN is built: the edge compares
 * definitions whole, so every push must carry the same attributes. */
void
aedge_svc_msg(const struct cfg_service *s, struct msg *m)
{
	msg_init(m, FT_SVC_OPEN);
	msg_set_str(m, FA_SERVICE, s->name);
	msg_set_str(m, FA_LISTEN, s->listen);
	/* The client policy, for the edge to enforce at accept. */
	if (s->allow[0] != '\0')
		msg_set_str(m, FA_ALLOW, s->allow);
	if (s->deny[0] != '\0')
		msg_set_str(m, FA_DENY, s->deny);
	if (s->accept_proxy[0] != '\0')
		msg_set_str(m, FA_ACCEPT_PROXY, s->accept_proxy);
	if (s->max_sess_ip > 0) {
		m->max_sess_ip = s->max_sess_ip;
		m->have |= FA_BIT(FA_MAX_SESS_IP);
	}
	if (s->max_rate_ip > 0) {
		m->max_rate_ip = s->max_rate_ip;
		m->have |= FA_BIT(FA_MAX_RATE_IP);
	}
	m->idle_timeout = s->idle_timeout;
	m->have |= FA_BIT(FA_IDLE_TIMEOUT);
	aftp_svc_msg(s, m);
	if (s->priority != 0) {
		/* Absent means 0. */
		m->priority = s->priority;
		msg_have(m, FA_PRIORITY);
	}
}

static void
aedge_push_services(struct aedge *e)
{
	struct msg m;
	size_t i;

	/* A draining agent has withdrawn its services for good. */
	if (aho_draining())
		return;
	e->svc_waiting = 0;
	e->svc_refused = 0;
	for (i = 0; i < agent_cfg.nservices; i++) {
		if (agent_cfg.services[i].refused[0] != '\0')
			continue;	/* tsrc.c said why */
		aedge_svc_msg(&agent_cfg.services[i], &m);
		aedge_send(e, &m);
		e->svc_waiting++;
	}
}

/* The edge's counters, kept as text for /metrics (they parsed:
 * actl_frame). */
static void
aedge_stats(struct aedge *e, const struct msg *m)
{
	memcpy(e->stats, m->stats, sizeof(e->stats));
	e->stats_at = ev_now();
}

/* HELLO_OK: the control connection is up, with its link key. */
static void
aedge_hello_ok(struct aedge *e, struct msg *m)
{
	struct msg m2;

	e->state = AE_READY;
	e->connects++;
	e->connected_at = ev_now();
	e->stats[0] = '\0';
	e->backoff_ms = BACKOFF_MIN_MS;
	e->last_ping = ev_now();
	snprintf(e->edge_name, sizeof(e->edge_name), "%s", m->name);
	memcpy(e->key, m->link_key, sizeof(e->key));
	OPENSSL_cleanse(m->link_key, sizeof(m->link_key));
	e->kid = m->key_id;
	e->ctr = 0;
	e->link_next = 0;
	log_info("edge %s connected (edge %s, protocol %u, data_link=%s, "
	    "data_links=%u)", e->ce->str, e->edge_name, m->version,
	    agent_cfg.data_plain ? "plain" : "tls", agent_cfg.data_links);
	/* Bans first: the services' clients meet them from the start. A
	 * draining process leaves them to the new one: its BAN_SYNC would
	 * undo what the new one changed. */
	if (!aho_draining())
		aban_edge_up(e);
	aedge_push_services(e);
	/* Our FTP control sessions that run on, on this edge: it knows them
	 * (after a blip, from our name and process; after a hand-over, from
	 * the old edge process), their ports from us again. */
	aftp_edge_back(e);
	/* The edge enforces what we allow; it gets the policy before any
	 * outbound session can be asked for. */
	if (agent_cfg.out.line != 0 && out_policy_msg(&m2) == 0)
		aedge_send(e, &m2);
	alink_fill(e);
}

/* DRAINING: the edge process hands over to a new one on the same port.
 * Reconnect at once; the links to the old one carry their sessions to
 * their end (alink_edge_lost), and outbound requests asked there are
 * answered on them too. */
static void
aedge_drain(struct aedge *e)
{
	log_info("edge %s: its process hands over to a new one: reconnecting "
	    "at once", e->ce->str);
	snprintf(e->last_error, sizeof(e->last_error), "edge handed over");
	fconn_close(&e->fc);
	alink_edge_lost(e);
	/* The old process drops what it was asked to dial. */
	aftp_edge_down(e, "the edge handed over");
	e->out_ok = 0;
	e->kid = 0;
	OPENSSL_cleanse(e->key, sizeof(e->key));
	/* A ban list half sent stops here: the new process gets it whole
	 * (or, if we drain, from the agent that took over). */
	aban_edge_down(e);
	e->state = AE_WAIT;
	/* At once, but an edge that says it again and again (a hostile
	 * one) gets the back-off: no loop of handshakes. */
	e->next_try = ev_now() + (e->drained_at != 0 &&
	    ev_now() - e->drained_at < DRAIN_REPEAT_MS ? BACKOFF_MIN_MS : 0);
	e->backoff_ms = BACKOFF_MIN_MS;
	e->drained_at = ev_now();
}

static int
aedge_frame(struct fconn *fc, struct msg *m)
{
	struct aedge *e = fc->owner;
	char why[MSG_TEXT_MAX + 64];
	const char *bad = NULL;

	switch (actl_frame(&e->ctl, &agent_cfg, m, ev_now_update(), &bad)) {
	case ACTL_OK:
		break;
	case ACTL_IGNORE:
		aedge_violation(e, "%s (%s frame ignored)", bad,
		    frame_type_name(m->type));
		return 0;
	case ACTL_DROP:
		aedge_violation(e, "%s (%s frame)", bad,
		    frame_type_name(m->type));
		snprintf(why, sizeof(why), "protocol violation: %s frame",
		    frame_type_name(m->type));
		aedge_fail(e, why);
		return -1;
	}
	if (e->state == AE_HELLO && m->type == FT_HELLO_OK) {
		aedge_hello_ok(e, m);
		return 0;
	}
	switch (m->type) {
	case FT_SVC_RESULT:
		if (e->svc_waiting > 0)
			e->svc_waiting--;
		e->svc_refused += m->status != 0;
		if (m->status == 0)
			log_info("edge %s: service %s open", e->ce->str, m->service);
		else
			log_err("edge %s: service %s refused: %s", e->ce->str,
			    m->service, (m->have & FA_BIT(FA_TEXT)) ? m->text : "?");
		return 0;
	case FT_SESS_DENIED:
	case FT_DENIED_SUMMARY:
		asess_denied(e, m);
		return 0;
	case FT_OUT_POLICY_OK:
		if (m->status != 0) {
			e->out_ok = 0;
			log_err("edge %s: outbound policy refused: %s", e->ce->str,
			    (m->have & FA_BIT(FA_TEXT)) ? m->text : "?");
			return 0;
		}
		e->out_ok = 1;
		log_info("edge %s: outbound open (%zu destination rules)",
		    e->ce->str, agent_cfg.out.nrules);
		return 0;
	case FT_OUT_FAIL:
		aout_failed(e, m);
		return 0;
	case FT_FTP_DIAL_FAIL:
		aftp_active_failed(e, m);
		return 0;
	case FT_PONG:
		e->rtt_ms = ev_now() - m->nonce;	/* our nonce: a time */
		return 0;
	case FT_STATS:
		aedge_stats(e, m);
		return 0;
	case FT_DRAINING:
		aedge_drain(e);
		return -1;
	default:	/* ERROR: actl_frame lets nothing else through */
		snprintf(why, sizeof(why), "%s%s", e->state == AE_HELLO ?
		    "expected HELLO_OK, got ERROR: " : "edge said: ", m->text);
		aedge_fail(e, why);
		return -1;
	}
}

static void
aedge_lost(struct fconn *fc, const char *why)
{
	if (fc->bad)
		aedge_violation(fc->owner, "%s", why);
	aedge_fail(fc->owner, why);
}

void
aedge_send(struct aedge *e, const struct msg *m)
{
	if (e->state != AE_READY)
		return;
	/* A reply the edge may send is one to a request of ours. */
	actl_asked(&e->ctl, m->type, m->nonce);
	(void)fconn_send(&e->fc, m);
}

void
aedge_send_all(const struct msg *m)
{
	size_t i;

	for (i = 0; i < nedges; i++)
		aedge_send(&edges[i], m);
}

size_t
aedge_count(void)
{
	return nedges;
}

const struct aedge *
aedge_get(size_t i)
{
	return i < nedges ? &edges[i] : NULL;
}

const char *
aedge_state_name(enum aedge_state st)
{
	switch (st) {
	case AE_WAIT: return "disconnected";
	case AE_CONNECT: return "connecting";
	case AE_HELLO: return "handshake";
	case AE_READY: return "connected";
	}
	return "?";
}


void
aedge_out_policy(void)
{
	struct msg *m;
	size_t i;

	if (agent_cfg.out.line == 0 || (m = malloc(sizeof(*m))) == NULL)
		return;
	(void)out_policy_msg(m);
	for (i = 0; i < nedges; i++)
		aedge_send(&edges[i], m);
	free(m);
}

void
aedge_svc_close(const char *name)
{
	struct msg m;
	size_t i;

	msg_init(&m, FT_SVC_CLOSE);
	msg_set_str(&m, FA_SERVICE, name);
	for (i = 0; i < nedges; i++)
		aedge_send(&edges[i], &m);
}

void
aedge_svc_open(const struct cfg_service *s)
{
	struct msg m;
	size_t i;

	if (s->refused[0] != '\0' || aho_draining())
		return;
	aedge_svc_msg(s, &m);
	for (i = 0; i < nedges; i++)
		aedge_send(&edges[i], &m);
}

void
aedge_push_all(void)
{
	size_t i;

	for (i = 0; i < nedges; i++)
		if (edges[i].state == AE_READY && edges[i].svc_refused > 0)
			aedge_push_services(&edges[i]);
}

void
aedge_withdraw(void)
{
	size_t i;

	for (i = 0; i < agent_cfg.nservices; i++)
		aedge_svc_close(agent_cfg.services[i].name);
}

int
aedge_all_ready(void)
{
	size_t i;

	for (i = 0; i < nedges; i++)
		if (edges[i].state != AE_READY || edges[i].svc_waiting > 0 ||
		    edges[i].links_up == 0)
			return 0;
	return 1;
}

struct aedge *
aedge_pick_out(void)
{
	static size_t rr;
	size_t k, i;

	for (k = 0; k < nedges; k++) {
		i = (rr + k) % nedges;
		if (edges[i].state == AE_READY && edges[i].out_ok) {
			rr = i + 1;
			return &edges[i];
		}
	}
	return NULL;
}

void
aedge_start(void)
{
	size_t i;

	while (instance == 0 && RAND_bytes((uint8_t *)&instance,
	    sizeof(instance)) == 1)
		;
	nedges = agent_cfg.nedges;
	for (i = 0; i < nedges; i++) {
		memset(&edges[i], 0, sizeof(edges[i]));
		edges[i].ce = &agent_cfg.edges[i];
		edges[i].backoff_ms = BACKOFF_MIN_MS;
		aedge_try(&edges[i]);
	}
}

void
aedge_tick(uint64_t now)
{
	struct aedge *e;
	struct msg m;
	size_t i;

	for (i = 0; i < nedges; i++) {
		e = &edges[i];
		switch (e->state) {
		case AE_WAIT:
			if (now >= e->next_try)
				aedge_try(e);
			break;
		case AE_CONNECT:
		case AE_HELLO:
			if (now > e->deadline)
				aedge_fail(e, e->lookup != NULL ? "timed out "
				    "looking up the name" : "timed out");
			break;
		case AE_READY:
			if (now - e->fc.last_rx > DEAD_AFTER_MS) {
				aedge_fail(e, "heartbeat timed out");
				break;
			}
			alink_fill(e);
			aban_edge_tick(e);
			if (now - e->last_ping >= PING_EVERY_MS) {
				e->last_ping = now;
				msg_init(&m, FT_PING);
				m.nonce = now;
				m.have |= FA_BIT(FA_NONCE);
				aedge_send(e, &m);
				/* The edge's counters ride along with the
				 * heartbeat: fresh to within 2 s for /metrics. */
				msg_init(&m, FT_STATS_REQ);
				aedge_send(e, &m);
			}
			break;
		}
	}
}

void
aedge_stop(void)
{
	struct aedge *e;
	size_t i;

	for (i = 0; i < nedges; i++) {
		e = &edges[i];
		dial_lookup_cancel(e->lookup);
		e->lookup = NULL;
		dial_cancel(&e->dial);
		if (e->state == AE_HELLO || e->state == AE_READY)
			fconn_close(&e->fc);
		alink_edge_lost(e);
		aban_edge_down(e);
		e->state = AE_WAIT;
	}
}

void
aedge_violation(struct aedge *e, const char *fmt, ...)
{
	char why[256];
	uint64_t now = ev_now();
	va_list ap;

	e->violations++;
	if (e->viol_logged != 0 && now - e->viol_logged < 1000) {
		e->viol_held++;
		return;
	}
	va_start(ap, fmt);
	(void)vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (e->viol_held > 0)
		log_warn("edge %s: protocol violation: %s (and %llu more since "
		    "the last line; %llu in all)", e->ce->str, why,
		    (unsigned long long)e->viol_held,
		    (unsigned long long)e->violations);
	else
		log_warn("edge %s: protocol violation: %s (%llu in all)",
		    e->ce->str, why, (unsigned long long)e->violations);
	e->viol_logged = now;
	e->viol_held = 0;
}
