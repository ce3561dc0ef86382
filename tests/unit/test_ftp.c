/* test_ftp.c - the FTP control-line parser: replies, commands and the
 * passive replies the agent writes, with hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "agent/ftp_line.h"

static int
scan(struct ftp_rstate *st, const char *line, struct ftp_reply *r)
{
	return ftp_reply_scan(st, line, strlen(line), r);
}

static void
test_pasv(void **state)
{
	struct ftp_rstate st = { 0, 0 };
	struct ftp_reply r;

	(void)state;
	assert_int_equal(scan(&st, "227 Entering Passive Mode "
	    "(10,1,2,3,117,48).\r\n", &r), 0);
	assert_int_equal(r.code, 227);
	assert_true(r.pasv);
	assert_int_equal(r.ip[0], 10);
	assert_int_equal(r.ip[3], 3);
	assert_int_equal(r.port, 117 * 256 + 48);
	/* RFC 1123: no parentheses, other wording. */
	assert_int_equal(scan(&st, "227 =192,168,0,1,0,21\n", &r), 0);
	assert_true(r.pasv);
	assert_int_equal(r.port, 21);
	/* Out of range, short, or port 0: a 227 that is not rewritten. */
	const char *bad[] = {
		"227 Entering Passive Mode (256,1,2,3,4,5).\r\n",
		"227 Entering Passive Mode (1,2,3,4,5).\r\n",
		"227 Entering Passive Mode (1,2,3,4,5,256).\r\n",
		"227 Entering Passive Mode (1,2,3,4,0,0).\r\n",
		"227 Entering Passive Mode (1,2,3,4,5,2567).\r\n",
		"227 Entering Passive Mode (1,,3,4,5,6).\r\n",
		"227 Entering Passive Mode\r\n",
		"227 (99999999999999999999,1,1,1,1,1)\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(scan(&st, bad[i], &r), 0);
		assert_int_equal(r.code, 227);
		assert_false(r.pasv);
		assert_int_equal(r.port, 0);
	}
}

static void
test_epsv(void **state)
{
	struct ftp_rstate st = { 0, 0 };
	struct ftp_reply r;

	(void)state;
	assert_int_equal(scan(&st, "229 Entering Extended Passive Mode "
	    "(|||30001|)\r\n", &r), 0);
	assert_true(r.epsv);
	assert_int_equal(r.port, 30001);
	assert_int_equal(scan(&st, "229 ok (!!!65535!)\r\n", &r), 0);
	assert_true(r.epsv);
	assert_int_equal(r.port, 65535);
	const char *bad[] = {
		"229 (|||65536|)\r\n", "229 (|||0|)\r\n", "229 (||30001|)\r\n",
		"229 (|!|30001|)\r\n", "229 (|||30001!)\r\n", "229 (|||30001|\r\n",
		"229 (111301)\r\n", "229 (|||)\r\n", "229 (|||\r\n", "229 (",
		"229 (|1|127.0.0.1|30001|)\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(scan(&st, bad[i], &r), 0);
		assert_false(r.epsv);
		assert_int_equal(r.port, 0);
	}
}

static void
test_multiline(void **state)
{
	struct ftp_rstate st = { 0, 0 };
	struct ftp_reply r;

	(void)state;
	assert_int_equal(scan(&st, "211-Features:\r\n", &r), 0);
	assert_int_equal(r.code, 0);
	assert_true(st.multi);
	/* Inside a reply: a "227 " of another code is only text. */
	assert_int_equal(scan(&st, "227 Entering Passive Mode "
	    "(1,2,3,4,5,6)\r\n", &r), 0);
	assert_int_equal(r.code, 0);
	assert_false(r.pasv);
	assert_int_equal(scan(&st, "211-not the end\r\n", &r), 0);
	assert_int_equal(r.code, 0);
	assert_int_equal(scan(&st, " EPSV\r\n", &r), 0);
	assert_int_equal(scan(&st, "211 End\r\n", &r), 0);
	assert_int_equal(r.code, 211);
	assert_false(st.multi);
	/* A multi-line 227 is rewritten on its last line. */
	assert_int_equal(scan(&st, "227-Passive\r\n", &r), 0);
	assert_int_equal(scan(&st, "227 (1,2,3,4,5,6)\r\n", &r), 0);
	assert_true(r.pasv);
	assert_int_equal(r.port, 5 * 256 + 6);
}

