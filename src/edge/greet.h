/* greet.h - how a connection to the edge's control port begins.
 *
 * Every connection there is opened by an agent. A TLS connection starts
 * with a handshake record (first byte 0x16). A plain data link starts
 * with the 4 bytes "SPD1", which no TLS record can start with, then
 * exactly one frame in the clear: LINK_HELLO. Nothing else is accepted
 * before the link has proved itself, and the frame is small.
 *
 * Pure functions, no I/O: the first code to see an unproved peer's bytes
 * is unit-tested and fuzzed on its own. */
#ifndef SP_GREET_H
#define SP_GREET_H

#include <stddef.h>
#include <stdint.h>

#include "common/frame.h"
#include "common/plink.h"

/* Largest greeting payload: LINK_HELLO is 60 bytes; room for attributes a
 * later version may add, not for a flood. */
#define GREET_MAX	256
/* Magic, header and the largest payload: the edge's read buffer. */
#define GREET_BUF	(PLINK_MAGIC_LEN + FRAME_HDR + GREET_MAX)

/* What the first bytes of a control-port connection are. */
#define GREET_BAD	-1	/* neither TLS nor the plain magic */
#define GREET_MORE	0	/* a prefix of the magic: read on */
#define GREET_TLS	1	/* a TLS handshake record */
#define GREET_PLAIN	2	/* the whole magic */

/* Classify the n bytes p[0..n) that began a connection (n may be 0). */
int	greet_sniff(const uint8_t *p, size_t n);
/* Decode a plain greeting: the magic, a frame header and its payload, in
 * p[0..n). Returns 0 with the frame in m once p holds it all (n must then
 * be exactly the greeting's length: a reader asks for no byte beyond it);
 * 1 when more is needed, with *need the total length needed so far
 * (always > n, at most GREET_BUF); -1 with *why for anything else: a bad
 * magic, a frame that is not LINK_HELLO, a payload over GREET_MAX, bytes
 * beyond the frame, or a payload that does not decode. */
int	greet_parse(const uint8_t *p, size_t n, struct msg *m, size_t *need,
	    const char **why);

#endif
