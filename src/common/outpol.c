/* outpol.c - the outbound destination policy (see outpol.h).
 *
 * The edge runs this on input from agents and on addresses from DNS, so
 * every length is checked before a copy, and nothing here allocates. */
#include "common/outpol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct special {
	int		 family;
	uint8_t		 net[16];
	unsigned	 prefix;
	const char	*what;
	int		 fixed;		/* no rule lifts the ban */
};

/* Addresses an outbound session must not reach unless a rule names them
 * by address. IPv4-mapped addresses are turned into IPv4 before this
 * table is consulted; NAT64 and 6to4 addresses are judged by the IPv4
 * address they embed (see addr_special). */
static const struct special specials[] = {
	{ AF_INET, { 0 }, 8, "unspecified", 1 },
	{ AF_INET, { 10 }, 8, "private", 0 },
	{ AF_INET, { 100, 64 }, 10, "shared (CGNAT)", 0 },
	{ AF_INET, { 127 }, 8, "loopback", 0 },
	{ AF_INET, { 169, 254 }, 16, "link-local", 0 },
	{ AF_INET, { 172, 16 }, 12, "private", 0 },
	{ AF_INET, { 192, 0, 0 }, 24, "IETF protocol assignment", 0 },
	{ AF_INET, { 192, 168 }, 16, "private", 0 },
	{ AF_INET, { 198, 18 }, 15, "benchmarking", 0 },
	{ AF_INET, { 224 }, 4, "multicast", 0 },
	{ AF_INET, { 240 }, 4, "reserved", 0 },
	{ AF_INET6, { 0 }, 128, "unspecified", 1 },
	{ AF_INET6, { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 128,
	    "loopback", 0 },
	{ AF_INET6, { 0 }, 96, "IPv4-compatible", 1 },
	{ AF_INET6, { 0xfe, 0x80 }, 10, "link-local", 0 },
	{ AF_INET6, { 0xfe, 0xc0 }, 10, "site-local", 0 },
	{ AF_INET6, { 0xfc }, 7, "unique-local", 0 },
	{ AF_INET6, { 0xff }, 8, "multicast", 0 },
};

#define NSPECIALS (sizeof(specials) / sizeof(specials[0]))

static int
prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;
	uint8_t mask;

	if (memcmp(a, net, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (net[full] & mask);
}

static const char *
table_special(int family, const uint8_t *a, int *fixed)
{
	size_t i;

	/* Most specific first would matter only for overlaps; the IPv6
	 * unspecified /128 must win over IPv4-compatible /96. */
	for (i = 0; i < NSPECIALS; i++)
		if (specials[i].family == family &&
		    prefix_match(a, specials[i].net, specials[i].prefix)) {
			*fixed = specials[i].fixed;
			return specials[i].what;
		}
	return NULL;
}

/* Bring sa to (family, 16 address bytes, port); IPv4-mapped IPv6 becomes
 * IPv4. -1 for other families. */
static int
addr_norm(const struct sockaddr *sa, int *family, uint8_t *a, uint16_t *port)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };
	const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

	memset(a, 0, 16);
	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		memcpy(a, &sin->sin_addr, 4);
		*port = ntohs(sin->sin_port);
		return 0;
	}
	if (sa->sa_family != AF_INET6)
		return -1;
	*port = ntohs(sin6->sin6_port);
	if (memcmp(sin6->sin6_addr.s6_addr, mapped, 12) == 0) {
		*family = AF_INET;
		memcpy(a, sin6->sin6_addr.s6_addr + 12, 4);
		return 0;
	}
	*family = AF_INET6;
	memcpy(a, sin6->sin6_addr.s6_addr, 16);
	return 0;
}

