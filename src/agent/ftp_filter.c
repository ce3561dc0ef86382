/* ftp_filter.c - the control filter of a plain FTP session (protocol =
 * ftp; agent_ftp.c has the whole picture, docs/ftp.md the behaviour).
 *
 * A pump endpoint over the backend's control socket. Each direction keeps
 * bytes until a line is whole (ftp_line.c parses it): the backend's 227
 * and 229 replies are rewritten to the public address and a port of the
 * session's slice; the client's PORT and EPRT are refused, or in active
 * mode rewritten to name a listener of ours, whose connection from the
 * backend waits, unread, for the edge's connection to the client (with
 * the backend's replies held meanwhile). Commands the gateway answers
 * itself get their reply in order behind those still outstanding. After
 * AUTH and 234 the bytes pass unchanged.
 *
 * Memory: four fixed buffers (about 24 KiB); the backend is read only
 * while they have room, the client's bytes taken only while they do, so a
 * slow reader slows its writer. */
#include "agent/ftp_filter.h"
#include "agent/agent_edge.h"
#include "common/cidr.h"
#include "common/log.h"
#include "common/psock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#define OUT_NEED	(FTP_LINE_MAX + 256)	/* room to process a line */

#define R_ACTIVE	"502 Active mode is not supported through this " \
			"gateway; use passive mode.\r\n"
#define R_PORT_SYNTAX	"501 Syntax error in PORT or EPRT arguments.\r\n"
#define R_PORT_PROTO	"522 Network protocol not supported, use (1,2)\r\n"
#define R_PORT_ADDR	"504 Active mode only to your own address.\r\n"
#define R_PORT_LOW	"504 Active mode only to ports from 1024.\r\n"
#define R_PORT_FAIL	"451 The gateway cannot take a data connection " \
			"now; try again.\r\n"
#define R_TOO_LONG	"500 Command line too long.\r\n"
#define R_NO_PORT	"425 No passive port free at the gateway; try " \
			"again.\r\n"
#define R_ACT_FAILED	"425 The gateway could not connect to your data " \
			"port.\r\n"

static void
dir_put(struct fdir *d, const char *p, size_t n)
{
	/* Callers check room first (OUT_NEED); this is the backstop. */
	if (n > sizeof(d->out) - d->outoff - d->outlen) {
		if (d->outoff > 0) {
			memmove(d->out, d->out + d->outoff, d->outlen);
			d->outoff = 0;
		}
		if (n > sizeof(d->out) - d->outlen)
			log_fatal("ftp_filter: buffer overrun");
	}
	memcpy(d->out + d->outoff + d->outlen, p, n);
	d->outlen += n;
}

static size_t
dir_room(struct fdir *d)
{
	if (d->outlen == 0)
		d->outoff = 0;
	return sizeof(d->out) - d->outlen;
}

static void
dir_consume(struct fdir *d, size_t n)
{
	memmove(d->in, d->in + n, d->inlen - n);
	d->inlen -= n;
}

/* Our own reply goes out once every command before it has its answer,
 * so it lands in order even behind pipelined commands. */
static void
inject_due(struct aftp *f)
{
	if (!f->hold || f->outstanding > 0 || f->auth_wait)
		return;
	if (f->inject != NULL && !f->s2c.shut)
		dir_put(&f->s2c, f->inject, strlen(f->inject));
	f->inject = NULL;
	f->hold = 0;
}

/* One reply line from the backend. */
static void
on_reply(struct aftp *f, const char *line, size_t len)
{
	struct ftp_reply r;
	char out[FTP_FMT_MAX];
	uint16_t pub;
	int n = -1;

	if (ftp_reply_scan(&f->rs, line, len, &r) == -1 || r.code == 0) {
		dir_put(&f->s2c, line, len);
		return;
	}
	/* The client's data connection never came: what the server says of
	 * the transfer (it may not have noticed: an empty listing) is 425,
	 * and no 150 before it. */
	if (f->act_failed && r.code < 200)
		return;
	if (f->act_failed) {
		f->act_failed = 0;
		line = R_ACT_FAILED;
		len = sizeof(R_ACT_FAILED) - 1;
	}
	if ((r.pasv || r.epsv) && !f->tls) {
		if ((pub = aftp_port_take(f, r.port)) == 0) {
			log_warn("session %llu: ftp: no passive port of %u-%u free",
			    (unsigned long long)f->id, f->pmin, f->pmax);
			n = snprintf(out, sizeof(out), "%s", R_NO_PORT);
		} else if (r.pasv)
			n = ftp_fmt_227(out, sizeof(out), f->public_ip, pub);
		else
			n = ftp_fmt_229(out, sizeof(out), pub);
	}
	if (n > 0)
		dir_put(&f->s2c, out, (size_t)n);
	else
		dir_put(&f->s2c, line, len);
	if (r.code < 200)
		return;		/* preliminary: the final reply follows */
	if (f->outstanding > 0)
		f->outstanding--;
	if (f->auth_wait && f->outstanding == 0) {
		f->auth_wait = 0;
		if (r.code == 234) {
			/* TLS from the next byte on, both ways. */
			f->tls = 1;
			log_info("session %llu: ftp: control channel is TLS from "
			    "here on", (unsigned long long)f->id);
		}
	}
	inject_due(f);
}

