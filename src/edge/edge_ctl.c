/* edge_ctl.c - the control port: TLS accept, identification by the first
 * frame, and agents' control channels. */
#include "edge/edge.h"
#include "common/log.h"
#include "common/stats.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>

static struct ev_io ctl_lio;
static struct econn *conns;	/* every econn, incoming or agent */
static uint64_t nincoming;	/* of which not yet identified */

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
	econn_unlink(c);
	fconn_close(&c->fc);
	out_pol_unref(c->out_pol);
	OPENSSL_cleanse(c->out_token, sizeof(c->out_token));
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

static void
econn_drop(struct econn *c, const char *why)
{
	if (c->state == EC_AGENT) {
		log_warn("agent %s lost: %s", c->name, why);
		if (edge_stats.agents_connected > 0)
			edge_stats.agents_connected--;
		svc_withdraw_all(c);
		sess_agent_lost(c);
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
	c->state = EC_AGENT;
	nincoming--;
	edge_stats.agents_connected++;
	snprintf(c->name, sizeof(c->name), "%s", m->name);
	msg_init(&r, FT_HELLO_OK);
	r.version = FRAME_VERSION;
	r.have |= FA_BIT(FA_VERSION);
	msg_set_str(&r, FA_NAME, edge_conf.name);
	log_info("agent %s connected from %s", c->name, c->peer);
	if (fconn_send(&c->fc, &r) == -1) {
		econn_drop(c, "cannot send HELLO_OK");
		return -1;
	}
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
		{ "agents_connected", edge_stats.agents_connected },
	};
	size_t i;

	msg_init(&r, FT_STATS);
	char name[STATS_NAME_MAX];
	int k;

	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		(void)stats_append(r.stats, sizeof(r.stats), kv[i].name, kv[i].v);
	svc_stats(r.stats, sizeof(r.stats));
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
		if (m->type == FT_HELLO)
			return econn_hello(c, m);
		if (m->type == FT_DATA_HELLO) {
			/* sess_claim detaches or frees c either way. */
			sess_claim(c, m);
			return -1;
		}
		if (m->type == FT_OUT_OPEN) {
			/* An outbound data link: greeted, so no longer counted
			 * as a handshake in progress. out_open may free c. */
			c->state = EC_OUT;
			nincoming--;
			out_open(c, m);
			return -1;
		}
		snprintf(why, sizeof(why), "expected HELLO, DATA_HELLO or "
		    "OUT_OPEN, got %s", frame_type_name(m->type));
		econn_drop(c, why);
		return -1;
	}
	if (c->state == EC_OUT) {
		snprintf(why, sizeof(why), "unexpected %s frame on an outbound "
		    "data link", frame_type_name(m->type));
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

static void
ctl_accept(struct ev_io *io, uint32_t events)
{
	struct net_addr peer;
	struct econn *c;
	char ip[NET_ADDRSTR];
	SSL *ssl;
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
		if ((c = calloc(1, sizeof(*c))) == NULL ||
		    (ssl = tlsx_new(edge_tls, fd, 1, NULL)) == NULL) {
			log_warn("control accept: out of memory");
			free(c);
			close(fd);
			continue;
		}
		net_fmt((struct sockaddr *)&peer.ss, c->peer, sizeof(c->peer));
		c->state = EC_INCOMING;
		edge_stats.control_accepted++;
		c->deadline = ev_now() + lim.handshake_ms;
		if (fconn_start(&c->fc, fd, ssl, &econn_ops, c) == -1) {
			log_warn("control accept: %s", strerror(errno));
			SSL_free(ssl);
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

	for (c = conns; c != NULL; c = next) {
		next = c->next;
		if (c->state == EC_INCOMING && now > c->deadline) {
			lim_hit(LIM_HANDSHAKE_TIMEOUT, "connection from %s: no "
			    "greeting within %llu ms", c->peer,
			    (unsigned long long)lim.handshake_ms);
			econn_drop(c, "no greeting within the handshake time-out");
		}
		else if (c->state == EC_AGENT &&
		    now - c->fc.last_rx > EDGE_HEARTBEAT_DEAD_MS)
			econn_drop(c, "heartbeat timed out");
	}
}

void
ctl_shutdown(void)
{
	while (conns != NULL)
		econn_drop(conns, "edge stopping");
	ev_del(&ctl_lio);
	close(ctl_lio.fd);
}
