/* hosock.c - the hand-over socket (hosock.h). */
#include "common/hosock.h"
#include "common/ev.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* What each step must carry beyond HO_STEP; descriptors only with
 * HO_LISTENERS. */
static const uint64_t step_needs[HO_STEP_MAX + 1] = {
	[HO_HELLO]	= FA_BIT(FA_VERSION),
	[HO_LISTENERS]	= FA_BIT(FA_COUNT),
	[HO_OFFERED]	= FA_BIT(FA_COUNT),
	[HO_TAKEN]	= 0,
	[HO_RELEASE]	= 0,
	[HO_WITHDRAWN]	= 0,
	[HO_FTP]	= FA_BIT(FA_FTP_CTL) | FA_BIT(FA_SERVICE) |
	    FA_BIT(FA_CLIENT_ADDR) | FA_BIT(FA_NAME),
	[HO_FTP_END]	= FA_BIT(FA_FTP_CTL),
	[HO_STATUS]	= FA_BIT(FA_COUNT),
	[HO_REFUSED]	= FA_BIT(FA_TEXT),
};

static int
sun_of(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(sun->sun_path))
		return -1;
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, n);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

/* The temporary name a process binds beside path. */
static int
tmp_name(const char *path, char *tmp, size_t tmplen)
{
	int n = snprintf(tmp, tmplen, "%s.%ld", path, (long)getpid());

	return n < 0 || (size_t)n >= tmplen ? -1 : 0;
}

int
hosock_listen(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	socklen_t len;
	char tmp[sizeof(sun.sun_path)];
	int fd = -1;

	if (sun_of(path, &sun, &len) == -1 ||
	    tmp_name(path, tmp, sizeof(tmp)) == -1 ||
	    sun_of(tmp, &sun, &len) == -1) {
		snprintf(err, errlen, "%s: path too long for a socket", path);
		return -1;
	}
	(void)unlink(tmp);
	/* Mode 0600 before anything can connect: listen() comes after. */
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1 ||
	    bind(fd, (struct sockaddr *)&sun, len) == -1 ||
	    chmod(tmp, 0600) == -1 || listen(fd, 4) == -1) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		(void)unlink(tmp);
		if (fd != -1)
			close(fd);
		return -1;
	}
	return fd;
}

int
hosock_publish(const char *path, char *err, size_t errlen)
{
	char tmp[sizeof(((struct sockaddr_un *)0)->sun_path)];

	if (tmp_name(path, tmp, sizeof(tmp)) == -1 || rename(tmp, path) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Only root or the service's user may have made the directory, and
 * nobody else may change what it holds: else anyone could put a socket
 * there that a new process would take for the running edge. */
static int
dir_safe(const char *path, uid_t uid, char *err, size_t errlen)
{
	char copy[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;
	const char *dir;

	snprintf(copy, sizeof(copy), "%s", path);
	dir = dirname(copy);
	if (stat(dir, &st) == -1) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode) || (st.st_uid != 0 && st.st_uid != uid) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		snprintf(err, errlen, "%s: not a directory owned by root or uid "
		    "%ld and writable by nobody else", dir, (long)uid);
		return -1;
	}
	return 0;
}

int
hosock_connect(const char *path, uid_t uid, int *fd, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	socklen_t len;

	*fd = -1;
	if (sun_of(path, &sun, &len) == -1) {
		snprintf(err, errlen, "%s: path too long for a socket", path);
		return -1;
	}
	if (dir_safe(path, uid, err, errlen) == -1)
		return -1;
	if ((*fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(*fd, (struct sockaddr *)&sun, len) == 0)
		return 1;
	snprintf(err, errlen, "%s: %s", path, strerror(errno));
	close(*fd);
	*fd = -1;
	/* Nobody there: no socket yet, or one left by a process that is
	 * gone. */
	return errno == ENOENT || errno == ECONNREFUSED ? 0 : -1;
}

int
hosock_peer(int fd, uid_t uid, pid_t *pid, char *err, size_t errlen)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1) {
		snprintf(err, errlen, "SO_PEERCRED: %s", strerror(errno));
		return -1;
	}
	*pid = uc.pid;
	if (uc.uid != 0 && uc.uid != uid) {
		snprintf(err, errlen, "process %ld runs as uid %ld, not as uid "
		    "%ld or root", (long)uc.pid, (long)uc.uid, (long)uid);
		return -1;
	}
	return 0;
}

