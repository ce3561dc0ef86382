/* plink.h - the greeting that opens a plain (unencrypted) data link.
 *
 * Every connection to the edge's control port is opened by an agent. A TLS
 * connection starts with a handshake record (first byte 0x16). A plain data
 * link starts with the 4 bytes "SPD1", which no TLS record can start with,
 * then exactly one frame in the clear: DATA_HELLO (a session's one-time
 * secret) or POOL_HELLO (a one-time pool token). Nothing else is accepted
 * before the link is authenticated, and the frame is small. */
#ifndef SP_PLINK_H
#define SP_PLINK_H

#include <stddef.h>
#include <stdint.h>

#include "common/frame.h"

#define PLINK_MAGIC	"SPD1"
#define PLINK_MAGIC_LEN	4
/* Largest greeting payload: DATA_HELLO is 48 bytes, POOL_HELLO 36; room
 * for attributes a later version may add, not for a flood. */
#define PLINK_GREET_MAX	256
/* Magic, header and the largest payload: the edge's read buffer. */
#define PLINK_BUF	(PLINK_MAGIC_LEN + FRAME_HDR + PLINK_GREET_MAX)

/* What the first bytes of a control-port connection are. */
#define PLINK_BAD	-1	/* neither TLS nor the plain magic */
#define PLINK_MORE	0	/* a prefix of the magic: read on */
#define PLINK_TLS	1	/* a TLS handshake record */
#define PLINK_PLAIN	2	/* the whole magic */

/* Classify the n bytes p[0..n) that began a connection (n may be 0). */
int	plink_sniff(const uint8_t *p, size_t n);

/* Decode a plain greeting: the magic, a frame header and its payload, in
 * p[0..n). Returns 0 with the frame in m once p holds it all (n must then
 * be exactly the greeting's length: a reader asks for no byte beyond it);
 * 1 when more is needed, with *need the total length needed so far
 * (always > n, at most PLINK_BUF); -1 with *why for anything else: a bad
 * magic, a frame that is not DATA_HELLO or POOL_HELLO, a payload over
 * PLINK_GREET_MAX, bytes beyond the frame, or a payload that does not
 * decode. */
int	plink_greeting(const uint8_t *p, size_t n, struct msg *m, size_t *need,
	    const char **why);

#endif
