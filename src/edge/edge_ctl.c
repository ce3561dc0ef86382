/* edge_ctl.c - the control port (edge_ctl.h).
 *
 * A connection arrives, is told TLS or plain by its first byte (0x16
 * starts a TLS record; a frame starts with 0x00, the high byte of its
 * type), and is identified by its first frame: HELLO (over TLS only)
 * makes it an agent's control channel, LINK_HELLO a data link
 * (edge_link.c). Until then it counts against --max-handshakes and
 * --handshake-timeout, and its frames may be no larger than a greeting
 * is. */
#include "edge/edge_ctl.h"
#include "edge/edge_ban.h"
#include "edge/edge_ftp.h"
#include "edge/edge_handover.h"
#include "edge/edge_limit.h"
#include "edge/edge_link.h"
#include "edge/edge_lis.h"
#include "edge/edge_out.h"
#include "edge/edge_sess.h"
#include "edge/edge_stats.h"
#include "common/hosock.h"
#include "common/log.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#define HEARTBEAT_DEAD_MS	6000
#define GREETING_MAX		512	/* HELLO or LINK_HELLO payload */

extern SSL_CTX *edge_tls;
extern const char *edge_name;

/* A connection not identified yet. */
struct econn {
	struct fconn	 fc;
	char		 peer[NET_ADDRSTR];
	uint64_t	 deadline;	/* its first frame is due */
	LIST_ENTRY(econn) entry;
};

static struct ev_io ectl_lio = { -1, NULL, 0, 0 };
static LIST_HEAD(, econn) incoming = LIST_HEAD_INITIALIZER(incoming);
static LIST_HEAD(, eagent) agents = LIST_HEAD_INITIALIZER(agents);
static uint64_t nincoming;	/* connections not identified yet */
static uint64_t nplain_agents;	/* agents whose data links are plain */
static uint64_t serials;

/* --- agents' control channels ---------------------------------------------- */

/* The agent's control channel ends, why (an fconn_ops lost callback). */
static void
agent_drop(struct fconn *fc, const char *why)
{
	struct eagent *a = fc->owner;

	/* Draining, agents leave as told (DRAINING). */
	log_msg(eho_draining() ? LOG_INFO : LOG_WARN, "agent %s lost: %s",
	    a->name, why);
	LIST_REMOVE(a, entry);
	edge_stats.agents_connected--;
	if (a->plain)
		nplain_agents--;
	esvc_withdraw_all(a);
	elink_agent_lost(a);
	esess_agent_lost(a);
	eout_agent_lost(a);
	fconn_close(&a->fc);
	OPENSSL_cleanse(a->key, sizeof(a->key));
	free(a);
}

static int
agent_frame(struct fconn *fc, struct msg *m)
{
	struct eagent *a = fc->owner;
	struct msg *r;
	char why[160];

	switch (m->type) {
	case FT_SVC_OPEN:
		/* Handed over: the new process opens services. */
		if (!eho_draining())
			esvc_open(a, m);
		return 0;
	case FT_SVC_CLOSE:
		esvc_withdraw(a, m->service);
		return 0;
	case FT_PING:
		/* m is done with: answer in it. */
		m->type = FT_PONG;
		m->have = FA_BIT(FA_NONCE);
		ectl_send(a, m);
		return 0;
	case FT_STATS_REQ:
		if ((r = malloc(sizeof(*r))) != NULL) {
			estats_msg(r);
			ectl_send(a, r);
			free(r);
		}
		return 0;
	case FT_FTP_PORTS:
		eftp_ports(a, m);
		return 0;
	case FT_OUT_POLICY:
		eout_policy(a, m);
		return 0;
	case FT_OUT_REQ:
		eout_request(a, m);
		return 0;
	case FT_FTP_DIAL:
		eout_ftp_dial(a, m);
		return 0;
	case FT_BAN:
	case FT_UNBAN:
	case FT_BAN_SYNC:
		if (eban_frame(a, m, why, sizeof(why)) == 0)
			return 0;
		break;
	case FT_ERROR:
		snprintf(why, sizeof(why), "agent said: %.100s", m->text);
		break;
	default:
		snprintf(why, sizeof(why), "unexpected %s frame",
		    frame_type_name(m->type));
	}
	agent_drop(fc, why);
	return -1;
}

static const struct fconn_ops agent_ops = { NULL, agent_frame, agent_drop };

/* --- connections being identified ----------------------------------------- */

static void
conn_free(struct econn *c)
{
	LIST_REMOVE(c, entry);
	nincoming--;
	fconn_close(&c->fc);
	free(c);
}

/* The connection is refused, why (an fconn_ops lost callback too). */
static void
conn_drop(struct fconn *fc, const char *why)
{
	struct econn *c = fc->owner;

	log_warn("connection from %s refused: %s", c->peer, why);
	edge_stats.control_refused++;
	conn_free(c);
}

