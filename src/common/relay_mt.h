/* relay_mt.h - between relay.c and relay_mt.c only: how a relay moves to
 * a relay thread and back. Everything here runs with the relay owned by
 * the calling thread. */
#ifndef SP_RELAY_MT_H
#define SP_RELAY_MT_H

#include "common/relay.h"

/* Who owns a relay (struct relay's mt). */
enum {
	MT_MAIN = 0,	/* the main loop: the default */
	MT_WORKER,	/* a relay thread (queued for it or running there) */
	MT_RECLAIM,	/* the main thread waits to have it back */
	MT_BACK,	/* given back: the main thread goes on */
	MT_DONE,	/* ended in its thread; done() waits for the main loop */
};

/* 1 on a relay thread. */
int	relay_mt_here(void);
/* Main loop: hand r over if threads are on. 0 if it went (r is no
 * longer the caller's to touch), -1 if it stays. */
int	relay_mt_adopt(struct relay *r);
/* Relay thread: r ended; done() is to run on the main loop. */
void	relay_mt_finish(struct relay *r, int first, const char *err);
/* Main loop: take r back (it is not MT_MAIN) before freeing it. */
void	relay_mt_reclaim(struct relay *r);

/* relay.c: stop watching r's sockets in this thread's loop; watch them
 * and move what can be moved, in this thread's loop. */
void	relay_suspend(struct relay *r);
void	relay_resume(struct relay *r);

#endif
