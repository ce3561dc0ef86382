/* bg.h - work that may block the agent for seconds (a DNS lookup,
 * reading the configuration and looking up its names) run in a thread of
 * its own, its end handed back to the event loop. Nothing else in the
 * agent runs outside the loop: the work touches only what it was given,
 * and what it found is used by done(), in the loop. */
#ifndef SP_BG_H
#define SP_BG_H

#define BG_MAX	64		/* at once; more is EBUSY */

typedef void bg_fn(void *arg);

/* work(arg) in a short-lived detached thread with every signal blocked
 * (now: at once, here, for work that cannot wait on anything); done(arg)
 * later from the loop, never from here. 0, or -1 with errno (EBUSY with
 * BG_MAX running). A caller that changes its mind lets done() drop the
 * result: arg must live until then. */
int	bg_run(bg_fn *work, bg_fn *done, void *arg, int now);
/* Work started whose done() has not run yet. */
unsigned bg_pending(void);

#endif