/* HELLO: c becomes an agent's control channel. */
static void
agent_hello(struct econn *c, const struct msg *m)
{
	struct eagent *a;
	struct buf pending;
	struct msg r;
	SSL *ssl;
	int fd;

	if (m->version < 1) {
		fconn_send_error(&c->fc, "unsupported protocol version");
		conn_drop(&c->fc, "unsupported protocol version");
		return;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL) {
		conn_drop(&c->fc, "out of memory");
		return;
	}
	snprintf(a->name, sizeof(a->name), "%s", m->name);
	snprintf(a->peer, sizeof(a->peer), "%s", c->peer);
	a->plain = m->data_link == DATA_LINK_PLAIN;	/* absent: 0, TLS */
	a->links_keep = (m->have & FA_BIT(FA_LINKS_KEEP)) &&
	    m->links_keep < lim.max_links ? m->links_keep : lim.max_links;
	a->instance = m->instance;
	LIST_INIT(&a->parked);
	fconn_detach(&c->fc, &fd, &ssl, &pending);
	conn_free(c);
	/* It cannot fail: fconn_resume watches the fd again, and a failed
	 * epoll_ctl there is fatal (fconn.c). */
	(void)fconn_resume(&a->fc, fd, ssl, &pending, &agent_ops, a);
	/* The key that proves its data links; it lives as long as this
	 * connection. */
	if (RAND_bytes(a->key, sizeof(a->key)) != 1 ||
	    RAND_bytes((uint8_t *)&a->kid, sizeof(a->kid)) != 1)
		log_fatal("RAND_bytes failed");
	LIST_INSERT_HEAD(&agents, a, entry);
	a->serial = ++serials;	/* its bans are told apart by it */
	esess_agent_back(a);
	edge_stats.agents_connected++;
	if (a->plain)
		nplain_agents++;
	msg_init(&r, FT_HELLO_OK);
	msg_set_int(&r, FA_VERSION, FRAME_VERSION);
	msg_set_str(&r, FA_NAME, edge_name);
	memcpy(r.link_key, a->key, sizeof(r.link_key));
	msg_have(&r, FA_LINK_KEY);
	msg_set_int(&r, FA_KEY_ID, a->kid);
	log_info("agent %s connected from %s data_link=%s", a->name, a->peer,
	    a->plain ? "plain" : "tls");
	ectl_send(a, &r);
	OPENSSL_cleanse(r.link_key, sizeof(r.link_key));
	if (eho_draining()) {
		/* It reached this process in the instant of a hand-over. */
		msg_init(&r, FT_DRAINING);
		ectl_send(a, &r);
	}
}

static int
conn_frame(struct fconn *fc, struct msg *m)
{
	struct econn *c = fc->owner;
	struct buf pending;
	char why[128];
	SSL *ssl;
	int fd;

	if (m->type == FT_LINK_HELLO) {
		fconn_detach(fc, &fd, &ssl, &pending);
		elink_hello(fd, ssl, &pending, c->peer, m);
		conn_free(c);
		return -1;
	}
	/* The control channel is TLS only. */
	if (m->type == FT_HELLO && fc->ssl != NULL) {
		agent_hello(c, m);
		return -1;
	}
	snprintf(why, sizeof(why), fc->ssl != NULL ? "expected HELLO or "
	    "LINK_HELLO, got %s" : "a plain connection must start with "
	    "LINK_HELLO, got %s", frame_type_name(m->type));
	conn_drop(fc, why);
	return -1;
}

static const struct fconn_ops conn_ops = { NULL, conn_frame, conn_drop };

/* The first byte of a new connection says TLS (the control channel and
 * multiplexed links) or a plain data link's LINK_HELLO in the clear. */
static void
conn_sniff(struct ev_io *io, uint32_t events)
{
	struct fconn *fc = (struct fconn *)(void *)io;
	SSL *ssl = NULL;
	uint8_t first;
	ssize_t n;
	int fd = io->fd;

	(void)events;
	n = recv(fd, &first, 1, MSG_PEEK);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if (n <= 0) {
		conn_drop(fc, n == 0 ? "closed before the greeting" :
		    strerror(errno));
		return;
	}
	/* An edge none of whose agents uses plain links never reads (or
	 * answers) a plaintext frame on its control port. */
	if (first != 0x16 && nplain_agents == 0) {
		conn_drop(fc, "plaintext, but no agent uses plain data links");
		return;
	}
	ev_del(io);
	if (first == 0x16 && (ssl = tlsx_new(edge_tls, fd, 1, NULL)) == NULL) {
		conn_drop(fc, "out of memory");
		return;
	}
	/* On failure fc holds ssl already: conn_drop frees it. */
	if (fconn_start(fc, fd, ssl, &conn_ops, fc->owner) == -1) {
		conn_drop(fc, strerror(errno));
		return;
	}
	fc->max_frame = fconn_max_frame < GREETING_MAX ? fconn_max_frame :
	    GREETING_MAX;
}

