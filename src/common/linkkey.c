/* linkkey.c - data-link proofs (linkkey.h). */
#include "common/linkkey.h"

#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

/* Separates these MACs from any other use of the same key. */
#define LINKKEY_LABEL	"sallyport data link"

/* Fetched once: a fetch per proof would cost more than the MAC. */
static EVP_MAC *linkkey_mac;

int
linkkey_init(void)
{
	if (linkkey_mac == NULL)
		linkkey_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	return linkkey_mac != NULL ? 0 : -1;
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
linkkey_proof(const uint8_t key[LINKKEY_LEN], uint64_t kid, uint64_t ctr,
    uint8_t kind, uint8_t proof[LINKKEY_LEN])
{
	char digest[] = "SHA256";
	OSSL_PARAM params[2];
	uint8_t msg[sizeof(LINKKEY_LABEL) - 1 + 17];
	EVP_MAC_CTX *ctx = NULL;
	size_t len = 0;
	int rc = -1;

	if (linkkey_init() == -1)
		return -1;
	memcpy(msg, LINKKEY_LABEL, sizeof(LINKKEY_LABEL) - 1);
	put_be64(msg + sizeof(LINKKEY_LABEL) - 1, kid);
	put_be64(msg + sizeof(LINKKEY_LABEL) - 1 + 8, ctr);
	msg[sizeof(LINKKEY_LABEL) - 1 + 16] = kind;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_MAC_CTX_new(linkkey_mac)) == NULL)
		goto out;
	if (EVP_MAC_init(ctx, key, LINKKEY_LEN, params) != 1 ||
	    EVP_MAC_update(ctx, msg, sizeof(msg)) != 1 ||
	    EVP_MAC_final(ctx, proof, &len, LINKKEY_LEN) != 1 ||
	    len != LINKKEY_LEN)
		goto out;
	rc = 0;
out:
	EVP_MAC_CTX_free(ctx);
	return rc;
}

/* Whether ctr may be accepted: new, and not below the window. */
static int
win_check(const struct linkkey_win *w, uint64_t ctr, const char **why)
{
	if (ctr == 0) {
		*why = "link counter 0";
		return -1;
	}
	if (ctr > w->top)
		return 0;
	if (w->top - ctr >= LINKKEY_WINDOW) {
		*why = "link counter below the window";
		return -1;
	}
	if (w->seen & (1ull << (w->top - ctr))) {
		*why = "link counter used already";
		return -1;
	}
	return 0;
}

static void
win_mark(struct linkkey_win *w, uint64_t ctr)
{
	uint64_t shift;

	if (ctr > w->top) {
		shift = ctr - w->top;
		w->seen = shift >= LINKKEY_WINDOW ? 0 : w->seen << shift;
		w->top = ctr;
		w->seen |= 1;
	} else {
		w->seen |= 1ull << (w->top - ctr);
	}
}

int
linkkey_accept(const uint8_t key[LINKKEY_LEN], uint64_t kid,
    struct linkkey_win *w, uint64_t ctr, uint8_t kind,
    const uint8_t proof[LINKKEY_LEN], const char **why)
{
	uint8_t want[LINKKEY_LEN];
	int bad;

	if (win_check(w, ctr, why) == -1)
		return -1;
	if (linkkey_proof(key, kid, ctr, kind, want) == -1) {
		*why = "cannot compute the link proof";
		return -1;
	}
	bad = CRYPTO_memcmp(want, proof, LINKKEY_LEN) != 0;
	OPENSSL_cleanse(want, sizeof(want));
	if (bad) {
		/* A wrong proof marks nothing: a stranger cannot use up
		 * the agent's counters. */
		*why = "wrong link proof";
		return -1;
	}
	win_mark(w, ctr);
	return 0;
}
