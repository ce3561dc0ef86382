/* relay_mt.c - relay threads: bulk zero-copy relays off the main loop.
 *
 * One loop thread moving every session's bytes is a pipeline stage: while
 * it splices for one session, the others wait, and on a small machine the
 * cores idle between stages. A relay that has shown it carries a bulk
 * transfer (both sides plain sockets, RELAY_MT_BYTES moved) therefore
 * moves to one of a few threads, each with its own epoll loop, which run
 * such relays and nothing else: no session state, no configuration, no
 * parsing. Everything else stays on the main loop.
 *
 * A relay has one owner at a time (struct relay's mt), changed only under
 * mt_mu:
 *
 *   MT_MAIN --adopt--> MT_WORKER --ends--> MT_DONE --main loop--> MT_MAIN
 *                          |                  (done() runs there)
 *                          +--relay_free--> MT_RECLAIM --thread--> MT_BACK
 *
 * The main thread waits for MT_BACK on a condition variable; a relay
 * thread never waits for the main thread, so the two cannot deadlock.
 * Relay threads block every signal: signals stay the main loop's. */
#include "common/relay_mt.h"
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

TAILQ_HEAD(relayq, relay);

struct rworker {
	pthread_t	 th;
	int		 epfd;		/* its loop's epoll set */
	int		 efd;		/* eventfd: work in a queue */
	int		 running;
	int		 init_err;	/* set by the thread as it starts */
	unsigned	 n;		/* relays it owns */
	struct relayq	 inbox;		/* handed over, not started */
	struct relayq	 active;	/* running there */
	struct relayq	 reclaim;	/* the main thread wants back */
};

static pthread_mutex_t mt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mt_cv = PTHREAD_COND_INITIALIZER;
static struct rworker workers[RELAY_MT_MAX];
static unsigned nworkers;
static struct relayq doneq = TAILQ_HEAD_INITIALIZER(doneq);
static int main_efd = -1;
static struct ev_io main_io;
static uint64_t handoffs;
static _Thread_local struct rworker *self;

/* Changed under mt_mu, but relay_free() reads it without the lock to
 * see whether it must take the lock at all. */
static void
owner(struct relay *r, int mt)
{
	__atomic_store_n(&r->mt, mt, __ATOMIC_RELAXED);
}

static void
wake(int efd)
{
	uint64_t one = 1;

	/* Fails only when the counter would overflow: it is then readable
	 * already. */
	(void)!write(efd, &one, sizeof(one));
}

static void
drain(int efd)
{
	uint64_t v;

	(void)!read(efd, &v, sizeof(v));
}

int
relay_mt_here(void)
{
	return self != NULL;
}

uint64_t
relay_threads_handoffs(void)
{
	return handoffs;
}

unsigned
relay_threads_auto(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > RELAY_MT_MAX ? RELAY_MT_MAX : (unsigned)n;
}

/* --- the main loop's side ----------------------------------------------- */

/* Relays that ended in a thread: their done() runs here. One at a time,
 * with the lock dropped, as done() may free another relay of the queue
 * (relay_free takes it out first). */
static void
main_wake(struct ev_io *io, uint32_t events)
{
	struct relay *r;

	(void)events;
	drain(io->fd);
	for (;;) {
		pthread_mutex_lock(&mt_mu);
		if ((r = TAILQ_FIRST(&doneq)) != NULL) {
			TAILQ_REMOVE(&doneq, r, mt_q);
			owner(r, MT_MAIN);
			r->w = NULL;
		}
		pthread_mutex_unlock(&mt_mu);
		if (r == NULL)
			break;
		r->done(r, r->mt_first, r->mt_failed ? r->mt_err : NULL);
	}
}

