/* fconn.c - framed connections, TLS or plain. */
#include "common/fconn.h"
#include "common/log.h"
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>

static void fconn_io(struct ev_io *io, uint32_t events);

uint32_t fconn_max_frame = FRAME_MAX;
uint64_t fconn_bad_frames;

/* Every failure goes through here: a connection that failed gets no
 * close_notify later (OpenSSL forbids SSL_shutdown after a fatal error). */
static void
fconn_lost(struct fconn *fc, const char *why)
{
	fc->failed = 1;
	fc->ops->lost(fc, why);
}

static void
fconn_update(struct fconn *fc)
{
	uint32_t mask = fc->rd_want;

	if (buf_len(&fc->out) > 0 || fc->failed)
		mask |= fc->wr_want;
	if (ev_set(&fc->io, mask) == -1)
		log_fatal("epoll_ctl: %s", strerror(errno));
}

int
fconn_start(struct fconn *fc, int fd, SSL *ssl, const struct fconn_ops *ops,
    void *owner)
{
	return fconn_start_handed(fc, fd, ssl, ops, owner, 0);
}

int
fconn_start_handed(struct fconn *fc, int fd, SSL *ssl,
    const struct fconn_ops *ops, void *owner, int registered)
{
	memset(fc, 0, sizeof(*fc));
	ev_io_init(&fc->io, fd, fconn_io);
	ev_adopt(&fc->io, registered);
	fc->ssl = ssl;
	fc->ops = ops;
	fc->owner = owner;
	fc->rd_want = EPOLLIN;
	fc->wr_want = EPOLLOUT;
	fc->max_frame = fconn_max_frame;
	fc->last_rx = ev_now();
	/* Plain: nothing to negotiate. TLS: a client starts the handshake
	 * itself; a server waits for input. */
	if (ssl == NULL)
		fc->handshaken = 1;
	else if (!SSL_is_server(ssl))
		fc->rd_want = EPOLLOUT;
	if (ev_set(&fc->io, fc->rd_want) == -1)
		return -1;
	return 0;
}

int
fconn_resume(struct fconn *fc, int fd, SSL *ssl, struct buf *pending,
    const struct fconn_ops *ops, void *owner)
{
	memset(fc, 0, sizeof(*fc));
	ev_io_init(&fc->io, fd, fconn_io);
	fc->ssl = ssl;
	fc->ops = ops;
	fc->owner = owner;
	fc->handshaken = 1;
	fc->rd_want = EPOLLIN;
	fc->wr_want = EPOLLOUT;
	fc->max_frame = fconn_max_frame;
	fc->last_rx = ev_now();
	fc->out = *pending;
	memset(pending, 0, sizeof(*pending));
	fconn_update(fc);
	return 0;
}

