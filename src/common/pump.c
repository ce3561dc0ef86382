/* pump.c - the byte pump (pump.h). */
#include "common/pump.h"
#include "common/ev.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A pipe this large lets one splice move what a fast socket has, without
 * pinning much: it holds pages only while bytes are in flight. A pipe
 * counts its room in slots, one for each piece of a page it holds, so it
 * can fill well before its bytes do; against 256 KiB pipes, these cut the
 * gateway's CPU per byte by about a tenth with one bulk stream and a
 * quarter with eight (docs/benchmark.md). */
#define PIPE_BIG	(512 * 1024)
/* Empty pipes kept for the next burst: creating one is two descriptors
 * and a system call, and busy pumps take and give back on every drain. */
#define PIPE_POOL	32
/* The kernel charges a pipe's capacity, empty or not, to its user; past
 * fs.pipe-user-pages-soft (64 MiB by default) an unprivileged user's new
 * pipe gets two pages (one before Linux 5.16) and cannot grow. So a
 * process asks for big pipes only while those it holds stay under this
 * (as many as the pool keeps), and later pipes keep the default 64 KiB:
 * many sessions at once still get working pipes, and the big pipes of an
 * edge and an agent on one host take half the default at most. */
#define PIPE_BUDGET	(PIPE_POOL * PIPE_BIG)

int pump_splice = 1;

struct pipe_slot {
	int	fd[2];
	size_t	cap;
};
static struct pipe_slot pipe_pool[PIPE_POOL];
static size_t pipe_pool_n;
static size_t pipe_held;	/* capacity of this process's pipes */

static struct pump *reap_head, **reap_tail = &reap_head;

/* --- pipes -------------------------------------------------------------- */

/* Give d a pipe if it has none. 0, or -1 (out of descriptors, say). */
static int
pipe_take(struct pump_dir *d)
{
	int fds[2], sz;

	if (d->pipe[0] != -1)
		return 0;
	if (pipe_pool_n > 0) {
		pipe_pool_n--;
		d->pipe[0] = pipe_pool[pipe_pool_n].fd[0];
		d->pipe[1] = pipe_pool[pipe_pool_n].fd[1];
		d->pcap = pipe_pool[pipe_pool_n].cap;
	} else {
		if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1)
			return -1;
		/* Bigger where the budget and the system let us (an
		 * unprivileged process may not pass fs.pipe-max-size). */
		if (pipe_held + PIPE_BIG <= PIPE_BUDGET)
			(void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_BIG);
		sz = fcntl(fds[1], F_GETPIPE_SZ);
		d->pipe[0] = fds[0];
		d->pipe[1] = fds[1];
		d->pcap = sz > 0 ? (size_t)sz : 65536;
		pipe_held += d->pcap;
	}
	d->plen = 0;
	d->pfull = 0;
	return 0;
}

/* Give d's pipe back, or close it if it still holds bytes. */
static void
pipe_release(struct pump_dir *d)
{
	if (d->pipe[0] == -1)
		return;
	if (d->plen == 0 && pipe_pool_n < PIPE_POOL) {
		pipe_pool[pipe_pool_n].fd[0] = d->pipe[0];
		pipe_pool[pipe_pool_n].fd[1] = d->pipe[1];
		pipe_pool[pipe_pool_n].cap = d->pcap;
		pipe_pool_n++;
	} else {
		close(d->pipe[0]);
		close(d->pipe[1]);
		pipe_held -= d->pcap;
	}
	d->pipe[0] = d->pipe[1] = -1;
	d->plen = 0;
	d->pfull = 0;
}

/* The kernel cannot splice out of d's pipe after all: move its bytes
 * into d's buffer, which is empty, for the copy path. 0 or -1. */
