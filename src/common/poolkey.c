/* poolkey.c - pooled-link proofs (poolkey.h). */
#include "common/poolkey.h"

#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

/* Separates these MACs from any other use of the same key. */
#define POOLKEY_LABEL	"sallyport pool link"

/* Fetched once: a fetch per proof would cost more than the MAC. */
static EVP_MAC *poolkey_mac;

int
poolkey_init(void)
{
	if (poolkey_mac == NULL)
		poolkey_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	return poolkey_mac != NULL ? 0 : -1;
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

int
poolkey_proof(const uint8_t key[POOLKEY_LEN], uint64_t kid, uint64_t ctr,
    uint8_t proof[POOLKEY_LEN])
{
	char digest[] = "SHA256";
	OSSL_PARAM params[2];
	uint8_t msg[sizeof(POOLKEY_LABEL) - 1 + 16];
	EVP_MAC_CTX *ctx = NULL;
	size_t len = 0;
	int rc = -1;

	if (poolkey_init() == -1)
		return -1;
	memcpy(msg, POOLKEY_LABEL, sizeof(POOLKEY_LABEL) - 1);
	put_be64(msg + sizeof(POOLKEY_LABEL) - 1, kid);
	put_be64(msg + sizeof(POOLKEY_LABEL) - 1 + 8, ctr);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_MAC_CTX_new(poolkey_mac)) == NULL)
		goto out;
	if (EVP_MAC_init(ctx, key, POOLKEY_LEN, params) != 1 ||
	    EVP_MAC_update(ctx, msg, sizeof(msg)) != 1 ||
	    EVP_MAC_final(ctx, proof, &len, POOLKEY_LEN) != 1 ||
	    len != POOLKEY_LEN)
		goto out;
	rc = 0;
out:
	EVP_MAC_CTX_free(ctx);
	return rc;
}

/* Whether ctr may be accepted: new, and not below the window. */
static int
win_check(const struct poolkey_win *w, uint64_t ctr, const char **why)
{
	if (ctr == 0) {
		*why = "pool counter 0";
		return -1;
	}
	if (ctr > w->top)
		return 0;
	if (w->top - ctr >= POOLKEY_WINDOW) {
		*why = "pool counter below the window";
		return -1;
	}
	if (w->seen & (1ull << (w->top - ctr))) {
		*why = "pool counter used already";
		return -1;
	}
	return 0;
}

static void
win_mark(struct poolkey_win *w, uint64_t ctr)
{
	uint64_t shift;

	if (ctr > w->top) {
		shift = ctr - w->top;
		w->seen = shift >= POOLKEY_WINDOW ? 0 : w->seen << shift;
		w->top = ctr;
		w->seen |= 1;
	} else {
		w->seen |= 1ull << (w->top - ctr);
	}
}

int
poolkey_accept(const uint8_t key[POOLKEY_LEN], uint64_t kid,
    struct poolkey_win *w, uint64_t ctr, const uint8_t proof[POOLKEY_LEN],
    const char **why)
{
	uint8_t want[POOLKEY_LEN];
	int bad;

	if (win_check(w, ctr, why) == -1)
		return -1;
	if (poolkey_proof(key, kid, ctr, want) == -1) {
		*why = "cannot compute the pool proof";
		return -1;
	}
	bad = CRYPTO_memcmp(want, proof, POOLKEY_LEN) != 0;
	OPENSSL_cleanse(want, sizeof(want));
	if (bad) {
		/* A wrong proof marks nothing: a stranger cannot use up
		 * the agent's counters. */
		*why = "wrong pool proof";
		return -1;
	}
	win_mark(w, ctr);
	return 0;
}
