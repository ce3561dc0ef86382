/* tsrc.c - transparent source toward backends (tsrc.h). */
#include "agent/tsrc.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>

#define TSRC_TABLE_MAX	64	/* fwmark rules looked at */

/* Never a source, whatever the configuration says. */
static const char *const never_fixed = "0.0.0.0/8, 127.0.0.0/8, "
    "169.254.0.0/16, 224.0.0.0/3, ::/128, ::1/128, fe80::/10, ff00::/8";

/* --- the kernel's routing decisions (rtnetlink) ---------------------------- */

struct nlreq {
	struct nlmsghdr	 h;
	union {
		struct rtmsg	 rt;
		struct fib_rule_hdr fr;
	} u;
	uint8_t		 attrs[256];
};

static void
nl_attr(struct nlreq *r, uint16_t type, const void *v, size_t n)
{
	struct rtattr *a = (struct rtattr *)(void *)((uint8_t *)r +
	    NLMSG_ALIGN(r->h.nlmsg_len));

	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(n);
	memcpy(RTA_DATA(a), v, n);
	r->h.nlmsg_len = NLMSG_ALIGN(r->h.nlmsg_len) + (uint32_t)RTA_ALIGN(a->rta_len);
}

/* Send r; call fn on each answer until the last. 0, or -1 with errno. */
static int
nl_talk(struct nlreq *r, int (*fn)(struct nlmsghdr *, void *), void *arg)
{
	static uint8_t buf[32768];
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	struct nlmsghdr *h;
	ssize_t n;
	int fd, rc = -1, done = 0, err = 0;
	size_t left;

	if ((fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) == -1)
		return -1;
	r->h.nlmsg_seq = 1;
	if (sendto(fd, r, r->h.nlmsg_len, 0, (struct sockaddr *)&sa,
	    sizeof(sa)) == -1)
		goto out;
	while (!done) {
		if ((n = recv(fd, buf, sizeof(buf), 0)) <= 0)
			goto out;
		left = (size_t)n;
		for (h = (struct nlmsghdr *)(void *)buf; NLMSG_OK(h, left);
		    h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				done = 1;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				err = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
				done = 1;
				break;
			}
			(void)fn(h, arg);
			if (!(r->h.nlmsg_flags & NLM_F_DUMP))
				done = 1;
		}
	}
	if (err != 0) {
		errno = err;
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/* The attribute of type in the len bytes at p, or NULL: bounded by len
 * and by each attribute's own length. */
static const struct rtattr *
rta_find(const void *p, size_t len, uint16_t type)
{
	const struct rtattr *a = p;
	size_t step;

	while (len >= sizeof(*a) && a->rta_len >= sizeof(*a) &&
	    a->rta_len <= len) {
		if (a->rta_type == type)
			return a;
		step = RTA_ALIGN(a->rta_len);
		if (step >= len)
			break;
		len -= step;
		a = (const struct rtattr *)(const void *)((const uint8_t *)a + step);
	}
	return NULL;
}

struct route_ans {
	int		 type;		/* RTN_* */
	int		 oif;
};

static int
route_got(struct nlmsghdr *h, void *arg)
{
	struct route_ans *ra = arg;
	struct rtmsg *rt = NLMSG_DATA(h);
	const struct rtattr *a;

	if (h->nlmsg_type != RTM_NEWROUTE ||
	    h->nlmsg_len < NLMSG_LENGTH(sizeof(*rt)))
		return 0;
	ra->type = rt->rtm_type;
	if ((a = rta_find(RTM_RTA(rt), h->nlmsg_len - NLMSG_LENGTH(sizeof(*rt)),
	    RTA_OIF)) != NULL && RTA_PAYLOAD(a) == sizeof(int))
		memcpy(&ra->oif, RTA_DATA(a), sizeof(int));
	return 1;
}

/* How the kernel routes a TCP packet to dst (from src:sport, arriving on
 * iif with mark, when iif is not 0). 0 with *ra, or -1 with errno. */
static int
route_get(int fam, const void *dst, const void *src, int iif, uint32_t mark,
    uint16_t sport, struct route_ans *ra)
{
	struct nlreq r;
	size_t alen = fam == AF_INET ? 4 : 16;
	uint8_t proto = IPPROTO_TCP;
	uint16_t sp = htons(sport), dp = htons(40000);

	memset(&r, 0, sizeof(r));
	memset(ra, 0, sizeof(*ra));
	r.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	r.h.nlmsg_type = RTM_GETROUTE;
	r.h.nlmsg_flags = NLM_F_REQUEST;
	r.u.rt.rtm_family = (unsigned char)fam;
	r.u.rt.rtm_dst_len = (unsigned char)(alen * 8);
	nl_attr(&r, RTA_DST, dst, alen);
	if (iif != 0) {
		r.u.rt.rtm_src_len = (unsigned char)(alen * 8);
		nl_attr(&r, RTA_SRC, src, alen);
		nl_attr(&r, RTA_IIF, &iif, sizeof(iif));
		nl_attr(&r, RTA_IP_PROTO, &proto, 1);
		nl_attr(&r, RTA_SPORT, &sp, 2);
		nl_attr(&r, RTA_DPORT, &dp, 2);
		if (mark != 0)
			nl_attr(&r, RTA_MARK, &mark, sizeof(mark));
	}
	ra->type = -1;
	if (nl_talk(&r, route_got, ra) == -1)
		return -1;
	return ra->type == -1 ? (errno = ENOENT, -1) : 0;
}

/* The fwmarks of the ip rules of a family. */
struct marks {
	uint32_t	 v[TSRC_TABLE_MAX];
	size_t		 n;
};

static int
rule_got(struct nlmsghdr *h, void *arg)
{
	struct marks *m = arg;
	struct fib_rule_hdr *fr = NLMSG_DATA(h);
	const struct rtattr *a;
	uint32_t v;

	if (h->nlmsg_type != RTM_NEWRULE ||
	    h->nlmsg_len < NLMSG_LENGTH(sizeof(*fr)))
		return 0;
	a = rta_find((const uint8_t *)fr + NLMSG_ALIGN(sizeof(*fr)),
	    h->nlmsg_len - NLMSG_LENGTH(sizeof(*fr)), FRA_FWMARK);
	if (a != NULL && RTA_PAYLOAD(a) == sizeof(v) && m->n < TSRC_TABLE_MAX) {
		memcpy(&v, RTA_DATA(a), sizeof(v));
		if (v != 0)
			m->v[m->n++] = v;
	}
	return 0;
}

/* Whether some table other than "local" has a local default route. */
static int
local_default_got(struct nlmsghdr *h, void *arg)
{
	struct rtmsg *rt = NLMSG_DATA(h);

	if (h->nlmsg_type == RTM_NEWROUTE && rt->rtm_type == RTN_LOCAL &&
	    rt->rtm_dst_len == 0 && rt->rtm_table != RT_TABLE_LOCAL)
		*(int *)arg = 1;
	return 0;
}

static int
dump(int fam, uint16_t type, int (*fn)(struct nlmsghdr *, void *), void *arg)
{
	struct nlreq r;

	memset(&r, 0, sizeof(r));
	r.h.nlmsg_len = NLMSG_LENGTH(type == RTM_GETRULE ?
	    sizeof(struct fib_rule_hdr) : sizeof(struct rtmsg));
	r.h.nlmsg_type = type;
	r.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	r.u.rt.rtm_family = (unsigned char)fam;
	return nl_talk(&r, fn, arg);
}

/* The kernel has a socket match (xt_socket, or nftables' socket
 * expression) loaded: without it no firewall rule can mark the replies
 * of transparent sockets. */
static int
socket_match_loaded(int fam)
{
	char line[64];
	FILE *f;
	int found = access("/sys/module/xt_socket", F_OK) == 0 ||
	    access("/sys/module/nft_socket", F_OK) == 0;

	if (!found && (f = fopen(fam == AF_INET ? "/proc/net/ip_tables_matches" :
	    "/proc/net/ip6_tables_matches", "re")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			if (strcmp(line, "socket\n") == 0)
				found = 1;
		fclose(f);
	}
	return found;
}

/* --- the checks -------------------------------------------------------------- */

static const void *
sa_ip(const struct net_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return &((const struct sockaddr_in *)(const void *)&a->ss)->sin_addr;
	return &((const struct sockaddr_in6 *)(const void *)&a->ss)->sin6_addr;
}

static uint16_t
sa_port(const struct net_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)&a->ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)(const void *)&a->ss)->sin6_port);
}

