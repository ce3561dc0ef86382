/* fuzz_socks.c - libFuzzer harness for the SOCKS5 parsers. The first
 * byte picks the parser, the rest is the client's bytes. A complete
 * message must never be longer than the input nor than SOCKS_MSG_MAX. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/socks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct socks_greeting g;
	struct socks_auth a;
	struct socks_req r;
	uint8_t *p;
	size_t n;
	int rc;

	if (size < 1)
		return 0;
	n = size - 1;
	/* A copy of exactly n bytes, so ASan sees any read past the end. */
	if ((p = malloc(n ? n : 1)) == NULL)
		return 0;
	memcpy(p, data + 1, n);
	switch (data[0] % 3) {
	case 0:
		rc = socks_greeting(p, n, &g);
		break;
	case 1:
		rc = socks_auth(p, n, &a);
		if (rc > 0 && strlen(a.user) != a.ulen)
			abort();
		break;
	default:
		rc = socks_request(p, n, &r);
		if (rc > 0 && strnlen(r.host, sizeof(r.host)) == sizeof(r.host))
			abort();
		break;
	}
	if (rc > 0 && ((size_t)rc > n || rc > SOCKS_MSG_MAX))
		abort();
	free(p);
	return 0;
}
