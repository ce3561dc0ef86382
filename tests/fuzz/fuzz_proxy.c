/* fuzz_proxy.c - the edge's PROXY header parser (proxy_parse.c), on any
 * bytes: a header found lies within the input and PROXY_MAX, and every
 * shorter prefix of it asks for more; its addresses, encoded by the
 * agent's encoder (proxy_enc.c) in both versions, parse back the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "agent/proxy_enc.h"
#include "edge/proxy_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_hdr h, h2;
	struct sockaddr_in6 s6, d6;
	struct sockaddr_in s4, d4;
	const char *why = NULL;
	uint8_t out[PROXY_ENC_MAX];
	int n, m, v;

	n = proxy_parse(data, size, &h, &why);
	if (n < 0 && why == NULL)
		abort();
	if (n > 0 && ((size_t)n > size || (size_t)n > PROXY_MAX))
		abort();
	if (n > 0) {
		struct proxy_hdr hp;
		int k;

		for (k = 0; k < n; k++)
			if (proxy_parse(data, (size_t)k, &hp, &why) != 0)
				abort();
	}
	if (n <= 0 || h.local)
		return 0;
	for (v = 1; v <= 2; v++) {
		if (h.family == AF_INET) {
			memset(&s4, 0, sizeof(s4));
			memset(&d4, 0, sizeof(d4));
			s4.sin_family = d4.sin_family = AF_INET;
			memcpy(&s4.sin_addr, h.src, 4);
			memcpy(&d4.sin_addr, h.dst, 4);
			s4.sin_port = htons(h.sport);
			d4.sin_port = htons(h.dport);
			m = proxy_encode(v, (struct sockaddr *)&s4,
			    (struct sockaddr *)&d4, out, sizeof(out));
		} else {
			memset(&s6, 0, sizeof(s6));
			memset(&d6, 0, sizeof(d6));
			s6.sin6_family = d6.sin6_family = AF_INET6;
			memcpy(&s6.sin6_addr, h.src, 16);
			memcpy(&d6.sin6_addr, h.dst, 16);
			s6.sin6_port = htons(h.sport);
			d6.sin6_port = htons(h.dport);
			m = proxy_encode(v, (struct sockaddr *)&s6,
			    (struct sockaddr *)&d6, out, sizeof(out));
		}
		if (m <= 0 || m > PROXY_ENC_MAX || proxy_parse(out, (size_t)m, &h2, &why) != m ||
		    h2.family != h.family || h2.sport != h.sport ||
		    h2.dport != h.dport || memcmp(h2.src, h.src, 16) != 0 ||
		    memcmp(h2.dst, h.dst, 16) != 0)
			abort();
	}
	return 0;
}
