/* tlsx.c - TLS set-up shared by edge and agent. Only TLS 1.3 is offered:
 * both ends are ours, so there is no old peer to accommodate. */
#include "common/tlsx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/socket.h>
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


/* The client's session cache: the latest ticket per host (a few hosts:
 * one per configured edge). */
#define TLSX_SESS_MAX	16

struct tlsx_sess {
	char		 host[256];
	SSL_SESSION	*sess;
};

static struct tlsx_sess tlsx_sessions[TLSX_SESS_MAX];
static int tlsx_host_idx = -1;		/* ex_data index: the host an SSL dials */

static struct tlsx_sess *
tlsx_sess_find(const char *host, int create)
{
	size_t i;

	for (i = 0; i < TLSX_SESS_MAX; i++)
		if (strcmp(tlsx_sessions[i].host, host) == 0)
			return &tlsx_sessions[i];
	if (!create)
		return NULL;
	for (i = 0; i < TLSX_SESS_MAX; i++)
		if (tlsx_sessions[i].host[0] == '\0') {
			snprintf(tlsx_sessions[i].host,
			    sizeof(tlsx_sessions[i].host), "%s", host);
			return &tlsx_sessions[i];
		}
	return NULL;
}

/* OpenSSL hands the client each new ticket; keep the latest per host.
 * Returns 1: we hold a reference now. */
static int
tlsx_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tlsx_sess *e = SSL_get_ex_data(ssl, tlsx_host_idx);

	if (e == NULL || !SSL_SESSION_is_resumable(sess))
		return 0;
	SSL_SESSION_free(e->sess);
	e->sess = sess;
	return 1;
}

/* A resumed handshake gets no new ticket: the one it used stays good (the
 * client reuses it, see tlsx_new), and a ticket per data link would cost
 * the edge an encryption and the agent a session object each time. A
 * ticket that does not decrypt, or whose session has expired, leads to a
 * full handshake, which does issue a new one. */
static SSL_TICKET_RETURN
tlsx_ticket_dec(SSL *ssl, SSL_SESSION *ss, const unsigned char *keyname,
    size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
	(void)keyname;
	(void)keyname_len;
	(void)arg;
	switch (status) {
	case SSL_TICKET_SUCCESS:
		if ((uint64_t)SSL_SESSION_get_time(ss) +
		    (uint64_t)SSL_SESSION_get_timeout(ss) > (uint64_t)time(NULL))
			(void)SSL_set_num_tickets(ssl, 0);
		return SSL_TICKET_RETURN_USE;
	case SSL_TICKET_SUCCESS_RENEW:
		return SSL_TICKET_RETURN_USE_RENEW;
	case SSL_TICKET_EMPTY:
	case SSL_TICKET_NO_DECRYPT:
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	default:
		return SSL_TICKET_RETURN_IGNORE;
	}
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
	/* Required to resume sessions with client certificates. */
	if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sallyport",
	    9) != 1) {
		SSL_CTX_free(ctx);
		snprintf(err, errlen, "cannot set the session id context");
		return NULL;
	}
	SSL_CTX_set_num_tickets(ctx, 1);
	if (SSL_CTX_set_session_ticket_cb(ctx, NULL, tlsx_ticket_dec, NULL) != 1) {
		SSL_CTX_free(ctx);
		snprintf(err, errlen, "cannot set the ticket callback");
		return NULL;
	}
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
	if (tlsx_host_idx == -1)
		tlsx_host_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
	    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, tlsx_new_session);
	return ctx;
}

SSL *
tlsx_new(SSL_CTX *ctx, int fd, int server, const char *host)
{
	SSL *ssl;
	struct tlsx_sess *e;
	SSL_SESSION *dup;
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);

	memset(&peer, 0, sizeof(peer));
	char key[sizeof(e->host)];
	unsigned port = 0;
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
	/* One entry per host and port (edges may share a host). The entry
	 * is static: it outlives ssl. */
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0 &&
	    (peer.ss_family == AF_INET || peer.ss_family == AF_INET6))
		port = ntohs(peer.ss_family == AF_INET6 ?
		    ((struct sockaddr_in6 *)(void *)&peer)->sin6_port :
		    ((struct sockaddr_in *)(void *)&peer)->sin_port);
	snprintf(key, sizeof(key), "%s@%u", host, port);
	if ((e = tlsx_sess_find(key, 1)) != NULL) {
		/* OpenSSL uses a TLS 1.3 session once; a copy keeps the
		 * cached one good for the next link (the edge accepts its
		 * ticket again, and sends no new one on a resumption). */
		if (e->sess != NULL && (dup = SSL_SESSION_dup(e->sess)) != NULL) {
			(void)SSL_set_session(ssl, dup);
			SSL_SESSION_free(dup);
		}
		(void)SSL_set_ex_data(ssl, tlsx_host_idx, e);
	}
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

static BIO_METHOD *gather_meth;

void
tlsx_cleanup(void)
{
	size_t i;

	for (i = 0; i < TLSX_SESS_MAX; i++) {
		SSL_SESSION_free(tlsx_sessions[i].sess);
		memset(&tlsx_sessions[i], 0, sizeof(tlsx_sessions[i]));
	}
	BIO_meth_free(gather_meth);	/* every SSL is gone by now */
	gather_meth = NULL;
}

void
tlsx_bulk(SSL *ssl)
{
	/* The cheapest of TLS 1.3's ciphers where AES is in hardware; the
	 * others are still accepted. */
	(void)SSL_set_ciphersuites(ssl, "TLS_AES_128_GCM_SHA256:"
	    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
}

/* --- records gathered for one write ------------------------------------ */

struct gather {
	struct buf	*wire;
	size_t		 max;
};

static int
gather_write(BIO *b, const char *p, size_t n, size_t *done)
{
	struct gather *g = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (buf_append(g->wire, p, n, g->max) == -1) {
		BIO_set_retry_write(b);
		return 0;
	}
	*done = n;
	return 1;
}

static long
gather_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct gather *g = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;	/* the caller sends wire when it can */
	case BIO_CTRL_WPENDING:
	case BIO_CTRL_PENDING:
		return g != NULL ? (long)buf_len(g->wire) : 0;
	default:
		return 0;
	}
}

static int
gather_destroy(BIO *b)
{
	free(BIO_get_data(b));
	BIO_set_data(b, NULL);
	return 1;
}

int
tlsx_gather(SSL *ssl, struct buf *wire, size_t max)
{
	struct gather *g;
	BIO *b;

	if (gather_meth == NULL) {
		if ((gather_meth = BIO_meth_new(BIO_get_new_index() |
		    BIO_TYPE_SOURCE_SINK, "sallyport gather")) == NULL)
			return -1;
		if (!BIO_meth_set_write_ex(gather_meth, gather_write) ||
		    !BIO_meth_set_ctrl(gather_meth, gather_ctrl) ||
		    !BIO_meth_set_destroy(gather_meth, gather_destroy)) {
			BIO_meth_free(gather_meth);
			gather_meth = NULL;
			return -1;
		}
	}
	if ((g = calloc(1, sizeof(*g))) == NULL)
		return -1;
	g->wire = wire;
	g->max = max;
	if ((b = BIO_new(gather_meth)) == NULL) {
		free(g);
		return -1;
	}
	BIO_set_data(b, g);
	BIO_set_init(b, 1);
	/* The socket BIO stays ssl's reader; ssl keeps a reference of its
	 * own to it when it was both (SSL_set_fd). */
	SSL_set0_wbio(ssl, b);
	return 0;
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