static int
pipe_to_buf(struct pump_dir *d)
{
	struct buf *b = &d->b;
	ssize_t n;

	if (d->plen > BUF_RELAY_SIZE) {
		if ((b->data = malloc(d->plen)) == NULL)
			return -1;
		b->size = d->plen;
		b->rpos = b->wpos = 0;
	} else if (buf_take(b) == -1)
		return -1;
	while (d->plen > 0) {
		n = read(d->pipe[0], b->data + b->wpos, d->plen);
		if (n <= 0)
			return -1;
		b->wpos += (size_t)n;
		d->plen -= (size_t)n;
	}
	pipe_release(d);
	return 0;
}

/* --- ends --------------------------------------------------------------- */

static void
pump_end(struct pump *p, int side, int clean)
{
	if (p->ended)
		return;
	p->ended = 1;
	p->clean = clean != 0;
	p->end_side = side;
	p->queued = 1;
	p->rnext = NULL;
	*reap_tail = p;
	reap_tail = &p->rnext;
}

int
pump_settle(void)
{
	struct pump *p;
	int n = 0;

	while ((p = reap_head) != NULL) {
		reap_head = p->rnext;
		if (reap_head == NULL)
			reap_tail = &reap_head;
		p->queued = 0;
		n++;
		p->done(p, p->end_side, p->clean);
	}
	return n;
}

static void
set_err(struct pend *e, enum sess_end code, const char *why)
{
	e->code = code;
	snprintf(e->err, sizeof(e->err), "%s", why);
}

/* A write to e failed while e may still have bytes for us: keep reading
 * it (what its peer sent before the reset must not be lost), then end
 * with this error. */
static void
mark_wdead(struct pend *e)
{
	e->wdead = 1;
	if (e->code == SE_NONE)
		e->code = SE_ERROR;
}

/* --- one direction ------------------------------------------------------ */

static int
has_bytes(const struct pump_dir *d)
{
	return buf_len(&d->b) > 0 || d->plen > 0;
}

/* n bytes of d's buffer reached the other side: the prime first, which
 * is not the source's and is neither counted nor reported to it. */
static void
delivered(struct pump *p, int s, size_t n, int spliced)
{
	struct pump_dir *d = &p->d[s];
	struct pend *src = p->e[s];
	size_t k = n < d->prime ? n : d->prime;

	d->prime -= (uint32_t)k;
	n -= k;
	d->bytes += n;
	if (spliced)
		d->spliced += n;
	if (n > 0 && src != NULL && src->ops->drained != NULL)
		src->ops->drained(src, n, !has_bytes(d));
}

/* Whether side s is read now. */
static int
reading(const struct pump *p, int s)
{
	const struct pend *src = p->e[s], *dst = p->e[1 - s];
	const struct pump_dir *d = &p->d[s];

	if (src == NULL || dst == NULL || src->eof || src->failed ||
	    src->ops->recv == NULL || dst->wdead || dst->failed || d->dst_full)
		return 0;
	if (buf_len(&d->b) > 0)
		return buf_room(&d->b) > 0;
	if (d->plen > 0)
		return !d->pfull;
	return 1;
}

/* Whether the next read of side s goes through a pipe. */
static int
splices(const struct pump *p, int s)
{
	const struct pump_dir *d = &p->d[s];

	if (d->plen > 0)
		return 1;		/* already: keep the order */
	return pump_splice && buf_len(&d->b) == 0 && !d->nosplice &&
	    p->e[s]->ops->splice_in != NULL &&
	    p->e[1 - s]->ops->splice_out != NULL;
}

/* Whether the next read of side s goes straight into the other side's
 * output (pull): nothing waits in between, and src is a socket. */
static int
pulls(const struct pump *p, int s)
{
	return !has_bytes(&p->d[s]) && p->e[s]->rawfd != -1 &&
	    p->e[1 - s]->ops->pull != NULL;
}

/* Side s failed: what it sent before failing still goes to the other
 * side, as far as that side takes it now, then the pump ends. */
