/* edge_ctl.c - the control port: accept, TLS or plain by the first byte,
 * identification by the first frame, and agents' control channels. */
#include "edge/edge.h"
#include "common/log.h"
#include "common/stats.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

static struct ev_io ctl_lio;
static struct econn *conns;	/* every econn, incoming or agent */
static uint64_t nincoming;	/* of which not yet identified */
static uint64_t nplain_agents;	/* agents that use plain data links */

static int econn_ready(struct fconn *fc);
static int econn_frame(struct fconn *fc, struct msg *m);
static void econn_lost(struct fconn *fc, const char *why);

static const struct fconn_ops econn_ops = {
	econn_ready, econn_frame, econn_lost,
};

static void
econn_unlink(struct econn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (conns == c)
		conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

void
econn_free(struct econn *c)
{
	if (c->state == EC_INCOMING)
		nincoming--;
	OPENSSL_cleanse(c->greet, sizeof(c->greet));
	econn_unlink(c);
	fconn_close(&c->fc);
	out_pol_unref(c->out_pol);
	OPENSSL_cleanse(c->out_token, sizeof(c->out_token));
	OPENSSL_cleanse(c->pool_key, sizeof(c->pool_key));
	free(c);
}

struct econn *
ctl_agent_by_token(const uint8_t *tok)
{
	struct econn *c;

	for (c = conns; c != NULL; c = c->next)
		if (c->state == EC_AGENT && c->out_pol != NULL &&
		    CRYPTO_memcmp(c->out_token, tok, FRAME_SECRET) == 0)
			return c;
	return NULL;
}

struct econn *
ctl_agent_by_kid(uint64_t kid)
{
	struct econn *c;

	for (c = conns; c != NULL; c = c->next)
		if (c->state == EC_AGENT && c->pool_kid == kid)
			return c;
	return NULL;
}

void
ctl_identified(struct econn *c, enum econn_state st)
{
	if (c->state == EC_INCOMING)
		nincoming--;
	c->state = st;
}

void
econn_drop(struct econn *c, const char *why)
{
	if (c->state == EC_AGENT) {
		log_warn("agent %s lost: %s", c->name, why);
		if (edge_stats.agents_connected > 0)
			edge_stats.agents_connected--;
		if (c->plain && nplain_agents > 0)
			nplain_agents--;
		svc_withdraw_all(c);
		sess_agent_lost(c);
		pool_agent_lost(c);
		emux_agent_lost(c);
	} else if (c->state == EC_POOL) {
		log_debug("pooled data link from %s closed: %s", c->peer, why);
		pool_link_lost(c);
	} else if (c->state == EC_OUT) {
		log_warn("outbound data link from %s: %s", c->peer, why);
		out_link_lost(c);
	} else {
		log_warn("connection from %s refused: %s", c->peer, why);
		edge_stats.control_refused++;
	}
	econn_free(c);
}

static int
econn_ready(struct fconn *fc)
{
	(void)fc;
	return 0;
}

static void
econn_lost(struct fconn *fc, const char *why)
{
	if (strncmp(why, "protocol error", 14) == 0)
		lim_counter[LIM_FRAME]++;
	econn_drop(fc->owner, why);
}

static int
econn_hello(struct econn *c, const struct msg *m)
{
	struct msg r;

	if (m->version < 1) {
		fconn_send_error(&c->fc, "unsupported protocol version");
		econn_drop(c, "unsupported protocol version");
		return -1;
	}
	ctl_identified(c, EC_AGENT);
	edge_stats.agents_connected++;
	snprintf(c->name, sizeof(c->name), "%s", m->name);
	msg_init(&r, FT_HELLO_OK);
	r.version = FRAME_VERSION;
	r.have |= FA_BIT(FA_VERSION);
	msg_set_str(&r, FA_NAME, edge_conf.name);
	/* An agent that asks for plain data links gets them, and says so in
	 * the answer: an older edge would not, and the agent stays on TLS. */
	if ((m->have & FA_BIT(FA_DATA_LINK)) && m->data_link == DATA_LINK_PLAIN) {
		c->plain = 1;
		nplain_agents++;
		r.data_link = DATA_LINK_PLAIN;
		r.have |= FA_BIT(FA_DATA_LINK);
		/* Its keyed pooled links may carry one session after
		 * another (relay.h, RELAY_FRAMED). */
		r.link_reuse = 1;
		r.have |= FA_BIT(FA_LINK_REUSE);
	}
	/* The key that proves this agent's pooled links (poolkey.h); it
	 * lives as long as this connection. */
	if (RAND_bytes(c->pool_key, sizeof(c->pool_key)) != 1 ||
	    RAND_bytes((uint8_t *)&c->pool_kid, sizeof(c->pool_kid)) != 1)
		log_fatal("RAND_bytes failed");
	memcpy(r.secret, c->pool_key, sizeof(r.secret));
	r.session = c->pool_kid;
	r.have |= FA_BIT(FA_SECRET) | FA_BIT(FA_SESSION);
	log_info("agent %s connected from %s data_link=%s", c->name, c->peer,
	    c->plain ? "plain" : "tls");
	if (fconn_send(&c->fc, &r) == -1) {
		OPENSSL_cleanse(r.secret, sizeof(r.secret));
		econn_drop(c, "cannot send HELLO_OK");
		return -1;
	}
	OPENSSL_cleanse(r.secret, sizeof(r.secret));
	return 0;
}

/* STATS_REQ: answer with every counter. A counter that does not fit is
 * left out (the frame has room for far more than there are). */
static void
econn_stats(struct econn *c)
{
	struct msg r;
	const struct { const char *name; uint64_t v; } kv[] = {
		{ "control_accepted_total", edge_stats.control_accepted },
		{ "control_refused_total", edge_stats.control_refused },
		{ "data_links_refused_total", edge_stats.data_links_refused },
		{ "data_links_plain_total", edge_stats.data_links_plain },
		{ "agents_connected", edge_stats.agents_connected },
		{ "relay_thread_handoffs_total", relay_threads_handoffs() },
	};
	size_t i;

	msg_init(&r, FT_STATS);
	char name[STATS_NAME_MAX];
	int k;

	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		(void)stats_append(r.stats, sizeof(r.stats), kv[i].name, kv[i].v);
	svc_stats(r.stats, sizeof(r.stats));
	pool_stats(r.stats, sizeof(r.stats));
	emux_stats(r.stats, sizeof(r.stats));
	/* How often each limit was hit: limit_sessions_total, ... */
	for (k = 0; k < LIM_COUNT; k++) {
		snprintf(name, sizeof(name), "limit_%s_total", lim_name(k));
		(void)stats_append(r.stats, sizeof(r.stats), name, lim_counter[k]);
	}
	r.have |= FA_BIT(FA_STATS);
	(void)fconn_send(&c->fc, &r);
}

static int
econn_frame(struct fconn *fc, struct msg *m)
{
	struct econn *c = fc->owner;
	struct msg r;
	char why[128];

	if (c->state == EC_INCOMING) {
		if (m->type == FT_DATA_HELLO) {
			/* sess_claim detaches or frees c either way. */
			sess_claim(c, m);
			return -1;
		}
		if (m->type == FT_POOL_HELLO) {
			/* pool_hello parks or frees c. */
			pool_hello(c, m);
			return -1;
		}
		if (m->type == FT_MUX_HELLO) {
			/* c becomes a multiplexed link or is freed. */
			pool_mux_hello(c, m);
			return -1;
		}
		/* A plain link cannot get here with anything else (see
		 * plink_greeting); the control channel is TLS only. */
		if (m->type == FT_HELLO && !c->plain)
			return econn_hello(c, m);
		if (m->type == FT_OUT_OPEN && !c->plain) {
			/* An outbound data link: greeted, so no longer counted
			 * as a handshake in progress. out_open may free c. */
			ctl_identified(c, EC_OUT);
			out_open(c, m);
			return -1;
		}
		snprintf(why, sizeof(why), "expected HELLO, DATA_HELLO, "
		    "POOL_HELLO, MUX_HELLO or OUT_OPEN, got %s", frame_type_name(m->type));
		econn_drop(c, why);
		return -1;
	}
	if (c->state == EC_OUT || c->state == EC_POOL) {
		snprintf(why, sizeof(why), "unexpected %s frame on %s data "
		    "link", frame_type_name(m->type),
		    c->state == EC_OUT ? "an outbound" : "a pooled");
		econn_drop(c, why);
		return -1;
	}
	switch (m->type) {
	case FT_SVC_OPEN:
		svc_open(c, m);
		return 0;
	case FT_SVC_CLOSE:
		svc_withdraw(c, m->service);
		return 0;
	case FT_SESS_REFUSE:
		sess_refused(c, m);
		return 0;
	case FT_STATS_REQ:
		econn_stats(c);
		return 0;
	case FT_OUT_POLICY:
		out_policy(c, m);
		return 0;
	case FT_POOL_REQ:
		pool_grant(c);
		return 0;
	case FT_FTP_PORTS:
		ftp_ports(c, m);
		return 0;
	case FT_PING:
		msg_init(&r, FT_PONG);
		r.nonce = m->nonce;
		r.have |= FA_BIT(FA_NONCE);
		(void)fconn_send(&c->fc, &r);
		return 0;
	case FT_ERROR:
		snprintf(why, sizeof(why), "agent said: %.100s", m->text);
		econn_drop(c, why);
		return -1;
	default:
		snprintf(why, sizeof(why), "unexpected %s frame",
		    frame_type_name(m->type));
		econn_drop(c, why);
		return -1;
	}
}

/* Start TLS on an incoming connection whose first byte is 0x16. */
static void
econn_start_tls(struct econn *c)
{
	int fd = c->fc.io.fd;
	SSL *ssl;

	ev_del(&c->fc.io);
	if ((ssl = tlsx_new(edge_tls, fd, 1, NULL)) == NULL) {
		econn_drop(c, "out of memory");
		return;
	}
	/* Whether this is a data link is known only after the handshake,
	 * when kernel TLS would be set up: ask for it on every connection
	 * (the control channel reads and writes through OpenSSL either way). */
	tlsx_data_link(ssl);
	if (fconn_start(&c->fc, fd, ssl, &econn_ops, c) == -1) {
		c->fc.ssl = ssl;
		econn_drop(c, strerror(errno));
	}
}

/* Read the plain greeting with exact reads, so that not one byte after
 * it is taken from the socket. Returns 1 with m filled, 0 to wait for
 * more, -1 after c was dropped. */
static int
econn_plain_greeting(struct econn *c, struct msg *m)
{
	const char *why;
	char text[128];
	size_t need;
	ssize_t n;
	int r;

	for (;;) {
		r = plink_greeting(c->greet, c->greet_have, m, &need, &why);
		if (r == 0)
			return 1;
		if (r == -1) {
			lim_counter[LIM_FRAME]++;
			snprintf(text, sizeof(text), "plain data link: %s", why);
			econn_drop(c, text);
			return -1;
		}
		/* An edge none of whose agents uses plain links never reads
		 * (or answers) a plaintext frame on its control port. */
		if (c->greet_have >= PLINK_MAGIC_LEN && nplain_agents == 0) {
			econn_drop(c, "plain data link, but no agent uses plain "
			    "data links");
			return -1;
		}
		/* The magic and the frame header come together: ask for
		 * both at once (still no byte beyond the greeting). */
		if (need == PLINK_MAGIC_LEN && nplain_agents > 0)
			need = PLINK_MAGIC_LEN + FRAME_HDR;
		n = recv(c->fc.io.fd, c->greet + c->greet_have,
		    need - c->greet_have, 0);
		if (n == 0) {
			econn_drop(c, "closed during the greeting");
			return -1;
		}
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return 0;
			econn_drop(c, strerror(errno));
			return -1;
		}
		c->greet_have += (size_t)n;
	}
}

