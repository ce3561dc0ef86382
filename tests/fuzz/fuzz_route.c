/* fuzz_route.c - libFuzzer harness for admin API routing: the input is
 * split at the first NUL into a URL and an Authorization header. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = { "GET", "POST", "DELETE", "HEAD" };
	struct route r;
	const char *tok;
	size_t n, i;
	char *s;

	if ((s = malloc(size + 2)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	s[size + 1] = '\0';
	for (i = 0; i < 4; i++)
		if (route_parse(methods[i], s, &r) == 0 && r.ep == RT_SESSION &&
		    r.id == 0)
			__builtin_trap();
	n = strlen(s);
	if (route_bearer(s + n + 1, &tok, &n) == 0 && n == 0)
		__builtin_trap();
	(void)route_parse_id(s, strnlen(s, size), &r.id);
	free(s);
	return 0;
}