static const char *
addr_special(int family, const uint8_t *a, int *fixed)
{
	static const uint8_t nat64[12] = { 0, 0x64, 0xff, 0x9b };
	const char *w;
	int dummy;

	*fixed = 0;
	if ((w = table_special(family, a, fixed)) != NULL)
		return w;
	if (family != AF_INET6)
		return NULL;
	/* A translated address leads to the IPv4 address inside it. */
	if (memcmp(a, nat64, 12) == 0 &&
	    table_special(AF_INET, a + 12, &dummy) != NULL) {
		*fixed = 1;
		return "NAT64 of a special IPv4 address";
	}
	if (a[0] == 0x20 && a[1] == 0x02 &&
	    table_special(AF_INET, a + 2, &dummy) != NULL) {
		*fixed = 1;
		return "6to4 of a special IPv4 address";
	}
	return NULL;
}

static int
is_ip_literal(const char *h, int *family, uint8_t *a)
{
	memset(a, 0, 16);
	if (inet_pton(AF_INET, h, a) == 1) {
		*family = AF_INET;
		return 1;
	}
	if (inet_pton(AF_INET6, h, a) == 1) {
		*family = AF_INET6;
		return 1;
	}
	return 0;
}

static int
valid_name(const char *h, size_t n)
{
	size_t i, label = 0;
	char c;

	if (n == 0 || n > OUTPOL_HOST_MAX - 1)
		return 0;
	for (i = 0; i < n; i++) {
		c = h[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
		if (++label > 63)
			return 0;
	}
	return 1;	/* a trailing dot (absolute name) is allowed */
}

int
outpol_valid_host(const char *h)
{
	uint8_t a[16];
	int family;
	size_t n = strnlen(h, OUTPOL_HOST_MAX);

	if (n == 0 || n >= OUTPOL_HOST_MAX)
		return 0;
	if (is_ip_literal(h, &family, a))
		return 1;
	return valid_name(h, n);
}

static int
parse_uint(const char *s, size_t n, unsigned long max, unsigned long *v)
{
	size_t i;

	if (n == 0 || n > 5)
		return -1;
	*v = 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (unsigned long)(s[i] - '0');
	}
	return *v <= max ? 0 : -1;
}

static int
parse_ports(const char *s, size_t n, struct outpol_rule *r)
{
	const char *dash = memchr(s, '-', n);
	unsigned long lo, hi;

	if (n == 1 && s[0] == '*') {
		r->port_lo = 1;
		r->port_hi = 65535;
		return 0;
	}
	if (dash == NULL) {
		if (parse_uint(s, n, 65535, &lo) == -1 || lo == 0)
			return -1;
		hi = lo;
	} else if (parse_uint(s, (size_t)(dash - s), 65535, &lo) == -1 ||
	    parse_uint(dash + 1, n - (size_t)(dash - s) - 1, 65535, &hi) == -1 ||
	    lo == 0 || hi < lo)
		return -1;
	r->port_lo = (uint16_t)lo;
	r->port_hi = (uint16_t)hi;
	return 0;
}

static int
parse_cidr(const char *s, size_t n, int want6, struct outpol_rule *r)
{
	char tmp[INET6_ADDRSTRLEN + 8];
	const char *slash = memchr(s, '/', n);
	size_t alen = slash != NULL ? (size_t)(slash - s) : n;
	unsigned long len;
	unsigned maxlen;
	size_t i;

	if (alen == 0 || alen >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, alen);
	tmp[alen] = '\0';
	memset(r->net, 0, sizeof(r->net));
	r->family = want6 ? AF_INET6 : AF_INET;
	if (inet_pton(r->family, tmp, r->net) != 1)
		return -1;
	maxlen = want6 ? 128 : 32;
	if (slash == NULL)
		len = maxlen;
	else if (parse_uint(slash + 1, n - alen - 1, maxlen, &len) == -1)
		return -1;
	r->prefix = (unsigned)len;
	r->kind = OUTPOL_CIDR;
	/* Host bits must be zero: "10.1.2.3/8" is probably a mistake. */
	for (i = 0; i < 16; i++) {
		unsigned bit0 = (unsigned)i * 8, keep;

		if (bit0 >= r->prefix)
			keep = 0;
		else if (r->prefix - bit0 >= 8)
			keep = 0xff;
		else
			keep = (0xffu << (8 - (r->prefix - bit0))) & 0xffu;
		if ((r->net[i] & ~keep) != 0)
			return -1;
	}
	/* The rule lifts the special-address ban only if it lies wholly
	 * inside one special block, i.e. the operator named private space
	 * on purpose. A wide rule like 0.0.0.0/0 lifts nothing. */
	r->lifts_ban = 0;
	for (i = 0; i < NSPECIALS; i++)
		if (specials[i].family == r->family && !specials[i].fixed &&
		    specials[i].prefix <= r->prefix &&
		    prefix_match(r->net, specials[i].net, specials[i].prefix))
			r->lifts_ban = 1;
	return 0;
}