static void
fail_side(struct pump *p, int s)
{
	struct pump_dir *d = &p->d[s];
	struct pend *src = p->e[s], *dst = p->e[1 - s];
	struct iovec iov;
	ssize_t n;

	src->failed = 1;
	if (src->code == SE_NONE)
		src->code = SE_ERROR;
	while (dst != NULL && !dst->failed && !dst->wdead &&
	    buf_len(&d->b) > 0) {
		iov.iov_base = d->b.data + d->b.rpos;
		iov.iov_len = buf_len(&d->b);
		if ((n = dst->ops->send(dst, &iov, 1)) <= 0)
			break;
		buf_consume(&d->b, (size_t)n);
		delivered(p, s, (size_t)n, 0);
	}
	while (dst != NULL && !dst->failed && !dst->wdead &&
	    buf_len(&d->b) == 0 && d->plen > 0 && dst->ops->splice_out != NULL) {
		if ((n = dst->ops->splice_out(dst, d->pipe[0], d->plen)) <= 0)
			break;
		d->plen -= (size_t)n;
		delivered(p, s, (size_t)n, 1);
	}
	pump_end(p, s, 0);
}

/* Write what waits in direction s. 1 progress, 0 none, -1 the pump
 * ended (dst failed). */
static int
dir_write(struct pump *p, int s)
{
	struct pump_dir *d = &p->d[s];
	struct pend *dst = p->e[1 - s], *src = p->e[s];
	struct iovec iov;
	ssize_t n;
	int progress = 0, r;

	if (buf_len(&d->b) > 0) {
		iov.iov_base = d->b.data + d->b.rpos;
		iov.iov_len = buf_len(&d->b);
		n = dst->ops->send(dst, &iov, 1);
		if (n > 0) {
			buf_consume(&d->b, (size_t)n);
			delivered(p, s, (size_t)n, 0);
			progress = 1;
		} else if (n == PEND_ERR)
			goto dst_failed;
	} else if (d->plen > 0) {
		n = dst->ops->splice_out(dst, d->pipe[0], d->plen);
		if (n > 0) {
			d->plen -= (size_t)n;
			d->pfull = 0;
			delivered(p, s, (size_t)n, 1);
			progress = 1;
		} else if (n == PEND_NOSPLICE) {
			d->nosplice = 1;
			if (pipe_to_buf(d) == -1) {
				set_err(dst, SE_ERROR, "cannot copy out of a pipe");
				goto dst_failed;
			}
			progress = 1;
		} else if (n == PEND_ERR)
			goto dst_failed;
	}
	if (!has_bytes(d)) {
		buf_release(&d->b);
		pipe_release(d);
		if (src->eof && !src->fail_drained && !dst->shut) {
			/* Both directions are over and nothing waits: the close
			 * that ends the pump now says it (one system call less
			 * a session). */
			r = dst->eof && !has_bytes(&p->d[1 - s]) &&
			    dst->ops->close_shuts ? 1 : dst->ops->shut(dst);
			if (r == PEND_ERR)
				goto dst_failed;
			if (r == 1) {
				dst->shut = 1;
				progress = 1;
			}
		}
	}
	return progress;
dst_failed:
	if (dst->eof || dst->failed || dst->ops->recv == NULL) {
		/* Nothing more to read from dst: it is done. */
		fail_side(p, 1 - s);
		return -1;
	}
	mark_wdead(dst);
	return 1;
}

/* The three ways to read side s: into its pipe (splice), straight into
 * the other side's output (pull), or into its buffer (copy). Each returns
 * 1 (progress), 0 (nothing now; *empty if the source has nothing more),
 * or PEND_EOF or PEND_ERR for dir_read. */
