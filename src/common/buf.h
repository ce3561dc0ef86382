/* buf.h - explicit byte buffers.
 *
 * A buf holds bytes [rpos, wpos) of data[0, size). The all-zero buf is a
 * valid empty buffer with no storage: relays take storage from a small
 * pool only while they hold bytes, so idle sessions cost no buffer. */
#ifndef SP_BUF_H
#define SP_BUF_H

#include <stddef.h>
#include <stdint.h>

#define BUF_RELAY_SIZE	(64 * 1024)

struct buf {
	uint8_t	*data;
	size_t	 size;
	size_t	 rpos;
	size_t	 wpos;
};

static inline size_t buf_len(const struct buf *b) { return b->wpos - b->rpos; }
static inline size_t buf_room(const struct buf *b) { return b->size - b->wpos; }

/* Give b pooled storage of BUF_RELAY_SIZE if it has none. 0 or -1. */
int	buf_take(struct buf *b);
/* Return b's storage to the pool if b is empty; b stays valid. */
void	buf_release(struct buf *b);
/* Mark n bytes consumed; an emptied buffer rewinds to offset 0. */
void	buf_consume(struct buf *b, size_t n);

/* Growable buffer for control frames, bounded by max. 0 or -1 when the
 * bytes would not fit within max. */
int	buf_append(struct buf *b, const void *p, size_t n, size_t max);
void	buf_free(struct buf *b);

#endif