/* The first bytes of a new connection: 0x16 starts TLS (the control
 * channel and TLS data links), the magic "SPD1" a plain data link. */
static void
econn_sniff(struct ev_io *io, uint32_t events)
{
	struct econn *c = ((struct fconn *)(void *)io)->owner;
	struct msg m;
	uint8_t first;
	ssize_t n;
	int fd = io->fd;

	(void)events;
	if (c->greet_have == 0) {
		n = recv(fd, &first, 1, MSG_PEEK);
		if (n == 0) {
			econn_drop(c, "closed before the greeting");
			return;
		}
		if (n == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				econn_drop(c, strerror(errno));
			return;
		}
		if (plink_sniff(&first, 1) == PLINK_TLS) {
			econn_start_tls(c);
			return;
		}
	}
	if (econn_plain_greeting(c, &m) != 1)
		return;
	OPENSSL_cleanse(c->greet, sizeof(c->greet));
	c->plain = 1;
	ev_del(io);
	if (fconn_start(&c->fc, fd, NULL, &econn_ops, c) == -1) {
		econn_drop(c, strerror(errno));
		return;
	}
	/* Nothing more is read before the link is joined or parked. */
	c->fc.max_frame = PLINK_GREET_MAX;
	(void)econn_frame(&c->fc, &m);
	OPENSSL_cleanse(&m, sizeof(m));
}

