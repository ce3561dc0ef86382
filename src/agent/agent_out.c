/* agent_out.c - the outbound proxies for inside clients (agent_out.h).
 *
 * A request is read without consuming a byte past it (a client may send
 * its first TLS record right behind it), then goes to an edge that took
 * this agent's policy, as OUT_REQ with an id of its own. The edge checks
 * the policy, resolves and dials the destination, and opens the session
 * on a data link (agent_sess.c takes the client with aout_claim), or
 * answers OUT_FAIL. */
#include "agent/agent_out.h"
#include "agent/agent_audit.h"
#include "agent/agent_cfg.h"
#include "agent/agent_edge.h"
#include "agent/agent_handover.h"
#include "agent/httpc.h"
#include "agent/socks.h"
#include "common/log.h"
#include "common/outpol.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define OUT_MAX_SESSIONS	1024

enum aout_proto { AP_SOCKS, AP_HTTP };
enum aout_state { AO_GREETING, AO_AUTH, AO_REQUEST, AO_WAIT };

struct aout {
	struct ev_io	 cio;		/* the client, until the relay owns it */
	uint64_t	 id;
	enum aout_proto	 proto;
	enum aout_state	 state;
	uint8_t		*in;		/* request bytes so far (HTTPC_MAX) */
	size_t		 in_len;
	char		 client[NET_ADDRSTR];
	char		 host[MSG_HOST_MAX];
	uint16_t	 port;
	char		 dest[MSG_HOST_MAX + 16];
	struct aedge	*edge;		/* AO_WAIT: asked there */
	char		 edge_str[CFG_STR];
	uint64_t	 t_start;
	uint64_t	 deadline;
	struct aout	*prev, *next;
};

static struct ev_io socks_lio, http_lio;
static struct aout *outs;
static size_t nouts;
static uint64_t out_next_id = 1;

/* Requests given up before the edge answered (set-up timed out, the edge
 * was lost): the edge's dialler may answer later than we wait, which is
 * no fault. A request that was answered is not here, so a replay of it
 * still is one. */
#define GONE_MAX	OUT_MAX_SESSIONS	/* as many as can wait at once */
static uint64_t gone[GONE_MAX];
static unsigned gone_next;

int
aout_given_up(uint64_t request)
{
	size_t i;

	for (i = 0; i < GONE_MAX; i++)
		if (request != 0 && gone[i] == request)
			return 1;
	return 0;
}

void
aout_audit(const struct aout_record *r)
{
	log_info("outbound %llu closed outcome=%s proto=%s client=%s dest=%s "
	    "addr=%s edge=%s bytes_out=%llu bytes_in=%llu duration=%llu.%03llus "
	    "code=%d reason=%s", (unsigned long long)r->id, r->outcome, r->proto,
	    r->client, r->dest, r->addr, r->edge,
	    (unsigned long long)r->bytes_out, (unsigned long long)r->bytes_in,
	    (unsigned long long)(r->duration_ms / 1000),
	    (unsigned long long)(r->duration_ms % 1000), r->code, r->reason);
	audit_outbound(r);
}

static void
aout_end(struct aout *o, const char *outcome, int code, uint64_t out,
    uint64_t in, const char *reason)
{
	struct aout_record r;

	memset(&r, 0, sizeof(r));
	r.id = o->id;
	r.proto = o->proto == AP_SOCKS ? "socks5" : "http-connect";
	r.client = o->client;
	r.dest = o->dest[0] ? o->dest : "-";
	r.addr = "-";
	r.edge = o->edge_str[0] ? o->edge_str : "-";
	r.bytes_out = out;
	r.bytes_in = in;
	r.duration_ms = ev_now_update() - o->t_start;
	r.outcome = outcome;
	r.code = code;
	r.reason = reason;
	aout_audit(&r);

	if (o->prev != NULL)
		o->prev->next = o->next;
	else
		outs = o->next;
	if (o->next != NULL)
		o->next->prev = o->prev;
	nouts--;
	free(o->in);
	free(o);
}

static int
http_status_for(int code)
{
	switch (code) {
	case SOCKS_OK: return 200;
	case SOCKS_NOT_ALLOWED: return 403;
	case SOCKS_TTL_EXPIRED: return 504;
	default: return 502;
	}
}

/* Best effort: the reply is small and the client's socket is fresh and
 * idle, so it fits in the send buffer; if not, the client sees a close. */
