/* fuzz_httpc.c - libFuzzer harness for the HTTP CONNECT parser. A
 * request must end within the input and within HTTPC_MAX; the parse of
 * any prefix of a complete request must say "need more". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/httpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct httpc_req r;
	uint8_t *p;
	int rc, status = 0;

	if ((p = malloc(size ? size : 1)) == NULL)
		return 0;
	memcpy(p, data, size);
	rc = httpc_parse(p, size, &r, &status);
	if (rc > 0) {
		if ((size_t)rc > size || rc > HTTPC_MAX || r.port == 0 ||
		    strnlen(r.host, sizeof(r.host)) == sizeof(r.host))
			abort();
		if (httpc_parse(p, (size_t)rc - 1, &r, &status) != 0)
			abort();
	} else if (rc < 0 && (status < 400 || status > 599))
		abort();
	free(p);
	return 0;
}