static void
test_reply_hostile(void **state)
{
	struct ftp_rstate st = { 0, 0 };
	struct ftp_reply r;
	char big[FTP_LINE_MAX];

	(void)state;
	const char *bad[] = {
		"", "2", "22", "220", "22x ok\r\n", "620 no\r\n", "020 no\r\n",
		"2200 no\r\n", "220xno\r\n", "\xff\xf4" "220 x\r\n", " 220 x\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(scan(&st, bad[i], &r), -1);
		assert_false(st.multi);
	}
	/* Bare codes with a line end are replies. */
	assert_int_equal(scan(&st, "220\r\n", &r), 0);
	assert_int_equal(r.code, 220);
	assert_int_equal(scan(&st, "220\n", &r), 0);
	assert_int_equal(r.code, 220);
	/* Bytes are never read past len: a 227 cut in the middle. */
	assert_int_equal(ftp_reply_scan(&st, "227 (1,2,3,4,5,6)", 12, &r), 0);
	assert_false(r.pasv);
	/* A line as long as any, of digits. */
	memset(big, '9', sizeof(big));
	memcpy(big, "227 ", 4);
	assert_int_equal(ftp_reply_scan(&st, big, sizeof(big), &r), 0);
	assert_false(r.pasv);
	/* NUL bytes inside. */
	assert_int_equal(ftp_reply_scan(&st, "227 (1,2\0,3,4,5,6)\r\n", 20, &r), 0);
	assert_false(r.pasv);
}

static enum ftp_cmd
cmd(const char *s)
{
	return ftp_cmd_scan(s, strlen(s));
}

static void
test_commands(void **state)
{
	(void)state;
	assert_int_equal(cmd("PORT 127,0,0,1,4,1\r\n"), FTP_C_PORT);
	assert_int_equal(cmd("port 127,0,0,1,4,1\r\n"), FTP_C_PORT);
	assert_int_equal(cmd("EPRT |1|127.0.0.1|4000|\r\n"), FTP_C_EPRT);
	assert_int_equal(cmd("ePrT |1|127.0.0.1|4000|\r\n"), FTP_C_EPRT);
	assert_int_equal(cmd("LPRT 4,4,1,2,3,4,2,1,1\r\n"), FTP_C_ACTIVE);
	assert_int_equal(cmd("LPSV\r\n"), FTP_C_ACTIVE);
	assert_int_equal(cmd("AUTH TLS\r\n"), FTP_C_AUTH);
	assert_int_equal(cmd("auth ssl\r\n"), FTP_C_AUTH);
	/* What servers may skip before or after a verb does not hide it. */
	assert_int_equal(cmd("  PORT 1,2,3,4,5,6\r\n"), FTP_C_PORT);
	assert_int_equal(cmd("\xff\xf4\xff\xf2PORT 1,2,3,4,5,6\r\n"), FTP_C_PORT);
	assert_int_equal(ftp_cmd_scan("PORT\0 1,2,3,4,5,6\r\n", 19), FTP_C_PORT);
	assert_int_equal(cmd("PORT\t1,2,3,4,5,6\r\n"), FTP_C_PORT);
	assert_int_equal(cmd("PORT"), FTP_C_PORT);
	assert_int_equal(cmd("\rPORT 1\r\n"), FTP_C_PORT);
	/* Others pass. */
	assert_int_equal(cmd("PASV\r\n"), FTP_C_OTHER);
	assert_int_equal(cmd("EPSV\r\n"), FTP_C_OTHER);
	assert_int_equal(cmd("PORTS\r\n"), FTP_C_OTHER);
	assert_int_equal(cmd("POR\r\n"), FTP_C_OTHER);
	assert_int_equal(cmd("XPORT 1\r\n"), FTP_C_OTHER);
	assert_int_equal(cmd("STOR PORT 1,2\r\n"), FTP_C_OTHER);
	assert_int_equal(cmd("\xff\xffPORT 1\r\n"), FTP_C_OTHER);
	assert_int_equal(cmd(""), FTP_C_OTHER);
	assert_int_equal(cmd("\xff"), FTP_C_OTHER);
	assert_int_equal(ftp_cmd_scan("PORT", 3), FTP_C_OTHER);
}

