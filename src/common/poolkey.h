/* poolkey.h - proofs for pooled data links, without a round trip each.
 *
 * With HELLO_OK the edge gives each agent control connection a fresh
 * random key and a key id. The agent proves every pooled link it opens
 * with the next counter and HMAC-SHA256(key, label || key id || counter),
 * instead of first asking for a one-time token (POOL_REQ, POOL_GRANT).
 * The edge takes each counter once: it keeps the highest counter it has
 * accepted and a bitmap of the POOLKEY_WINDOW below it (the anti-replay
 * window of IPsec, RFC 4303 3.4.3), so a proof seen on a plain link
 * cannot be used again, and links that arrive out of order still pass.
 *
 * Pure functions apart from the MAC, so that the window is unit-tested. */
#ifndef SP_POOLKEY_H
#define SP_POOLKEY_H

#include <stddef.h>
#include <stdint.h>

#define POOLKEY_LEN	32	/* the key and the proof (FRAME_SECRET) */
#define POOLKEY_WINDOW	64	/* counters this far below the top pass */

struct poolkey_win {
	uint64_t	 top;		/* highest counter accepted; 0: none */
	uint64_t	 seen;		/* bit i: counter top - i was accepted */
};

/* Load the MAC implementation now (before a sandbox closes the file
 * system). Returns 0 or -1. */
int	poolkey_init(void);
/* proof = HMAC-SHA256(key, "sallyport pool link" || kid || ctr), with
 * kid and ctr big-endian. Returns 0 or -1 (OpenSSL failed). */
int	poolkey_proof(const uint8_t key[POOLKEY_LEN], uint64_t kid,
	    uint64_t ctr, uint8_t proof[POOLKEY_LEN]);
/* Accept ctr with its proof: 0 if the proof is right and ctr was not
 * taken yet and is not below the window (ctr is then marked taken);
 * -1 with *why otherwise, w unchanged. Counters start at 1. */
int	poolkey_accept(const uint8_t key[POOLKEY_LEN], uint64_t kid,
	    struct poolkey_win *w, uint64_t ctr,
	    const uint8_t proof[POOLKEY_LEN], const char **why);

#endif
