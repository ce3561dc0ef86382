/* cidr.h - address ranges ("192.0.2.0/24", "2001:db8::/32") and lists of
 * them, for the per-service access policy.
 *
 * Pure functions, no allocation. Every address is held in IPv6 form, an
 * IPv4 one as IPv4-mapped (::ffff:a.b.c.d) with its prefix length plus
 * 96, so an IPv4 rule also matches an IPv4 client seen on an IPv6
 * socket. */
#ifndef SP_CIDR_H
#define SP_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CIDR_LIST_MAX	128	/* ranges in one list */
#define CIDR_STR_MAX	4096	/* a list as text, NUL included */

struct cidr {
	uint8_t		addr[16];
	uint8_t		prefix;		/* 0..128, in IPv6 terms */
};

struct cidr_list {
	size_t		n;
	struct cidr	e[CIDR_LIST_MAX];
};

/* Parse one range: an address with an optional "/len" (a bare address is
 * a single host). Host bits beyond the prefix must be zero, so a typo
 * such as 10.1.2.3/8 is an error rather than a silent 10.0.0.0/8.
 * Returns 0, or -1 with *why set. */
int	cidr_parse(const char *s, size_t n, struct cidr *c, const char **why);
/* Parse a comma-separated list (spaces around items allowed; an empty
 * string is an empty list). Returns 0, or -1 with err naming the bad
 * item. */
int	cidr_list_parse(const char *s, struct cidr_list *l, char *err,
	    size_t errlen);
/* The 16-byte (IPv4-mapped for IPv4) form of ip, 4 or 16 bytes of the
 * given family. */
void	cidr_addr16(int family, const uint8_t *ip, uint8_t out[16]);
/* The 16-byte form of an AF_INET or AF_INET6 socket address. */
void	cidr_sa16(const struct sockaddr *sa, uint8_t out[16]);
/* 1 if addr (16-byte form) lies in c, else 0. */
int	cidr_match(const struct cidr *c, const uint8_t addr[16]);
/* 1 if addr lies in any range of l. */
int	cidr_list_match(const struct cidr_list *l, const uint8_t addr[16]);

#endif