static void
ectl_accept(struct ev_io *io, uint32_t events)
{
	struct net_addr peer;
	struct econn *c;
	char ip[NET_ADDRSTR];
	int fd, i;

	(void)events;
	for (i = 0; i < 64; i++) {
		if ((fd = edge_accept(io->fd, &peer, "control")) == -1)
			return;
		if (nincoming >= lim.max_handshakes) {
			net_fmt((struct sockaddr *)&peer.ss, ip, sizeof(ip));
			lim_hit(LIM_HANDSHAKES, "connection from %s refused: %llu "
			    "connections already in handshake", ip,
			    (unsigned long long)nincoming);
			close(fd);
			continue;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			log_warn("control accept: out of memory");
			close(fd);
			continue;
		}
		net_fmt((struct sockaddr *)&peer.ss, c->peer, sizeof(c->peer));
		edge_stats.control_accepted++;
		c->deadline = ev_now() + lim.handshake_ms;
		LIST_INSERT_HEAD(&incoming, c, entry);
		nincoming++;
		/* TLS or plain is decided by the first byte (conn_sniff);
		 * until then the fconn only holds the fd. */
		ev_io_init(&c->fc.io, fd, conn_sniff);
		c->fc.owner = c;
		if (ev_set(&c->fc.io, EPOLLIN) == -1) {
			log_warn("control accept: %s", strerror(errno));
			conn_free(c);
			continue;
		}
		log_debug("connection from %s", c->peer);
	}
}

void
ectl_send(struct eagent *a, const struct msg *m)
{
	(void)fconn_send(&a->fc, m);
}

struct eagent *
ectl_agent_find(const char *name, uint64_t instance)
{
	struct eagent *a;

	LIST_FOREACH(a, &agents, entry)
		if (a->instance == instance && strcmp(a->name, name) == 0)
			return a;
	return NULL;
}

struct eagent *
ectl_agent_by_kid(uint64_t kid)
{
	struct eagent *a;

	LIST_FOREACH(a, &agents, entry)
		if (a->kid == kid)
			return a;
	return NULL;
}

/* --- the port --------------------------------------------------------------- */

int
ectl_listen(const char *addr)
{
	struct net_addr a;
	char err[256];
	int fd;

	if (net_parse(addr, &a, err, sizeof(err)) == -1) {
		log_err("--control: %s", err);
		return -1;
	}
	if ((fd = hosock_claim(&a)) == -1 && eho_took()) {
		/* Agents reconnect to the address they know. */
		log_err("hand-over: the running edge's control port is not %s: "
		    "take over with the same --control", addr);
		return -1;
	}
	if (fd == -1 && (fd = net_listen(&a, 512, err, sizeof(err))) == -1) {
		log_err("control %s: %s", addr, err);
		return -1;
	}
	ev_io_init(&ectl_lio, fd, ectl_accept);
	if (ev_set(&ectl_lio, EPOLLIN) == -1) {
		close(fd);
		return -1;
	}
	log_info("control listening on %s", addr);
	return 0;
}

int
ectl_listener(void)
{
	return ectl_lio.fd;
}

void
ectl_drain(void)
{
	struct eagent *a;
	struct msg m;

	if (ectl_lio.fd != -1) {
		ev_del(&ectl_lio);
		close(ectl_lio.fd);
		ectl_lio.fd = -1;
	}
	msg_init(&m, FT_DRAINING);
	LIST_FOREACH(a, &agents, entry)
		ectl_send(a, &m);
}

void
ectl_pause(int paused)
{
	if (ectl_lio.fd != -1 && ev_set(&ectl_lio, paused ? 0 : EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
}

void
ectl_tick(uint64_t now)
{
	struct econn *c, *cn;
	struct eagent *a, *an;

	for (c = LIST_FIRST(&incoming); c != NULL; c = cn) {
		cn = LIST_NEXT(c, entry);
		if (now <= c->deadline)
			continue;
		lim_hit(LIM_HANDSHAKE_TIMEOUT, "connection from %s: no greeting "
		    "within %llu ms", c->peer, (unsigned long long)lim.handshake_ms);
		conn_drop(&c->fc, "no greeting within the handshake time-out");
	}
	for (a = LIST_FIRST(&agents); a != NULL; a = an) {
		an = LIST_NEXT(a, entry);
		if (now - a->fc.last_rx > HEARTBEAT_DEAD_MS)
			agent_drop(&a->fc, "heartbeat timed out");
		else if (a->fc.failed)
			agent_drop(&a->fc, "peer too slow or write failed");
	}
}

void
ectl_shutdown(void)
{
	while (!LIST_EMPTY(&incoming))
		conn_drop(&LIST_FIRST(&incoming)->fc, "edge stopping");
	while (!LIST_EMPTY(&agents))
		agent_drop(&LIST_FIRST(&agents)->fc, "edge stopping");
	ectl_drain();	/* the port closes; no agent is left to tell */
}