int
outpol_parse_rule(const char *s, size_t len, struct outpol_rule *r,
    char *err, size_t errlen)
{
	const char *colon, *hs, *ps, *close;
	size_t hn, pn;
	int family;
	uint8_t a[16];

	memset(r, 0, sizeof(*r));
	if (len == 0 || len > 300)
		goto bad;
	if (s[0] == '[') {
		close = memchr(s, ']', len);
		if (close == NULL || (size_t)(close - s) + 1 >= len ||
		    close[1] != ':')
			goto bad;
		if (parse_cidr(s + 1, (size_t)(close - s) - 1, 1, r) == -1)
			goto bad;
		ps = close + 2;
		pn = len - (size_t)(ps - s);
		if (parse_ports(ps, pn, r) == -1)
			goto bad;
		return 0;
	}
	colon = NULL;
	for (hs = s; hs < s + len; hs++)
		if (*hs == ':')
			colon = hs;
	if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
		goto bad;
	hs = s;
	hn = (size_t)(colon - s);
	ps = colon + 1;
	pn = len - hn - 1;
	if (parse_ports(ps, pn, r) == -1)
		goto bad;
	if (hn == 1 && hs[0] == '*') {
		r->kind = OUTPOL_ANY;
		return 0;
	}
	if (hn > 0 && hn < 20 && ((hs[0] >= '0' && hs[0] <= '9'))) {
		char tmp[20];
		const char *slash = memchr(hs, '/', hn);
		size_t an = slash ? (size_t)(slash - hs) : hn;

		memcpy(tmp, hs, an);
		tmp[an] = '\0';
		if (is_ip_literal(tmp, &family, a) && family == AF_INET) {
			if (parse_cidr(hs, hn, 0, r) == -1)
				goto bad;
			return 0;
		}
	}
	if (hn > 2 && hs[0] == '*' && hs[1] == '.') {
		if (!valid_name(hs + 2, hn - 2))
			goto bad;
		if (hs[hn - 1] == '.')
			hn--;
		r->kind = OUTPOL_SUFFIX;
		memcpy(r->host, hs + 1, hn - 1);	/* keeps the dot */
		r->host[hn - 1] = '\0';
		return 0;
	}
	if (!valid_name(hs, hn) || hn >= sizeof(r->host))
		goto bad;
	if (hs[hn - 1] == '.')
		hn--;		/* compared without the root's dot */
	if (hn == 0)
		goto bad;
	r->kind = OUTPOL_EXACT;
	memcpy(r->host, hs, hn);
	r->host[hn] = '\0';
	return 0;
bad:
	snprintf(err, errlen, "'%.*s' is not a destination rule (HOST:PORT, "
	    "*.DOMAIN:PORT, CIDR:PORT or [IPV6/LEN]:PORT; PORT is N, N-M or *)",
	    (int)(len > 300 ? 300 : len), s);
	memset(r, 0, sizeof(*r));
	return -1;
}

