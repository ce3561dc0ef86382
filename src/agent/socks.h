/* socks.h - SOCKS5 (RFC 1928) and its username/password method (RFC
 * 1929), server side, as pure bounded parsers.
 *
 * Each parser looks at the bytes a client has sent so far, p[0..n), and
 * returns the length of the complete message (> 0), 0 if more bytes are
 * needed (every byte so far then belongs to the message), or -1 if the
 * message is malformed. A message is never longer than SOCKS_MSG_MAX, so
 * a caller that has that many bytes and still gets 0 has a bug. Bytes
 * after the message are not looked at: a client may pipeline its request
 * after its greeting, or its first payload after its request. */
#ifndef SP_SOCKS_H
#define SP_SOCKS_H

#include <stddef.h>
#include <stdint.h>

#define SOCKS_MSG_MAX	515		/* RFC 1929 request: 3 + 255 + 255 */
#define SOCKS_REPLY_LEN	10

/* Method numbers (RFC 1928 section 3). */
#define SOCKS_M_NONE		0x00
#define SOCKS_M_USERPASS	0x02
#define SOCKS_M_REFUSE		0xff

/* Reply codes (RFC 1928 section 6). */
enum socks_rep {
	SOCKS_OK = 0x00,
	SOCKS_FAIL = 0x01,
	SOCKS_NOT_ALLOWED = 0x02,
	SOCKS_NET_UNREACH = 0x03,
	SOCKS_HOST_UNREACH = 0x04,
	SOCKS_REFUSED = 0x05,
	SOCKS_TTL_EXPIRED = 0x06,
	SOCKS_CMD_UNSUPPORTED = 0x07,
	SOCKS_ATYP_UNSUPPORTED = 0x08,
};

struct socks_greeting {
	int	offers_none;
	int	offers_userpass;
};

struct socks_auth {
	char	user[256];		/* NUL-terminated; may not contain NUL */
	uint8_t	pass[256];		/* any bytes */
	size_t	ulen;
	size_t	plen;
};

struct socks_req {
	uint8_t	cmd;
	uint8_t	atyp;
	char	host[256];		/* domain as sent, or a numeric address */
	uint16_t port;
	uint8_t	rep;			/* on -1: the reply code to send, 0 none */
};

int	socks_greeting(const uint8_t *p, size_t n, struct socks_greeting *g);
/* RFC 1929 sub-negotiation. A user name with a NUL byte is malformed. */
int	socks_auth(const uint8_t *p, size_t n, struct socks_auth *a);
/* The CONNECT request. On -1, r->rep says which reply to send before
 * closing (command or address type not supported, or 0 for garbage).
 * A domain name must be printable ASCII without blanks. */
int	socks_request(const uint8_t *p, size_t n, struct socks_req *r);
/* Write the 10-byte reply with code rep (BND.ADDR 0.0.0.0:0) to out. */
size_t	socks_reply(uint8_t out[SOCKS_REPLY_LEN], uint8_t rep);

#endif