static int
wait_for(int fd, short what, int ms)
{
	struct pollfd p = { fd, what, 0 };
	int n;

	while ((n = poll(&p, 1, ms)) == -1 && errno == EINTR)
		;
	if (n == 0)
		errno = ETIMEDOUT;
	return n > 0 ? 0 : -1;
}

int
hosock_send(int fd, const struct msg *m, const int *fds, size_t n)
{
	union {
		struct cmsghdr	 h;
		char		 b[CMSG_SPACE(HOSOCK_FDS_MAX * sizeof(int))];
	} cm;
	struct buf b = { 0 };
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *c;
	ssize_t r;

	if (n > HOSOCK_FDS_MAX || msg_encode(m, &b, HOSOCK_MSG_MAX) == -1) {
		buf_free(&b);
		errno = EMSGSIZE;
		return -1;
	}
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = b.data;
	iov.iov_len = buf_len(&b);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (n > 0) {
		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.b;
		mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	}
	/* A message is small and the peer reads at once: room comes soon,
	 * and a peer that takes none for so long has failed. */
	while ((r = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT)) == -1 &&
	    (errno == EAGAIN || errno == EINTR))
		if (errno == EAGAIN && wait_for(fd, POLLOUT, HOSOCK_WAIT_MS) == -1)
			break;
	buf_free(&b);
	return r == -1 ? -1 : 0;
}

static struct ev_io refused = { -1, NULL, 0, 0 };
static struct msg msgbuf;	/* large: not on the stack */
static char refusal[MSG_TEXT_MAX + 16];

static void
refused_close(void)
{
	if (refused.fd == -1)
		return;
	ev_del(&refused);
	close(refused.fd);
	refused.fd = -1;
}

static void
refused_io(struct ev_io *io, uint32_t events)
{
	uint8_t sink[HOSOCK_MSG_MAX];

	(void)events;
	/* Whatever came (and what it carried) goes; the kernel closes any
	 * descriptor attached. */
	while (recv(io->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
	refused_close();
}

static void
refuse(int fd, const char *why)
{
	struct msg m;

	refused_close();
	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_REFUSED);
	msg_set_str(&m, FA_TEXT, why);
	ev_io_init(&refused, fd, refused_io);
	if (hosock_send(fd, &m, NULL, 0) == -1 ||
	    ev_set(&refused, EPOLLIN | EPOLLRDHUP) == -1)
		refused_close();
}

int
hosock_step(int fd, uint8_t step, uint64_t count)
{
	struct msg m;

	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, step);
	if (count != 0)
		msg_set_int(&m, FA_COUNT, count);
	return hosock_send(fd, &m, NULL, 0);
}

int
hosock_check(const uint8_t *p, size_t n, size_t nfds, struct msg *m,
    const char **why)
{
	uint64_t need;

	if (msg_decode_frame(p, n, m, why) == -1)
		return -1;
	if (m->type != FT_HANDOVER) {
		*why = "not a HANDOVER frame";
		return -1;
	}
	need = step_needs[m->ho_step];
	if ((m->have & need) != need) {
		*why = "hand-over step without what it needs";
		return -1;
	}
	if (m->ho_step == HO_LISTENERS ? nfds == 0 || m->count != nfds :
	    nfds != 0) {
		*why = "descriptors that the message does not announce";
		return -1;
	}
	if (m->ho_step == HO_FTP && !(m->have & FA_BIT(FA_PASV_MIN)) !=
	    !(m->have & FA_BIT(FA_PASV_MAX))) {
		*why = "a passive range without both ends";
		return -1;
	}
	if (m->ho_step == HO_FTP && m->pasv_min > m->pasv_max) {
		*why = "a passive range that ends before it starts";
		return -1;
	}
	return 0;
}

