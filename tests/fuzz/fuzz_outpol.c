/* fuzz_outpol.c - libFuzzer harness for the destination policy: parse
 * the input as a pushed policy, then judge a few fixed destinations
 * with it. A special address must never pass for a name request. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/outpol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct outpol p;
	struct sockaddr_in sin;
	const char *why;
	char err[512], *s;

	if (size > 8192 || (s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (outpol_parse(s, &p, err, sizeof(err)) == 0) {
		if (p.n > OUTPOL_MAX_RULES)
			abort();
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons(443);
		sin.sin_addr.s_addr = htonl(0x7f000001);
		/* a name rule never lets a name reach loopback */
		if (outpol_check_addr(&p, "example.com", (struct sockaddr *)&sin,
		    &why) == 1) {
			size_t i;
			int cidr_names_it = 0;
			for (i = 0; i < p.n; i++)
				if (p.r[i].kind == OUTPOL_CIDR && p.r[i].lifts_ban)
					cidr_names_it = 1;
			if (!cidr_names_it)
				abort();
		}
		sin.sin_addr.s_addr = 0;
		if (outpol_check_addr(&p, NULL, (struct sockaddr *)&sin, &why) == 1)
			abort();	/* the unspecified address, never */
		(void)outpol_check_name(&p, s, 443, &why);
	}
	free(s);
	return 0;
}
