/* linkkey.h - proofs for data links, without a round trip each.
 *
 * With HELLO_OK the edge gives each agent control connection a fresh
 * random link key and a key id. The agent proves every data link it
 * opens with the next counter and HMAC-SHA256(key, label || key id ||
 * counter || kind). The edge takes each counter once: it keeps the
 * highest counter it has accepted and a bitmap of the LINKKEY_WINDOW
 * below it (the anti-replay window of IPsec, RFC 4303 3.4.3), so a proof
 * seen on a plain link cannot be used again, and links that arrive out of
 * order still pass. The kind (TLS or plain) is in the MAC, so a proof
 * made for one kind of link is worth nothing on the other.
 *
 * Pure functions apart from the MAC, so that the window is unit-tested. */
#ifndef SP_LINKKEY_H
#define SP_LINKKEY_H

#include <stddef.h>
#include <stdint.h>

#define LINKKEY_LEN	32	/* the key and the proof (FRAME_KEY) */
#define LINKKEY_WINDOW	64	/* counters this far below the top pass */

struct linkkey_win {
	uint64_t	 top;		/* highest counter accepted; 0: none */
	uint64_t	 seen;		/* bit i: counter top - i was accepted */
};

/* Load the MAC implementation now (before a sandbox closes the file
 * system). Returns 0 or -1. */
int	linkkey_init(void);
/* proof = HMAC-SHA256(key, "sallyport data link" || kid || ctr || kind), with
 * kid and ctr big-endian. Returns 0 or -1 (OpenSSL failed). */
int	linkkey_proof(const uint8_t key[LINKKEY_LEN], uint64_t kid,
	    uint64_t ctr, uint8_t kind, uint8_t proof[LINKKEY_LEN]);
/* Accept ctr with its proof: 0 if the proof is right and ctr was not
 * taken yet and is not below the window (ctr is then marked taken);
 * -1 with *why otherwise, w unchanged. Counters start at 1. */
int	linkkey_accept(const uint8_t key[LINKKEY_LEN], uint64_t kid,
	    struct linkkey_win *w, uint64_t ctr, uint8_t kind,
	    const uint8_t proof[LINKKEY_LEN], const char **why);

#endif
