/* test_route.c - admin API routing and bearer parsing, hostile cases. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "agent/agent_route.h"

static void
test_routes(void **state)
{
	struct route r;

	(void)state;
	assert_int_equal(route_parse("GET", "/api/v1/status", &r), 0);
	assert_int_equal(r.ep, RT_STATUS);
	assert_int_equal(route_parse("HEAD", "/api/v1/sessions", &r), 0);
	assert_int_equal(r.ep, RT_SESSIONS);
	assert_int_equal(route_parse("GET", "/metrics", &r), 0);
	assert_int_equal(r.ep, RT_METRICS);
	assert_int_equal(route_parse("POST", "/api/v1/reload", &r), 0);
	assert_int_equal(r.ep, RT_RELOAD);
	assert_int_equal(route_parse("POST", "/api/v1/upgrade", &r), 0);
	assert_int_equal(r.ep, RT_UPGRADE);
	assert_int_equal(route_parse("DELETE", "/api/v1/sessions/42", &r), 0);
	assert_int_equal(r.ep, RT_SESSION);
	assert_true(r.id == 42);
	assert_int_equal(route_parse("DELETE",
	    "/api/v1/sessions/18446744073709551615", &r), 0);
	assert_true(r.id == UINT64_MAX);
}

static void
test_wrong_method(void **state)
{
	struct route r;

	(void)state;
	assert_int_equal(route_parse("POST", "/api/v1/status", &r), -1);
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "GET, HEAD");
	assert_int_equal(route_parse("GET", "/api/v1/reload", &r), -1);
	assert_int_equal(r.status, 405);
	assert_int_equal(route_parse("GET", "/api/v1/upgrade", &r), -1);
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "POST");
	assert_int_equal(route_parse("GET", "/api/v1/sessions/1", &r), -1);
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "DELETE");
	assert_int_equal(route_parse("DELETE", "/api/v1/sessions", &r), -1);
	assert_int_equal(r.status, 405);
	assert_int_equal(route_parse("get", "/metrics", &r), -1);
	assert_int_equal(r.status, 405);
}

static void
test_not_found(void **state)
{
	static const char *const bad[] = {
		"/", "", "/api", "/api/v1", "/api/v1/", "/api/v1/status/",
		"/api/v1/statusx", "/API/v1/status", "/metrics/",
		"/api/v1/upgrad", "/api/v1/upgrade/", "/api/v1/reloadx",
		"/api/v1/sessions/", "/api/v1/sessions/0", "/api/v1/sessions/01",
		"/api/v1/sessions/-1", "/api/v1/sessions/+1", "/api/v1/sessions/1x",
		"/api/v1/sessions/1/2", "/api/v1/sessions/18446744073709551616",
		"/api/v1/sessions/99999999999999999999",
		"/api/v1/sessions/123456789012345678901", "//api/v1/status",
	};
	struct route r;
	char longurl[ROUTE_URL_MAX + 40];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (route_parse("DELETE", bad[i], &r) != -1 || r.status != 404)
			fail_msg("DELETE '%s' not 404", bad[i]);
		if (route_parse("GET", bad[i], &r) != -1 || r.status != 404)
			fail_msg("GET '%s' not 404", bad[i]);
	}
	memset(longurl, '1', sizeof(longurl) - 1);
	longurl[sizeof(longurl) - 1] = '\0';
	memcpy(longurl, "/api/v1/sessions/", 17);
	assert_int_equal(route_parse("DELETE", longurl, &r), -1);
	assert_int_equal(r.status, 404);
}

static void
test_bearer(void **state)
{
	const char *tok;
	size_t n;

	(void)state;
	assert_int_equal(route_bearer("Bearer abc", &tok, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(tok, "abc", 3);
	assert_int_equal(route_bearer("bearer   abc  ", &tok, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(route_bearer(NULL, &tok, &n), -1);
	assert_int_equal(route_bearer("", &tok, &n), -1);
	assert_int_equal(route_bearer("Bearer", &tok, &n), -1);
	assert_int_equal(route_bearer("Bearer ", &tok, &n), -1);
	assert_int_equal(route_bearer("Bearerabc", &tok, &n), -1);
	assert_int_equal(route_bearer("Basic YWJjOmRlZg==", &tok, &n), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_wrong_method),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_bearer),
	};
	return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