static void
client_send(struct aout *o, const void *p, size_t n)
{
	if (send(o->cio.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n)
		log_debug("outbound %llu: reply to client not fully sent",
		    (unsigned long long)o->id);
}

/* Tell the client no (a SOCKS reply code, or the HTTP status it maps to,
 * or http_status if given), close it, and record the session. */
static void
aout_fail(struct aout *o, int code, int http_status, const char *outcome,
    const char *reason)
{
	uint8_t rep[SOCKS_REPLY_LEN];
	char resp[600];
	size_t n;

	if (o->state == AO_WAIT || code >= 0 || http_status > 0) {
		if (o->proto == AP_SOCKS && code >= 0) {
			n = socks_reply(rep, (uint8_t)code);
			client_send(o, rep, n);
		} else if (o->proto == AP_HTTP) {
			n = httpc_reply(resp, sizeof(resp), http_status > 0 ?
			    http_status : http_status_for(code), reason);
			if (n > 0)
				client_send(o, resp, n);
		}
	}
	ev_del(&o->cio);
	close(o->cio.fd);
	log_warn("outbound %llu %s: client=%s dest=%s: %s",
	    (unsigned long long)o->id, outcome, o->client,
	    o->dest[0] ? o->dest : "-", reason);
	aout_end(o, outcome, code < 0 ? SOCKS_FAIL : code, 0, 0, reason);
}

static void
give_up(struct aout *o, int code, int http_status, const char *reason)
{
	gone[gone_next++ % GONE_MAX] = o->id;
	aout_fail(o, code, http_status, "failed", reason);
}

/* --- reading the request ---------------------------------------------- */

typedef int parse_fn(const uint8_t *p, size_t n, void *out);

static int
parse_greeting(const uint8_t *p, size_t n, void *out)
{
	return socks_greeting(p, n, out);
}

static int
parse_auth(const uint8_t *p, size_t n, void *out)
{
	return socks_auth(p, n, out);
}

static int
parse_request(const uint8_t *p, size_t n, void *out)
{
	return socks_request(p, n, out);
}

struct http_parse {
	struct httpc_req req;
	int		 status;
};

static int
parse_http(const uint8_t *p, size_t n, void *out)
{
	struct http_parse *h = out;

	return httpc_parse(p, n, &h->req, &h->status);
}

/* Look at what the client sent (MSG_PEEK), and take from the socket only
 * the bytes of the message being read: all of them while it is
 * incomplete, exactly up to its end once it is complete, so whatever the
 * client sent after it stays in the socket for the relay. Returns the
 * message length, 0 to wait, -1 if the client went away (*why), -2 if
 * the message is malformed (out says why). */
static int
aout_read(struct aout *o, parse_fn *parse, void *out, const char **why)
{
	ssize_t n, m;
	size_t take;
	int r;

	n = recv(o->cio.fd, o->in + o->in_len, HTTPC_MAX - o->in_len, MSG_PEEK);
	if (n == 0) {
		*why = "client closed before its request was complete";
		return -1;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		*why = strerror(errno);
		return -1;
	}
	r = parse(o->in, o->in_len + (size_t)n, out);
	if (r < 0)
		return -2;
	if (r == 0) {
		if (o->in_len + (size_t)n >= HTTPC_MAX)
			return -2;
		take = (size_t)n;
	} else if ((size_t)r <= o->in_len) {
		*why = "internal: message ended in bytes already taken";
		return -1;
	} else
		take = (size_t)r - o->in_len;
	m = recv(o->cio.fd, o->in + o->in_len, take, 0);
	if (m != (ssize_t)take) {
		*why = "client read failed";
		return -1;
	}
	if (r == 0) {
		o->in_len += take;
		return 0;
	}
	o->in_len = 0;
	return r;
}

/* The whole request is in: ask an edge. */
static void
aout_begin(struct aout *o, const char *host, uint16_t port)
{
	struct aedge *e;
	struct msg m;

	ev_del(&o->cio);
	free(o->in);
	o->in = NULL;
	snprintf(o->host, sizeof(o->host), "%s", host);
	o->port = port;
	snprintf(o->dest, sizeof(o->dest), strchr(host, ':') ? "[%s]:%u" :
	    "%s:%u", host, port);
	o->state = AO_WAIT;
	o->deadline = ev_now() + 2 * agent_cfg.connect_timeout_ms;
	if (!outpol_valid_host(o->host) || port == 0) {
		aout_fail(o, SOCKS_HOST_UNREACH, 400, "refused",
		    "not a valid host name or address");
		return;
	}
	if ((e = aedge_pick_out()) == NULL) {
		aout_fail(o, SOCKS_FAIL, 502, "failed",
		    "no edge ready for outbound sessions");
		return;
	}
	o->edge = e;
	snprintf(o->edge_str, sizeof(o->edge_str), "%s", e->ce->str);
	msg_init(&m, FT_OUT_REQ);
	m.request = o->id;
	msg_set_str(&m, FA_DEST_HOST, o->host);
	m.dest_port = o->port;
	msg_have(&m, FA_REQUEST);
	msg_have(&m, FA_DEST_PORT);
	aedge_send(e, &m);
}

static int
creds_match(const char *user, size_t ulen, const uint8_t *pass, size_t plen)
{
	const struct cfg_outbound *c = &agent_cfg.out;
	size_t cu = strlen(c->user), cp = strlen(c->pass);
	int ok;

	/* Constant time in the bytes compared; lengths are not secret
	 * enough to matter against a client that can retry anyway. */
	ok = ulen == cu && plen == cp;
	ok &= CRYPTO_memcmp(user, c->user, ulen < cu ? ulen : cu) == 0;
	ok &= CRYPTO_memcmp(pass, c->pass, plen < cp ? plen : cp) == 0;
	return ok;
}

static int
http_auth_ok(const struct httpc_req *h)
{
	uint8_t dec[400];
	size_t n = strlen(h->auth), pad = 0, dlen;
	const uint8_t *colon;
	int r;

	if (!h->has_auth || n % 4 != 0 || n / 4 * 3 > sizeof(dec))
		return 0;
	while (pad < 2 && n > pad && h->auth[n - 1 - pad] == '=')
		pad++;
	r = EVP_DecodeBlock(dec, (const unsigned char *)h->auth, (int)n);
	if (r < 0 || (size_t)r < pad)
		return 0;
	dlen = (size_t)r - pad;
	colon = memchr(dec, ':', dlen);
	if (colon == NULL)
		return 0;
	r = creds_match((const char *)dec, (size_t)(colon - dec), colon + 1,
	    dlen - (size_t)(colon - dec) - 1);
	OPENSSL_cleanse(dec, sizeof(dec));
	return r;
}

/* The steps of a client's request: each returns 1 when its message was
 * whole and the next step may read, 0 to wait for more bytes, -1 when
 * o is gone. */
static int
step_greeting(struct aout *o, int auth)
{
	struct socks_greeting g;
	const char *why = NULL;
	uint8_t r2[2];
	int r;

	if ((r = aout_read(o, parse_greeting, &g, &why)) <= 0) {
		if (r < 0)
			aout_fail(o, -1, 0, "failed", r == -1 ? why :
			    "malformed SOCKS5 greeting");
		return r < 0 ? -1 : 0;
	}
	r2[0] = 5;
	r2[1] = auth ? (g.offers_userpass ? SOCKS_M_USERPASS : SOCKS_M_REFUSE) :
	    (g.offers_none ? SOCKS_M_NONE : SOCKS_M_REFUSE);
	client_send(o, r2, 2);
	if (r2[1] == SOCKS_M_REFUSE) {
		aout_fail(o, -1, 0, "refused", auth ? "client offers no "
		    "username/password method" : "client offers no "
		    "no-authentication method");
		return -1;
	}
	o->state = auth ? AO_AUTH : AO_REQUEST;
	return 1;
}

static int
step_auth(struct aout *o)
{
	struct socks_auth a;
	const char *why = NULL;
	uint8_t r2[2];
	int r;

	if ((r = aout_read(o, parse_auth, &a, &why)) <= 0) {
		if (r < 0)
			aout_fail(o, -1, 0, "failed", r == -1 ? why :
			    "malformed SOCKS5 username/password request");
		return r < 0 ? -1 : 0;
	}
	r = creds_match(a.user, a.ulen, a.pass, a.plen);
	OPENSSL_cleanse(&a, sizeof(a));
	r2[0] = 1;
	r2[1] = r ? 0 : 1;
	client_send(o, r2, 2);
	if (!r) {
		aout_fail(o, -1, 0, "refused", "SOCKS5 authentication failed");
		return -1;
	}
	o->state = AO_REQUEST;
	return 1;
}

static int
step_socks_request(struct aout *o)
{
	struct socks_req q;
	const char *why = NULL;
	int r;

	if ((r = aout_read(o, parse_request, &q, &why)) == 0)
		return 0;
	if (r < 0) {
		aout_fail(o, r == -2 && q.rep ? q.rep : -1, 0, "failed",
		    r == -1 ? why : q.rep == SOCKS_CMD_UNSUPPORTED ?
		    "SOCKS5 command not supported" : "malformed SOCKS5 request");
		return -1;
	}
	aout_begin(o, q.host, q.port);
	return -1;	/* o waits for the edge now */
}

static int
step_http_request(struct aout *o, int auth)
{
	struct http_parse h;
	const char *why = NULL;
	int r;

	if ((r = aout_read(o, parse_http, &h, &why)) == 0)
		return 0;
	if (r < 0) {
		aout_fail(o, -1, r == -2 ? h.status : 0, "failed",
		    r == -1 ? why : "malformed CONNECT request");
		return -1;
	}
	if (auth && !http_auth_ok(&h.req)) {
		OPENSSL_cleanse(&h, sizeof(h));
		aout_fail(o, -1, 407, "refused", "proxy authentication failed");
		return -1;
	}
	OPENSSL_cleanse(h.req.auth, sizeof(h.req.auth));
	aout_begin(o, h.req.host, h.req.port);
	return -1;
}

static void
aout_client_io(struct ev_io *io, uint32_t events)
{
	struct aout *o = (struct aout *)(void *)io;
	int auth = agent_cfg.out.user[0] != '\0', r = 1;

	(void)events;
	while (r == 1) {
		switch (o->state) {
		case AO_GREETING:
			r = step_greeting(o, auth);
			break;
		case AO_AUTH:
			r = step_auth(o);
			break;
		case AO_REQUEST:
			r = o->proto == AP_SOCKS ? step_socks_request(o) :
			    step_http_request(o, auth);
			break;
		default:
			return;
		}
	}
}

/* --- what the edge answers ------------------------------------------------ */

static struct aout *
aout_waiting(struct aedge *e, uint64_t request)
{
	struct aout *o;

	for (o = outs; o != NULL; o = o->next)
		if (o->state == AO_WAIT && o->edge == e && o->id == request)
			return o;
	return NULL;
}

int
aout_claim(struct aedge *e, uint64_t request, struct aout_claim *c)
{
	struct aout *o = aout_waiting(e, request);
	char resp[64];
	uint8_t rep[SOCKS_REPLY_LEN];
	size_t n;

	if (o == NULL)
		return -1;
	if (o->proto == AP_SOCKS)
		n = socks_reply(rep, SOCKS_OK);
	else
		n = httpc_reply(resp, sizeof(resp), 200, NULL);
	memset(&c->reply, 0, sizeof(c->reply));
	if (buf_append(&c->reply, o->proto == AP_SOCKS ? (void *)rep :
	    (void *)resp, n, n) == -1) {
		give_up(o, SOCKS_FAIL, 502, "out of memory");
		return -1;
	}
	c->id = o->id;
	c->fd = o->cio.fd;
	c->proto = o->proto == AP_SOCKS ? "socks5" : "http-connect";
	snprintf(c->client, sizeof(c->client), "%s", o->client);
	snprintf(c->dest, sizeof(c->dest), "%s", o->dest);
	c->t_start = o->t_start;
	/* The client is the session's now: its socket stays open. */
	if (o->prev != NULL)
		o->prev->next = o->next;
	else
		outs = o->next;
	if (o->next != NULL)
		o->next->prev = o->prev;
	nouts--;
	free(o->in);
	free(o);
	return 0;
}

void
aout_failed(struct aedge *e, const struct msg *m)
{
	struct aout *o = aout_waiting(e, m->request);
	char why[MSG_TEXT_MAX + 16];
	int code;

	if (o == NULL) {
		if (aout_given_up(m->request))
			log_info("outbound %llu: the edge's answer came after we "
			    "gave up", (unsigned long long)m->request);
		else
			aedge_violation(e, "OUT_FAIL for request %llu, which was "
			    "not asked there", (unsigned long long)m->request);
		return;
	}
	code = m->out_code >= SOCKS_FAIL && m->out_code <=
	    SOCKS_ATYP_UNSUPPORTED ? m->out_code : SOCKS_FAIL;
	snprintf(why, sizeof(why), "edge: %s",
	    (m->have & FA_BIT(FA_TEXT)) ? m->text : "refused");
	aout_fail(o, code, 0, code == SOCKS_NOT_ALLOWED ? "refused" : "failed",
	    why);
}

void
aout_edge_lost(struct aedge *e)
{
	struct aout *o, *next;

	for (o = outs; o != NULL; o = next) {
		next = o->next;
		if (o->state == AO_WAIT && o->edge == e)
			give_up(o, SOCKS_FAIL, 502, "edge lost");
	}
}

/* --- listeners ---------------------------------------------------------- */

static void
aout_accept(struct ev_io *io, uint32_t events)
{
	struct net_addr peer;
	struct aout *o;
	int fd, i;

	(void)events;
	for (i = 0; i < 64; i++) {
		fd = net_accept(io->fd, &peer);
		if (fd == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != ECONNABORTED && errno != EINTR)
				log_warn("outbound accept: %s", strerror(errno));
			return;
		}
		if (nouts >= OUT_MAX_SESSIONS) {
			log_warn("outbound: %d sessions open, client refused",
			    OUT_MAX_SESSIONS);
			close(fd);
			continue;
		}
		if ((o = calloc(1, sizeof(*o))) == NULL ||
		    (o->in = malloc(HTTPC_MAX)) == NULL) {
			log_warn("outbound accept: out of memory");
			free(o);
			close(fd);
			continue;
		}
		o->id = out_next_id++;
		o->proto = io == &socks_lio ? AP_SOCKS : AP_HTTP;
		o->state = o->proto == AP_SOCKS ? AO_GREETING : AO_REQUEST;
		o->t_start = ev_now();
		o->deadline = o->t_start + agent_cfg.connect_timeout_ms;
		net_fmt((struct sockaddr *)&peer.ss, o->client, sizeof(o->client));
		ev_io_init(&o->cio, fd, aout_client_io);
		if (ev_set(&o->cio, EPOLLIN) == -1) {
			log_warn("outbound accept: %s", strerror(errno));
			close(fd);
			free(o->in);
			free(o);
			continue;
		}
		o->next = outs;
		if (outs != NULL)
			outs->prev = o;
		outs = o;
		nouts++;
	}
}

