/* edge_svc.c - public service listeners and client sessions.
 *
 * A service exists while at least one agent offers it; its listener is
 * closed with the last one, so clients are refused by the kernel at once
 * instead of waiting for a claim that cannot come. */
#include "edge/edge.h"
#include "common/log.h"
#include "common/proxy.h"
#include "common/stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#define SESS_HASH 4096		/* power of two */
#define IPC_HASH 4096		/* power of two */
#define ACCEPT_PAUSE_MS 250

/* Live sessions per client address. An entry exists only while it
 * counts at least one session, so the table is bounded by max_sessions. */
struct ipcount {
	char		 ip[NET_ADDRSTR];
	uint64_t	 n;
	struct ipcount	*next;
};

/* An agent offering a service, with the priority it asked for there:
 * sessions go only to the connected agents of the highest priority. */
struct esvc_agent {
	struct econn	*conn;
	uint32_t	 priority;
};

struct esvc {
	struct ev_io	 io;
	char		 name[MSG_NAME_MAX];
	char		 listen[MSG_ADDR_MAX];
	/* The SVC_OPEN that created the service, as decoded, with PRIORITY
	 * cleared. Agents that offer the same service must push an identical
	 * definition: it is compared whole, so attributes added later are
	 * covered too; only the per-agent priority may differ. */
	struct msg	 def;
	char		 def_agent[MSG_NAME_MAX];	/* who pushed def */
	struct esvc_agent agents[EDGE_SVC_AGENTS_MAX];
	size_t		 nagents;
	size_t		 rr;
	/* The address clients connect to, when the listener names one
	 * (not a wildcard): then no getsockname() per client. */
	struct net_addr	 local;
	int		 local_fixed;
	struct cpol	 pol;
	/* Denials reported to agents, limited per second (see svc_deny). */
	uint64_t	 deny_sec;
	uint32_t	 deny_sent;
	uint32_t	 deny_held;	/* not reported one by one */
	uint64_t	 npending;	/* clients of this service not claimed */
	struct eftp	*ftp;		/* FTP: passive ports (edge_ftp.c) */
	struct esvc	*next;
};

/* A connection from a front load balancer whose PROXY header is being
 * read; it becomes a session (or is denied) once the header is whole. */
struct eproxy {
	struct ev_io	 io;
	struct esvc	*svc;
	struct net_addr	 peer;
	uint8_t		 hdr[PROXY_MAX];
	size_t		 have;
	uint64_t	 deadline;
	TAILQ_ENTRY(eproxy) q;		/* FIFO: deadline order */
};

static struct esvc *svcs;
static struct esess *sess_hash[SESS_HASH];
/* Sessions waiting for a data link (FIFO: deadline order), and joined. */
static TAILQ_HEAD(, esess) pending = TAILQ_HEAD_INITIALIZER(pending);
static TAILQ_HEAD(, esess) active = TAILQ_HEAD_INITIALIZER(active);
static uint64_t sess_next_id = 1;
static uint64_t nsessions;
static struct ipcount *ipc_hash[IPC_HASH];
static uint64_t paused_until;
static uint64_t last_idle_scan;
static TAILQ_HEAD(, eproxy) proxies = TAILQ_HEAD_INITIALIZER(proxies);
static size_t proxy_n;

static void proxy_drop(struct eproxy *x);
static void svc_deny_flush(struct esvc *svc);