/* --- active mode ----------------------------------------------------------- */

static void wake_soon(struct aftp *f);

/* The backend's data connection fd gets no client: reset, so that the
 * server ends the transfer, whose replies become 425 (on_reply). */
void
ftpf_active_fail(struct aftp *f, int fd)
{
	psock_reset_now(fd);
	f->act_failed = 1;
}

/* The waiting data connection joined or failed: the server's replies,
 * held meanwhile, go on. */
void
ftpf_active_release(struct aftp *f)
{
	f->act_fd = -1;
	if (f->e.p != NULL)
		wake_soon(f);
}

void
ftpf_active_stop(struct aftp *f)
{
	if (f->lio.fd != -1) {
		ev_del(&f->lio);
		close(f->lio.fd);
		f->lio.fd = -1;
	}
	if (f->act_fd != -1)
		psock_reset_now(f->act_fd);	/* the backend tells the client */
	f->act_fd = -1;
}

/* The backend's data connection: it waits, unread, for the edge's. */
static void
active_accept(struct ev_io *io, uint32_t events)
{
	struct aftp *f = (struct aftp *)(void *)((char *)io -
	    offsetof(struct aftp, lio));
	uint8_t want[16], got[16];
	char peer_s[NET_ADDRSTR];
	struct net_addr peer;
	struct msg m;
	int fd;

	(void)events;
	if ((fd = net_accept(io->fd, &peer)) == -1)
		return;
	cidr_sa16((struct sockaddr *)&peer.ss, got);
	cidr_sa16((struct sockaddr *)&f->backend.ss, want);
	if (memcmp(got, want, 16) != 0) {
		net_fmt((struct sockaddr *)&peer.ss, peer_s, sizeof(peer_s));
		log_warn("session %llu: ftp: active data connection from %s "
		    "refused: not the backend %s", (unsigned long long)f->id,
		    peer_s, f->backend_str);
		psock_reset_now(fd);
		return;
	}
	ftpf_active_stop(f);		/* one data connection per PORT */
	if (f->edge->state != AE_READY) {
		/* No edge to ask: the server tells the client at once. */
		log_warn("session %llu: ftp: active data connection refused: "
		    "edge %s is not connected", (unsigned long long)f->id,
		    f->edge->ce->str);
		ftpf_active_fail(f, fd);
		return;
	}
	f->act_fd = fd;
	f->act_req = aftp_request_new();
	f->act_at = ev_now();
	msg_init(&m, FT_FTP_DIAL);
	msg_set_int(&m, FA_REQUEST, f->act_req);
	msg_set_int(&m, FA_FTP_CTL, f->id);
	msg_set_int(&m, FA_DEST_PORT, f->act_port);
	aedge_send(f->edge, &m);
	log_info("session %llu: ftp: active data connection from the backend: "
	    "the edge dials the client's port %u (request %llu)",
	    (unsigned long long)f->id, f->act_port,
	    (unsigned long long)f->act_req);
}

/* Our listener, on the address the backend sees us from, as PORT or
 * EPRT names it. 0 or -1. */
static int
active_listen(struct aftp *f, struct ftp_hostport *me)
{
	struct net_addr a;
	char err[128];
	int fd;

	ftpf_active_stop(f);		/* the last PORT counts */
	a.len = sizeof(a.ss);
	if (getsockname(f->bio.fd, (struct sockaddr *)&a.ss, &a.len) == -1)
		return -1;
	aftp_addr_port(&a, 0);
	if ((fd = net_listen(&a, 4, err, sizeof(err))) == -1 ||
	    getsockname(fd, (struct sockaddr *)&a.ss, &a.len) == -1) {
		if (fd != -1)
			close(fd);
		log_warn("session %llu: ftp: active mode: no listener: %s",
		    (unsigned long long)f->id, fd == -1 ? err : strerror(errno));
		return -1;
	}
	memset(me, 0, sizeof(*me));
	me->family = a.ss.ss_family;
	if (me->family == AF_INET6)
		memcpy(me->addr, &((struct sockaddr_in6 *)&a.ss)->sin6_addr, 16);
	else
		memcpy(me->addr, &((struct sockaddr_in *)&a.ss)->sin_addr, 4);
	me->port = ntohs(((struct sockaddr_in *)&a.ss)->sin_port);
	ev_io_init(&f->lio, fd, active_accept);
	if (ev_set(&f->lio, EPOLLIN) == -1) {
		close(fd);
		f->lio.fd = -1;
		return -1;
	}
	f->act_at = ev_now();
	return 0;
}