static void
test_fmt_and_lines(void **state)
{
	struct ftp_rstate st = { 0, 0 };
	struct ftp_reply r;
	const uint8_t ip[4] = { 203, 0, 113, 7 };
	char out[FTP_FMT_MAX];
	int n;

	(void)state;
	n = ftp_fmt_227(out, sizeof(out), ip, 30049);
	assert_string_equal(out, "227 Entering Passive Mode "
	    "(203,0,113,7,117,97).\r\n");
	assert_int_equal(n, (int)strlen(out));
	assert_int_equal(ftp_reply_scan(&st, out, (size_t)n, &r), 0);
	assert_true(r.pasv);
	assert_int_equal(r.port, 30049);
	assert_memory_equal(r.ip, ip, 4);
	n = ftp_fmt_229(out, sizeof(out), 65535);
	assert_string_equal(out, "229 Entering Extended Passive Mode "
	    "(|||65535|)\r\n");
	assert_int_equal(ftp_reply_scan(&st, out, (size_t)n, &r), 0);
	assert_true(r.epsv);
	assert_int_equal(r.port, 65535);
	/* Too small a buffer: -1, never a cut line. */
	assert_int_equal(ftp_fmt_227(out, 20, ip, 1), -1);
	assert_int_equal(ftp_fmt_229(out, 10, 1), -1);
	assert_int_equal(ftp_line_len("abc\r\ndef", 8), 5);
	assert_int_equal(ftp_line_len("abc", 3), 0);
	assert_int_equal(ftp_line_len("\n", 1), 1);
	assert_int_equal(ftp_line_len("", 0), 0);
}

static int
pp(const char *line, struct ftp_hostport *hp)
{
	return ftp_port_parse(line, strlen(line), hp);
}