struct econn *
ctl_link_again(int fd, int registered, const char *peer)
{
	struct econn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return NULL;
	}
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->state = EC_POOL;
	c->plain = 1;
	c->reuse = 1;
	if (fconn_start_handed(&c->fc, fd, NULL, &econn_ops, c,
	    registered) == -1) {
		close(fd);
		free(c);
		return NULL;
	}
	/* As after the greeting: nothing is read before the link is
	 * joined again, and nothing large ever. */
	c->fc.max_frame = PLINK_GREET_MAX;
	c->next = conns;
	if (conns != NULL)
		conns->prev = c;
	conns = c;
	return c;
}

static void
ctl_accept(struct ev_io *io, uint32_t events)
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
		c->state = EC_INCOMING;
		edge_stats.control_accepted++;
		c->deadline = ev_now() + lim.handshake_ms;
		/* TLS or plain is decided by the first byte (econn_sniff);
		 * until then the fconn only holds the fd. */
		ev_io_init(&c->fc.io, fd, econn_sniff);
		c->fc.owner = c;
		if (ev_set(&c->fc.io, EPOLLIN) == -1) {
			log_warn("control accept: %s", strerror(errno));
			close(fd);
			free(c);
			continue;
		}
		c->next = conns;
		if (conns != NULL)
			conns->prev = c;
		conns = c;
		nincoming++;
		log_debug("connection from %s", c->peer);
	}
}

