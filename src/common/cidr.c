/* cidr.c - address ranges for the access policy. The edge parses lists
 * pushed by agents, the agent lists from its configuration: both are
 * bounded by CIDR_STR_MAX and CIDR_LIST_MAX. */
#include "common/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>

void
cidr_addr16(int family, const uint8_t *ip, uint8_t out[16])
{
	if (family == AF_INET) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, ip, 4);
	} else
		memcpy(out, ip, 16);
}

int
cidr_parse(const char *s, size_t n, struct cidr *c, const char **why)
{
	char a[INET6_ADDRSTRLEN + 1];
	const char *slash = memchr(s, '/', n);
	size_t alen = slash != NULL ? (size_t)(slash - s) : n, i;
	uint8_t ip[16];
	unsigned len = 0, max;
	int six;

	if (alen == 0 || alen >= sizeof(a)) {
		*why = "not an IP address";
		return -1;
	}
	memcpy(a, s, alen);
	a[alen] = '\0';
	six = memchr(a, ':', alen) != NULL;
	if (inet_pton(six ? AF_INET6 : AF_INET, a, ip) != 1) {
		*why = "not an IP address";
		return -1;
	}
	max = six ? 128 : 32;
	if (slash == NULL)
		len = max;
	else {
		/* 1 to 3 digits, no sign, no leading zero but "0" itself */
		const char *d = slash + 1;
		size_t dn = n - alen - 1;

		if (dn == 0 || dn > 3 || (dn > 1 && d[0] == '0')) {
			*why = "bad prefix length";
			return -1;
		}
		for (i = 0; i < dn; i++) {
			if (d[i] < '0' || d[i] > '9') {
				*why = "bad prefix length";
				return -1;
			}
			len = len * 10 + (unsigned)(d[i] - '0');
		}
		if (len > max) {
			*why = "prefix length too long for the address";
			return -1;
		}
	}
	cidr_addr16(six ? AF_INET6 : AF_INET, ip, c->addr);
	c->prefix = (uint8_t)(six ? len : len + 96);
	for (i = c->prefix; i < 128; i++)
		if (c->addr[i / 8] & (0x80 >> (i % 8))) {
			*why = "address has bits set beyond the prefix length";
			return -1;
		}
	return 0;
}

int
cidr_list_parse(const char *s, struct cidr_list *l, char *err, size_t errlen)
{
	const char *p = s, *end, *why;
	size_t n, total = strnlen(s, CIDR_STR_MAX);

	l->n = 0;
	if (total >= CIDR_STR_MAX) {
		snprintf(err, errlen, "list longer than %d bytes", CIDR_STR_MAX - 1);
		return -1;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return 0;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		end = strchr(p, ',');
		n = end != NULL ? (size_t)(end - p) : strlen(p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == 0) {
			snprintf(err, errlen, "empty item in list");
			return -1;
		}
		if (l->n == CIDR_LIST_MAX) {
			snprintf(err, errlen, "more than %d ranges", CIDR_LIST_MAX);
			return -1;
		}
		if (cidr_parse(p, n, &l->e[l->n], &why) == -1) {
			snprintf(err, errlen, "'%.*s': %s", (int)(n > 60 ? 60 : n),
			    p, why);
			return -1;
		}
		l->n++;
		if (end == NULL)
			return 0;
		p = end + 1;
	}
}

int
cidr_match(const struct cidr *c, const uint8_t addr[16])
{
	size_t full = c->prefix / 8;
	unsigned rem = c->prefix % 8;
	uint8_t mask;

	if (memcmp(c->addr, addr, full) != 0)
		return 0;
	if (rem == 0)
		return 1;
	mask = (uint8_t)(0xff << (8 - rem));
	return (c->addr[full] & mask) == (addr[full] & mask);
}

int
cidr_list_match(const struct cidr_list *l, const uint8_t addr[16])
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (cidr_match(&l->e[i], addr))
			return 1;
	return 0;
}

void
cidr_sa16(const struct sockaddr *sa, uint8_t out[16])
{
	if (sa->sa_family == AF_INET)
		cidr_addr16(AF_INET, (const uint8_t *)
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out);
	else
		cidr_addr16(AF_INET6, (const uint8_t *)
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out);
}
