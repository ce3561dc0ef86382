/* tlsx.h - OpenSSL contexts and non-blocking helpers. */
#ifndef SP_TLSX_H
#define SP_TLSX_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#include "common/buf.h"

/* Mutual TLS 1.3 contexts. The server (edge) demands a client certificate
 * chaining to ca with the clientAuth purpose; the client (agent) verifies
 * the server against ca. The client keeps the last session ticket per
 * host and offers it on its next connection there, so data links resume
 * (no certificates, no signature); the server issues a ticket only on a
 * full handshake, not on every resumed data link. key may be NULL when the caller installs a key
 * object of its own (the edge's key process). NULL with err filled. */
SSL_CTX	*tlsx_server_ctx(const char *cert, const char *key, const char *ca,
	    char *err, size_t errlen);
SSL_CTX	*tlsx_client_ctx(const char *cert, const char *key, const char *ca,
	    char *err, size_t errlen);
/* New SSL over fd with the options every connection here uses. For a
 * client, host (DNS name or IP literal) is what the peer's certificate
 * must name. NULL on failure. */
SSL	*tlsx_new(SSL_CTX *ctx, int fd, int server, const char *host);
/* Free the client's session cache (at exit). */
void	tlsx_cleanup(void);
/* Before the handshake of a connection that carries bulk data: prefer
 * TLS_AES_128_GCM_SHA256 (the control channel keeps OpenSSL's order). */
void	tlsx_bulk(SSL *ssl);
/* Gather the records ssl writes into wire (bounded by max) instead of
 * writing each to the socket, so that the caller sends many records with
 * one system call: on loopback and LANs the cost of a TLS link is mostly
 * system calls and the wake-ups each write causes. A full wire makes
 * SSL_write ask to be retried. Only for a link whose records are not the
 * kernel's; wire must outlive ssl. 0 or -1. */
int	tlsx_gather(SSL *ssl, struct buf *wire, size_t max);
/* Drain OpenSSL's error queue into out (the earliest error, which is the
 * cause). Returns out. */
const char *tlsx_errstr(char *out, size_t outlen);

/* Results of the non-blocking helpers below. */
#define TLSX_DONE	1
#define TLSX_AGAIN	0
#define TLSX_ERROR	-1
/* Drive a handshake. On TLSX_AGAIN *want is EPOLLIN or EPOLLOUT. */
int	tlsx_handshake(SSL *ssl, uint32_t *want, char *err, size_t errlen);
/* Map an SSL_read/SSL_write/... return to TLSX_AGAIN with *want set,
 * or TLSX_ERROR (err filled). ZERO_RETURN is reported as 0 bytes via
 * *eof = 1 with TLSX_DONE. */
int	tlsx_result(SSL *ssl, int ret, uint32_t *want, int *eof, char *err,
	    size_t errlen);

#endif
