/* dial.h - non-blocking outgoing TCP: the one place in the agent that
 * calls connect() (the edge never links this). */
#ifndef SP_DIAL_H
#define SP_DIAL_H

#include <stddef.h>

#include "common/ev.h"
#include "common/net.h"

/* done() gets the connected fd, or -1 and an errno value. */
struct dial;
typedef void dial_cb(struct dial *d, int fd, int err);
struct dial {
	struct ev_io	 io;
	dial_cb		*done;
	void		*arg;
	int		 active;
	int		 known;		/* the outcome is in err already */
	int		 err;
};

/* Start connecting; done() runs later from the loop, never from here.
 * Returns 0, or -1 with errno set. */
int	dial_start(struct dial *d, const struct net_addr *a, dial_cb *cb,
	    void *arg);
/* As dial_start, from address src, which need not be this host's
 * (IP_TRANSPARENT: CAP_NET_ADMIN; tsrc.h); port 0: the kernel picks. */
int	dial_start_from(struct dial *d, const struct net_addr *a,
	    const struct net_addr *src, dial_cb *cb, void *arg);
void	dial_cancel(struct dial *d);
/* Resolve host:port (numeric or by name, blocking). 0 or -1 with err. */
int	dial_resolve(const char *host, const char *port, struct net_addr *a,
	    char *err, size_t errlen);

/* The same off the event loop: a lookup by name may wait seconds on a DNS
 * server, and nothing else may wait with it. A thread of its own runs
 * dial_resolve (bg.h; an address needs none); cb runs later from the
 * loop, never from here, with the address, or with NULL and why. NULL if
 * the lookup could not start: errno EBUSY with BG_MAX jobs at once, or
 * why no thread. */
struct dial_lookup;
typedef void dial_lookup_cb(void *arg, const struct net_addr *a,
	    const char *err);
struct dial_lookup *dial_lookup(const char *host, const char *port,
	    dial_lookup_cb *cb, void *arg);
/* cb will not run. The thread, if still asking, finishes in the
 * background and its answer is dropped. */
void	dial_lookup_cancel(struct dial_lookup *l);

#endif