int
hosock_recv(int fd, struct msg *m, int *fds, size_t *nfds, int wait_ms,
    const char **why)
{
	union {
		struct cmsghdr	 h;
		char		 b[CMSG_SPACE(HOSOCK_FDS_MAX * sizeof(int))];
	} cm;
	uint8_t p[HOSOCK_MSG_MAX];
	struct msghdr mh;
	struct iovec iov = { p, sizeof(p) };
	struct cmsghdr *c;
	ssize_t r;
	size_t i, n;

	*nfds = 0;
	if (wait_ms > 0 && wait_for(fd, POLLIN, wait_ms) == -1) {
		*why = strerror(errno);
		return -1;
	}
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.b;
	mh.msg_controllen = sizeof(cm.b);
	while ((r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT)) == -1 &&
	    errno == EINTR)
		;
	if (r == -1) {
		*why = strerror(errno);
		return errno == EAGAIN && wait_ms == 0 ? -2 : -1;
	}
	for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
		    c->cmsg_len < CMSG_LEN(0))
			continue;
		n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&fds[*nfds], CMSG_DATA(c) + i * sizeof(int),
			    sizeof(int));
			/* The buffer holds HOSOCK_FDS_MAX: more were cut by the
			 * kernel (MSG_CTRUNC) and are refused below. */
			if (*nfds < HOSOCK_FDS_MAX)
				(*nfds)++;
		}
	}
	if (r == 0 && *nfds == 0)
		return 0;
	if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0)
		*why = "message or descriptors cut short";
	else if (hosock_check(p, (size_t)r, *nfds, m, why) == 0)
		return 1;
	for (i = 0; i < *nfds; i++)
		close(fds[i]);
	*nfds = 0;
	return -1;
}

int
hosock_listener(int fd, struct net_addr *a)
{
	int v = 0, type = 0, dom = 0, fl;
	socklen_t l1 = sizeof(v), l2 = sizeof(type), l3 = sizeof(dom);

	a->len = sizeof(a->ss);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l1) == -1 || !v ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l2) == -1 ||
	    type != SOCK_STREAM ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l3) == -1 ||
	    (dom != AF_INET && dom != AF_INET6) ||
	    getsockname(fd, (struct sockaddr *)&a->ss, &a->len) == -1)
		return -1;
	/* Accepting stays non-blocking (the flag is the socket's, shared
	 * with the sender, which set it: this only makes sure). */
	if ((fl = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1)
		return -1;
	return 0;
}

int
hosock_same(const struct net_addr *a, const struct net_addr *b)
{
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)&a->ss;
	const struct sockaddr_in *b4 = (const struct sockaddr_in *)&b->ss;
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&a->ss;
	const struct sockaddr_in6 *b6 = (const struct sockaddr_in6 *)&b->ss;

	if (a->ss.ss_family != b->ss.ss_family)
		return 0;
	if (a->ss.ss_family == AF_INET)
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	if (a->ss.ss_family == AF_INET6)
		return a6->sin6_port == b6->sin6_port &&
		    memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0;
	return 0;
}

struct msg *
hosock_read(int fd, int wait_ms, int *rc, const char **why)
{
	int fds[HOSOCK_FDS_MAX];
	size_t n;

	*rc = hosock_recv(fd, &msgbuf, fds, &n, wait_ms, why);
	/* Listeners here are none the reader asked for. */
	while (n > 0)
		close(fds[--n]);
	return *rc == 1 ? &msgbuf : NULL;
}

/* --- the new process ---------------------------------------------------- */

static struct held {
	int		 fd;
	struct net_addr	 a;
} *held;
static size_t nheld;

static int
held_add(int fd)
{
	struct held *h;

	if ((h = realloc(held, (nheld + 1) * sizeof(*h))) == NULL)
		return -1;
	held = h;
	if (hosock_listener(fd, &held[nheld].a) == -1)
		return -1;
	held[nheld++].fd = fd;
	return 0;
}

