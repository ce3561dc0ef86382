/* edge_keyproc.c - private key custody for the edge.
 *
 * OpenSSL 3 has no non-deprecated way to hand a key's signing to another
 * process short of writing a provider; the EC_KEY_METHOD hooks still work
 * for "foreign" legacy keys, so this file alone opts out of deprecation
 * warnings. Only EC keys are supported (sallyportctl makes P-256 ones). */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "edge/edge_keyproc.h"
#include "common/log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define KP_DGST_MAX	64	/* SHA-512 */
#define KP_SIG_MAX	160	/* DER ECDSA, P-521 fits */
#define KP_TIMEOUT_MS	5000

static int kp_fd = -1;
/* Must outlive every key that uses it, so it lives as long as the process. */
static EC_KEY_METHOD *kp_meth;

/* --- the key process ---------------------------------------------------- */

struct kp_args {
	const char		*keyfile;
	X509			*cert;
	const struct sandbox_conf *sc;
};

static void
kp_serve(int fd, void *arg)
{
	const struct kp_args *ka = arg;
	unsigned char req[KP_DGST_MAX], sig[KP_SIG_MAX];
	char err[256];
	EVP_PKEY *key = NULL;
	EVP_PKEY_CTX *pctx;
	size_t siglen;
	ssize_t n;
	FILE *f;

	if ((f = fopen(ka->keyfile, "r")) == NULL)
		log_fatal("key process: %s: %s", ka->keyfile, strerror(errno));
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (key == NULL)
		log_fatal("key process: %s: not a PEM private key", ka->keyfile);
	if (EVP_PKEY_eq(key, X509_get0_pubkey(ka->cert)) != 1)
		log_fatal("key process: %s does not match the certificate",
		    ka->keyfile);
	if (sandbox_enter(ka->sc, SB_KEYPROC, err, sizeof(err)) == -1)
		log_fatal("key process: sandbox: %s", err);
	for (;;) {
		n = recv(fd, req, sizeof(req), 0);
		if (n <= 0)
			_exit(0);
		siglen = sizeof(sig);
		if ((pctx = EVP_PKEY_CTX_new(key, NULL)) == NULL ||
		    EVP_PKEY_sign_init(pctx) != 1 ||
		    EVP_PKEY_sign(pctx, sig, &siglen, req, (size_t)n) != 1)
			siglen = 0;	/* an empty answer says "failed" */
		EVP_PKEY_CTX_free(pctx);
		if (send(fd, sig, siglen, MSG_NOSIGNAL) == -1)
			_exit(0);
	}
}

/* --- the relay process's side ------------------------------------------ */

/* Have the key process sign dgst: the key's only signing hook (the
 * default sign method, which TLS calls, comes here too). Blocking, but
 * bounded: the key process answers in microseconds or is dead, and a
 * dead key process is fatal. */
static ECDSA_SIG *
kp_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv,
    const BIGNUM *r, EC_KEY *ec)
{
	struct pollfd pfd = { kp_fd, POLLIN, 0 };
	unsigned char der[KP_SIG_MAX];
	const unsigned char *p = der;
	ssize_t n;
	int rc;

	(void)kinv; (void)r; (void)ec;
	if (dlen <= 0 || dlen > KP_DGST_MAX)
		return NULL;
	if (send(kp_fd, dgst, (size_t)dlen, MSG_NOSIGNAL) != dlen)
		log_fatal("key process gone: %s", strerror(errno));
	/* A SIGTERM during a handshake interrupts the wait, and must stop
	 * the edge cleanly, not as a dead key process. */
	while ((rc = poll(&pfd, 1, KP_TIMEOUT_MS)) == -1 && errno == EINTR)
		;
	if (rc != 1)
		log_fatal("key process did not answer");
	if ((n = recv(kp_fd, der, sizeof(der), 0)) < 0)
		log_fatal("key process gone: %s", strerror(errno));
	if (n == 0) {
		log_err("key process could not sign");
		return NULL;
	}
	return d2i_ECDSA_SIG(NULL, &p, n);
}

int
keyproc_start(SSL_CTX *ctx, const char *keyfile, const struct sandbox_conf *sc,
    char *err, size_t errlen)
{
	X509 *cert = SSL_CTX_get0_certificate(ctx);
	EVP_PKEY *pub, *pkey = NULL;
	const EC_KEY *pubec;
	EC_KEY *ec = NULL;
	int (*dflt_sign)(int, const unsigned char *, int, unsigned char *,
	    unsigned int *, const BIGNUM *, const BIGNUM *, EC_KEY *) = NULL;
	int (*dflt_setup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;
	struct kp_args ka = { keyfile, cert, sc };

	if (cert == NULL || (pub = X509_get0_pubkey(cert)) == NULL ||
	    (pubec = EVP_PKEY_get0_EC_KEY(pub)) == NULL) {
		snprintf(err, errlen, "the edge certificate must have an EC key "
		    "(sallyportctl pki init makes one)");
		return -1;
	}
	if ((kp_fd = sandbox_helper("sallyport-key", kp_serve, &ka, err,
	    errlen)) == -1)
		return -1;

	/* A key object with the certificate's public half whose signing
	 * goes to the key process. */
	if ((kp_meth = EC_KEY_METHOD_new(EC_KEY_get_default_method())) == NULL)
		goto fail;
	EC_KEY_METHOD_get_sign(kp_meth, &dflt_sign, &dflt_setup, NULL);
	EC_KEY_METHOD_set_sign(kp_meth, dflt_sign, dflt_setup, kp_sign_sig);
	if ((ec = EC_KEY_dup(pubec)) == NULL ||
	    EC_KEY_set_method(ec, kp_meth) != 1)
		goto fail;
	if ((pkey = EVP_PKEY_new()) == NULL || EVP_PKEY_assign_EC_KEY(pkey, ec) != 1)
		goto fail;
	ec = NULL;
	if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1)
		goto fail;
	EVP_PKEY_free(pkey);	/* the context holds its own reference */
	return 0;
fail:
	snprintf(err, errlen, "key process set-up: %s",
	    ERR_reason_error_string(ERR_peek_last_error()) ?
	    ERR_reason_error_string(ERR_peek_last_error()) : "failed");
	EC_KEY_free(ec);
	EVP_PKEY_free(pkey);
	return -1;
}
