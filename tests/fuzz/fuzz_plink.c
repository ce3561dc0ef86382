/* fuzz_plink.c - a plain link's chunks (plink.c) as a hostile peer sends
 * them: the agent reading an edge (bit 0 of the first byte clear: a
 * refusal header is just a bad length), or the edge reading an agent
 * (set: a refusal may come first).
 *
 * The rest of the input is what the peer sends on the link, then its
 * FIN; bits 1-3 of the first byte choose how much each read asks for.
 * The harness reads the session's bytes through the endpoint's recv, as
 * the pump does, until it ends, and compares with its own reading of the
 * input as chunks:
 *
 *   - the payload delivered is exactly the chunks' payload, in order;
 *   - the end is the end marker (PEND_EOF), and then not one byte after
 *     it was taken from the socket (what follows stays for the next
 *     session); or a failure where the reference fails: a length over
 *     16 MiB (0xFFFFFFFE too, unless it is a refusal the edge takes),
 *     marked broken, or the FIN inside a header or a chunk, not broken;
 *   - a refusal is read whole, at most 1,025 bytes, and its text is
 *     printable;
 *   - a read reads across chunks: one that returns fewer bytes than it
 *     asked for had no more to give (everything is in the socket, so
 *     the next read ends the session); an end it took from the socket
 *     (the marker, a bad length) is held (e->held), as epoll will not
 *     announce it and the pump must read again unasked.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/ev.h"
#include "common/plink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum ref_end { R_MARKER, R_BAD_LEN, R_FIN, R_REFUSED, R_BAD_REFUSAL };

/* The input as chunks, by the protocol: payload into out, and how it
 * ends; *after: where the bytes after the marker start. */
static enum ref_end
reference(const uint8_t *p, size_t n, int refusals, uint8_t *out,
    size_t *outlen, size_t *after)
{
	size_t pos = 0;
	uint32_t len;
	int first = 1;

	*outlen = 0;
	for (;;) {
		if (n - pos < 4)
			return R_FIN;
		len = (uint32_t)p[pos] << 24 | (uint32_t)p[pos + 1] << 16 |
		    (uint32_t)p[pos + 2] << 8 | p[pos + 3];
		pos += 4;
		if (len == PLINK_CHUNK_REFUSE && first && refusals) {
			if (n - pos < 4)
				return R_FIN;
			len = (uint32_t)p[pos] << 24 | (uint32_t)p[pos + 1] << 16 |
			    (uint32_t)p[pos + 2] << 8 | p[pos + 3];
			pos += 4;
			if (len == 0 || len > PLINK_REFUSAL_MAX)
				return R_BAD_REFUSAL;
			return n - pos < len ? R_FIN : R_REFUSED;
		}
		first = 0;
		if (len == 0) {
			*after = pos;
			return R_MARKER;
		}
		if (len > PLINK_CHUNK_MAX)
			return R_BAD_LEN;
		if (n - pos < len) {
			memcpy(out + *outlen, p + pos, n - pos);
			*outlen += n - pos;
			return R_FIN;
		}
		memcpy(out + *outlen, p + pos, len);
		*outlen += len;
		pos += len;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	static uint8_t want[1 << 17], got[1 << 17], rest[1 << 17];
	size_t wantlen, gotlen = 0, after = 0, step, i, k;
	struct plink *l;
	enum ref_end ref;
	ssize_t r;
	int sv[2], refusals, last = 0;

	if (!inited) {
		if (ev_init() == -1)
			abort();
		inited = 1;
	}
	if (size < 1 || size - 1 > sizeof(want))
		return 0;
	refusals = data[0] & 1;
	step = (size_t)1 << ((data[0] >> 1) & 7);	/* 1 .. 128 */
	data++;
	size--;
	ref = reference(data, size, refusals, want, &wantlen, &after);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		return 0;
	/* The peer's bytes and its FIN are all in the socket at once. */
	for (i = 0; i < size; i += (size_t)r)
		if ((r = send(sv[1], data + i, size - i, 0)) <= 0)
			abort();
	shutdown(sv[1], SHUT_WR);
	(void)fcntl(sv[0], F_SETFL, O_NONBLOCK);
	if ((l = calloc(1, sizeof(*l))) == NULL)
		abort();
	plink_init(l, sv[0], 0, refusals);
	for (;;) {
		k = sizeof(got) - gotlen < step ? sizeof(got) - gotlen : step;
		r = l->s.e.ops->recv(&l->s.e, got + gotlen, k);
		if (last && r > 0)
			abort();	/* the read before had no more */
		if (r > 0) {
			gotlen += (size_t)r;
			last = l->s.e.held || (size_t)r < k;
			if (gotlen > wantlen || (!l->s.e.held &&
			    (l->rx_end || l->rx_err)))
				abort();
			continue;
		}
		if (r == PEND_AGAIN)
			abort();	/* everything, FIN included, is there */
		break;
	}
	if (gotlen > wantlen || memcmp(got, want, gotlen) != 0)
		abort();
	switch (ref) {
	case R_MARKER:
		if (r != PEND_EOF || gotlen != wantlen || !l->rx_end)
			abort();
		/* not one byte after the marker was taken */
		for (k = 0; (r = recv(sv[0], rest + k, sizeof(rest) - k, 0)) > 0;)
			k += (size_t)r;
		if (k != size - after || memcmp(rest, data + after, k) != 0)
			abort();
		break;
	case R_BAD_LEN:
	case R_BAD_REFUSAL:
		if (r != PEND_ERR || !l->broken || gotlen != wantlen)
			abort();
		break;
	case R_FIN:
		if (r != PEND_ERR || l->broken || gotlen != wantlen)
			abort();
		break;
	case R_REFUSED:
		if (r != PEND_ERR || l->broken || gotlen != 0)
			abort();
		for (i = 0; l->s.e.err[i] != '\0'; i++)
			if (l->s.e.err[i] < 0x20 || l->s.e.err[i] > 0x7e)
				abort();
		break;
	}
	free(l->refusal);
	close(sv[0]);
	close(sv[1]);
	free(l);
	return 0;
}
