/* fuzz_mux.c - the bytes an opener sends on a mux link, as an acceptor
 * reads them from a plain socketpair link: open() accepts every other
 * stream (attaching a local socketpair, some with a PROXY-like prime,
 * some held unattached) and refuses the rest. The loop runs until the
 * input is consumed and the link has ended (the input is followed by
 * EOF), or was lost earlier. It must never crash, leak or hang; lost()
 * frees the link, so a use after it is caught too. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/mux.h"
#include "common/relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXS		64
#define MAX_TURNS	200000

struct fs {
	struct mux_stream *s;
	int		 fd;		/* the backend's end, or -1 */
};

static struct mux *M;
static int nlost, nopen, ns;
static struct fs S[MAXS];

static void
done_cb(struct mux_stream *s, int first, const char *err, int refused)
{
	struct fs *f = s->arg;

	(void)first;
	(void)refused;
	if (f->s != s)
		abort();
	mux_stream_free(s, err != NULL);
	f->s = NULL;
}

static void
lost_cb(struct mux *m, const char *why)
{
	int i;

	if (m != M || nlost++ > 0 || why == NULL)
		abort();
	/* Every stream ended (done) before the link. */
	for (i = 0; i < ns; i++)
		if (S[i].s != NULL)
			abort();
	mux_free(m);
	free(m);
	M = NULL;
}

static void
nonblock(int fd)
{
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void
open_cb(struct mux *m, uint32_t sid, const uint8_t *p, size_t n)
{
	struct buf prime = { 0 };
	struct fs *f;
	int sv[2];

	(void)p;
	(void)n;
	if (nopen++ % 2 == 1 || ns >= MAXS) {
		mux_refuse(m, sid, "no backend");
		return;
	}
	f = &S[ns++];
	f->fd = -1;
	if ((f->s = mux_stream_accept(m, sid, done_cb, f)) == NULL)
		return;
	if (sid % 5 == 0)
		return;		/* held: bytes wait, unattached */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1) {
		mux_stream_refuse(f->s, "no socket");
		f->s = NULL;
		return;
	}
	nonblock(sv[0]);
	nonblock(sv[1]);
	f->fd = sv[1];
	if (sid % 3 == 0)
		(void)buf_append(&prime, "PROXY UNKNOWN\r\n", 15, 1024);
	/* -1: the stream ended and done() ran (f->s is NULL). */
	(void)mux_stream_attach(f->s, sv[0], sid % 3 == 0 ? &prime : NULL);
	buf_free(&prime);
	/* Backends that answer, and ones that are done at once. */
	if (sid % 4 == 1)
		(void)shutdown(sv[1], SHUT_WR);
	else if (sid % 4 == 2)
		(void)send(sv[1], "220 hello\r\n", 11, MSG_NOSIGNAL);
}

static const struct mux_ops ops = { open_cb, lost_cb };

static void
drain(int fd)
{
	uint8_t b[65536];

	while (fd != -1 && recv(fd, b, sizeof(b), 0) > 0)
		;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	size_t off = 0;
	ssize_t n;
	int l[2], shut = 0, turns = 0, i;

	if (!init) {
		if (ev_init() == -1)
			abort();
		signal(SIGPIPE, SIG_IGN);
		init = 1;
	}
	nlost = nopen = ns = 0;
	memset(S, 0, sizeof(S));
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, l) == -1)
		abort();
	nonblock(l[0]);
	nonblock(l[1]);
	if ((M = calloc(1, sizeof(*M))) == NULL)
		abort();
	if (mux_start(M, l[1], NULL, 0, NULL, &ops, NULL) == -1)
		abort();
	while (nlost == 0) {
		if (off < size) {
			n = send(l[0], data + off, size - off, MSG_NOSIGNAL);
			if (n > 0)
				off += (size_t)n;
			else if (errno != EAGAIN)
				abort();	/* the link stays open until lost */
		}
		if (off == size && !shut) {
			(void)shutdown(l[0], SHUT_WR);
			shut = 1;
		}
		/* The peer and the backends read all they get. */
		drain(l[0]);
		for (i = 0; i < ns; i++)
			drain(S[i].fd);
		(void)ev_run_once(0);
		if (M != NULL && turns % 64 == 0)
			(void)mux_tick(M, ev_now());
		if (++turns > MAX_TURNS)
			abort();	/* hang */
	}
	close(l[0]);
	for (i = 0; i < ns; i++)
		if (S[i].fd != -1)
			close(S[i].fd);
	/* Sockets waiting to be reset after a drain: reset them now. */
	relay_tick(UINT64_MAX);
	return 0;
}
