/* ev.h - a small epoll event loop (level-triggered). */
#ifndef SP_EV_H
#define SP_EV_H

#include <stdint.h>
#include <sys/epoll.h>

struct ev_io;
typedef void ev_cb(struct ev_io *io, uint32_t events);

/* Embed one per watched fd. mask is the epoll interest currently set;
 * registered says whether the fd is in the epoll set at all. */
struct ev_io {
	int		 fd;
	ev_cb		*cb;
	uint32_t	 mask;
	int		 registered;
};

int	 ev_init(void);
/* Work that must not run inside another callback (a session's end, which
 * frees what the callback may still be using) is queued by its module and
 * done by a hook the loop runs after every callback, until every hook
 * returns 0 (it did nothing). At most four hooks. */
typedef int ev_hook(void);
void	 ev_settle_hook(ev_hook *h);
/* Run the hooks now (outside the loop: at shut-down). */
void	 ev_settle(void);
void	 ev_io_init(struct ev_io *io, int fd, ev_cb *cb);
/* Set the interest mask, adding the fd to the epoll set if needed.
 * Cheap when the mask does not change. Returns 0 or -1. */
int	 ev_set(struct ev_io *io, uint32_t mask);
/* Remove the fd from the set. Events for it still queued in the current
 * batch are dropped, so the owner may free io right after this call. */
void	 ev_del(struct ev_io *io);
/* As ev_del, without the system call, for an fd that is closed right
 * after: close() takes it out of the epoll set, as long as no other
 * descriptor refers to the same socket (nothing here dup()s one). */
void	 ev_forget(struct ev_io *io);
/* Dispatch io with events in this loop turn or the next, without asking
 * the kernel: for a readiness the caller knows already (a connect that
 * finished at once), while keeping callbacks from re-entering whoever
 * started the operation. An io is queued once (events add up).
 * ev_del/ev_forget cancel it. Returns 0, or -1 when too many wait (the
 * caller then watches the fd instead). */
int	 ev_defer(struct ev_io *io, uint32_t events);
/* Hand io's fd to a new owner that watches it before the loop next
 * waits: io lets go without a system call and returns whether the fd is
 * in the epoll set; the new owner passes that to ev_adopt after its
 * ev_io_init, and its first ev_set (or ev_del) then re-points (or drops)
 * the registration: one EPOLL_CTL_MOD instead of a DEL here and an ADD
 * there. Until then events for the fd would name the old owner, which is
 * why the hand-over must not span a wait. */
int	 ev_release(struct ev_io *io);
void	 ev_adopt(struct ev_io *io, int registered);
/* Wait up to timeout_ms and dispatch. Returns 0, or -1 on a fatal error. */
int	 ev_run_once(int timeout_ms);
/* How many events the last ev_run_once dispatched: 0 means the loop had
 * nothing to do (the time-out passed, or a poll found nothing). */
int	 ev_dispatched(void);
/* Monotonic milliseconds. Cached per loop turn; ev_now_update refreshes. */
uint64_t ev_now(void);
uint64_t ev_now_update(void);

#endif