/* HELLO, then listeners until OFFERED. NULL, or why not. */
static const char *
take(int fd, uint64_t *next)
{
	int fds[HOSOCK_FDS_MAX];
	const char *why = NULL;
	struct msg *m = &msgbuf;
	size_t n, i;
	int rc;

	for (;;) {
		rc = hosock_recv(fd, m, fds, &n, HOSOCK_WAIT_MS, &why);
		if (rc <= 0)
			return rc == 0 ? "it closed the connection" : why;
		if (m->ho_step == HO_REFUSED) {
			snprintf(refusal, sizeof(refusal), "it refused: %.1000s",
			    m->text);
			return refusal;
		}
		if (m->ho_step == HO_OFFERED)
			break;
		if (m->ho_step != HO_LISTENERS)
			return "unexpected step";
		for (i = 0; i < n; i++)
			if (held_add(fds[i]) == -1) {
				while (i < n)
					close(fds[i++]);
				return "not a listening TCP socket";
			}
	}
	*next = (m->have & FA_BIT(FA_SESSION)) ? m->session : 0;
	return m->count == nheld ? NULL : "fewer listeners than it offered";
}

int
hosock_take(const char *path, uid_t uid, int *fd, pid_t *pid, uint64_t *next,
    char *err, size_t errlen)
{
	const char *why;
	int rc;

	if ((rc = hosock_connect(path, uid, fd, err, errlen)) != 1)
		return rc;
	if (hosock_peer(*fd, uid, pid, err, errlen) == -1)
		goto fail;
	msg_init(&msgbuf, FT_HANDOVER);
	msg_set_int(&msgbuf, FA_HO_STEP, HO_HELLO);
	msg_set_int(&msgbuf, FA_VERSION, FRAME_VERSION);
	if (hosock_send(*fd, &msgbuf, NULL, 0) == -1) {
		snprintf(err, errlen, "%s", strerror(errno));
		goto fail;
	}
	if ((why = take(*fd, next)) == NULL)
		return 1;
	snprintf(err, errlen, "running process %ld: %s", (long)*pid, why);
fail:
	while (nheld > 0)
		close(held[--nheld].fd);
	close(*fd);
	*fd = -1;
	return -1;
}

int
hosock_claim(const struct net_addr *a)
{
	size_t i;
	int fd;

	for (i = 0; i < nheld; i++)
		if (hosock_same(&held[i].a, a)) {
			fd = held[i].fd;
			held[i] = held[--nheld];
			return fd;
		}
	return -1;
}

int
hosock_unclaimed(struct net_addr *a)
{
	if (nheld == 0)
		return -1;
	*a = held[--nheld].a;
	return held[nheld].fd;
}

/* --- the running process ------------------------------------------------ */

int
hosock_accept(int lfd, uid_t uid, const char *busy, pid_t *pid)
{
	char err[256];
	int fd;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1)
		return -1;
	if (hosock_peer(fd, uid, pid, err, sizeof(err)) == 0) {
		if (busy == NULL)
			return fd;
		snprintf(err, sizeof(err), "process %ld: %s", (long)*pid, busy);
	}
	log_warn("hand-over refused: %s", err);
	refuse(fd, err);
	return -1;
}

void
hosock_fds_add(int fd, void *arg)
{
	struct hosock_fds *l = arg;
	int *p;

	if (l->n == l->cap) {
		if ((p = realloc(l->fds, (l->cap + 64) * sizeof(*p))) == NULL) {
			l->failed = 1;
			return;
		}
		l->fds = p;
		l->cap += 64;
	}
	l->fds[l->n++] = fd;
}

