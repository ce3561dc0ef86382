/* bg.c - work off the event loop (bg.h). */
#include "agent/bg.h"
#include "common/ev.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/queue.h>
#include <unistd.h>

struct bg {
	bg_fn		*work;
	bg_fn		*done;
	void		*arg;
	/* Every job not yet come back, the loop's alone: one that is only
	 * a pointer in the pipe at exit is still reachable. */
	LIST_ENTRY(bg)	 entry;
};

/* The threads hand finished jobs back through this pipe, a pointer a
 * write (atomic: far below PIPE_BUF), read by the loop; the pipe orders
 * the work's writes before the loop's reads. */
static int bg_pipe[2] = { -1, -1 };
static struct ev_io bg_io;
static LIST_HEAD(, bg) bg_list = LIST_HEAD_INITIALIZER(bg_list);
static unsigned bg_n;

/* In the thread, or at once. The write blocks at worst: the loop always
 * drains the pipe, which holds far more than BG_MAX pointers. */
static void *
bg_thread(void *p)
{
	struct bg *b = p;

	b->work(b->arg);
	while (write(bg_pipe[1], &b, sizeof(b)) == -1 && errno == EINTR)
		;
	return NULL;
}

static void
bg_read(struct ev_io *io, uint32_t events)
{
	struct bg *b;

	(void)events;
	while (read(io->fd, &b, sizeof(b)) == (ssize_t)sizeof(b)) {
		bg_n--;
		LIST_REMOVE(b, entry);
		b->done(b->arg);
		free(b);
	}
}

static int
bg_init(void)
{
	if (bg_pipe[0] != -1)
		return 0;
	if (pipe2(bg_pipe, O_CLOEXEC) == -1)
		return -1;
	/* Only the loop's end reads without waiting: a thread's write
	 * waits for room rather than lose a job. */
	ev_io_init(&bg_io, bg_pipe[0], bg_read);
	if (fcntl(bg_pipe[0], F_SETFL, O_NONBLOCK) == -1 ||
	    ev_set(&bg_io, EPOLLIN) == -1) {
		close(bg_pipe[0]);
		close(bg_pipe[1]);
		bg_pipe[0] = bg_pipe[1] = -1;
		return -1;
	}
	return 0;
}

int
bg_run(bg_fn *work, bg_fn *done, void *arg, int now)
{
	struct bg *b;
	sigset_t all, old;
	pthread_attr_t at;
	pthread_t t;
	int rc = 0;

	if (bg_n >= BG_MAX) {
		errno = EBUSY;
		return -1;
	}
	if (bg_init() == -1 || (b = calloc(1, sizeof(*b))) == NULL)
		return -1;
	b->work = work;
	b->done = done;
	b->arg = arg;
	if (now)
		(void)bg_thread(b);
	else {
		/* Signals stay the loop's: the thread starts with all
		 * blocked. */
		sigfillset(&all);
		(void)pthread_attr_init(&at);
		(void)pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		(void)pthread_sigmask(SIG_SETMASK, &all, &old);
		rc = pthread_create(&t, &at, bg_thread, b);
		(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
		(void)pthread_attr_destroy(&at);
	}
	if (rc != 0) {
		free(b);
		errno = rc;
		return -1;
	}
	LIST_INSERT_HEAD(&bg_list, b, entry);
	bg_n++;
	return 0;
}

unsigned
bg_pending(void)
{
	return bg_n;
}
