/* ftp.h - the FTP control channel seen line by line (RFC 959, 2228,
 * 2428): pure, bounded functions with no I/O and no allocation, so they
 * can be unit-tested and fuzzed on their own. The agent uses them on a
 * plain FTP control connection only (agent_ftp.c); the edge never links
 * them. */
#ifndef SP_FTP_H
#define SP_FTP_H

#include <stddef.h>
#include <stdint.h>

/* Longest command or reply line handled as a line, CRLF included.
 * Servers' own limits are of this order (vsftpd: 4096). */
#define FTP_LINE_MAX	4096
/* Longest line ftp_fmt_227, ftp_fmt_229 and ftp_fmt_port write, CRLF
 * included. */
#define FTP_FMT_MAX	80

/* Where a reply stream is: outside any reply, or inside a multi-line
 * reply ("123-..." up to the line that starts "123 "). All zero is the
 * state at the start of a connection. */
struct ftp_rstate {
	int	multi;
	int	code;
};

/* What one reply line is. */
struct ftp_reply {
	int		code;	/* 100-599 on the last line of a reply, else 0 */
	int		pasv;	/* a final 227 whose h1,h2,h3,h4,p1,p2 parsed */
	int		epsv;	/* a final 229 whose (|||port|) parsed */
	uint8_t		ip[4];	/* pasv: the address announced */
	uint16_t	port;	/* pasv, epsv: the port announced */
};

/* Scan one reply line: len bytes up to and including its LF (a line cut
 * short by FTP_LINE_MAX is scanned from its start all the same). Fills r
 * and advances st. Returns 0, or -1 for a line that is not reply syntax
 * outside a multi-line reply (st is then unchanged). */
int	ftp_reply_scan(struct ftp_rstate *st, const char *line, size_t len,
	    struct ftp_reply *r);

enum ftp_cmd {
	FTP_C_OTHER,	/* anything else: passed on unchanged */
	FTP_C_ACTIVE,	/* LPRT, LPSV: refused by the gateway */
	FTP_C_PORT,	/* PORT (RFC 959): active mode, IPv4 */
	FTP_C_EPRT,	/* EPRT (RFC 2428): active mode, IPv4 or IPv6 */
	FTP_C_AUTH,	/* AUTH (RFC 2228): TLS may start after a 234 */
};

/* Classify one command line (len bytes, up to and including its LF).
 * The verb is read case-insensitively after any leading blanks and
 * Telnet IAC sequences, as servers do, so "\xff\xf4port" is still PORT. */
enum ftp_cmd ftp_cmd_scan(const char *line, size_t len);

/* The address and port of a PORT or EPRT command. */
struct ftp_hostport {
	int		family;		/* AF_INET or AF_INET6 */
	uint8_t		addr[16];	/* the first 4 for AF_INET */
	uint16_t	port;
};

/* The argument of a PORT ("h1,h2,h3,h4,p1,p2") or EPRT ("|1|a.b.c.d|port|"
 * or "|2|v6|port|", any delimiter of 33-126) command line of len bytes,
 * which ftp_cmd_scan found to be one: 0 with hp filled, -1 if it is not
 * that syntax (anything but blanks after it included), -2 for an EPRT
 * network protocol other than 1 and 2. Port 0 is syntax; what a port
 * may be is the caller's to decide. */
int	ftp_port_parse(const char *line, size_t len, struct ftp_hostport *hp);
/* Write "PORT a,b,c,d,p1,p2\r\n" (AF_INET) or "EPRT |2|addr|port|\r\n"
 * (AF_INET6) for hp to out. The length written (no NUL counted), or -1
 * if out is too small. */
int	ftp_fmt_port(char *out, size_t outlen, const struct ftp_hostport *hp);

/* Length of the first line in p[0..n) up to and including its LF, or 0
 * if p holds no LF. */
size_t	ftp_line_len(const char *p, size_t n);

/* Write "227 Entering Passive Mode (a,b,c,d,p1,p2).\r\n" or
 * "229 Entering Extended Passive Mode (|||port|)\r\n" to out. Return the
 * length written (no NUL counted), or -1 if out is too small. */
int	ftp_fmt_227(char *out, size_t outlen, const uint8_t ip[4], uint16_t port);
int	ftp_fmt_229(char *out, size_t outlen, uint16_t port);

#endif
