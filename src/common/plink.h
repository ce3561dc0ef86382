/* plink.h - a plain data link as a pump endpoint: one session at a time,
 * its bytes in chunks, so that the link can carry the next session after.
 *
 * A plain link is a TCP connection the agent opened to the edge and proved
 * with LINK_HELLO (docs/protocol.md, "Plain links"). The kernel moves its
 * bytes with splice, so a relay cannot see where one session's bytes end,
 * and a TCP half-close cannot be taken back; hence chunks. Each direction
 * of a session is a run of chunks, each a 4-byte big-endian length and
 * that many bytes:
 *
 *   1 .. PLINK_CHUNK_MAX   payload (the bytes still move by splice; only
 *                          the lengths are written and read apart, with
 *                          exact reads, so nothing of what follows a
 *                          session is taken from the socket)
 *   0                      the end marker: the direction ended cleanly
 *   PLINK_CHUNK_REFUSE     first thing from the agent only: the session is
 *                          refused; one chunk follows with the END code
 *                          (end.h) and text, then the agent's FIN
 *
 * Every direction ends with its marker, so a link closed before the
 * marker (the agent killed, a relay cut) is an error, never a transfer
 * that looks complete. The link carries the next session when both
 * directions ended with markers and the session ended cleanly
 * (plink_take); either side may close it instead. */
#ifndef SP_PLINK_H
#define SP_PLINK_H

#include <stdint.h>

#include "common/end.h"
#include "common/psock.h"

#define PLINK_CHUNK_MAX		(16u * 1024 * 1024)
#define PLINK_CHUNK_REFUSE	0xfffffffeu
#define PLINK_REFUSAL_MAX	1025	/* END code + up to 1024 bytes */

struct plink {
	struct psock	 s;		/* first: the endpoint is s.e */
	unsigned	 rx_end:1;	/* the peer's end marker was read */
	unsigned	 tx_end:1;	/* ours was written */
	unsigned	 rx_refusal:1;	/* reading the refusal chunk */
	unsigned	 rx_any:1;	/* a header came from the peer */
	unsigned	 peer_refuses:1;	/* the peer is the agent */
	unsigned	 broken:1;	/* the peer sent a length the protocol
					 * forbids (not a network failure) */
	unsigned	 rx_err:1;	/* a read failed after bytes it returned:
					 * the next one fails */
	uint8_t		 rx_have;	/* bytes of rx_hdr read */
	uint8_t		 tx_off, tx_len;	/* bytes of tx_hdr sent, to send */
	uint8_t		 rx_hdr[4], tx_hdr[4];
	uint32_t	 rx_left;	/* payload of the open chunk still to read */
	uint32_t	 tx_left;	/* ... and still to write */
	uint16_t	 refusal_len;
	uint8_t		*refusal;	/* the refusal chunk, while read */
};

/* Make the link fd (taken) an endpoint for one session; registered as in
 * psock_init; peer_refuses: the edge's side, which alone takes a
 * refusal (on the agent's side 0xFFFFFFFE is just a bad length). */
void	plink_init(struct plink *l, int fd, int registered, int peer_refuses);
/* After the session ended cleanly: if both directions ended with
 * markers, take the socket back (pump_free will not close it), handed
 * over as by ev_release (*registered), and return it; else -1. */
int	plink_take(struct plink *l, int *registered);
/* Agent: refuse the session on link fd: the refusal, then a FIN. The
 * socket is idle (the session just began), so the few bytes go at once.
 * 0, or -1 with errno. */
int	plink_refuse(int fd, enum sess_end code, const char *why);

#endif