int
relay_threads(unsigned n)
{
	struct rworker *w;
	unsigned i;

	if (n > RELAY_MT_MAX)
		n = RELAY_MT_MAX;
	if (n == 0 || nworkers > 0)
		return 0;
	if ((main_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		return -1;
	ev_io_init(&main_io, main_efd, main_wake);
	if (ev_set(&main_io, EPOLLIN) == -1)
		goto fail;
	for (i = 0; i < n; i++) {
		w = &workers[i];
		TAILQ_INIT(&w->inbox);
		TAILQ_INIT(&w->active);
		TAILQ_INIT(&w->reclaim);
		w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (w->efd == -1 || w->epfd == -1) {
			if (w->efd != -1)
				close(w->efd);
			if (w->epfd != -1)
				close(w->epfd);
			break;
		}
	}
	if (i == 0)
		goto fail;
	nworkers = i;
	return 0;
fail:
	ev_del(&main_io);
	close(main_efd);
	main_efd = -1;
	return -1;
}

/* --- a relay thread ----------------------------------------------------- */

/* Work in the queues: start what was handed over, give back what the
 * main thread asks for. One relay per lock, as relay_resume may end a
 * relay, which takes the lock. */
static void
worker_wake(struct ev_io *io, uint32_t events)
{
	struct rworker *w = self;
	struct relay *r;

	(void)events;
	drain(io->fd);
	for (;;) {
		pthread_mutex_lock(&mt_mu);
		if ((r = TAILQ_FIRST(&w->inbox)) != NULL) {
			TAILQ_REMOVE(&w->inbox, r, mt_q);
			TAILQ_INSERT_TAIL(&w->active, r, mt_q);
		}
		pthread_mutex_unlock(&mt_mu);
		if (r == NULL)
			break;
		/* If the main thread asks for r back meanwhile, it waits for
		 * the loop below: r is still this thread's. */
		relay_resume(r);
	}
	for (;;) {
		pthread_mutex_lock(&mt_mu);
		if ((r = TAILQ_FIRST(&w->reclaim)) != NULL)
			TAILQ_REMOVE(&w->reclaim, r, mt_q);
		pthread_mutex_unlock(&mt_mu);
		if (r == NULL)
			break;
		relay_suspend(r);
		pthread_mutex_lock(&mt_mu);
		owner(r, MT_BACK);
		w->n--;
		pthread_cond_broadcast(&mt_cv);
		pthread_mutex_unlock(&mt_mu);
	}
}

static void *
worker_main(void *arg)
{
	struct rworker *w = arg;
	struct ev_io io;

	self = w;
	ev_use(w->epfd);
	ev_io_init(&io, w->efd, worker_wake);
	pthread_mutex_lock(&mt_mu);
	w->init_err = ev_set(&io, EPOLLIN) == -1 ? errno : 0;
	w->running = w->init_err == 0 ? 1 : -1;
	pthread_cond_broadcast(&mt_cv);
	pthread_mutex_unlock(&mt_mu);
	if (w->init_err != 0)
		return NULL;
	for (;;)
		if (ev_run_once(-1) == -1)
			log_fatal("relay thread: epoll_wait: %s", strerror(errno));
	return NULL;
}

/* Start w's thread; 0, or -1 with a log line. */
static int
worker_start(struct rworker *w)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->th, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_warn("relay thread not started (%s): relays stay on the "
		    "main loop", strerror(rc));
		return -1;
	}
	pthread_mutex_lock(&mt_mu);
	while (w->running == 0)
		pthread_cond_wait(&mt_cv, &mt_mu);
	pthread_mutex_unlock(&mt_mu);
	if (w->running == -1) {
		log_warn("relay thread cannot watch its queue (%s): relays "
		    "stay on the main loop", strerror(w->init_err));
		(void)pthread_join(w->th, NULL);
		return -1;
	}
	return 0;
}

/* --- moving a relay ----------------------------------------------------- */

int
relay_mt_adopt(struct relay *r)
{
	struct rworker *w = &workers[0];
	unsigned i;

	if (nworkers == 0 || self != NULL)
		return -1;
	/* The thread with the fewest relays. */
	pthread_mutex_lock(&mt_mu);
	for (i = 1; i < nworkers; i++)
		if (workers[i].n < w->n)
			w = &workers[i];
	pthread_mutex_unlock(&mt_mu);
	if (w->running == 0 && worker_start(w) == -1) {
		/* Do not try again for every relay. */
		nworkers = 0;
		return -1;
	}
	relay_suspend(r);
	pthread_mutex_lock(&mt_mu);
	owner(r, MT_WORKER);
	r->w = w;
	w->n++;
	TAILQ_INSERT_TAIL(&w->inbox, r, mt_q);
	pthread_mutex_unlock(&mt_mu);
	wake(w->efd);
	handoffs++;
	return 0;
}

void
relay_mt_finish(struct relay *r, int first, const char *err)
{
	struct rworker *w = self;
	int tell = 0;

	relay_suspend(r);
	r->mt_first = first;
	r->mt_failed = err != NULL;
	snprintf(r->mt_err, sizeof(r->mt_err), "%s", err != NULL ? err : "");
	pthread_mutex_lock(&mt_mu);
	/* MT_RECLAIM: the main thread frees r anyway, and waits for the
	 * reclaim queue to give it back. */
	if (r->mt == MT_WORKER) {
		TAILQ_REMOVE(&w->active, r, mt_q);
		w->n--;
		owner(r, MT_DONE);
		TAILQ_INSERT_TAIL(&doneq, r, mt_q);
		tell = 1;
	}
	pthread_mutex_unlock(&mt_mu);
	if (tell)
		wake(main_efd);
}

void
relay_mt_reclaim(struct relay *r)
{
	struct rworker *w = r->w;
	struct relay *q;

	pthread_mutex_lock(&mt_mu);
	if (r->mt == MT_DONE) {
		TAILQ_REMOVE(&doneq, r, mt_q);
	} else if (r->mt == MT_WORKER) {
		/* Not started there yet: nothing of it is in that thread's
		 * loop, take it straight back. */
		TAILQ_FOREACH(q, &w->inbox, mt_q)
			if (q == r)
				break;
		if (q != NULL) {
			TAILQ_REMOVE(&w->inbox, r, mt_q);
			w->n--;
		} else {
			TAILQ_REMOVE(&w->active, r, mt_q);
			TAILQ_INSERT_TAIL(&w->reclaim, r, mt_q);
			owner(r, MT_RECLAIM);
			wake(w->efd);
			while (r->mt == MT_RECLAIM)
				pthread_cond_wait(&mt_cv, &mt_mu);
		}
	}
	owner(r, MT_MAIN);
	r->w = NULL;
	pthread_mutex_unlock(&mt_mu);
}