static struct esvc *
svc_find(const char *name)
{
	struct esvc *s;

	for (s = svcs; s != NULL; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static void
svc_result(struct econn *agent, const char *name, int ok, const char *text)
{
	struct msg m;

	msg_init(&m, FT_SVC_RESULT);
	msg_set_str(&m, FA_SERVICE, name);
	m.status = ok ? 0 : 1;
	m.have |= FA_BIT(FA_STATUS);
	if (text != NULL)
		msg_set_str(&m, FA_TEXT, text);
	(void)fconn_send(&agent->fc, &m);
}

static void
svc_free(struct esvc *s)
{
	struct esvc **pp;
	struct eproxy *x, *xn;

	for (x = TAILQ_FIRST(&proxies); x != NULL; x = xn) {
		xn = TAILQ_NEXT(x, q);
		if (x->svc == s)
			proxy_drop(x);
	}
	svc_deny_flush(s);

	for (pp = &svcs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	ev_del(&s->io);
	close(s->io.fd);
	ftp_svc_close(s->ftp);
	log_info("service %s closed", s->name);
	free(s);
}

/* --- per-address counts ----------------------------------------------- */

static unsigned
ipc_bucket(const char *ip)
{
	unsigned h = 2166136261u;	/* FNV-1a */

	while (*ip != '\0')
		h = (h ^ (unsigned char)*ip++) * 16777619u;
	return h & (IPC_HASH - 1);
}

static struct ipcount *
ipc_get(const char *ip, int create)
{
	struct ipcount *c;
	unsigned b = ipc_bucket(ip);

	for (c = ipc_hash[b]; c != NULL; c = c->next)
		if (strcmp(c->ip, ip) == 0)
			return c;
	if (!create || (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	snprintf(c->ip, sizeof(c->ip), "%s", ip);
	c->next = ipc_hash[b];
	ipc_hash[b] = c;
	return c;
}

static void
ipc_put(struct ipcount *c)
{
	struct ipcount **pp;

	if (c == NULL || --c->n > 0)
		return;
	for (pp = &ipc_hash[ipc_bucket(c->ip)]; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	free(c);
}

/* --- accept back-off ---------------------------------------------------- */

static void
listeners_set(uint32_t mask)
{
	struct esvc *s;

	for (s = svcs; s != NULL; s = s->next)
		if (ev_set(&s->io, mask) == -1)
			log_fatal("epoll_ctl: %s", strerror(errno));
	ftp_listeners_set(mask);
	ctl_pause(mask == 0);
}

/* Out of descriptors, a level-triggered listener would wake the loop
 * forever: stop watching all listeners for a moment instead. */
void
accept_pause(uint64_t now)
{
	paused_until = now + ACCEPT_PAUSE_MS;
	listeners_set(0);
}

int
accept_paused(uint64_t now)
{
	return paused_until != 0 && now < paused_until;
}

int
edge_accept(int lfd, struct net_addr *peer, const char *what)
{
	int fd;

	if (accept_paused(ev_now()))
		return -1;
	/* Nagle is off: accepted sockets inherit it from net_listen. */
	if ((fd = net_accept(lfd, peer)) != -1)
		return fd;
	if (errno == EMFILE || errno == ENFILE) {
		lim_hit(LIM_FDS, "%s: accept: %s", what, strerror(errno));
		accept_pause(ev_now());
	} else if (errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != ECONNABORTED && errno != EINTR)
		log_warn("%s: accept: %s", what, strerror(errno));
	return -1;
}

/* --- sessions --------------------------------------------------------- */

static void
sess_hash_add(struct esess *s)
{
	struct esess **b = &sess_hash[s->id & (SESS_HASH - 1)];

	s->hnext = *b;
	*b = s;
}

static void
sess_hash_del(struct esess *s)
{
	struct esess **pp = &sess_hash[s->id & (SESS_HASH - 1)];

	for (; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == s) {
			*pp = s->hnext;
			return;
		}
}

static struct esess *
sess_lookup(uint64_t id)
{
	struct esess *s;

	for (s = sess_hash[id & (SESS_HASH - 1)]; s != NULL; s = s->hnext)
		if (s->id == id)
			return s;
	return NULL;
}

static void
pending_unlink(struct esess *s)
{
	TAILQ_REMOVE(&pending, s, q);
}

static void
active_add(struct esess *s)
{
	TAILQ_INSERT_HEAD(&active, s, q);
}

static void
active_unlink(struct esess *s)
{
	TAILQ_REMOVE(&active, s, q);
}

/* Bytes of a joined session: [0] from the client, [1] to it. */
static uint64_t
sess_bytes(const struct esess *s, int i)
{
	if (s->ms != NULL)
		return s->ms->bytes[i];
	return relay_bytes(&s->relay, i);
}

static void
sess_log_end(struct esess *s, uint64_t in, uint64_t out, const char *reason)
{
	uint64_t ms = ev_now_update() - s->t_start;

	log_info("session %llu closed service=%s client=%s bytes_in=%llu "
	    "bytes_out=%llu duration=%llu.%03llus reason=%s link=%s "
	    "spliced=%llu",
	    (unsigned long long)s->id, s->svc, s->client,
	    (unsigned long long)in, (unsigned long long)out,
	    (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
	    reason, s->link_kind != NULL ? s->link_kind : "-",
	    (unsigned long long)(s->state == ES_RELAY && s->ms == NULL ?
	    relay_spliced(&s->relay, 0) + relay_spliced(&s->relay, 1) : 0));
}

/* The frame that tells an agent about session s: SESS_NEW or
 * SESS_ASSIGN, with who the client is and where it connected. */
static void
sess_msg(const struct esess *s, uint16_t type, struct msg *m)
{
	msg_init(m, type);
	m->session = s->id;
	msg_set_str(m, FA_SERVICE, s->svc);
	msg_set_str(m, FA_CLIENT_ADDR, s->client_ip);
	m->client_port = s->client_port;
	msg_set_str(m, FA_LOCAL_ADDR, s->local_ip);
	m->local_port = s->local_port;
	m->have |= FA_BIT(FA_SESSION) | FA_BIT(FA_CLIENT_PORT) |
	    FA_BIT(FA_LOCAL_PORT);
}

/* A session leaves the pending state; its service may be gone already. */
static void
svc_unpend(struct esess *s)
{
	struct esvc *svc = svc_find(s->svc);

	if (svc != NULL && svc->npending > 0)
		svc->npending--;
}

/* End a session that never got a data link. */
static void
sess_drop_pending(struct esess *s, const char *reason)
{
	pending_unlink(s);
	sess_hash_del(s);
	ftp_ctl_del(s->id);
	svc_unpend(s);
	nsessions--;
	ipc_put(s->ipc);
	pol_release(s->pol_ent);
	if (s->agent != NULL && s->agent->active > 0)
		s->agent->active--;
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
	close(s->client_fd);
	sess_log_end(s, 0, 0, reason);
	free(s);
}

/* The agent for a new session: among the agents of the highest priority
 * (active-passive), the one with the fewest sessions; the rotating start
 * breaks ties round-robin. An agent whose control channel is already
 * failing is skipped: its loss is about to be handled. */
static struct econn *
svc_pick_agent(struct esvc *svc)
{
	struct esvc_agent *a, *best = NULL;
	size_t k;

	for (k = 0; k < svc->nagents; k++) {
		a = &svc->agents[(svc->rr + k) % svc->nagents];
		if (a->conn->fc.failed)
			continue;
		if (best == NULL || a->priority > best->priority ||
		    (a->priority == best->priority &&
		    a->conn->active < best->conn->active))
			best = a;
	}
	svc->rr++;
	return best != NULL ? best->conn : NULL;
}

/* Ask an agent of svc to claim s: a fresh secret and a SESS_NEW. An agent
 * whose channel fails on the send is passed over for the next one.
 * Returns 0, or -1 if no agent could be asked (the caller ends s). */
static int
sess_offer(struct esess *s, struct esvc *svc)
{
	struct econn *a;
	struct msg m;
	size_t tries;
	int rc = -1;

	msg_init(&m, FT_SESS_NEW);
	for (tries = 0; tries < svc->nagents; tries++) {
		/* An FTP data connection goes to the agent holding its
		 * control session, once: offered again (its agent lost), it
		 * has nowhere to go. */
		a = s->ftp_ctl != 0 ? s->ftp_agent : svc_pick_agent(svc);
		s->ftp_agent = NULL;
		if (a == NULL)
			break;
		if (RAND_bytes(s->secret, sizeof(s->secret)) != 1)
			log_fatal("RAND_bytes failed");
		sess_msg(s, FT_SESS_NEW, &m);
		memcpy(m.secret, s->secret, sizeof(m.secret));
		m.have |= FA_BIT(FA_SECRET);
		if (s->ftp_ctl != 0) {
			m.ftp_ctl = s->ftp_ctl;
			m.ftp_port = s->ftp_port;
			m.have |= FA_BIT(FA_FTP_CTL) | FA_BIT(FA_FTP_PORT);
		}
		if (fconn_send(&a->fc, &m) == 0) {
			s->agent = a;
			a->active++;
			snprintf(s->agent_name, sizeof(s->agent_name), "%s", a->name);
			if (s->ftp_ctl == 0)
				ftp_ctl_add(svc->ftp, s->id, s->client_ip, a);
			rc = 0;
			break;
		}
		if (s->ftp_ctl != 0)
			break;
		log_warn("session %llu: agent %s unreachable, trying another",
		    (unsigned long long)s->id, a->name);
	}
	OPENSSL_cleanse(m.secret, sizeof(m.secret));
	if (rc == -1)
		OPENSSL_cleanse(s->secret, sizeof(s->secret));
	return rc;
}

static void
pending_append(struct esess *s)
{
	TAILQ_INSERT_TAIL(&pending, s, q);
}

/* Edge-wide limits, checked before any state is made for a client.
 * Returns 0 to admit, -1 to refuse (logged and counted). */
static int
svc_limits(struct esvc *svc, const char *ip, uint16_t port)
{
	struct ipcount *c;

	if (nsessions >= lim.max_sessions) {
		lim_hit(LIM_SESSIONS, "service %s: client %s:%u refused: %llu "
		    "sessions open", svc->name, ip, port,
		    (unsigned long long)nsessions);
		return -1;
	}
	/* Per service: a service whose agent is slow or gone must not
	 * keep clients of the others out. */
	if (svc->npending >= lim.max_pending) {
		lim_hit(LIM_PENDING, "service %s: client %s:%u refused: %llu "
		    "clients waiting to be claimed", svc->name, ip, port,
		    (unsigned long long)svc->npending);
		return -1;
	}
	if ((c = ipc_get(ip, 0)) != NULL && c->n >= lim.max_per_ip) {
		lim_hit(LIM_PER_IP, "service %s: client %s:%u refused: %llu "
		    "sessions from that address", svc->name, ip, port,
		    (unsigned long long)c->n);
		return -1;
	}
	return 0;
}

/* --- client policy: denials --------------------------------------------- */

/* The 16-byte address of an AF_INET or AF_INET6 sockaddr. */
static void
sa_addr16(const struct sockaddr *sa, uint8_t out[16])
{
	if (sa->sa_family == AF_INET)
		cidr_addr16(AF_INET, (const uint8_t *)
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out);
	else
		cidr_addr16(AF_INET6, (const uint8_t *)
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out);
}

/* Report denials held back in the last second as one DENIED_SUMMARY. */
static void
svc_deny_flush(struct esvc *svc)
{
	struct econn *agent;
	struct msg m;

	if (svc->deny_held == 0)
		return;
	log_info("service %s: %u more clients refused in the last second "
	    "(not logged one by one)", svc->name, svc->deny_held);
	if ((agent = svc_pick_agent(svc)) != NULL) {
		msg_init(&m, FT_DENIED_SUMMARY);
		msg_set_str(&m, FA_SERVICE, svc->name);
		m.count = svc->deny_held;
		m.have |= FA_BIT(FA_COUNT);
		(void)fconn_send(&agent->fc, &m);
	}
	svc->deny_held = 0;
}

/* Refuse a client at the edge: reset the connection (a flood leaves no
 * TIME_WAIT behind), log it and tell one agent with SESS_DENIED so that
 * it lands in the audit log. why is "REASON: detail", REASON one of
 * denied, limit, error, timeout. At most EDGE_DENIED_PER_SEC per service
 * and second are logged and reported one by one; the rest are counted
 * and reported as a DENIED_SUMMARY, so a flood cannot swamp the log or
 * the control channel. */
static void
svc_deny(struct esvc *svc, int fd, const struct sockaddr *client,
    const char *why)
{
	struct linger lg = { 1, 0 };
	struct econn *agent;
	struct msg m;
	char addr[NET_ADDRSTR], ip[NET_ADDRSTR];
	uint64_t id = sess_next_id++, sec = ev_now() / 1000;
	uint16_t port;

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	if (sec != svc->deny_sec) {
		svc_deny_flush(svc);
		svc->deny_sec = sec;
		svc->deny_sent = 0;
	}
	if (svc->deny_sent >= EDGE_DENIED_PER_SEC) {
		svc->deny_held++;
		return;
	}
	svc->deny_sent++;
	net_fmt(client, addr, sizeof(addr));
	net_fmt_ip(client, ip, sizeof(ip), &port);
	log_info("session %llu refused service=%s client=%s reason=%s",
	    (unsigned long long)id, svc->name, addr, why);
	if ((agent = svc_pick_agent(svc)) == NULL)
		return;
	msg_init(&m, FT_SESS_DENIED);
	m.session = id;
	msg_set_str(&m, FA_SERVICE, svc->name);
	msg_set_str(&m, FA_CLIENT_ADDR, ip);
	m.client_port = port;
	msg_set_str(&m, FA_TEXT, why);
	m.have |= FA_BIT(FA_SESSION) | FA_BIT(FA_CLIENT_PORT);
	(void)fconn_send(&agent->fc, &m);
}

/* --- client admission --------------------------------------------------- */

static void sess_relay_done(struct relay *r, int first, const char *err);
static void sess_mux_done(struct mux_stream *ms, int first, const char *err,
    int refused);
static void sess_joined_pooled(struct esvc *svc, struct esess *s,
    struct econn *agent, const char *kind);

/* Which kind of data link a relay runs over, for the logs. */
static const char *
link_kind(int plain, SSL *ssl)
{
	if (plain)
		return "plain";
	if (ssl != NULL && BIO_get_ktls_send(SSL_get_wbio(ssl)) &&
	    BIO_get_ktls_recv(SSL_get_rbio(ssl)))
		return "ktls";
	return "tls";
}

/* Join a new client at once on a pooled link of the agent it would be
 * offered to: write SESS_ASSIGN on the link and relay (docs/protocol.md,
 * "Fast path"). Returns 0 if joined, -1 if that agent has no usable
 * pooled link (the caller offers the session with SESS_NEW instead). */
static int
sess_assign(struct esvc *svc, struct esess *s)
{
	struct econn *agent, *link;
	struct emux *ml;
	struct msg m;
	struct buf prime;
	SSL *ssl;
	int fd, reg;

	if ((agent = svc_pick_agent(svc)) == NULL)
		return -1;
	sess_msg(s, FT_SESS_ASSIGN, &m);
	if ((ml = emux_pick(agent)) != NULL &&
	    (s->ms = emux_open(ml, s->client_fd, &m, sess_mux_done, s)) != NULL) {
		sess_joined_pooled(svc, s, agent, "mux");
		return 0;
	}
	for (;;) {
		if ((link = pool_take(agent)) == NULL)
			return -1;
		/* A reusable link's chunks start right after SESS_ASSIGN,
		 * which must have left whole (an idle socket takes it). */
		if (fconn_send(&link->fc, &m) == 0 &&
		    (!link->reuse || buf_len(&link->fc.out) == 0))
			break;
		econn_free(link);
	}
	/* The relay takes the link's registration in the loop over. */
	reg = fconn_handover(&link->fc, &fd, &ssl, &prime);
	sess_joined_pooled(svc, s, agent, link_kind(link->plain, ssl));
	s->link_reuse = link->reuse;
	if (link->reuse)
		snprintf(s->link_peer, sizeof(s->link_peer), "%s", link->peer);
	econn_free(link);
	/* Side 0 is the client, side 1 the data link; SESS_ASSIGN goes
	 * first. The client's bytes wait in the link until the agent has
	 * its backend: it does not read the link before, nor write to it
	 * (a plain link is not worth reading now). */
	(void)relay_start(&s->relay, s->client_fd, NULL, fd, ssl, &prime,
	    (s->link_reuse ? RELAY_FRAMED(1) : 0) | (reg ? RELAY_HANDED(1) : 0) |
	    (ssl == NULL ? RELAY_QUIET(1) : 0), sess_relay_done, s);
	return 0;
}

/* s was joined at once on a pooled or multiplexed link of agent. */
static void
sess_joined_pooled(struct esvc *svc, struct esess *s, struct econn *agent,
    const char *kind)
{
	svc->npending--;
	s->state = ES_RELAY;
	s->pooled = 1;
	/* Counted toward its agent's load like any joined session, and
	 * counted as joined once the agent has taken it (sess_end_active,
	 * svc_stats): it may still be refused. */
	s->agent = agent;
	agent->active++;
	snprintf(s->agent_name, sizeof(s->agent_name), "%s", agent->name);
	edge_stats.sessions_pooled++;
	sess_hash_add(s);
	active_add(s);
	s->link_kind = kind;
	log_info("session %llu new service=%s client=%s agent=%s link=%s "
	    "pooled", (unsigned long long)s->id, s->svc, s->client,
	    s->agent_name, s->link_kind);
	log_info("session %llu joined link=%s pooled", (unsigned long long)s->id,
	    s->link_kind);
}

/* A client whose address is known (the TCP peer, or the one in a PROXY
 * header): apply the policy, then start a session. local is the address
 * the client connected to. An FTP data connection (ctl not 0) goes to
 * agent, which holds its control session ctl, naming ctl and the passive
 * port; the service's policy already admitted that control session from
 * the same address, so the data connection is not counted against it
 * again. */
static void
svc_client(struct esvc *svc, int fd, const struct sockaddr *client,
    const struct sockaddr *local, struct econn *agent, uint64_t ctl,
    uint16_t pasv_port)
{
	struct esess *s;
	struct pol_ip *ent;
	char ip[NET_ADDRSTR], lip[NET_ADDRSTR], why[128];
	uint8_t a16[16];
	uint16_t port, lport;

	net_fmt_ip(client, ip, sizeof(ip), &port);
	net_fmt_ip(local, lip, sizeof(lip), &lport);
	/* The edge's own limits first (they keep no state), then the
	 * service's policy, which counts the session against its address. */
	if (svc_limits(svc, ip, port) == -1) {
		close(fd);
		return;
	}
	sa_addr16(client, a16);
	ent = NULL;
	if (ctl == 0 && pol_admit(&svc->pol, svc->name, a16, ev_now(), &ent,
	    why, sizeof(why)) == -1) {
		svc_deny(svc, fd, client, why);
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warn("service %s: out of memory", svc->name);
		pol_release(ent);
		close(fd);
		return;
	}
	s->pol_ent = ent;
	s->client_fd = fd;
	s->id = sess_next_id++;
	edge_stats.sessions_accepted++;
	s->state = ES_PENDING;
	s->t_start = ev_now();
	s->deadline = s->t_start + lim.claim_ms;
	snprintf(s->svc, sizeof(s->svc), "%s", svc->name);
	net_fmt(client, s->client, sizeof(s->client));
	s->idle_ms = (uint64_t)svc->def.idle_timeout * 1000u;
	snprintf(s->client_ip, sizeof(s->client_ip), "%s", ip);
	s->client_port = port;
	snprintf(s->local_ip, sizeof(s->local_ip), "%s", lip);
	s->local_port = lport;
	if ((s->ipc = ipc_get(ip, 1)) == NULL) {
		log_warn("service %s: out of memory", svc->name);
		pol_release(ent);
		close(fd);
		free(s);
		return;
	}
	s->ipc->n++;
	nsessions++;
	svc->npending++;
	s->ftp_ctl = ctl;
	s->ftp_port = pasv_port;
	s->ftp_agent = agent;
	/* FTP sessions always go by SESS_NEW: a control session must be
	 * registered with the agent that holds it, and a data connection
	 * goes to that agent, with its control session's details. */
	if (svc->ftp == NULL && sess_assign(svc, s) == 0)
		return;
	if (sess_offer(s, svc) == -1) {
		/* Every agent's channel is failing; refuse now rather than
		 * let the client wait for the claim time-out. */
		log_warn("service %s: client %s refused: no agent reachable",
		    svc->name, s->client);
		edge_stats.sessions_agent_lost++;
		ipc_put(s->ipc);
		pol_release(ent);
		nsessions--;
		svc->npending--;
		close(fd);
		free(s);
		return;
	}
	sess_hash_add(s);
	pending_append(s);
	if (ctl != 0)
		log_info("session %llu new service=%s client=%s agent=%s "
		    "ftp-data control=%llu port=%u", (unsigned long long)s->id,
		    s->svc, s->client, s->agent_name, (unsigned long long)ctl,
		    pasv_port);
	else
		log_info("session %llu new service=%s client=%s agent=%s",
		    (unsigned long long)s->id, s->svc, s->client, s->agent_name);
}

/* --- PROXY headers from front load balancers ----------------------------- */

static void
proxy_unlink(struct eproxy *x)
{
	TAILQ_REMOVE(&proxies, x, q);
	proxy_n--;
	ev_del(&x->io);
}

/* Close a waiting connection without a word: its service went away. */
static void
proxy_drop(struct eproxy *x)
{
	proxy_unlink(x);
	close(x->io.fd);
	free(x);
}

static void
proxy_fail(struct eproxy *x, const char *why)
{
	proxy_unlink(x);
	svc_deny(x->svc, x->io.fd, (struct sockaddr *)&x->peer.ss, why);
	free(x);
}

/* The header is whole and valid: it names the client, or (LOCAL, as in
 * a health check) says to keep the peer. */
static void
proxy_done(struct eproxy *x, const struct proxy_hdr *h)
{
	struct sockaddr_storage client, local;
	struct sockaddr_in *c4 = (struct sockaddr_in *)(void *)&client;
	struct sockaddr_in *l4 = (struct sockaddr_in *)(void *)&local;
	struct sockaddr_in6 *c6 = (struct sockaddr_in6 *)(void *)&client;
	struct sockaddr_in6 *l6 = (struct sockaddr_in6 *)(void *)&local;
	socklen_t sl = sizeof(local);
	struct esvc *svc = x->svc;
	int fd = x->io.fd;

	memset(&client, 0, sizeof(client));
	memset(&local, 0, sizeof(local));
	if (h->local) {
		memcpy(&client, &x->peer.ss, sizeof(client));
		if (getsockname(fd, (struct sockaddr *)&local, &sl) == -1)
			local.ss_family = client.ss_family;
	} else if (h->family == AF_INET) {
		c4->sin_family = l4->sin_family = AF_INET;
		memcpy(&c4->sin_addr, h->src, 4);
		memcpy(&l4->sin_addr, h->dst, 4);
		c4->sin_port = htons(h->sport);
		l4->sin_port = htons(h->dport);
	} else {
		c6->sin6_family = l6->sin6_family = AF_INET6;
		memcpy(&c6->sin6_addr, h->src, 16);
		memcpy(&l6->sin6_addr, h->dst, 16);
		c6->sin6_port = htons(h->sport);
		l6->sin6_port = htons(h->dport);
	}
	proxy_unlink(x);
	free(x);
	svc_client(svc, fd, (struct sockaddr *)&client, (struct sockaddr *)&local,
	    NULL, 0, 0);
}

/* Read the header without taking a byte of what follows it: peek, let
 * the parser say how long the header is, then consume exactly that. A
 * header still incomplete is consumed as far as it goes (every byte
 * peeked is header), so a slow sender cannot make epoll spin on bytes
 * we keep peeking at. */
static void
proxy_read(struct ev_io *io, uint32_t events)
{
	struct eproxy *x = (struct eproxy *)(void *)io;
	struct proxy_hdr h;
	const char *perr;
	char why[160];
	ssize_t n, want;
	int r;

	(void)events;
	n = recv(io->fd, x->hdr + x->have, sizeof(x->hdr) - x->have, MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		proxy_fail(x, n == 0 ? "error: closed before the PROXY header" :
		    "error: reset before the PROXY header");
		return;
	}
	r = proxy_parse(x->hdr, x->have + (size_t)n, &h, &perr);
	if (r == -1) {
		snprintf(why, sizeof(why), "error: bad PROXY header: %s", perr);
		proxy_fail(x, why);
		return;
	}
	want = r > 0 ? (ssize_t)((size_t)r - x->have) : n;
	if (recv(io->fd, x->hdr + x->have, (size_t)want, 0) != want) {
		proxy_fail(x, "error: PROXY header: short read");
		return;
	}
	x->have += (size_t)want;
	if (r > 0)
		proxy_done(x, &h);
}

static void
proxy_start(struct esvc *svc, int fd, const struct net_addr *peer)
{
	struct eproxy *x;

	if (proxy_n >= EDGE_PROXY_PENDING_MAX) {
		svc_deny(svc, fd, (const struct sockaddr *)&peer->ss,
		    "limit: too many connections waiting for a PROXY header");
		return;
	}
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		log_warn("service %s: out of memory", svc->name);
		close(fd);
		return;
	}
	ev_io_init(&x->io, fd, proxy_read);
	x->svc = svc;
	x->peer = *peer;
	x->deadline = ev_now() + EDGE_PROXY_MS;
	if (ev_set(&x->io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	TAILQ_INSERT_TAIL(&proxies, x, q);
	proxy_n++;
}

static void
svc_accept(struct ev_io *io, uint32_t events)
{
	struct esvc *svc = (struct esvc *)(void *)io;
	struct net_addr peer, local;
	char what[MSG_NAME_MAX + 16];
	uint8_t a16[16];
	int fd, i;

	(void)events;
	snprintf(what, sizeof(what), "service %s", svc->name);
	/* Up to 64 per event: a flood must not outrun the accept queue. */
	for (i = 0; i < 64; i++) {
		if ((fd = edge_accept(io->fd, &peer, what)) == -1)
			return;
		if (svc->pol.accept_proxy.n > 0) {
			/* Behind load balancers: only they may connect, and
			 * each connection must start with a PROXY header. */
			sa_addr16((struct sockaddr *)&peer.ss, a16);
			if (!cidr_list_match(&svc->pol.accept_proxy, a16))
				svc_deny(svc, fd, (struct sockaddr *)&peer.ss,
				    "denied: peer not in accept_proxy_from");
			else
				proxy_start(svc, fd, &peer);
			continue;
		}
		if (svc->local_fixed)
			local = svc->local;
		else {
			local.len = sizeof(local.ss);
			if (getsockname(fd, (struct sockaddr *)&local.ss,
			    &local.len) == -1)
				local.ss = peer.ss;
		}
		svc_client(svc, fd, (struct sockaddr *)&peer.ss,
		    (struct sockaddr *)&local.ss, NULL, 0, 0);
	}
}

void
svc_ftp_data(const char *name, int fd, const struct net_addr *peer,
    struct econn *agent, uint64_t ctl, uint16_t port)
{
	struct esvc *svc = svc_find(name);
	struct net_addr local;

	if (svc == NULL) {
		close(fd);
		return;
	}
	local.len = sizeof(local.ss);
	if (getsockname(fd, (struct sockaddr *)&local.ss, &local.len) == -1)
		local.ss = peer->ss;
	svc_client(svc, fd, (const struct sockaddr *)&peer->ss,
	    (struct sockaddr *)&local.ss, agent, ctl, port);
}

/* End a joined session: log, close both sides, forget it. */
static void
sess_end_active(struct esess *s, const char *reason, int abort)
{
	active_unlink(s);
	sess_hash_del(s);
	ftp_ctl_del(s->id);
	nsessions--;
	ipc_put(s->ipc);
	pol_release(s->pol_ent);
	if (s->agent != NULL && s->agent->active > 0)
		s->agent->active--;
	if (s->pooled && !s->refused)
		edge_stats.sessions_joined++;
	edge_stats.bytes_from_clients += sess_bytes(s, 0);
	edge_stats.bytes_to_clients += sess_bytes(s, 1);
	sess_log_end(s, sess_bytes(s, 0), sess_bytes(s, 1), reason);
	if (s->ms != NULL)
		mux_stream_free(s->ms, abort);
	else
		relay_free(&s->relay, abort);
	free(s);
}

/* A session's stream on a multiplexed link ended. */
static void
sess_mux_done(struct mux_stream *ms, int first, const char *err, int refused)
{
	struct esess *s = ms->arg;
	char reason[300];

	if (refused) {
		edge_stats.sessions_refused++;
		s->refused = 1;
		snprintf(reason, sizeof(reason), "refused-by-agent(%s)",
		    strncmp(err, "refused: ", 9) == 0 ? err + 9 : err);
	} else if (err != NULL)
		snprintf(reason, sizeof(reason), "error(%s: %s)",
		    first == 0 ? "client" : "data link", err);
	else
		snprintf(reason, sizeof(reason), "%s",
		    first == 0 ? "client-closed" : "backend-closed");
	sess_end_active(s, reason, err != NULL);
}

static void
sess_relay_done(struct relay *r, int first, const char *err)
{
	struct esess *s = r->arg;
	char reason[300];
	int fd, reg;

	/* Both ends marked on a reusable link: it carries the next one. */
	if (err == NULL && s->link_reuse && s->agent != NULL &&
	    (fd = relay_take_link(r, 1, &reg)) != -1)
		pool_again(s->agent, fd, reg, s->link_peer);
	if (err != NULL)
		snprintf(reason, sizeof(reason), "error(%s: %s)",
		    first == 0 ? "client" : "data link", err);
	else
		snprintf(reason, sizeof(reason), "%s",
		    first == 0 ? "client-closed" : "backend-closed");
	sess_end_active(s, reason, err != NULL);
}

void
sess_claim(struct econn *link, const struct msg *m)
{
	struct esess *s = sess_lookup(m->session);
	struct msg ok;
	struct buf prime;
	char why[128];
	SSL *ssl;
	int fd, match;

	if (s == NULL || s->state != ES_PENDING) {
		snprintf(why, sizeof(why), s == NULL ? "unknown session %llu" :
		    "session %llu already claimed", (unsigned long long)m->session);
		goto refuse;
	}
	if (link->plain && (s->agent == NULL || !s->agent->plain)) {
		/* Its secret never travels in the clear, so this is no agent
		 * of ours: refused, and the session is left alone (anyone
		 * who reaches the port could otherwise burn sessions). */
		snprintf(why, sizeof(why), "plain data link for session %llu, "
		    "whose agent uses TLS links", (unsigned long long)m->session);
		goto refuse;
	}
	match = CRYPTO_memcmp(s->secret, m->secret, sizeof(s->secret)) == 0;
	if (!match) {
		/* One guess per session: the secret is gone after any try. */
		snprintf(why, sizeof(why), "wrong secret for session %llu",
		    (unsigned long long)m->session);
		edge_stats.sessions_bad_secret++;
		sess_drop_pending(s, "bad-secret");
		goto refuse;
	}
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
	pending_unlink(s);
	svc_unpend(s);
	/* s->agent stays: a joined session still counts toward its agent's
	 * load, until it ends or the agent goes away. */
	s->state = ES_RELAY;
	edge_stats.sessions_joined++;
	active_add(s);

	msg_init(&ok, FT_DATA_OK);
	ok.session = s->id;
	ok.have |= FA_BIT(FA_SESSION);
	(void)fconn_send(&link->fc, &ok);
	if (link->plain)
		edge_stats.data_links_plain++;
	fconn_detach(&link->fc, &fd, &ssl, &prime);
	s->link_kind = link_kind(link->plain, ssl);
	econn_free(link);
	log_info("session %llu joined link=%s", (unsigned long long)s->id,
	    s->link_kind);
	/* Side 0 is the client, side 1 the data link; DATA_OK goes first. */
	(void)relay_start(&s->relay, s->client_fd, NULL, fd, ssl, &prime, 0,
	    sess_relay_done, s);
	return;
refuse:
	link_refuse(link, why);
}

void
sess_refused(struct econn *agent, const struct msg *m)
{
	struct esess *s = sess_lookup(m->session);
	char reason[MSG_TEXT_MAX + 32];

	if (s == NULL || s->agent != agent)
		return;
	snprintf(reason, sizeof(reason), "refused-by-agent(%s)",
	    (m->have & FA_BIT(FA_TEXT)) ? m->text : "no reason");
	if (s->state == ES_PENDING) {
		edge_stats.sessions_refused++;
		sess_drop_pending(s, reason);
		return;
	}
	/* A session joined on a pooled link before its agent found a
	 * backend: the agent leaves the link unread for us to close. */
	if (s->pooled && s->ms == NULL && relay_bytes(&s->relay, 1) == 0) {
		edge_stats.sessions_refused++;
		s->refused = 1;
		sess_end_active(s, reason, 1);
	}
}

void
sess_agent_lost(struct econn *agent)
{
	struct esess *s, *next;
	struct esvc *svc;
	uint64_t old;

	ftp_agent_lost(agent);
	/* Joined sessions do not depend on their agent's control channel. */
	TAILQ_FOREACH(s, &active, q)
		if (s->agent == agent)
			s->agent = NULL;
	/* A session still waiting for the lost agent is offered to another
	 * agent of its service (the caller has withdrawn this one), under a
	 * new id and secret, so that a late DATA_HELLO from the lost agent
	 * can neither claim nor burn it. Re-offered sessions move to the
	 * tail with a fresh claim time; they now name another agent, so the
	 * walk passes over them and ends. */
	for (s = TAILQ_FIRST(&pending); s != NULL; s = next) {
		next = TAILQ_NEXT(s, q);
		if (s->agent != agent)
			continue;
		s->agent = NULL;
		if ((svc = svc_find(s->svc)) == NULL || svc->nagents == 0) {
			edge_stats.sessions_agent_lost++;
			sess_drop_pending(s, "agent-lost");
			continue;
		}
		pending_unlink(s);
		sess_hash_del(s);
		ftp_ctl_del(s->id);	/* sess_offer registers the new id */
		old = s->id;
		s->id = sess_next_id++;
		s->deadline = ev_now_update() + lim.claim_ms;
		sess_hash_add(s);
		pending_append(s);
		if (sess_offer(s, svc) == -1) {
			edge_stats.sessions_agent_lost++;
			sess_drop_pending(s, "agent-lost");
			continue;
		}
		log_info("session %llu re-offered as session %llu to agent=%s "
		    "(agent %s lost)", (unsigned long long)old,
		    (unsigned long long)s->id, s->agent_name, agent->name);
	}
}

void
sess_tick(uint64_t now)
{
	struct esess *s, *next;
	struct eproxy *x;
	struct esvc *svc;

	if (paused_until != 0 && now >= paused_until) {
		paused_until = 0;
		listeners_set(EPOLLIN);
	}
	while ((x = TAILQ_FIRST(&proxies)) != NULL && now >= x->deadline)
		proxy_fail(x, "timeout: no PROXY header within 5 s");
	for (svc = svcs; svc != NULL; svc = svc->next)
		if (svc->deny_held > 0 && now / 1000 != svc->deny_sec)
			svc_deny_flush(svc);
	pol_tick(now);
	while ((s = TAILQ_FIRST(&pending)) != NULL && now >= s->deadline) {
		lim_hit(LIM_CLAIM_TIMEOUT, "session %llu from %s not claimed "
		    "within %llu ms", (unsigned long long)s->id, s->client,
		    (unsigned long long)lim.claim_ms);
		sess_drop_pending(s, "claim-timeout");
	}
	/* Idle sessions: a scan a second is cheap next to the relaying. */
	if (now - last_idle_scan < 1000)
		return;
	last_idle_scan = now;
	for (s = TAILQ_FIRST(&active); s != NULL; s = next) {
		next = TAILQ_NEXT(s, q);
		if (s->idle_ms == 0 || now - (s->ms != NULL ?
		    s->ms->last_active : relay_last_active(&s->relay)) < s->idle_ms)
			continue;
		lim_hit(LIM_IDLE, "session %llu from %s idle for %llu s",
		    (unsigned long long)s->id, s->client,
		    (unsigned long long)(s->idle_ms / 1000));
		sess_end_active(s, "idle-timeout", 1);
	}
}

/* --- services --------------------------------------------------------- */

void
svc_open(struct econn *agent, const struct msg *def)
{
	const char *name = def->service, *listen = def->listen;
	struct esvc *s = svc_find(name), *o;
	struct net_addr a;
	struct msg cmp;
	char err[400];
	size_t i;
	int fd;

	/* memcpy, not assignment: padding must compare equal too. */
	memcpy(&cmp, def, sizeof(cmp));
	cmp.priority = 0;
	cmp.have &= ~FA_BIT(FA_PRIORITY);
	if (s != NULL) {
		if (memcmp(&s->def, &cmp, sizeof(cmp)) != 0) {
			snprintf(err, sizeof(err), "service %s is already open on "
			    "%s with another definition (from agent %s); the edge "
			    "keeps the first", name, s->listen, s->def_agent);
			log_warn("agent %s: service %s refused: conflicting "
			    "definition (listen %s); keeping the one from agent "
			    "%s on %s", agent->name, name, listen, s->def_agent,
			    s->listen);
			svc_result(agent, name, 0, err);
			return;
		}
		for (i = 0; i < s->nagents; i++)
			if (s->agents[i].conn == agent) {
				if (s->agents[i].priority != def->priority)
					log_info("service %s on %s agent=%s "
					    "priority=%u (was %u)", name, listen,
					    agent->name, def->priority,
					    s->agents[i].priority);
				s->agents[i].priority = def->priority;
				svc_result(agent, name, 1, NULL);
				return;
			}
		if (s->nagents == EDGE_SVC_AGENTS_MAX) {
			log_warn("agent %s: service %s refused: already %d agents",
			    agent->name, name, EDGE_SVC_AGENTS_MAX);
			svc_result(agent, name, 0, "too many agents for this service");
			return;
		}
		s->agents[s->nagents].conn = agent;
		s->agents[s->nagents].priority = def->priority;
		s->nagents++;
		log_info("service %s open on %s agent=%s priority=%u", name,
		    listen, agent->name, def->priority);
		svc_result(agent, name, 1, NULL);
		return;
	}
	for (o = svcs; o != NULL; o = o->next)
		if (strcmp(o->listen, listen) == 0) {
			snprintf(err, sizeof(err), "%s is in use by service %s",
			    listen, o->name);
			log_warn("agent %s: service %s: %s", agent->name, name, err);
			svc_result(agent, name, 0, err);
			return;
		}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		svc_result(agent, name, 0, "out of memory");
		return;
	}
	if (pol_load(&s->pol, def, err, sizeof(err)) == -1) {
		log_warn("agent %s: service %s: %s", agent->name, name, err);
		svc_result(agent, name, 0, err);
		free(s);
		return;
	}
	if (net_parse(listen, &a, err, sizeof(err)) == -1 ||
	    (fd = net_listen(&a, 1024, err, sizeof(err))) == -1) {
		log_warn("agent %s: service %s on %s: %s", agent->name, name,
		    listen, err);
		svc_result(agent, name, 0, err);
		free(s);
		return;
	}
	if (ftp_svc_open(name, def, &a, &s->ftp, err, sizeof(err)) == -1) {
		log_warn("agent %s: service %s on %s: %s", agent->name, name,
		    listen, err);
		close(fd);
		svc_result(agent, name, 0, err);
		free(s);
		return;
	}
	ev_io_init(&s->io, fd, svc_accept);
	s->local = a;
	s->local_fixed = !net_is_any(&a);
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->listen, sizeof(s->listen), "%s", listen);
	memcpy(&s->def, &cmp, sizeof(s->def));
	snprintf(s->def_agent, sizeof(s->def_agent), "%s", agent->name);
	s->agents[0].conn = agent;
	s->agents[0].priority = def->priority;
	s->nagents = 1;
	if (ev_set(&s->io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	s->next = svcs;
	svcs = s;
	log_info("service %s open on %s agent=%s priority=%u", name, listen,
	    agent->name, def->priority);
	svc_result(agent, name, 1, NULL);
}

static void
svc_remove_agent(struct esvc *s, struct econn *agent)
{
	size_t i;

	for (i = 0; i < s->nagents; i++)
		if (s->agents[i].conn == agent) {
			s->agents[i] = s->agents[--s->nagents];
			break;
		}
	if (s->nagents == 0)
		svc_free(s);
}

void
svc_withdraw(struct econn *agent, const char *name)
{
	struct esvc *s = svc_find(name);

	if (s != NULL)
		svc_remove_agent(s, agent);
}

void
svc_withdraw_all(struct econn *agent)
{
	struct esvc *s, *next;

	for (s = svcs; s != NULL; s = next) {
		next = s->next;
		svc_remove_agent(s, agent);
	}
}

void
svc_shutdown(void)
{
	struct esess *s;
	struct eproxy *x;
	uint64_t n = 0;

	while ((s = TAILQ_FIRST(&pending)) != NULL)
		sess_drop_pending(s, "edge-stopping");
	while ((s = TAILQ_FIRST(&active)) != NULL) {
		sess_end_active(s, "edge-stopping", 1);
		n++;
	}
	while ((x = TAILQ_FIRST(&proxies)) != NULL)
		proxy_drop(x);
	while (svcs != NULL)
		svc_free(svcs);
	if (n > 0)
		log_info("%llu running sessions cut", (unsigned long long)n);
}

void
svc_stats(char *out, size_t outlen)
{
	uint64_t in = edge_stats.bytes_from_clients;
	uint64_t outb = edge_stats.bytes_to_clients;
	uint64_t nactive = 0, nsvc = 0, npend = 0;
	uint64_t joined = edge_stats.sessions_joined;
	struct esess *s;
	struct esvc *v;
	size_t i;

	/* Running sessions count too, so a long transfer shows as it goes.
	 * A pooled session counts as joined once its agent has sent a byte
	 * (its backend answered) or when it ends unrefused. */
	TAILQ_FOREACH(s, &active, q) {
		in += sess_bytes(s, 0);
		outb += sess_bytes(s, 1);
		nactive++;
		if (s->pooled && sess_bytes(s, 1) > 0)
			joined++;
	}
	for (v = svcs; v != NULL; v = v->next) {
		nsvc++;
		npend += v->npending;
	}
	const struct { const char *name; uint64_t v; } kv[] = {
		{ "sessions_accepted_total", edge_stats.sessions_accepted },
		{ "sessions_joined_total", joined },
		{ "sessions_claim_timeout_total", lim_counter[LIM_CLAIM_TIMEOUT] },
		{ "sessions_refused_total", edge_stats.sessions_refused },
		{ "sessions_agent_lost_total", edge_stats.sessions_agent_lost },
		{ "sessions_bad_secret_total", edge_stats.sessions_bad_secret },
		{ "bytes_from_clients_total", in },
		{ "bytes_to_clients_total", outb },
		{ "sessions_active", nactive },
		{ "sessions_pending", npend },
		{ "services_open", nsvc },
	};
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		(void)stats_append(out, outlen, kv[i].name, kv[i].v);
	ftp_stats(out, outlen);
}