int
outpol_parse(const char *s, struct outpol *p, char *err, size_t errlen)
{
	const char *item = s, *end;
	size_t n;

	p->n = 0;
	if (strspn(s, " \t") == strlen(s))
		return 0;
	for (;;) {
		end = strchr(item, ',');
		n = end != NULL ? (size_t)(end - item) : strlen(item);
		while (n > 0 && (*item == ' ' || *item == '\t')) {
			item++;
			n--;
		}
		while (n > 0 && (item[n - 1] == ' ' || item[n - 1] == '\t'))
			n--;
		if (p->n == OUTPOL_MAX_RULES) {
			snprintf(err, errlen, "more than %d destination rules",
			    OUTPOL_MAX_RULES);
			goto fail;
		}
		if (outpol_parse_rule(item, n, &p->r[p->n], err, errlen) == -1)
			goto fail;
		p->n++;
		if (end == NULL)
			return 0;
		item = end + 1;
	}
fail:
	p->n = 0;
	return -1;
}

static int
name_matches(const struct outpol_rule *r, const char *host)
{
	size_t hn, sn;

	if (r->kind == OUTPOL_ANY)
		return 1;
	if (host == NULL)
		return 0;
	hn = strnlen(host, OUTPOL_HOST_MAX);
	if (hn > 0 && host[hn - 1] == '.')
		hn--;		/* "example.com." is "example.com" */
	if (r->kind == OUTPOL_EXACT)
		return strlen(r->host) == hn && strncasecmp(r->host, host, hn) == 0;
	if (r->kind == OUTPOL_SUFFIX) {
		sn = strlen(r->host);
		return hn > sn && strncasecmp(host + hn - sn, r->host, sn) == 0;
	}
	return 0;
}

int
outpol_check_addr(const struct outpol *p, const char *host,
    const struct sockaddr *sa, const char **why)
{
	const struct outpol_rule *r;
	const char *special;
	uint8_t a[16];
	uint16_t port;
	int family, fixed;
	size_t i;

	if (addr_norm(sa, &family, a, &port) == -1) {
		*why = "not an IP address";
		return 0;
	}
	special = addr_special(family, a, &fixed);
	for (i = 0; i < p->n; i++) {
		r = &p->r[i];
		if (port < r->port_lo || port > r->port_hi)
			continue;
		if (r->kind == OUTPOL_CIDR) {
			if (r->family != family || !prefix_match(a, r->net, r->prefix))
				continue;
			if (special == NULL || (r->lifts_ban && !fixed))
				return 1;
		} else if (special == NULL && name_matches(r, host))
			return 1;
	}
	if (special != NULL) {
		static _Thread_local char buf[96];

		snprintf(buf, sizeof(buf), "%s address not named by a CIDR rule",
		    special);
		*why = buf;
	} else
		*why = "no destination rule allows it";
	return 0;
}

int
outpol_check_name(const struct outpol *p, const char *host, uint16_t port,
    const char **why)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	const struct outpol_rule *r;
	uint8_t a[16];
	int family;
	size_t i;

	if (!outpol_valid_host(host)) {
		*why = "not a valid host name or address";
		return 0;
	}
	if (port == 0) {
		*why = "port 0";
		return 0;
	}
	if (is_ip_literal(host, &family, a)) {
		memset(&ss, 0, sizeof(ss));
		if (family == AF_INET) {
			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, a, 4);
			sin->sin_port = htons(port);
		} else {
			sin6->sin6_family = AF_INET6;
			memcpy(&sin6->sin6_addr, a, 16);
			sin6->sin6_port = htons(port);
		}
		return outpol_check_addr(p, NULL, (struct sockaddr *)&ss, why);
	}
	for (i = 0; i < p->n; i++) {
		r = &p->r[i];
		if (port < r->port_lo || port > r->port_hi)
			continue;
		if (r->kind == OUTPOL_CIDR || name_matches(r, host))
			return 1;
	}
	*why = "no destination rule allows it";
	return 0;
}