int
hosock_offer(int fd, struct hosock_fds *l, uint64_t next)
{
	struct msg m;
	size_t i, k;
	int rc = l->failed ? -1 : 0;

	for (i = 0; i < l->n && rc == 0; i += k) {
		k = l->n - i < HOSOCK_FDS_MAX ? l->n - i : HOSOCK_FDS_MAX;
		msg_init(&m, FT_HANDOVER);
		msg_set_int(&m, FA_HO_STEP, HO_LISTENERS);
		msg_set_int(&m, FA_COUNT, k);
		rc = hosock_send(fd, &m, l->fds + i, k);
	}
	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_OFFERED);
	msg_set_int(&m, FA_COUNT, l->n);
	if (next != 0)
		msg_set_int(&m, FA_SESSION, next);
	if (rc == 0)
		rc = hosock_send(fd, &m, NULL, 0);
	free(l->fds);
	l->fds = NULL;
	return rc;
}

int
hosock_status(int fd, uint64_t sessions, uint64_t procs)
{
	struct msg m;

	msg_init(&m, FT_HANDOVER);
	msg_set_int(&m, FA_HO_STEP, HO_STATUS);
	msg_set_int(&m, FA_COUNT, sessions > UINT32_MAX ? UINT32_MAX : sessions);
	msg_set_int(&m, FA_PROCESSES, procs);
	return hosock_send(fd, &m, NULL, 0);
}

/* --- a daemon's hand-over ----------------------------------------------- */

void
hosock_takeover(struct hosock_old *o, const struct hosock_ops *ops,
    const char *path, uid_t uid)
{
	char err[512];
	int rc;

	o->ops = ops;
	if ((rc = hosock_take(path, uid, &o->io.fd, &o->pid, &o->next, err,
	    sizeof(err))) == -1)
		log_fatal("hand-over at %s failed: %s", path, err);
	if (rc == 0)
		log_info("hand-over: no %s running at %s: starting afresh",
		    ops->who, path);
	else
		log_info("hand-over: listeners received from %s process %ld "
		    "at %s", ops->who, (long)o->pid, path);
}

static void
old_read(struct ev_io *io, uint32_t events)
{
	struct hosock_old *o = (struct hosock_old *)(void *)((char *)io -
	    offsetof(struct hosock_old, io));
	const char *why;
	struct msg *m;
	int rc;

	(void)events;
	if ((m = hosock_read(io->fd, 0, &rc, &why)) == NULL && rc == -2)
		return;
	if (m != NULL && m->ho_step == HO_STATUS) {
		o->sessions = m->count;
		o->procs = (m->have & FA_BIT(FA_PROCESSES)) ? m->processes : 1;
		return;
	}
	if (m != NULL && o->ops->old_step(m) == 0)
		return;
	why = rc == 0 ? "it exited" : m != NULL ? "unexpected step" : why;
	ev_del(io);
	close(io->fd);
	io->fd = -1;
	o->sessions = o->procs = 0;
	o->ops->old_gone(why);
}