/* PORT or EPRT from the client: the reply to refuse it with, or NULL
 * when it is rewritten to name our listener (in out, n bytes). */
static const char *
active_cmd(struct aftp *f, const char *line, size_t len, char *out, int *n)
{
	struct ftp_hostport hp, me;
	uint8_t want[16], got[16];
	struct net_addr ca;
	char a[NET_ADDRSTR];
	int rc = ftp_port_parse(line, len, &hp), other;

	if (rc != 0)
		return rc == -2 ? R_PORT_PROTO : R_PORT_SYNTAX;
	cidr_addr16(hp.family, hp.addr, got);
	other = net_from_ip(f->ip, 0, &ca) == -1;	/* numeric: open_check */
	cidr_sa16((struct sockaddr *)&ca.ss, want);
	other = other || memcmp(got, want, 16) != 0;
	/* No bounce: the client's own address, a port of no service. */
	if (other || hp.port < 1024) {
		inet_ntop(hp.family, hp.addr, a, sizeof(a));
		log_warn("session %llu: ftp: active mode to %s port %u refused: "
		    "%s", (unsigned long long)f->id, a, hp.port, other ?
		    "not the client's address" : "a port below 1024");
		return other ? R_PORT_ADDR : R_PORT_LOW;
	}
	if (active_listen(f, &me) == -1 ||
	    (*n = ftp_fmt_port(out, FTP_FMT_MAX, &me)) <= 0)
		return R_PORT_FAIL;
	f->act_port = hp.port;
	log_info("session %llu: ftp: active mode to the client's port %u",
	    (unsigned long long)f->id, hp.port);
	return NULL;
}

/* One command line from the client. */
static void
on_command(struct aftp *f, const char *line, size_t len)
{
	char out[FTP_FMT_MAX];
	int n = 0;

	switch (ftp_cmd_scan(line, len)) {
	case FTP_C_PORT:
	case FTP_C_EPRT:
		if (f->active) {
			if ((f->inject = active_cmd(f, line, len, out, &n)) ==
			    NULL) {
				dir_put(&f->c2s, out, (size_t)n);
				f->outstanding++;
				return;
			}
			f->hold = 1;
			inject_due(f);
			return;
		}
		/* FALLTHROUGH */
	case FTP_C_ACTIVE:
		log_info("session %llu: ftp: active-mode command refused",
		    (unsigned long long)f->id);
		f->inject = R_ACTIVE;
		f->hold = 1;
		inject_due(f);
		return;
	case FTP_C_AUTH:
		/* Nothing more is read as a command until its reply says
		 * whether TLS starts. */
		f->auth_wait = 1;
		f->hold = 1;
		break;
	case FTP_C_OTHER:
		break;
	}
	dir_put(&f->c2s, line, len);
	f->outstanding++;
}

