/* socks.c - SOCKS5 message parsers (see socks.h). Input comes straight
 * from an inside client, so every length byte is checked against n
 * before the bytes it announces are touched. */
#include "agent/socks.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

int
socks_greeting(const uint8_t *p, size_t n, struct socks_greeting *g)
{
	size_t i, need;

	memset(g, 0, sizeof(*g));
	if (n < 1)
		return 0;
	if (p[0] != 5)
		return -1;
	if (n < 2)
		return 0;
	if (p[1] == 0)
		return -1;
	need = 2 + (size_t)p[1];
	if (n < need)
		return 0;
	for (i = 2; i < need; i++) {
		if (p[i] == SOCKS_M_NONE)
			g->offers_none = 1;
		else if (p[i] == SOCKS_M_USERPASS)
			g->offers_userpass = 1;
	}
	return (int)need;
}

int
socks_auth(const uint8_t *p, size_t n, struct socks_auth *a)
{
	size_t ulen, plen;

	memset(a, 0, sizeof(*a));
	if (n < 1)
		return 0;
	if (p[0] != 1)
		return -1;
	if (n < 2)
		return 0;
	ulen = p[1];
	if (ulen == 0)
		return -1;
	if (n < 2 + ulen + 1)
		return 0;
	plen = p[2 + ulen];
	if (n < 3 + ulen + plen)
		return 0;
	if (memchr(p + 2, '\0', ulen) != NULL)
		return -1;
	memcpy(a->user, p + 2, ulen);
	a->user[ulen] = '\0';
	a->ulen = ulen;
	memcpy(a->pass, p + 3 + ulen, plen);
	a->plen = plen;
	return (int)(3 + ulen + plen);
}

int
socks_request(const uint8_t *p, size_t n, struct socks_req *r)
{
	size_t alen, i, need;

	memset(r, 0, sizeof(*r));
	if (n < 1)
		return 0;
	if (p[0] != 5)
		return -1;
	if (n < 4)
		return 0;
	if (p[2] != 0)
		return -1;
	r->cmd = p[1];
	r->atyp = p[3];
	switch (r->atyp) {
	case 1:
		alen = 4;
		need = 4 + alen + 2;
		break;
	case 3:
		if (n < 5)
			return 0;
		alen = p[4];
		if (alen == 0) {
			r->rep = SOCKS_HOST_UNREACH;
			return -1;
		}
		need = 5 + alen + 2;
		break;
	case 4:
		alen = 16;
		need = 4 + alen + 2;
		break;
	default:
		r->rep = SOCKS_ATYP_UNSUPPORTED;
		return -1;
	}
	if (n < need)
		return 0;
	/* Only now, with the whole request in, refuse an unsupported
	 * command: the reply must not reach the client before it is done. */
	if (r->cmd != 1) {
		r->rep = SOCKS_CMD_UNSUPPORTED;
		return -1;
	}
	if (r->atyp == 1) {
		if (inet_ntop(AF_INET, p + 4, r->host, sizeof(r->host)) == NULL)
			return -1;
	} else if (r->atyp == 4) {
		if (inet_ntop(AF_INET6, p + 4, r->host, sizeof(r->host)) == NULL)
			return -1;
	} else {
		for (i = 0; i < alen; i++)
			if (p[5 + i] <= 0x20 || p[5 + i] > 0x7e) {
				r->rep = SOCKS_HOST_UNREACH;
				return -1;
			}
		memcpy(r->host, p + 5, alen);
		r->host[alen] = '\0';
	}
	r->port = (uint16_t)((p[need - 2] << 8) | p[need - 1]);
	return (int)need;
}

size_t
socks_reply(uint8_t out[SOCKS_REPLY_LEN], uint8_t rep)
{
	memset(out, 0, SOCKS_REPLY_LEN);
	out[0] = 5;
	out[1] = rep;
	out[3] = 1;		/* ATYP IPv4; BND.ADDR and BND.PORT zero */
	return SOCKS_REPLY_LEN;
}