void
hosock_watch(struct hosock_old *o)
{
	ev_io_init(&o->io, o->io.fd, old_read);
	if (ev_set(&o->io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
}

void
hosock_lost(struct hosock_new *n, const char *why)
{
	if (n->state == HOSOCK_DRAINING)
		log_info("hand-over: %s process %ld closed the hand-over "
		    "connection (%s)", n->ops->who, (long)n->pid, why);
	else
		log_warn("hand-over to %s process %ld failed: %s; serving on",
		    n->ops->who, (long)n->pid, why);
	if (n->ops->lost != NULL)
		n->ops->lost();
	if (n->state != HOSOCK_DRAINING)
		n->state = HOSOCK_IDLE;
	ev_del(&n->io);
	close(n->io.fd);
	n->io.fd = -1;
}

static void
new_read(struct ev_io *io, uint32_t events)
{
	struct hosock_new *n = (struct hosock_new *)(void *)((char *)io -
	    offsetof(struct hosock_new, io));
	struct hosock_fds l = { NULL, 0, 0, 0 };
	const char *why;
	struct msg *m;
	int rc;

	(void)events;
	if ((m = hosock_read(io->fd, 0, &rc, &why)) == NULL && rc == -2)
		return;
	if (m != NULL && n->state == HOSOCK_HELLO && m->ho_step == HO_HELLO) {
		if (hosock_offer(io->fd, &l, n->ops->offer(&l)) == -1) {
			hosock_lost(n, "cannot send the listeners");
			return;
		}
		n->state = HOSOCK_OFFERED;
		log_info("hand-over: %zu listeners offered to %s process %ld",
		    l.n, n->ops->who, (long)n->pid);
	} else if (m == NULL || n->ops->step(m) == -1)
		hosock_lost(n, rc == 0 ? "it closed the connection" : m != NULL ?
		    "unexpected step" : why);
}

static void
lis_accept(struct ev_io *io, uint32_t events)
{
	struct hosock_new *n = (struct hosock_new *)(void *)((char *)io -
	    offsetof(struct hosock_new, lis));
	char busy[64];
	pid_t pid;
	int fd;

	(void)events;
	snprintf(busy, sizeof(busy), "this %s process has handed over already",
	    n->ops->who);
	if ((fd = hosock_accept(io->fd, n->uid, n->state != HOSOCK_IDLE ?
	    busy : NULL, &pid)) == -1)
		return;
	n->pid = pid;
	ev_io_init(&n->io, fd, new_read);
	if (ev_set(&n->io, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	n->state = HOSOCK_HELLO;
	log_info("hand-over: %s process %ld connected on %s", n->ops->who,
	    (long)pid, n->path);
}

int
hosock_serve(struct hosock_new *n, const struct hosock_ops *ops, int lfd,
    const char *path, uid_t uid, char *err, size_t errlen)
{
	if (hosock_publish(path, err, errlen) == -1)
		return -1;
	n->ops = ops;
	n->path = path;
	n->uid = uid;
	ev_io_init(&n->lis, lfd, lis_accept);
	if (ev_set(&n->lis, EPOLLIN) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
	log_info("hand-over: the next %s process can take over at %s",
	    ops->who, path);
	return 0;
}

void
hosock_drain(struct hosock_new *n, uint64_t now, uint64_t drain_ms,
    char *what, size_t whatlen)
{
	n->state = HOSOCK_DRAINING;
	n->drain_ms = drain_ms;
	n->drain_end = drain_ms != 0 ? now + drain_ms : 0;
	if (drain_ms != 0)
		snprintf(what, whatlen, "drain timeout %llu s",
		    (unsigned long long)(drain_ms / 1000));
	else
		snprintf(what, whatlen, "no drain timeout");
}

int
hosock_tick(struct hosock_new *n, const struct hosock_old *o, uint64_t now,
    uint64_t left)
{
	if (n->state != HOSOCK_DRAINING)
		return 0;
	/* What drains behind this process counts too (a chain). */
	if (n->io.fd != -1 && left + o->sessions != n->status_sent &&
	    now - n->status_at >= 1000) {
		(void)hosock_status(n->io.fd, left + o->sessions, 1 + o->procs);
		n->status_sent = left + o->sessions;
		n->status_at = now;
	}
	if (n->drain_end == 0 || now < n->drain_end || left == 0)
		return 0;
	log_warn("drain timeout: cutting %llu sessions still running after "
	    "%llu s", (unsigned long long)left,
	    (unsigned long long)(n->drain_ms / 1000));
	return 1;
}

int
hosock_drained(const struct hosock_new *n, const struct hosock_old *o,
    uint64_t left)
{
	/* One still draining before this process reaches the next one
	 * through it: stay until it has gone too. */
	if (n->state != HOSOCK_DRAINING || left > 0 || o->io.fd != -1)
		return 0;
	log_info("drained: no session left; exiting");
	return 1;
}

void
hosock_drop(int level, const char *why)
{
	struct net_addr a;
	char addr[NET_ADDRSTR];
	int fd;

	while ((fd = hosock_unclaimed(&a)) != -1) {
		net_fmt((struct sockaddr *)&a.ss, addr, sizeof(addr));
		log_msg(level, "hand-over: listener on %s closed: %s", addr, why);
		close(fd);
	}
}