/* Move what can be moved from d->in to d->out. Returns 1 on progress. */
static int
dir_process(struct aftp *f, struct fdir *d)
{
	int s2c = d == &f->s2c, progress = 0;
	size_t len, n;
	char *lf;

	/* A server connects before it replies: take its data connection
	 * first, so that its replies wait for the client's (below). */
	if (s2c && f->lio.fd != -1)
		active_accept(&f->lio, 0);
	while (d->inlen > 0) {
		if (dir_room(d) < OUT_NEED || dir_room(&f->s2c) < OUT_NEED ||
		    (s2c && f->act_fd != -1))
			break;
		if (f->tls && !(!s2c && f->hold)) {
			n = d->inlen;
			dir_put(d, d->in, n);
			dir_consume(d, n);
			progress = 1;
			continue;
		}
		if (!s2c && f->hold)
			break;
		if (d->longline) {
			/* The rest of an over-long line: replies pass, a
			 * command is dropped (it never reaches the server). */
			lf = memchr(d->in, '\n', d->inlen);
			n = lf == NULL ? d->inlen : (size_t)(lf - d->in) + 1;
			if (s2c)
				dir_put(d, d->in, n);
			dir_consume(d, n);
			if (lf != NULL) {
				d->longline = 0;
				if (!s2c) {
					f->inject = R_TOO_LONG;
					f->hold = 1;
					inject_due(f);
				}
			}
			progress = 1;
			continue;
		}
		len = ftp_line_len(d->in, d->inlen);
		if (len == 0) {
			if (d->inlen < sizeof(d->in) && !d->eof)
				break;		/* wait for the rest */
			if (d->inlen == sizeof(d->in)) {
				/* No LF within FTP_LINE_MAX: the start still
				 * tells a reply's code. */
				if (s2c) {
					struct ftp_reply r;
					if (ftp_reply_scan(&f->rs, d->in, d->inlen,
					    &r) == 0 && r.code >= 200 &&
					    f->outstanding > 0)
						f->outstanding--;
				}
				d->longline = 1;
				continue;
			}
			/* EOF after a partial line: a reply passes; a
			 * command without its LF is not a command. */
			if (s2c)
				dir_put(d, d->in, d->inlen);
			dir_consume(d, d->inlen);
			progress = 1;
			continue;
		}
		if (s2c)
			on_reply(f, d->in, len);
		else
			on_command(f, d->in, len);
		dir_consume(d, len);
		progress = 1;
	}
	return progress;
}

/* --- the filter as an endpoint --------------------------------------------- */

static struct aftp *
aftp_of(struct pend *e)
{
	return (struct aftp *)(void *)e;
}

/* Something changed that the pump may be waiting for: tell it from the
 * loop, not from inside the operation that changed it. */
static void
wake_soon(struct aftp *f)
{
	if (f->e.p != NULL && ev_defer(&f->bio, 0) == -1)
		(void)ev_set(&f->bio, EPOLLOUT);
}

static ssize_t
fail_errno(struct aftp *f, int err)
{
	f->e.code = SE_ERROR;
	snprintf(f->e.err, sizeof(f->e.err), "backend: %s", strerror(err));
	return PEND_ERR;
}

/* Write what waits for the backend; shut it down after the client's
 * end. 0, or PEND_ERR. */
static ssize_t
c2s_flush(struct aftp *f)
{
	struct fdir *d = &f->c2s;
	ssize_t n;

	if (f->werr != 0)
		return fail_errno(f, f->werr);
	while (d->outlen > 0) {
		n = send(f->bio.fd, d->out + d->outoff, d->outlen, MSG_NOSIGNAL);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return 0;
			f->werr = errno;
			return fail_errno(f, errno);
		}
		d->outoff += (size_t)n;
		d->outlen -= (size_t)n;
	}
	d->outoff = 0;
	return 0;
}

/* Process both directions as far as their buffers allow, and send what
 * is ready for the backend. 0 or PEND_ERR. */
static ssize_t
filter_step(struct aftp *f)
{
	int progress;

	do {
		if (f->s2c.eof && f->hold) {
			/* The server is gone: nothing owes us a turn. */
			f->outstanding = 0;
			f->auth_wait = 0;
			inject_due(f);
		}
		progress = dir_process(f, &f->s2c);
		progress |= dir_process(f, &f->c2s);
	} while (progress);
	return c2s_flush(f);
}

/* The backend's replies, rewritten, and our own. */
static ssize_t
fx_recv(struct pend *e, uint8_t *p, size_t n)
{
	struct aftp *f = aftp_of(e);
	struct fdir *d = &f->s2c;
	size_t k;
	ssize_t r;
	int stepped = 0;

	for (;;) {
		if (d->outlen > 0) {
			k = n < d->outlen ? n : d->outlen;
			memcpy(p, d->out + d->outoff, k);
			d->outoff += k;
			d->outlen -= k;
			/* Room again: lines waiting may go on, both ways, and
			 * a pump waiting to send may find room too. */
			if (filter_step(f) == PEND_ERR)
				return PEND_ERR;
			if (f->want & PEND_WR)
				wake_soon(f);
			return (ssize_t)k;
		}
		if (f->act_fd != -1)
			return PEND_AGAIN;	/* active_release wakes us */
		if (d->eof && d->inlen == 0)
			return PEND_EOF;
		/* Replies read before a data connection made them wait (a
		 * 150 read in the same turn as the backend's connect) go on
		 * now: the backend may have nothing more to say for minutes. */
		if (d->inlen > 0 && !stepped) {
			stepped = 1;
			if (filter_step(f) == PEND_ERR)
				return PEND_ERR;
			continue;
		}
		if (!d->eof && d->inlen < sizeof(d->in)) {
			r = recv(f->bio.fd, d->in + d->inlen,
			    sizeof(d->in) - d->inlen, 0);
			if (r == 0)
				d->eof = 1;
			else if (r > 0)
				d->inlen += (size_t)r;
			else if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR)
				return PEND_AGAIN;
			else
				return fail_errno(f, errno);
		}
		stepped = 1;
		if (filter_step(f) == PEND_ERR)
			return PEND_ERR;
		if (d->outlen == 0 && !(d->eof && d->inlen == 0) &&
		    d->inlen == sizeof(d->in) && !d->longline)
			return PEND_AGAIN;	/* cannot happen: a full line goes */
	}
}