static ssize_t
read_splice(struct pump *p, int s, int *empty)
{
	struct pump_dir *d = &p->d[s];
	struct pend *src = p->e[s];
	size_t want;
	ssize_t n;

	if (pipe_take(d) == -1) {
		/* Out of descriptors: this pump copies instead. */
		d->nosplice = 1;
		return 1;
	}
	want = d->pcap - d->plen;
	n = src->ops->splice_in(src, d->pipe[1], want);
	if (n > 0) {
		d->plen += (size_t)n;
		if (d->plen >= d->pcap)
			d->pfull = 1;
		/* A short splice emptied the socket: no need to ask again this
		 * turn, unless it is read without epoll. */
		if ((size_t)n < want && !src->unwatched && !src->held)
			*empty = 1;
		return 1;
	}
	if (n == PEND_AGAIN) {
		/* The socket is empty or the pipe full: with bytes in the
		 * pipe, wait for them to drain first; an empty pipe goes back,
		 * so that a silent session holds none. */
		if (d->plen > 0)
			d->pfull = 1;
		else
			pipe_release(d);
		*empty = 1;
		return 0;
	}
	if (n == PEND_NOSPLICE) {
		d->nosplice = 1;
		if (d->plen > 0)
			d->pfull = 1;
		else
			pipe_release(d);
		return 1;
	}
	return n;
}

static ssize_t
read_pull(struct pump *p, int s, int *empty)
{
	struct pend *src = p->e[s];
	int more = 0;
	ssize_t n;

	n = p->e[1 - s]->ops->pull(p->e[1 - s], src, &more);
	if (n > 0) {
		delivered(p, s, (size_t)n, 0);
		if (!more && !src->unwatched)
			*empty = 1;
		return 1;
	}
	if (n == PEND_FULL) {
		p->d[s].dst_full = 1;
		return 0;
	}
	if (n == PEND_AGAIN) {
		*empty = 1;
		return 0;
	}
	return n;
}

static ssize_t
read_copy(struct pump *p, int s, int *empty)
{
	struct pump_dir *d = &p->d[s];
	struct pend *src = p->e[s];
	size_t want;
	ssize_t n;

	if (buf_take(&d->b) == -1) {
		set_err(src, SE_ERROR, "out of memory");
		return PEND_ERR;
	}
	want = buf_room(&d->b);
	n = src->ops->recv(src, d->b.data + d->b.wpos, want);
	if (n > 0) {
		d->b.wpos += (size_t)n;
		if ((size_t)n < want && !src->unwatched && !src->held)
			*empty = 1;
		return 1;
	}
	if (buf_len(&d->b) == 0)
		buf_release(&d->b);
	if (n == PEND_AGAIN) {
		*empty = 1;
		return 0;
	}
	return n;
}

/* Read side s. 1 progress, 0 none (*empty: it has nothing more now), -1
 * the pump ended (src failed). */
static int
dir_read(struct pump *p, int s, int *empty)
{
	struct pump_dir *d = &p->d[s];
	struct pend *src = p->e[s];
	ssize_t n;

	if (splices(p, s))
		n = read_splice(p, s, empty);
	else if (pulls(p, s))
		n = read_pull(p, s, empty);
	else
		n = read_copy(p, s, empty);
	if (n >= 0)
		return n > 0;
	if (n == PEND_EOF) {
		src->eof = 1;
		if (p->first == -1)
			p->first = s;
		if (d->plen == 0)
			pipe_release(d);
		return 1;
	}
	fail_side(p, s);
	return -1;
}

/* What each endpoint waits for now. */
static void
pump_watch(struct pump *p)
{
	struct pend *e;
	unsigned what;
	int s;

	for (s = 0; s < 2; s++) {
		if ((e = p->e[s]) == NULL)
			continue;
		what = 0;
		if (reading(p, s) && !e->unwatched)
			what |= PEND_RD;
		if (p->e[1 - s] != NULL && !e->wdead && !e->failed &&
		    (has_bytes(&p->d[1 - s]) || p->d[1 - s].dst_full ||
		    (p->e[1 - s]->eof && !e->shut)))
			what |= PEND_WR;
		e->ops->watch(e, what);
	}
}

/* Nothing from side s reaches the other side any more: drop what waits
 * (a pipe that still holds bytes is closed, not pooled). */
static void
dir_drop(struct pump *p, int s)
{
	struct pump_dir *d = &p->d[s];

	buf_consume(&d->b, buf_len(&d->b));
	d->prime = 0;
	buf_release(&d->b);
	pipe_release(d);
}

/* Move everything that can move without blocking, in the directions
 * whose bits are set in dirs (bit s: the bytes from side s). */