/* Try to write queued output. 0, or -1 with err filled. */
static int
fconn_flush(struct fconn *fc, char *err, size_t errlen)
{
	int n, eof;
	uint32_t want;

	fc->wr_want = EPOLLOUT;
	while (buf_len(&fc->out) > 0) {
		if (fc->ssl == NULL) {
			ssize_t w = send(fc->io.fd, fc->out.data + fc->out.rpos,
			    buf_len(&fc->out), MSG_NOSIGNAL);
			if (w >= 0) {
				buf_consume(&fc->out, (size_t)w);
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return 0;
			snprintf(err, errlen, "%s", strerror(errno));
			return -1;
		}
		ERR_clear_error();
		errno = 0;
		n = SSL_write(fc->ssl, fc->out.data + fc->out.rpos,
		    (int)buf_len(&fc->out));
		if (n > 0) {
			buf_consume(&fc->out, (size_t)n);
			continue;
		}
		switch (tlsx_result(fc->ssl, n, &want, &eof, err, errlen)) {
		case TLSX_AGAIN:
			fc->wr_want = want;
			return 0;
		default:
			if (eof)
				snprintf(err, errlen, "peer closed");
			return -1;
		}
	}
	return 0;
}

int
fconn_send(struct fconn *fc, const struct msg *m)
{
	char err[256];

	if (fc->failed)
		return -1;
	if (msg_encode(m, &fc->out, FCONN_OUT_MAX) == -1) {
		fc->failed = 1;
		fconn_update(fc);
		return -1;
	}
	if (fc->handshaken && fconn_flush(fc, err, sizeof(err)) == -1)
		fc->failed = 1;
	fconn_update(fc);
	return fc->failed ? -1 : 0;
}

/* Read up to n bytes into dst. >0 bytes, 0 would block (rd_want set),
 * -1 error or EOF with err filled. */
static int
fconn_read(struct fconn *fc, uint8_t *dst, size_t n, char *err, size_t errlen)
{
	ssize_t r;
	uint32_t want;
	int eof, k;

	if (fc->ssl == NULL) {
		r = recv(fc->io.fd, dst, n, 0);
		if (r > 0)
			return (int)r;
		if (r == 0) {
			snprintf(err, errlen, "peer closed");
			return -1;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			fc->rd_want = EPOLLIN;
			return 0;
		}
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	ERR_clear_error();
	errno = 0;
	k = SSL_read(fc->ssl, dst, (int)n);
	if (k > 0)
		return k;
	switch (tlsx_result(fc->ssl, k, &want, &eof, err, errlen)) {
	case TLSX_AGAIN:
		fc->rd_want = want;
		return 0;
	default:
		if (eof)
			snprintf(err, errlen, "peer closed");
		return -1;
	}
}

void
fconn_send_error(struct fconn *fc, const char *text)
{
	struct msg m;

	msg_init(&m, FT_ERROR);
	msg_set_str(&m, FA_TEXT, text);
	(void)fconn_send(fc, &m);
}

/* Read toward the current frame. Returns 1 when a whole frame is in,
 * 0 when more input is needed, -1 on error or EOF (err filled). */
static int
fconn_read_frame(struct fconn *fc, char *err, size_t errlen)
{
	const char *why;
	uint8_t *dst;
	size_t want_n;
	int n;

	for (;;) {
		if (fc->hdr_have < FRAME_HDR) {
			dst = fc->hdr + fc->hdr_have;
			want_n = FRAME_HDR - fc->hdr_have;
		} else if (buf_len(&fc->payload) < fc->plen) {
			dst = fc->payload.data + fc->payload.wpos;
			want_n = fc->plen - buf_len(&fc->payload);
		} else
			return 1;
		n = fconn_read(fc, dst, want_n, err, errlen);
		if (n <= 0)
			return n;
		fc->rd_want = EPOLLIN;
		if (fc->hdr_have < FRAME_HDR) {
			fc->hdr_have += (size_t)n;
			if (fc->hdr_have < FRAME_HDR)
				continue;
			if (frame_hdr_decode(fc->hdr, &fc->type, &fc->plen, &why) == -1) {
				fconn_bad_frames++;
				fc->bad = 1;
				snprintf(err, errlen, "protocol error: %s", why);
				return -1;
			}
			if (fc->plen > fc->max_frame) {
				fconn_bad_frames++;
				fc->bad = 1;
				snprintf(err, errlen, "protocol error: frame of %u "
				    "bytes exceeds the limit of %u", fc->plen,
				    fc->max_frame);
				return -1;
			}
			/* Storage only for frames that arrive, sized to the
			 * largest seen; the header check bounded plen. */
			if (fc->payload.size < fc->plen) {
				uint8_t *p = realloc(fc->payload.data, fc->plen);
				if (p == NULL) {
					snprintf(err, errlen, "out of memory");
					return -1;
				}
				fc->payload.data = p;
				fc->payload.size = fc->plen;
			}
			fc->payload.rpos = fc->payload.wpos = 0;
		} else
			fc->payload.wpos += (size_t)n;
	}
}

static void
fconn_io(struct ev_io *io, uint32_t events)
{
	struct fconn *fc = (struct fconn *)(void *)io;
	char err[256];
	const char *why;
	struct msg m;
	int r, burst = 0;

	(void)events;
	if (fc->failed) {
		fconn_lost(fc, "peer too slow or write failed");
		return;
	}
	if (!fc->handshaken) {
		r = tlsx_handshake(fc->ssl, &fc->rd_want, err, sizeof(err));
		if (r == TLSX_AGAIN) {
			fconn_update(fc);
			return;
		}
		if (r == TLSX_ERROR) {
			char msg[300];
			snprintf(msg, sizeof(msg), "TLS handshake failed: %s", err);
			fconn_lost(fc, msg);
			return;
		}
		fc->handshaken = 1;
		fc->rd_want = EPOLLIN;
		if (fc->ops->ready != NULL && fc->ops->ready(fc) == -1)
			return;
	}
	if (fconn_flush(fc, err, sizeof(err)) == -1) {
		fconn_lost(fc, err);
		return;
	}
	for (;;) {
		if (burst++ == FCONN_BURST) {
			/* Come back next turn. A socket with bytes wakes the
			 * loop again by itself; bytes OpenSSL holds do not. */
			if (fc->ssl != NULL && SSL_has_pending(fc->ssl) &&
			    ev_defer(&fc->io, EPOLLIN) == -1) {
				burst = 0;
				continue;
			}
			break;
		}
		r = fconn_read_frame(fc, err, sizeof(err));
		if (r == -1) {
			fconn_lost(fc, err);
			return;
		}
		if (r == 0)
			break;
		fc->hdr_have = 0;
		if (msg_decode(fc->type, fc->payload.data, fc->plen, &m, &why) == -1) {
			fconn_bad_frames++;
			fc->bad = 1;
			snprintf(err, sizeof(err), "protocol error in %s frame: %s",
			    frame_type_name(fc->type), why);
			fconn_lost(fc, err);
			return;
		}
		fc->payload.rpos = fc->payload.wpos = 0;
		fc->last_rx = ev_now();
		fc->frames_rx++;
		if (fc->ops->frame(fc, &m) == -1)
			return;
	}
	fconn_update(fc);
}

void
fconn_detach(struct fconn *fc, int *fd, SSL **ssl, struct buf *pending)
{
	ev_del(&fc->io);
	*fd = fc->io.fd;
	*ssl = fc->ssl;
	*pending = fc->out;
	memset(&fc->out, 0, sizeof(fc->out));
	buf_free(&fc->payload);
	fc->ssl = NULL;
	fc->io.fd = -1;
}

void
fconn_close(struct fconn *fc)
{
	ev_forget(&fc->io);	/* the fd is closed below */
	if (fc->ssl != NULL) {
		/* Best effort: tell the peer we are going, never wait. */
		if (fc->handshaken && !fc->failed)
			(void)SSL_shutdown(fc->ssl);
		SSL_free(fc->ssl);
		fc->ssl = NULL;
	}
	if (fc->io.fd != -1)
		close(fc->io.fd);
	fc->io.fd = -1;
	buf_free(&fc->payload);
	buf_free(&fc->out);
}
