/*
 * banbench - what bans cost the edge at accept (docs/benchmark.md).
 *
 *   banbench [N]
 *
 * Fills a ban table as the edge holds it (common/ban.c) with N banned
 * IPv4 addresses (default 100,000), 1,000 IPv4 /24s and 100 IPv6 /48s,
 * then times, on this machine:
 *   - a lookup of an address that is not banned, and of one that is
 *     (bantab_match, what eban_refuse does per client), against an empty
 *     table and the full one;
 *   - a whole accept on loopback (connect, accept4, close both) without
 *     a lookup and with one against the full table: the cost a banned
 *     list adds to every client the edge accepts.
 * Prints one line per figure, nanoseconds per operation (the best of 5
 * runs).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/ban.h"

#define RUNS	5

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void
add(struct bantab *t, const char *range)
{
	struct ban *b = calloc(1, sizeof(*b));
	const char *why;

	if (b == NULL || ban_range_parse(range, &b->c, &why) == -1 ||
	    bantab_add(t, b) == -1) {
		fprintf(stderr, "banbench: %s: cannot add\n", range);
		exit(1);
	}
}

static void
addr16(uint32_t v4, uint8_t out[16])
{
	uint32_t be = htonl(v4);

	cidr_addr16(AF_INET, (const uint8_t *)&be, out);
}

/* ns per lookup of n addresses from base (hits or misses). */
static double
lookups(const struct bantab *t, uint32_t base, uint32_t n, size_t *found)
{
	double best = 1e18, t0, d;
	uint8_t a[16];
	uint32_t i;
	int r;

	for (r = 0; r < RUNS; r++) {
		*found = 0;
		t0 = now_ns();
		for (i = 0; i < n; i++) {
			addr16(base + i * 7919u % n, a);
			if (bantab_match(t, a, 1) != NULL)
				(*found)++;
		}
		d = (now_ns() - t0) / n;
		if (d < best)
			best = d;
	}
	return best;
}

/* ns per accept on loopback, with a lookup in t of each peer or not. */
static double
accepts(const struct bantab *t, int n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct sockaddr_storage peer;
	socklen_t len = sizeof(sa), plen;
	double best = 1e18, t0, d;
	struct linger lg = { 1, 0 };
	uint8_t a[16];
	int lfd, c, s, i, r, one = 1;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) == -1 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(lfd, 1024) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sa, &len) == -1) {
		perror("banbench: listen");
		exit(1);
	}
	for (r = 0; r < RUNS; r++) {
		t0 = now_ns();
		for (i = 0; i < n; i++) {
			c = socket(AF_INET, SOCK_STREAM, 0);
			(void)setsockopt(c, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (c == -1 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
				perror("banbench: connect");
				exit(1);
			}
			plen = sizeof(peer);
			if ((s = accept4(lfd, (struct sockaddr *)&peer, &plen,
			    SOCK_NONBLOCK | SOCK_CLOEXEC)) == -1) {
				perror("banbench: accept");
				exit(1);
			}
			if (t != NULL) {
				cidr_sa16((struct sockaddr *)&peer, a);
				if (bantab_match(t, a, 1) != NULL)
					abort();	/* 127.0.0.1 is not banned */
			}
			/* a reset: no TIME_WAIT piles up between runs */
			(void)setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(c);
			close(s);
		}
		d = (now_ns() - t0) / n;
		if (d < best)
			best = d;
	}
	close(lfd);
	return best;
}

int
main(int argc, char **argv)
{
	struct bantab empty, full;
	uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 100000;
	uint32_t base = 0xc6330000u;	/* 198.51.0.0: 198.51.x.y from here */
	char s[64];
	size_t found;
	uint32_t i;
	double e_miss, f_miss, f_hit, acc0, acc1;

	bantab_init(&empty, 1, NULL);
	bantab_init(&full, 2, NULL);
	for (i = 0; i < n; i++) {
		uint32_t v = base + i;

		snprintf(s, sizeof(s), "%u.%u.%u.%u", v >> 24, (v >> 16) & 255,
		    (v >> 8) & 255, v & 255);
		add(&full, s);
	}
	for (i = 0; i < 1000; i++) {
		snprintf(s, sizeof(s), "10.%u.%u.0/24", i >> 8, i & 255);
		add(&full, s);
	}
	for (i = 0; i < 100; i++) {
		snprintf(s, sizeof(s), "2001:db8:%x::/48", i);
		add(&full, s);
	}
	e_miss = lookups(&empty, 0x0a800000u, 200000, &found);
	f_miss = lookups(&full, 0x0a800000u, 200000, &found);	/* 10.128/9 */
	if (found != 0)
		return 1;
	f_hit = lookups(&full, base, n < 200000 ? n : 200000, &found);
	if (found != (n < 200000 ? n : 200000))
		return 1;
	/* in turn, so that a drift of the machine touches both */
	acc0 = acc1 = 1e18;
	for (i = 0; i < 3; i++) {
		double x = accepts(NULL, 10000), y = accepts(&full, 10000);

		acc0 = x < acc0 ? x : acc0;
		acc1 = y < acc1 ? y : acc1;
	}
	printf("bans held: %zu (%u addresses, 1000 /24, 100 IPv6 /48; %zu "
	    "prefix lengths)\n", full.n, n, full.nlens);
	printf("lookup, empty table, not banned: %8.1f ns\n", e_miss);
	printf("lookup, full table, not banned:  %8.1f ns\n", f_miss);
	printf("lookup, full table, banned:      %8.1f ns\n", f_hit);
	printf("accept on loopback, no lookup:   %8.1f ns\n", acc0);
	printf("accept on loopback, with lookup: %8.1f ns\n", acc1);
	bantab_clear(&full);
	return 0;
}