/* Does this process have what IP_TRANSPARENT needs? */
static int
check_cap(int fam, char *err, size_t errlen)
{
	int fd, one = 1, rc = 0;

	if ((fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;	/* no such family here: the route check says */
	if (setsockopt(fd, fam == AF_INET ? SOL_IP : SOL_IPV6, fam == AF_INET ?
	    IP_TRANSPARENT : IPV6_TRANSPARENT, &one, sizeof(one)) == -1) {
		snprintf(err, errlen, "IP_TRANSPARENT: %s: the agent needs the "
		    "capability CAP_NET_ADMIN (docs/deployment.md: a systemd "
		    "drop-in with AmbientCapabilities=CAP_NET_ADMIN)",
		    strerror(errno));
		rc = -1;
	}
	close(fd);
	return rc;
}

/* Would backend b's replies to a partner be delivered to this host? */
static int
check_route(const struct cfg_backend *b, char *err, size_t errlen)
{
	/* A partner's address: one of the documentation ranges, the first
	 * that is not this host's own. */
	static const uint8_t probes6[3][16] = {
		{ 0x20, 0x01, 0x0d, 0xb8, [14] = 0x7e, [15] = 0x57 },
		{ 0x20, 0x01, 0x0d, 0xb8, 0xff, [14] = 0x7e, [15] = 0x57 },
		{ 0x20, 0x01, 0x0d, 0xb8, 0xff, 0xfe, [14] = 0x7e, [15] = 0x57 } };
	static const uint8_t probes4[3][4] = { { 192, 0, 2, 157 },
		{ 198, 51, 100, 157 }, { 203, 0, 113, 157 } };
	int fam = b->addr.ss.ss_family, have_local = 0, k;
	const void *probe = NULL;
	struct route_ans out, back;
	struct marks mk = { { 0 }, 0 };
	const char *lo = fam == AF_INET ? "0.0.0.0/0" : "::/0";
	char ip[INET6_ADDRSTRLEN];
	uint16_t port = sa_port(&b->addr);
	size_t i;

	inet_ntop(fam, sa_ip(&b->addr), ip, sizeof(ip));
	if (route_get(fam, sa_ip(&b->addr), NULL, 0, 0, 0, &out) == -1) {
		snprintf(err, errlen, "no route to backend %s: %s", b->str,
		    strerror(errno));
		return -1;
	}
	for (k = 0; k < 3 && probe == NULL; k++) {
		probe = fam == AF_INET ? (const void *)probes4[k] : probes6[k];
		if (route_get(fam, probe, NULL, 0, 0, 0, &back) == 0 &&
		    back.type == RTN_LOCAL)
			probe = NULL;
	}
	if (probe == NULL) {
		snprintf(err, errlen, "cannot check the routing: every probe "
		    "address is local");
		return -1;
	}
	/* Its replies come back on the interface we reach it through. */
	if (route_get(fam, probe, sa_ip(&b->addr), out.oif, 0, port, &back) == 0 &&
	    back.type == RTN_LOCAL)
		return 0;
	if (dump(fam, RTM_GETRULE, rule_got, &mk) == 0)
		for (i = 0; i < mk.n; i++)
			if (route_get(fam, probe, sa_ip(&b->addr), out.oif, mk.v[i],
			    port, &back) == 0 && back.type == RTN_LOCAL) {
				if (socket_match_loaded(fam))
					return 0;
				snprintf(err, errlen, "backend %s: replies marked "
				    "0x%x would be delivered here (ip rule fwmark "
				    "0x%x), but no socket match is loaded: missing "
				    "the firewall rule that marks them (%s -t mangle "
				    "-A PREROUTING -p tcp -m socket --transparent -j "
				    "MARK --set-mark 0x%x)", b->str, mk.v[i], mk.v[i],
				    fam == AF_INET ? "iptables" : "ip6tables",
				    mk.v[i]);
				return -1;
			}
	(void)dump(fam, RTM_GETROUTE, local_default_got, &have_local);
	if (!have_local)
		snprintf(err, errlen, "backend %s: its replies to partners would "
		    "not be delivered to this host: missing the local route "
		    "(ip%s route add local %s dev lo table 100) and the rule "
		    "(ip%s rule add from %s ipproto tcp sport %u lookup 100, or "
		    "the socket-match mark; docs/deployment.md)", b->str,
		    fam == AF_INET ? "" : " -6", lo, fam == AF_INET ? "" : " -6",
		    ip, port);
	else
		snprintf(err, errlen, "backend %s: a table has the local route, "
		    "but no ip rule sends its replies there: missing ip%s rule "
		    "add from %s ipproto tcp sport %u lookup TABLE (or fwmark "
		    "with the socket match; docs/deployment.md)", b->str,
		    fam == AF_INET ? "" : " -6", ip, port);
	return -1;
}

/* This host's addresses, and the networks of its interfaces that hold a
 * backend of s, go into s->src_never. */
static int
never_local(struct cfg_service *s, char *err, size_t errlen)
{
	struct ifaddrs *ifs, *i;
	struct cidr *c;
	uint8_t a16[16], m16[16];
	unsigned plen, k;
	size_t j;

	if (getifaddrs(&ifs) == -1) {
		snprintf(err, errlen, "getifaddrs: %s", strerror(errno));
		return -1;
	}
	for (i = ifs; i != NULL; i = i->ifa_next) {
		if (i->ifa_addr == NULL || (i->ifa_addr->sa_family != AF_INET &&
		    i->ifa_addr->sa_family != AF_INET6))
			continue;
		cidr_sa16(i->ifa_addr, a16);
		if (i->ifa_netmask == NULL)
			continue;
		/* The mask in the 16-byte form: an IPv4 one's leading ones
		 * start at bit 96. */
		cidr_sa16(i->ifa_netmask, m16);
		plen = i->ifa_addr->sa_family == AF_INET ? 96 : 0;
		while (plen < 128 && (m16[plen / 8] & (0x80 >> (plen % 8))))
			plen++;
		for (k = 0; k < 2 && s->src_never.n < CIDR_LIST_MAX; k++) {
			c = &s->src_never.e[s->src_never.n];
			memcpy(c->addr, a16, 16);
			c->prefix = 128;
			if (k == 1) {	/* the network, if a backend is in it */
				c->prefix = (uint8_t)plen;
				for (j = plen; j < 128; j++)
					c->addr[j / 8] &= (uint8_t)~(0x80 >> (j % 8));
				for (j = 0; j < s->nbackends; j++) {
					cidr_sa16((struct sockaddr *)&s->backends[j].addr.ss, m16);
					if (cidr_match(c, m16))
						break;
				}
				if (j == s->nbackends)
					continue;
			}
			s->src_never.n++;
		}
	}
	freeifaddrs(ifs);
	/* The backends themselves, wherever they are. */
	for (j = 0; j < s->nbackends && s->src_never.n < CIDR_LIST_MAX; j++) {
		c = &s->src_never.e[s->src_never.n++];
		cidr_sa16((struct sockaddr *)&s->backends[j].addr.ss, c->addr);
		c->prefix = 128;
	}
	return 0;
}

static int
check_service(struct cfg_service *s, char *err, size_t errlen)
{
	struct cidr_list l;
	char e[256];
	size_t i;
	int fam;

	if (cidr_list_parse(never_fixed, &s->src_never, e, sizeof(e)) == -1 ||
	    cidr_list_parse(s->source_deny_set ? s->source_deny :
	    TSRC_DENY_DEFAULT, &l, e, sizeof(e)) == -1) {
		snprintf(err, errlen, "source_deny: %s", e);
		return -1;
	}
	for (i = 0; i < l.n && s->src_never.n < CIDR_LIST_MAX; i++)
		s->src_never.e[s->src_never.n++] = l.e[i];
	if (never_local(s, err, errlen) == -1)
		return -1;
	for (i = 0; i < s->nbackends; i++) {
		fam = s->backends[i].addr.ss.ss_family;
		if (check_cap(fam, err, errlen) == -1 ||
		    check_route(&s->backends[i], err, errlen) == -1)
			return -1;
	}
	return 0;
}

void
tsrc_check(struct cfg *c)
{
	struct cfg_service *s;
	size_t i;

	for (i = 0; i < c->nservices; i++) {
		s = &c->services[i];
		if (s->source == SRC_AGENT)
			continue;
		if (check_service(s, s->refused, sizeof(s->refused)) == -1)
			log_err("service %s refused (source = client): %s", s->name,
			    s->refused);
		else
			log_info("service %s: backends dialled from the partner's "
			    "address%s", s->name, s->source == SRC_CLIENT_PORT ?
			    " and port" : "");
	}
}

int
tsrc_source(const struct cfg_service *s, const struct net_addr *backend,
    const char *ip, uint16_t port, struct net_addr *src, char *why,
    size_t whylen)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)&src->ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)&src->ss;
	uint8_t a[16], a16[16];
	int v4;

	memset(src, 0, sizeof(*src));
	if (inet_pton(AF_INET, ip, a) == 1)
		cidr_addr16(AF_INET, a, a16);
	else if (inet_pton(AF_INET6, ip, a) == 1)
		cidr_addr16(AF_INET6, a, a16);
	else {
		snprintf(why, whylen, "client address %s is not numeric", ip);
		return -1;
	}
	if (cidr_list_match(&s->src_never, a16)) {
		snprintf(why, whylen, "client address %s may not be a source "
		    "toward backends (loopback, link-local, this host's or a "
		    "backend's network, or source_deny)", ip);
		return -1;
	}
	/* An IPv4 partner seen on an IPv6 listener is still IPv4. */
	v4 = memcmp(a16, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;
	if (v4 != (backend->ss.ss_family == AF_INET)) {
		snprintf(why, whylen, "client %s is IPv%c, backend IPv%c: it "
		    "cannot be dialled from the client's address", ip,
		    v4 ? '4' : '6', v4 ? '6' : '4');
		return -2;
	}
	if (v4) {
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a16 + 12, 4);
		s4->sin_port = htons(s->source == SRC_CLIENT_PORT ? port : 0);
		src->len = sizeof(*s4);
	} else {
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, a16, 16);
		s6->sin6_port = htons(s->source == SRC_CLIENT_PORT ? port : 0);
		src->len = sizeof(*s6);
	}
	return 0;
}
