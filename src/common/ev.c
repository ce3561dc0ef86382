/* ev.c - epoll event loop, one per thread.
 * Level-triggered on purpose: a handler that stops early (back-pressure,
 * a full buffer) is called again while the condition holds, so no state
 * is needed to remember that a socket still has data. */
#include "common/ev.h"
#include "common/log.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EV_BATCH 256
#define EV_DEFER 64

#define EV_HOOKS 4

static int ev_fd = -1;
static struct epoll_event ev_batch[EV_BATCH];
static int ev_pos, ev_count;
static int ev_last_n;
static uint64_t ev_cached_now;
static struct ev_deferred {
	struct ev_io	*io;
	uint32_t	 events;
} ev_deferq[EV_DEFER];
static int ev_ndefer;
static ev_hook *ev_hooks[EV_HOOKS];
static int ev_nhooks;

int
ev_init(void)
{
	ev_fd = epoll_create1(EPOLL_CLOEXEC);
	if (ev_fd == -1)
		return -1;
	ev_now_update();
	return 0;
}

void
ev_settle_hook(ev_hook *h)
{
	if (ev_nhooks == EV_HOOKS)
		log_fatal("ev_settle_hook: too many hooks");
	ev_hooks[ev_nhooks++] = h;
}

void
ev_settle(void)
{
	int i, busy;

	/* One hook's work may give another some: run them until all rest. */
	do {
		busy = 0;
		for (i = 0; i < ev_nhooks; i++)
			busy |= ev_hooks[i]() > 0;
	} while (busy);
}

void
ev_io_init(struct ev_io *io, int fd, ev_cb *cb)
{
	io->fd = fd;
	io->cb = cb;
	io->mask = 0;
	io->registered = 0;
}

int
ev_set(struct ev_io *io, uint32_t mask)
{
	struct epoll_event e;

	if (io->registered && io->mask == mask)
		return 0;
	memset(&e, 0, sizeof(e));
	e.events = mask;
	e.data.ptr = io;
	if (epoll_ctl(ev_fd, io->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
	    io->fd, &e) == -1)
		return -1;
	io->registered = 1;
	io->mask = mask;
	return 0;
}

void
ev_forget(struct ev_io *io)
{
	int i;

	io->registered = 0;
	io->mask = 0;
	for (i = ev_pos; i < ev_count; i++)
		if (ev_batch[i].data.ptr == io)
			ev_batch[i].data.ptr = NULL;
	for (i = 0; i < ev_ndefer; i++)
		if (ev_deferq[i].io == io)
			ev_deferq[i].io = NULL;
}

/* No caller sets every bit: an adopted registration always differs from
 * the mask asked for, so ev_set re-points it. */
#define EV_MASK_STALE	UINT32_MAX

int
ev_release(struct ev_io *io)
{
	int registered = io->registered;

	ev_forget(io);
	return registered;
}

void
ev_adopt(struct ev_io *io, int registered)
{
	io->registered = registered;
	io->mask = registered ? EV_MASK_STALE : 0;
}

int
ev_defer(struct ev_io *io, uint32_t events)
{
	int i;

	/* Once in the queue: a callback that defers itself each time it
	 * runs, while epoll also reports it, must not fill the queue. */
	for (i = 0; i < ev_ndefer; i++)
		if (ev_deferq[i].io == io) {
			ev_deferq[i].events |= events;
			return 0;
		}
	if (ev_ndefer == EV_DEFER)
		return -1;
	ev_deferq[ev_ndefer].io = io;
	ev_deferq[ev_ndefer].events = events;
	ev_ndefer++;
	return 0;
}

/* Run what was deferred before this turn; what those callbacks defer
 * waits for the next, so a callback that defers itself cannot spin
 * here. Returns how many ran. */
static int
ev_run_deferred(void)
{
	struct ev_io *io;
	int i, n = ev_ndefer, ran = 0;

	for (i = 0; i < n; i++) {
		if ((io = ev_deferq[i].io) == NULL)
			continue;
		ev_deferq[i].io = NULL;
		io->cb(io, ev_deferq[i].events);
		ev_settle();
		ran++;
	}
	memmove(ev_deferq, ev_deferq + n,
	    (size_t)(ev_ndefer - n) * sizeof(ev_deferq[0]));
	ev_ndefer -= n;
	return ran;
}

void
ev_del(struct ev_io *io)
{
	if (io->registered)
		(void)epoll_ctl(ev_fd, EPOLL_CTL_DEL, io->fd, NULL);
	ev_forget(io);
}

int
ev_dispatched(void)
{
	return ev_last_n;
}

uint64_t
ev_now_update(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ev_cached_now = (uint64_t)ts.tv_sec * 1000u +
	    (uint64_t)ts.tv_nsec / 1000000u;
	return ev_cached_now;
}

uint64_t
ev_now(void)
{
	return ev_cached_now;
}

int
ev_run_once(int timeout_ms)
{
	struct ev_io *io;
	int n;

	/* Deferred work is ready now: only poll. */
	n = epoll_wait(ev_fd, ev_batch, EV_BATCH, ev_ndefer > 0 ? 0 : timeout_ms);
	ev_now_update();
	ev_last_n = n > 0 ? n : 0;
	if (n == -1 && errno != EINTR)
		return -1;
	if (n == -1)
		n = 0;
	ev_count = n;
	/* Log records of this turn go out after its work (log.c). */
	log_hold();
	for (ev_pos = 0; ev_pos < ev_count; ) {
		io = ev_batch[ev_pos].data.ptr;
		ev_pos++;
		if (io != NULL) {
			io->cb(io, ev_batch[ev_pos - 1].events);
			ev_settle();
		}
	}
	ev_count = ev_pos = 0;
	ev_last_n += ev_run_deferred();
	log_flush();
	return 0;
}
