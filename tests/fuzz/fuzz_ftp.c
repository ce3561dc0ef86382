/* fuzz_ftp.c - libFuzzer harness for the FTP control-line parser: the
 * input is split into lines as the agent's filter does, each fed to the
 * reply scanner (with state carried over) and the command classifier.
 * Checks: a parsed passive reply formats to a line that parses back to
 * the same address and port; state stays sane; a PORT or EPRT command
 * that parses is of a known family, and the command the agent writes in
 * its place parses back to the same address and port. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "agent/ftp_line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_port(const char *p, size_t len)
{
	struct ftp_hostport hp, hp2;
	enum ftp_cmd c = ftp_cmd_scan(p, len);
	char out[FTP_FMT_MAX];
	int rc = ftp_port_parse(p, len, &hp), n;

	if (rc != 0 && rc != -1 && rc != -2)
		__builtin_trap();
	if (rc == -2 && c != FTP_C_EPRT)
		__builtin_trap();
	if (rc != 0)
		return;
	if ((c != FTP_C_PORT && c != FTP_C_EPRT) ||
	    (hp.family != AF_INET && hp.family != AF_INET6) ||
	    (c == FTP_C_PORT && hp.family != AF_INET))
		__builtin_trap();
	n = ftp_fmt_port(out, sizeof(out), &hp);
	if (n <= 0 || ftp_port_parse(out, (size_t)n, &hp2) != 0 ||
	    memcmp(&hp, &hp2, sizeof(hp)) != 0)
		__builtin_trap();
}

static void
check_line(struct ftp_rstate *st, const char *p, size_t len)
{
	struct ftp_rstate st2 = { 0, 0 };
	struct ftp_reply r, r2;
	char out[FTP_FMT_MAX];
	int n;

	check_port(p, len);
	if (ftp_reply_scan(st, p, len, &r) == -1)
		return;
	if (r.code != 0 && (r.code < 100 || r.code > 599))
		__builtin_trap();
	if (st->multi && (st->code < 100 || st->code > 599))
		__builtin_trap();
	if (r.pasv) {
		if (r.code != 227 || r.port == 0)
			__builtin_trap();
		n = ftp_fmt_227(out, sizeof(out), r.ip, r.port);
		if (n <= 0 || ftp_reply_scan(&st2, out, (size_t)n, &r2) == -1 ||
		    !r2.pasv || r2.port != r.port || memcmp(r2.ip, r.ip, 4) != 0)
			__builtin_trap();
	}
	if (r.epsv) {
		if (r.code != 229 || r.port == 0)
			__builtin_trap();
		n = ftp_fmt_229(out, sizeof(out), r.port);
		if (n <= 0 || ftp_reply_scan(&st2, out, (size_t)n, &r2) == -1 ||
		    !r2.epsv || r2.port != r.port)
			__builtin_trap();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ftp_rstate st = { 0, 0 };
	const char *p = (const char *)data;
	size_t len;

	while (size > 0) {
		len = ftp_line_len(p, size > FTP_LINE_MAX ? FTP_LINE_MAX : size);
		if (len == 0)
			len = size > FTP_LINE_MAX ? FTP_LINE_MAX : size;
		check_line(&st, p, len);
		p += len;
		size -= len;
	}
	return 0;
}