static void
test_port_parse(void **state)
{
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
	    0, 0, 0, 0, 0, 0, 0, 7 };
	struct ftp_hostport hp, hp2;
	char out[FTP_FMT_MAX];
	size_t i;
	int n;

	(void)state;
	assert_int_equal(pp("PORT 192,0,2,7,156,64\r\n", &hp), 0);
	assert_int_equal(hp.family, AF_INET);
	assert_memory_equal(hp.addr, "\xc0\x00\x02\x07", 4);
	assert_int_equal(hp.port, 40000);
	/* What servers take: lower case, Telnet noise, blanks, a bare LF,
	 * no line end at all (the filter's last partial line). */
	assert_int_equal(pp("port 10,0,0,1,0,21\n", &hp), 0);
	assert_int_equal(hp.port, 21);		/* syntax: the caller judges */
	assert_int_equal(pp("\xff\xf4PORT  1,2,3,4,0,0  \r\n", &hp), 0);
	assert_int_equal(hp.port, 0);
	assert_int_equal(pp("PORT 1,2,3,4,255,255", &hp), 0);
	assert_int_equal(hp.port, 65535);
	assert_int_equal(pp("EPRT |1|198.51.100.9|5282|\r\n", &hp), 0);
	assert_int_equal(hp.family, AF_INET);
	assert_memory_equal(hp.addr, "\xc6\x33\x64\x09", 4);
	assert_int_equal(hp.port, 5282);
	assert_int_equal(pp("EPRT !2!2001:db8::7!65535!\r\n", &hp), 0);
	assert_int_equal(hp.family, AF_INET6);
	assert_memory_equal(hp.addr, v6, 16);
	assert_int_equal(hp.port, 65535);
	assert_int_equal(pp("EPRT |2|::ffff:192.0.2.1|2000|\r\n", &hp), 0);
	/* Not the syntax: refused, never guessed. */
	const char *bad[] = {
		"PORT\r\n", "PORT \r\n", "PORT1,2,3,4,5,6\r\n",
		"PORT\t1,2,3,4,5,6\r\n", "PORT 1,2,3,4,5\r\n",
		"PORT 1,2,3,4,5,6,7\r\n", "PORT 256,2,3,4,5,6\r\n",
		"PORT 1,2,3,4,5,256\r\n", "PORT 1,2,3,4,5,-6\r\n",
		"PORT 1,,3,4,5,6\r\n", "PORT 1 ,2,3,4,5,6\r\n",
		"PORT 1,2,3,4,5,6 x\r\n", "PORT 1,2,3,4,5,6;\r\n",
		"PORT 0x1,2,3,4,5,6\r\n", "PORT 99999999999,2,3,4,5,6\r\n",
		"LPRT 4,4,1,2,3,4,2,1,1\r\n",
		"PASV\r\n", "EPRT\r\n", "EPRT ||\r\n",
		"EPRT |1|1.2.3.4|5\r\n", "EPRT |1|1.2.3.4|5|x\r\n",
		"EPRT |1|1.2.3.4||\r\n", "EPRT |1||5|\r\n",
		"EPRT |1|1.2.3.4|65536|\r\n", "EPRT |1|2001:db8::1|5|\r\n",
		"EPRT |2|1.2.3.4|5|\r\n", "EPRT |1|1.2.3.04.5|5|\r\n",
		"EPRT 1|1|1.2.3.4|5|\r\n", "EPRT  |1|1.2.3.4|5|\r\n|",
		"EPRT |1|1.2.3.4 |5|\r\n", "EPRT \x7f" "1\x7f" "1.2.3.4\x7f" "5\x7f\r\n",
		"EPRT |1|1.2.3.4|5|6|\r\n",
	};
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (pp(bad[i], &hp) != -1)
			fail_msg("parsed: %s", bad[i]);
	assert_int_equal(ftp_port_parse("PORT 1,2,3,4,5,6\r\n", 12, &hp), -1);
	assert_int_equal(ftp_port_parse("PORT 1,2,3,4,5,6\0\r\n", 19, &hp), -1);
	/* EPRT for a network protocol other than IPv4 and IPv6. */
	assert_int_equal(pp("EPRT |3|1.2.3.4|5|\r\n", &hp), -2);
	assert_int_equal(pp("EPRT |x|1.2.3.4|5|\r\n", &hp), -2);
	/* What the agent writes parses back to the same. */
	hp = (struct ftp_hostport){ AF_INET, { 10, 1, 2, 3 }, 4100 };
	n = ftp_fmt_port(out, sizeof(out), &hp);
	assert_string_equal(out, "PORT 10,1,2,3,16,4\r\n");
	assert_int_equal(n, (int)strlen(out));
	assert_int_equal(ftp_cmd_scan(out, (size_t)n), FTP_C_PORT);
	assert_int_equal(ftp_port_parse(out, (size_t)n, &hp2), 0);
	assert_memory_equal(&hp, &hp2, sizeof(hp));
	memset(&hp, 0, sizeof(hp));
	hp.family = AF_INET6;
	memset(hp.addr, 0xff, 16);
	hp.port = 65535;
	n = ftp_fmt_port(out, sizeof(out), &hp);
	assert_string_equal(out, "EPRT |2|ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
	    "ffff|65535|\r\n");
	assert_int_equal(ftp_port_parse(out, (size_t)n, &hp2), 0);
	assert_memory_equal(&hp, &hp2, sizeof(hp));
	assert_int_equal(ftp_fmt_port(out, 20, &hp), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pasv),
		cmocka_unit_test(test_epsv),
		cmocka_unit_test(test_multiline),
		cmocka_unit_test(test_reply_hostile),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_fmt_and_lines),
		cmocka_unit_test(test_port_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