/* The client's commands: taken while there is room, sent on once
 * whole. */
static ssize_t
fx_send(struct pend *e, const struct iovec *iov, int cnt)
{
	struct aftp *f = aftp_of(e);
	struct fdir *d = &f->c2s;
	size_t took = 0, k, had = f->s2c.outlen;
	int i;

	for (i = 0; i < cnt && d->inlen < sizeof(d->in); i++) {
		k = sizeof(d->in) - d->inlen;
		if (k > iov[i].iov_len)
			k = iov[i].iov_len;
		memcpy(d->in + d->inlen, iov[i].iov_base, k);
		d->inlen += k;
		took += k;
		if (k < iov[i].iov_len)
			break;
	}
	if (filter_step(f) == PEND_ERR)
		return PEND_ERR;
	/* Our own reply is ready to read. Only a new one: a client that
	 * sends and never reads would have us wake the pump every turn. */
	if (f->s2c.outlen > had)
		wake_soon(f);
	return took > 0 ? (ssize_t)took : PEND_AGAIN;
}

static int
fx_shut(struct pend *e)
{
	struct aftp *f = aftp_of(e);
	struct fdir *d = &f->c2s;

	d->eof = 1;
	if (filter_step(f) == PEND_ERR)
		return PEND_ERR;
	if (d->inlen > 0 || d->outlen > 0)
		return PEND_AGAIN;
	if (!d->shut) {
		if (shutdown(f->bio.fd, SHUT_WR) == -1 && errno != ENOTCONN)
			return (int)fail_errno(f, errno);
		d->shut = 1;
	}
	return 1;
}

static void
fx_watch(struct pend *e, unsigned what)
{
	struct aftp *f = aftp_of(e);
	uint32_t mask = 0;

	f->want = what;
	if (f->hup)
		return;
	/* Replies come from the backend, read when the pump can take them:
	 * a reply that ends a hold waits for a client that does not read,
	 * as it would with the server itself (watching the backend then
	 * would wake us every turn for nothing). None is read while an
	 * active data connection waits for the edge. */
	if ((what & PEND_RD) && f->act_fd == -1)
		mask |= EPOLLIN;
	if (f->c2s.outlen > 0)
		mask |= EPOLLOUT;
	if (ev_set(&f->bio, mask) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
}

static void
fx_close(struct pend *e, int abort)
{
	struct aftp *f = aftp_of(e);

	f->live = 0;
	psock_drop(&f->bio, abort, e->failed);
}

static const struct pend_ops filter_ops = {
	.recv = fx_recv,
	.send = fx_send,
	.shut = fx_shut,
	.watch = fx_watch,
	.close = fx_close,
};

static void
bio_cb(struct ev_io *io, uint32_t events)
{
	struct aftp *f = (struct aftp *)(void *)((char *)io -
	    offsetof(struct aftp, bio));
	unsigned what = f->want;

	if ((events & EPOLLHUP) && !f->hup) {
		/* A level-triggered HUP would fire for ever: read the rest
		 * without epoll. */
		f->hup = 1;
		f->e.unwatched = 1;
		ev_del(io);
	}
	if (f->c2s.outlen > 0)
		(void)c2s_flush(f);
	if (f->s2c.outlen > 0 || f->s2c.inlen > 0 ||
	    (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		what |= PEND_RD;
	if (f->e.p != NULL)
		pump_wake(f->e.p, f->e.side, what | PEND_WR);
}

void
ftpf_init(struct aftp *f, int fd, struct pend **inner)
{
	f->filter = 1;
	f->e.ops = &filter_ops;
	f->e.rawfd = -1;
	f->outstanding = 1;	/* the greeting */
	ev_io_init(&f->bio, fd, bio_cb);
	*inner = &f->e;
}

