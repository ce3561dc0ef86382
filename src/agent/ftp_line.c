/* ftp.c - FTP control lines: reply scanning, command classification and
 * the two passive replies the agent writes.
 *
 * Every function reads at most len bytes and never assumes a NUL. */
#include "agent/ftp_line.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

size_t
ftp_line_len(const char *p, size_t n)
{
	const char *lf = memchr(p, '\n', n);

	return lf == NULL ? 0 : (size_t)(lf - p) + 1;
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A reply code: three digits, the first 1-5 (RFC 959 4.2). */
static int
reply_code(const char *p, size_t len)
{
	if (len < 3 || !is_digit(p[0]) || !is_digit(p[1]) || !is_digit(p[2]) ||
	    p[0] < '1' || p[0] > '5')
		return 0;
	return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/* Parse 1-3 decimal digits worth at most max at p[*i]; advance *i. */
static int
dec(const char *p, size_t len, size_t *i, unsigned max, unsigned *v)
{
	size_t n = 0;

	*v = 0;
	while (*i < len && is_digit(p[*i]) && n < 5) {
		*v = *v * 10 + (unsigned)(p[*i] - '0');
		(*i)++;
		n++;
	}
	return n > 0 && (*i >= len || !is_digit(p[*i])) && *v <= max ? 0 : -1;
}

/* 227: RFC 1123 4.1.2.6 says to scan for the first digit after the code,
 * since servers word the text and the parentheses differently. */
static int
parse_227(const char *p, size_t len, struct ftp_reply *r)
{
	unsigned v[6];
	size_t i = 4;
	int k;

	while (i < len && !is_digit(p[i]))
		i++;
	for (k = 0; k < 6; k++) {
		if (k > 0) {
			if (i >= len || p[i] != ',')
				return -1;
			i++;
		}
		if (dec(p, len, &i, 255, &v[k]) == -1)
			return -1;
	}
	for (k = 0; k < 4; k++)
		r->ip[k] = (uint8_t)v[k];
	r->port = (uint16_t)(v[4] * 256 + v[5]);
	return r->port == 0 ? -1 : 0;
}

/* 229: "(<d><d><d>port<d>)" with one delimiter character d in
 * 33-126 (RFC 2428 3). */
static int
parse_229(const char *p, size_t len, struct ftp_reply *r)
{
	const char *open = memchr(p, '(', len);
	size_t i;
	unsigned v;
	char d;

	if (open == NULL)
		return -1;
	i = (size_t)(open - p) + 1;
	if (len - i < 6)
		return -1;
	d = p[i];
	if (d < 33 || d > 126 || is_digit(d) || p[i + 1] != d || p[i + 2] != d)
		return -1;
	i += 3;
	if (dec(p, len, &i, 65535, &v) == -1 || v == 0)
		return -1;
	if (i + 1 >= len || p[i] != d || p[i + 1] != ')')
		return -1;
	r->port = (uint16_t)v;
	return 0;
}

int
ftp_reply_scan(struct ftp_rstate *st, const char *line, size_t len,
    struct ftp_reply *r)
{
	int code = reply_code(line, len);
	char sep = len > 3 ? line[3] : '\0';

	memset(r, 0, sizeof(*r));
	if (st->multi) {
		/* Only "code " with the opening code ends it; anything else,
		 * "227 ..." of another code included, is text. */
		if (code != st->code || sep != ' ')
			return 0;
		st->multi = 0;
	} else {
		if (code == 0 || (sep != ' ' && sep != '-' &&
		    !(len == 4 && sep == '\n') && !(len == 5 && sep == '\r')))
			return -1;
		if (sep == '-') {
			st->multi = 1;
			st->code = code;
			return 0;
		}
	}
	r->code = code;
	if (code == 227 && parse_227(line, len, r) == 0)
		r->pasv = 1;
	else if (code == 229 && parse_229(line, len, r) == 0)
		r->epsv = 1;
	if (!r->pasv)
		memset(r->ip, 0, sizeof(r->ip));
	if (!r->pasv && !r->epsv)
		r->port = 0;
	return 0;
}

static int
is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char
upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/* Where the verb of a command line starts: after blanks and Telnet
 * commands (IAC x; IAC IAC is a data 0xff), which some servers skip. */
static size_t
verb_at(const char *line, size_t len)
{
	size_t i = 0;

	for (;;) {
		if (i < len && (line[i] == ' ' || line[i] == '\t' ||
		    line[i] == '\r'))
			i++;
		else if (i + 1 < len && (unsigned char)line[i] == 0xff &&
		    (unsigned char)line[i + 1] != 0xff)
			i += 2;
		else
			return i;
	}
}

enum ftp_cmd
ftp_cmd_scan(const char *line, size_t len)
{
	static const struct { const char *verb; enum ftp_cmd c; } verbs[] = {
		{ "PORT", FTP_C_PORT }, { "EPRT", FTP_C_EPRT },
		{ "LPRT", FTP_C_ACTIVE }, { "LPSV", FTP_C_ACTIVE },
		{ "AUTH", FTP_C_AUTH },
	};
	char verb[5];
	size_t i = verb_at(line, len), n = 0, k;

	/* Four letters and then anything but a letter: servers differ in
	 * what ends a verb (space, tab, NUL), so take any of them. */
	while (i < len && n < sizeof(verb) - 1 && is_alpha(line[i]))
		verb[n++] = upper(line[i++]);
	if (n != 4 || (i < len && is_alpha(line[i])))
		return FTP_C_OTHER;
	verb[n] = '\0';
	for (k = 0; k < sizeof(verbs) / sizeof(verbs[0]); k++)
		if (memcmp(verb, verbs[k].verb, 4) == 0)
			return verbs[k].c;
	return FTP_C_OTHER;
}

/* EPRT's argument from p[*i]: |proto|address|port| (RFC 2428 2). */
static int
parse_eprt(const char *p, size_t len, size_t *i, struct ftp_hostport *hp)
{
	char d, a[INET6_ADDRSTRLEN];
	const char *end;
	unsigned v;
	size_t n;

	if (len - *i < 3 || (d = p[*i]) < 33 || d > 126 || is_digit(d) ||
	    p[*i + 2] != d)
		return -1;
	if (p[*i + 1] != '1' && p[*i + 1] != '2')
		return -2;
	hp->family = p[*i + 1] == '1' ? AF_INET : AF_INET6;
	*i += 3;
	if ((end = memchr(p + *i, d, len - *i)) == NULL ||
	    (n = (size_t)(end - (p + *i))) == 0 || n >= sizeof(a))
		return -1;
	memcpy(a, p + *i, n);
	a[n] = '\0';
	if (inet_pton(hp->family, a, hp->addr) != 1)
		return -1;
	*i += n + 1;
	if (dec(p, len, i, 65535, &v) == -1 || *i >= len || p[*i] != d)
		return -1;
	hp->port = (uint16_t)v;
	(*i)++;
	return 0;
}

int
ftp_port_parse(const char *line, size_t len, struct ftp_hostport *hp)
{
	enum ftp_cmd c = ftp_cmd_scan(line, len);
	size_t i = verb_at(line, len) + 4;
	unsigned v[6];
	int k, rc = 0;

	memset(hp, 0, sizeof(*hp));
	if ((c != FTP_C_PORT && c != FTP_C_EPRT) || i >= len || line[i] != ' ')
		return -1;
	while (i < len && line[i] == ' ')
		i++;
	if (c == FTP_C_EPRT)
		rc = parse_eprt(line, len, &i, hp);
	else {
		for (k = 0; k < 6 && rc == 0; k++)
			if ((k > 0 && (i >= len || line[i++] != ',')) ||
			    dec(line, len, &i, 255, &v[k]) == -1)
				rc = -1;
		for (k = 0; k < 4 && rc == 0; k++)
			hp->addr[k] = (uint8_t)v[k];
		hp->family = AF_INET;
		hp->port = rc == 0 ? (uint16_t)(v[4] * 256 + v[5]) : 0;
	}
	/* Nothing but blanks and the line's end after it. */
	for (; rc == 0 && i < len; i++)
		if (line[i] != ' ' && line[i] != '\r' && line[i] != '\n')
			rc = -1;
	return rc;
}

int
ftp_fmt_port(char *out, size_t outlen, const struct ftp_hostport *hp)
{
	char a[INET6_ADDRSTRLEN];
	int n;

	if (hp->family == AF_INET)
		n = snprintf(out, outlen, "PORT %u,%u,%u,%u,%u,%u\r\n",
		    hp->addr[0], hp->addr[1], hp->addr[2], hp->addr[3],
		    (unsigned)(hp->port >> 8), (unsigned)(hp->port & 0xff));
	else if (inet_ntop(AF_INET6, hp->addr, a, sizeof(a)) == NULL)
		return -1;
	else
		n = snprintf(out, outlen, "EPRT |2|%s|%u|\r\n", a, hp->port);
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int
ftp_fmt_227(char *out, size_t outlen, const uint8_t ip[4], uint16_t port)
{
	int n = snprintf(out, outlen, "227 Entering Passive Mode "
	    "(%u,%u,%u,%u,%u,%u).\r\n", ip[0], ip[1], ip[2], ip[3],
	    (unsigned)(port >> 8), (unsigned)(port & 0xff));

	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int
ftp_fmt_229(char *out, size_t outlen, uint16_t port)
{
	int n = snprintf(out, outlen, "229 Entering Extended Passive Mode "
	    "(|||%u|)\r\n", (unsigned)port);

	return n < 0 || (size_t)n >= outlen ? -1 : n;
}
