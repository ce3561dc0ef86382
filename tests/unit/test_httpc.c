/* test_httpc.c - the HTTP CONNECT parser against good and hostile input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/httpc.h"

static int
parse(const char *s, struct httpc_req *r, int *status)
{
	return httpc_parse((const uint8_t *)s, strlen(s), r, status);
}

static void
expect_status(const char *s, int want)
{
	struct httpc_req r;
	int status = 0;

	if (parse(s, &r, &status) != -1 || status != want)
		fail_msg("'%s': want -1/%d, got status %d", s, want, status);
}

static void
test_good(void **state)
{
	const char *req = "CONNECT files.example.com:443 HTTP/1.1\r\n"
	    "Host: files.example.com:443\r\n"
	    "Proxy-Authorization:  Basic dXNlcjpwYXNz \r\n"
	    "User-Agent: curl/7.88\r\n\r\n";
	char buf[512];
	struct httpc_req r;
	size_t i, n = strlen(req);
	int status;

	(void)state;
	/* every prefix is incomplete, and bytes after the end are ignored */
	for (i = 0; i < n; i++)
		assert_int_equal(httpc_parse((const uint8_t *)req, i, &r, &status), 0);
	snprintf(buf, sizeof(buf), "%s\x16\x03\x01", req);
	assert_int_equal(parse(buf, &r, &status), (int)n);
	assert_string_equal(r.host, "files.example.com");
	assert_int_equal(r.port, 443);
	assert_true(r.has_auth);
	assert_string_equal(r.auth, "dXNlcjpwYXNz");
	assert_int_equal(parse("CONNECT [2001:db8::1]:22 HTTP/1.0\r\n\r\n", &r,
	    &status), 37);
	assert_string_equal(r.host, "2001:db8::1");
	assert_int_equal(r.port, 22);
	assert_false(r.has_auth);
	/* another scheme is not Basic credentials */
	assert_true(parse("CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: "
	    "Digest x\r\n\r\n", &r, &status) > 0);
	assert_false(r.has_auth);
	/* "Basic" with nothing after it: no credentials, not a crash */
	assert_true(parse("CONNECT a:1 HTTP/1.1\r\nProxy-Authorization: "
	    "Basic \r\n\r\n", &r, &status) > 0);
	assert_false(r.has_auth);
}

static void
test_hostile(void **state)
{
	(void)state;
	expect_status("GET http://x/ HTTP/1.1\r\n\r\n", 405);
	expect_status("CONNECT a:1 HTTP/2.0\r\n\r\n", 505);
	expect_status("CONNECT a:1 FOO/1.1\r\n\r\n", 400);
	expect_status("CONNECT a HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT a:0 HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT a:65536 HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT a:99999999 HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT a:-1 HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT :443 HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT 2001:db8::1:443 HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT [2001:db8::1:443 HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT user@a:443 HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT  a:443 HTTP/1.1\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1 x\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1\r\nNoColon\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1\r\nBad Name: x\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1\r\n folded\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1\r\nX: a\nY: b\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1\r\nX: a\rY: b\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1\r\nX: a\x01\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1\r\nProxy-Authorization: Basic a\r\n"
	    "Proxy-Authorization: Basic b\r\n\r\n", 400);
	expect_status("CONNECT a:443 HTTP/1.1\r\nProxy-Authorization: Basic  "
	    "\x7f\r\n\r\n", 400);
	expect_status("\r\n\r\n", 400);
}

static void
test_too_long(void **state)
{
	uint8_t *p = malloc(HTTPC_MAX + 100);
	struct httpc_req r;
	int status = 0;

	(void)state;
	assert_non_null(p);
	memset(p, 'a', HTTPC_MAX + 100);
	memcpy(p, "CONNECT a:1 HTTP/1.1\r\nX: ", 25);
	assert_int_equal(httpc_parse(p, HTTPC_MAX - 1, &r, &status), 0);
	assert_int_equal(httpc_parse(p, HTTPC_MAX, &r, &status), -1);
	assert_int_equal(status, 431);
	/* the end beyond the limit does not count */
	memcpy(p + HTTPC_MAX + 10, "\r\n\r\n", 4);
	assert_int_equal(httpc_parse(p, HTTPC_MAX + 100, &r, &status), -1);
	assert_int_equal(status, 431);
	free(p);
}

static void
test_reply(void **state)
{
	char out[600];
	size_t n;

	(void)state;
	n = httpc_reply(out, sizeof(out), 200, NULL);
	assert_int_equal(n, strlen("HTTP/1.1 200 Connection established\r\n\r\n"));
	assert_string_equal(out, "HTTP/1.1 200 Connection established\r\n\r\n");
	n = httpc_reply(out, sizeof(out), 407, "who are you");
	assert_true(n > 0);
	assert_non_null(strstr(out, "HTTP/1.1 407 "));
	assert_non_null(strstr(out, "Proxy-Authenticate: Basic"));
	assert_non_null(strstr(out, "Content-Length: 12\r\n"));
	assert_non_null(strstr(out, "\r\n\r\nwho are you\n"));
	assert_int_equal(httpc_reply(out, 20, 403, "x"), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_reply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