static void
pump_run(struct pump *p, unsigned dirs)
{
	struct pend *src, *dst;
	unsigned empty = 0;	/* sides that have nothing more now */
	int s, progress, r, e;

	if (p->ended)
		return;
	do {
		progress = 0;
		for (s = 0; s < 2; s++) {
			src = p->e[s];
			dst = p->e[1 - s];
			if (!(dirs & (1u << s)) || src == NULL || dst == NULL)
				continue;
			if (dst->wdead || dst->failed) {
				dir_drop(p, s);
				continue;
			}
			if ((r = dir_write(p, s)) == -1)
				return;
			progress |= r;
			if (dst->wdead || (empty & (1u << s)) || !reading(p, s))
				continue;
			e = 0;
			if ((r = dir_read(p, s, &e)) == -1)
				return;
			progress |= r;
			if (e)
				empty |= 1u << s;
		}
		if (progress)
			p->last_active = ev_now();
	} while (progress);

	for (s = 0; s < 2; s++) {
		src = p->e[s];
		if (src == NULL || has_bytes(&p->d[s]))
			continue;
		if ((src->wdead && src->eof) || src->fail_drained) {
			/* All that s sent has been passed on; end with the
			 * error it had. */
			src->failed = 1;
			pump_end(p, s, 0);
			return;
		}
	}
	if (p->e[0] != NULL && p->e[1] != NULL && p->e[0]->eof &&
	    p->e[1]->eof && p->e[0]->shut && p->e[1]->shut) {
		pump_end(p, p->first == -1 ? PUMP_OUTER : p->first, 1);
		return;
	}
	pump_watch(p);
}

/* --- the API ------------------------------------------------------------- */

void
pump_init(struct pump *p, pump_done_cb *done, void *arg)
{
	static int hooked;

	if (!hooked) {
		ev_settle_hook(pump_settle);
		hooked = 1;
	}
	memset(p, 0, sizeof(*p));
	p->d[0].pipe[0] = p->d[0].pipe[1] = -1;
	p->d[1].pipe[0] = p->d[1].pipe[1] = -1;
	p->first = -1;
	p->done = done;
	p->arg = arg;
	p->last_active = ev_now();
}

void
pump_attach(struct pump *p, int s, struct pend *e, struct buf *prime,
    int quiet)
{
	struct pump_dir *d = &p->d[1 - s];
	size_t n = prime != NULL ? buf_len(prime) : 0;

	e->p = p;
	e->side = s;
	p->e[s] = e;
	if (n > 0) {
		/* Ahead of whatever waits for e already. */
		if (buf_len(&d->b) > 0 && buf_append(prime, d->b.data +
		    d->b.rpos, buf_len(&d->b), n + buf_len(&d->b)) == -1) {
			buf_free(prime);
			set_err(e, SE_ERROR, "out of memory");
			e->failed = 1;
			pump_end(p, s, 0);
			return;
		}
		buf_free(&d->b);
		d->b = *prime;
		memset(prime, 0, sizeof(*prime));
		d->prime = (uint32_t)n;
	} else if (prime != NULL)
		buf_free(prime);
	if (p->e[1 - s] == NULL)
		return;
	/* Both sides are here: move what waits, and read what may wait in
	 * the other side already; not s itself if it is quiet (epoll says
	 * when it speaks). */
	pump_run(p, quiet ? 1u << (1 - s) : 3u);
}