int
ctl_listen(const char *addr)
{
	struct net_addr a;
	char err[256];
	int fd;

	if (net_parse(addr, &a, err, sizeof(err)) == -1) {
		log_err("--control: %s", err);
		return -1;
	}
	if ((fd = net_listen(&a, 512, err, sizeof(err))) == -1) {
		log_err("control %s: %s", addr, err);
		return -1;
	}
	ev_io_init(&ctl_lio, fd, ctl_accept);
	if (ev_set(&ctl_lio, EPOLLIN) == -1) {
		close(fd);
		return -1;
	}
	log_info("control listening on %s", addr);
	return 0;
}

void
ctl_pause(int paused)
{
	if (ev_set(&ctl_lio, paused ? 0 : EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
}

void
ctl_tick(uint64_t now)
{
	struct econn *c, *next;

	/* Dropping an agent frees its parked links too, which may include
	 * next: start over after that (it is rare). */
restart:
	for (c = conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == EC_INCOMING && now > c->deadline) {
			lim_hit(LIM_HANDSHAKE_TIMEOUT, "connection from %s: no "
			    "greeting within %llu ms", c->peer,
			    (unsigned long long)lim.handshake_ms);
			econn_drop(c, "no greeting within the handshake time-out");
		}
		else if (c->state == EC_AGENT &&
		    now - c->fc.last_rx > EDGE_HEARTBEAT_DEAD_MS) {
			econn_drop(c, "heartbeat timed out");
			goto restart;
		}
	}
	pool_tick(now);
	emux_tick(now);
}

void
ctl_shutdown(void)
{
	struct econn *c, *next;

	/* Agents last: dropping one closes its parked links, which are in
	 * this list too. */
	for (c = conns; c != NULL; c = next) {
		next = c->next;
		if (c->state != EC_AGENT && c->state != EC_POOL)
			econn_drop(c, "edge stopping");
	}
	while (conns != NULL)
		econn_drop(conns, "edge stopping");
	ev_del(&ctl_lio);
	close(ctl_lio.fd);
}
