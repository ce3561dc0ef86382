/* buf.c - pooled relay buffers and bounded growable buffers. */
#include "common/buf.h"

#include <stdlib.h>
#include <string.h>

/* Keep a few freed relay buffers: a busy relay releases and takes storage
 * on every drain, and malloc of 64 KiB each time shows in profiles. */
#define BUF_POOL_MAX 64

static uint8_t *buf_pool[BUF_POOL_MAX];
static size_t buf_pool_n;

int
buf_take(struct buf *b)
{
	if (b->data != NULL)
		return 0;
	if (buf_pool_n > 0)
		b->data = buf_pool[--buf_pool_n];
	else if ((b->data = malloc(BUF_RELAY_SIZE)) == NULL)
		return -1;
	b->size = BUF_RELAY_SIZE;
	b->rpos = b->wpos = 0;
	return 0;
}

void
buf_release(struct buf *b)
{
	if (b->data == NULL || buf_len(b) != 0)
		return;
	if (b->size == BUF_RELAY_SIZE && buf_pool_n < BUF_POOL_MAX)
		buf_pool[buf_pool_n++] = b->data;
	else
		free(b->data);
	memset(b, 0, sizeof(*b));
}

void
buf_consume(struct buf *b, size_t n)
{
	b->rpos += n;
	if (b->rpos >= b->wpos)
		b->rpos = b->wpos = 0;
}

int
buf_append(struct buf *b, const void *p, size_t n, size_t max)
{
	uint8_t *nd;
	size_t need, nsize;

	if (n > max || buf_len(b) > max - n)
		return -1;
	if (b->rpos > 0 && buf_room(b) < n) {
		memmove(b->data, b->data + b->rpos, buf_len(b));
		b->wpos -= b->rpos;
		b->rpos = 0;
	}
	need = b->wpos + n;
	if (need > b->size) {
		nsize = b->size ? b->size : 1024;
		while (nsize < need)
			nsize *= 2;
		if (nsize > max)
			nsize = max;
		if ((nd = realloc(b->data, nsize)) == NULL)
			return -1;
		b->data = nd;
		b->size = nsize;
	}
	memcpy(b->data + b->wpos, p, n);
	b->wpos += n;
	return 0;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}
