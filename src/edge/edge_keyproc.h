/* edge_keyproc.h - the edge's private key lives in a separate process.
 *
 * Privilege separation after OpenBSD relayd's ca process: a small child
 * reads the key file and answers signing requests on a socket pair; the
 * process that talks to the internet never reads the key, so memory
 * disclosure or code execution there cannot leak it. */
#ifndef SP_EDGE_KEYPROC_H
#define SP_EDGE_KEYPROC_H

#include <stddef.h>
#include <openssl/ssl.h>

#include "edge/edge_sandbox.h"

/* Fork the key process for keyfile (which must match the certificate in
 * ctx and be an EC key) and give ctx a private key object that signs
 * through it. 0, or -1 with err filled. */
int	keyproc_start(SSL_CTX *ctx, const char *keyfile,
	    const struct sandbox_conf *sc, char *err, size_t errlen);

#endif