int
pump_push(struct pump *p, int s, const struct iovec *iov, int cnt,
    size_t max)
{
	struct pump_dir *d = &p->d[s];
	struct pend *src = p->e[s], *dst = p->e[1 - s];
	size_t skip = 0, total = 0, sent = 0, k;
	ssize_t n;
	int i;

	for (i = 0; i < cnt; i++)
		total += iov[i].iov_len;
	if (p->ended || total == 0)
		return 0;
	if (dst != NULL && (dst->wdead || dst->failed))
		return 0;	/* nothing reaches it any more: dropped */
	if (buf_len(&d->b) + total > max)
		return -1;
	/* Straight on when nothing waits before these bytes. */
	if (dst != NULL && !has_bytes(d)) {
		n = dst->ops->send(dst, iov, cnt);
		if (n > 0) {
			sent = skip = (size_t)n;
			d->bytes += (uint64_t)n;
			p->last_active = ev_now();
		} else if (n == PEND_ERR) {
			if (dst->eof || dst->ops->recv == NULL)
				fail_side(p, 1 - s);
			else {
				mark_wdead(dst);
				pump_run(p, 3);
			}
			return 0;
		}
	}
	for (i = 0; i < cnt; i++) {
		k = iov[i].iov_len;
		if (skip >= k) {
			skip -= k;
			continue;
		}
		if (buf_append(&d->b, (const uint8_t *)iov[i].iov_base + skip,
		    k - skip, max) == -1) {
			set_err(src, SE_ERROR, "out of memory");
			fail_side(p, s);
			return 0;
		}
		skip = 0;
	}
	if (sent > 0 && src->ops->drained != NULL)
		src->ops->drained(src, sent, !has_bytes(d));
	/* What is left waits for dst to have room. */
	if (dst != NULL && has_bytes(d))
		pump_watch(p);
	return 0;
}

void
pump_eof(struct pump *p, int s)
{
	p->e[s]->eof = 1;
	if (p->first == -1)
		p->first = s;
	pump_run(p, 3);
}

void
pump_fail(struct pump *p, int s, enum sess_end code, const char *why)
{
	struct pend *e = p->e[s];

	set_err(e, code, why);
	e->fail_drained = 1;
	if (p->e[1 - s] == NULL) {
		/* Nobody to pass anything on to. */
		fail_side(p, s);
		return;
	}
	pump_run(p, 3);
}

void
pump_wake(struct pump *p, int s, unsigned what)
{
	unsigned dirs = 0;

	if (what & PEND_RD)
		dirs |= 1u << s;
	if (what & PEND_WR) {
		dirs |= 1u << (1 - s);
		p->d[1 - s].dst_full = 0;
	}
	pump_run(p, dirs);
}

void
pump_free(struct pump *p, enum sess_end code, const char *why)
{
	int s;

	if (p->queued) {
		/* Cut before done() ran: it will not run. */
		struct pump **pp;

		for (pp = &reap_head; *pp != NULL; pp = &(*pp)->rnext)
			if (*pp == p) {
				*pp = p->rnext;
				break;
			}
		reap_tail = &reap_head;
		while (*reap_tail != NULL)
			reap_tail = &(*reap_tail)->rnext;
		p->queued = 0;
	}
	p->ended = 1;
	p->cut_code = code;
	snprintf(p->cut_why, sizeof(p->cut_why), "%s", why != NULL ? why : "");
	for (s = 0; s < 2; s++) {
		if (p->e[s] != NULL)
			p->e[s]->ops->close(p->e[s], code != SE_NONE);
		p->e[s] = NULL;
		p->d[s].b.rpos = p->d[s].b.wpos = 0;
		buf_release(&p->d[s].b);
		buf_free(&p->d[s].b);	/* a prime buffer is not pooled */
		/* Bytes still in a pipe are dropped with it (pipe_release
		 * closes a pipe that is not empty). */
		pipe_release(&p->d[s]);
	}
}

uint64_t
pump_spliced(const struct pump *p)
{
	return p->d[0].spliced + p->d[1].spliced;
}

enum sess_end
pump_outcome(const struct pump *p, int side, int clean, int outer_server,
    const char *const names[2], char *detail, size_t len)
{
	const struct pend *e = p->e[side];

	detail[0] = '\0';
	if (clean)
		return (side == PUMP_OUTER) != (outer_server != 0) ?
		    SE_CLIENT_CLOSED : SE_SERVER_CLOSED;
	if (names[side] != NULL)
		snprintf(detail, len, "%s: %s", names[side], e->err);
	else
		snprintf(detail, len, "%s", e->err);
	return e->code != SE_NONE ? e->code : SE_ERROR;
}
