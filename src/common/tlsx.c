/* tlsx.c - TLS set-up shared by edge and agent. Only TLS 1.3 is offered:
 * both ends are ours, so there is no old peer to accommodate. */
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

const char *
tlsx_errstr(char *out, size_t outlen)
{
	unsigned long e, first = 0;

	while ((e = ERR_get_error()) != 0)
		if (first == 0)
			first = e;
	if (first == 0)
		snprintf(out, outlen, "unknown TLS error");
	else
		ERR_error_string_n(first, out, outlen);
	return out;
}

static SSL_CTX *
tlsx_ctx(const SSL_METHOD *method, const char *cert, const char *key,
    const char *ca, char *err, size_t errlen)
{
	char e[256];
	SSL_CTX *ctx;
	const char *what = "context";

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(method)) == NULL)
		goto fail;
	what = "protocol version";
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
		goto fail;
	what = cert;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		goto fail;
	/* No key: the caller installs one that signs elsewhere. */
	what = key;
	if (key != NULL &&
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		goto fail;
	what = "certificate and key do not match";
	if (key != NULL && SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	what = ca;
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
		goto fail;
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	/* Relayed payload is already whatever the client made it; TLS-level
	 * compression would only add a side channel. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	return ctx;
fail:
	snprintf(err, errlen, "%s: %s", what, tlsx_errstr(e, sizeof(e)));
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tlsx_server_ctx(const char *cert, const char *key, const char *ca,
    char *err, size_t errlen)
{
	SSL_CTX *ctx;
	STACK_OF(X509_NAME) *names;

	if ((ctx = tlsx_ctx(TLS_server_method(), cert, key, ca, err, errlen)) == NULL)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
	    NULL);
	SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	if ((names = SSL_load_client_CA_file(ca)) != NULL)
		SSL_CTX_set_client_CA_list(ctx, names);
	/* Resumed sessions skip the certificate exchange on data links; the
	 * tickets are encrypted with a key that lives only in memory. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_num_tickets(ctx, 1);
	return ctx;
}

SSL_CTX *
tlsx_client_ctx(const char *cert, const char *key, const char *ca,
    char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if ((ctx = tlsx_ctx(TLS_client_method(), cert, key, ca, err, errlen)) == NULL)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
	return ctx;
}

SSL *
tlsx_new(SSL_CTX *ctx, int fd, int server, const char *host)
{
	SSL *ssl;
	unsigned char ip[16];
	X509_VERIFY_PARAM *vp;

	if ((ssl = SSL_new(ctx)) == NULL)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1)
		goto fail;
	if (server) {
		SSL_set_accept_state(ssl);
		return ssl;
	}
	SSL_set_connect_state(ssl);
	vp = SSL_get0_param(ssl);
	if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1)
			goto fail;
	} else {
		if (SSL_set_tlsext_host_name(ssl, host) != 1)
			goto fail;
		if (SSL_set1_host(ssl, host) != 1)
			goto fail;
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

int
tlsx_result(SSL *ssl, int ret, uint32_t *want, int *eof, char *err,
    size_t errlen)
{
	char e[256];
	int code = SSL_get_error(ssl, ret);

	*eof = 0;
	switch (code) {
	case SSL_ERROR_WANT_READ:
		*want = EPOLLIN;
		return TLSX_AGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want = EPOLLOUT;
		return TLSX_AGAIN;
	case SSL_ERROR_ZERO_RETURN:
		*eof = 1;
		return TLSX_DONE;
	case SSL_ERROR_SYSCALL:
		if (errno != 0 && ERR_peek_error() == 0) {
			snprintf(err, errlen, "%s", strerror(errno));
			return TLSX_ERROR;
		}
		/* An EOF without close_notify: the peer's TCP closed. */
		if (ERR_peek_error() == 0) {
			snprintf(err, errlen, "connection closed without TLS close_notify");
			return TLSX_ERROR;
		}
		/* fall through */
	default:
		snprintf(err, errlen, "%s", tlsx_errstr(e, sizeof(e)));
		return TLSX_ERROR;
	}
}

int
tlsx_handshake(SSL *ssl, uint32_t *want, char *err, size_t errlen)
{
	int ret, eof;

	ERR_clear_error();
	errno = 0;
	ret = SSL_do_handshake(ssl);
	if (ret == 1)
		return TLSX_DONE;
	ret = tlsx_result(ssl, ret, want, &eof, err, errlen);
	if (ret == TLSX_DONE) {
		snprintf(err, errlen, "closed during handshake");
		return TLSX_ERROR;
	}
	return ret;
}