static int
aout_listen(struct ev_io *lio, const char *addr, const char *what)
{
	struct net_addr a;
	char err[256];
	int fd;

	if (net_parse(addr, &a, err, sizeof(err)) == -1 ||
	    ((fd = aho_listener(&a)) == -1 &&
	    (fd = net_listen(&a, 128, err, sizeof(err))) == -1)) {
		log_err("%s %s: %s", what, addr, err);
		return -1;
	}
	ev_io_init(lio, fd, aout_accept);
	if (ev_set(lio, EPOLLIN) == -1) {
		log_err("%s %s: %s", what, addr, strerror(errno));
		close(fd);
		return -1;
	}
	log_info("%s listening on %s", what, addr);
	return 0;
}

int
aout_start(void)
{
	socks_lio.fd = http_lio.fd = -1;
	if (agent_cfg.out.socks_listen[0] != '\0' &&
	    aout_listen(&socks_lio, agent_cfg.out.socks_listen, "socks5") == -1)
		return -1;
	if (agent_cfg.out.http_listen[0] != '\0' &&
	    aout_listen(&http_lio, agent_cfg.out.http_listen, "http-connect") == -1)
		return -1;
	return 0;
}

void
aout_tick(uint64_t now)
{
	struct aout *o, *next;

	for (o = outs; o != NULL; o = next) {
		next = o->next;
		if (now <= o->deadline)
			continue;
		if (o->state != AO_WAIT)
			aout_fail(o, -1, 0, "failed", "request not complete in time");
		else
			give_up(o, SOCKS_TTL_EXPIRED, 504, "set-up timed out");
	}
}

size_t
aout_listeners(int *fds)
{
	size_t n = 0;

	if (socks_lio.fd != -1)
		fds[n++] = socks_lio.fd;
	if (http_lio.fd != -1)
		fds[n++] = http_lio.fd;
	return n;
}

void
aout_unlisten(void)
{
	if (socks_lio.fd != -1) {
		ev_del(&socks_lio);
		close(socks_lio.fd);
		socks_lio.fd = -1;
	}
	if (http_lio.fd != -1) {
		ev_del(&http_lio);
		close(http_lio.fd);
		http_lio.fd = -1;
	}
}

size_t
aout_count(void)
{
	return nouts;
}

void
aout_stop(void)
{
	struct aout *o;

	aout_unlisten();
	while ((o = outs) != NULL)
		aout_fail(o, SOCKS_FAIL, 503, "failed", "agent stopping");
}
