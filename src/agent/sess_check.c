/* sess_check.c - a SESS_OPEN checked against the configuration
 * (sess_check.h). */
#include "agent/sess_check.h"
#include "common/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Addresses no TCP peer has, in the 16-byte form of cidr.h: IPv6
 * multicast; ::/96 (unspecified, and the deprecated IPv4-compatible
 * form) but ::1; and, IPv4 or IPv4-mapped, 0.0.0.0/8, multicast and the
 * broadcast address. */
static int
never_a_peer(const uint8_t a[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };
	static const uint8_t zero[12];
	const uint8_t *v4 = a + 12;

	if (a[0] == 0xff)
		return 1;
	if (memcmp(a, zero, 12) == 0)
		return !(v4[0] == 0 && v4[1] == 0 && v4[2] == 0 && v4[3] == 1);
	if (memcmp(a, mapped, 12) != 0)
		return 0;
	return v4[0] == 0 || (v4[0] >= 224 && v4[0] <= 239) ||
	    (v4[0] == 255 && v4[1] == 255 && v4[2] == 255 && v4[3] == 255);
}

int
scheck_addr(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
	uint8_t a[16];

	memset(ss, 0, sizeof(*ss));
	if (port == 0)
		return -1;
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
	} else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
	} else
		return -1;
	cidr_sa16((const struct sockaddr *)ss, a);
	if (never_a_peer(a)) {
		memset(ss, 0, sizeof(*ss));
		return -1;
	}
	return 0;
}

int
scheck_dest(const char *s)
{
	struct sockaddr_storage ss;
	char ip[MSG_ADDR_MAX];
	const char *colon;
	unsigned long port;
	int v6 = s[0] == '[';
	size_t n;
	char *end;

	if (v6) {
		if ((colon = strstr(s, "]:")) == NULL)
			return -1;
		s++;
		n = (size_t)(colon - s);
		colon++;
	} else {
		if ((colon = strchr(s, ':')) == NULL)
			return -1;
		n = (size_t)(colon - s);
	}
	if (n == 0 || n >= sizeof(ip) || colon[1] < '1' || colon[1] > '9')
		return -1;
	memcpy(ip, s, n);
	ip[n] = '\0';
	/* Brackets around IPv6 only, and always. */
	if ((strchr(ip, ':') != NULL) != v6)
		return -1;
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port > 65535)
		return -1;
	return scheck_addr(ip, (uint16_t)port, &ss);
}

/* Whether the client passes the service's own policy, as the edge was to
 * check it: DENY first, then ALLOW if given. -1 if a list does not parse
 * (the loader took it, so it cannot be). */
static int
policy_refuses(const struct cfg_service *svc, const struct sockaddr_storage *c)
{
	struct cidr_list *l;
	uint8_t a[16];
	char err[64];
	int refused = 0;

	if (svc->allow[0] == '\0' && svc->deny[0] == '\0')
		return 0;
	if ((l = malloc(sizeof(*l))) == NULL)
		return -1;
	cidr_sa16((const struct sockaddr *)c, a);
	if (svc->deny[0] != '\0') {
		if (cidr_list_parse(svc->deny, l, err, sizeof(err)) == -1)
			refused = -1;
		else if (cidr_list_match(l, a))
			refused = 1;
	}
	if (refused == 0 && svc->allow[0] != '\0') {
		if (cidr_list_parse(svc->allow, l, err, sizeof(err)) == -1)
			refused = -1;
		else if (!cidr_list_match(l, a))
			refused = 1;
	}
	free(l);
	return refused;
}

static const struct cfg_service *
service(const struct cfg *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nservices; i++)
		if (strcmp(cfg->services[i].name, name) == 0)
			return &cfg->services[i];
	return NULL;
}

/* A client or FTP data session. */
static int
check_client(const struct cfg *cfg, const struct msg *m, struct scheck *r)
{
	const struct cfg_service *svc;
	int refused;

	if (scheck_addr(m->client_addr, m->client_port, &r->client) == -1) {
		r->why = "SESS_OPEN with a client address that is not one";
		return -1;
	}
	if ((m->have & FA_BIT(FA_LOCAL_ADDR)) &&
	    (!(m->have & FA_BIT(FA_LOCAL_PORT)) ||
	    scheck_addr(m->local_addr, m->local_port, &r->local) == -1)) {
		r->why = "SESS_OPEN with a bad local address";
		return -1;
	}
	/* Only configured services: the edge cannot make the agent dial
	 * anything else, nor make the metrics grow by inventing names. */
	if ((svc = service(cfg, m->service)) == NULL) {
		r->why = "SESS_OPEN for a service this agent does not offer";
		return -1;
	}
	if (m->sess_kind == SK_FTP_DATA && svc->proto == SVC_TCP) {
		r->why = "SESS_OPEN of FTP data for a service that is not FTP";
		return -1;
	}
	if (m->sess_kind == SK_FTP_ACTIVE && (svc->proto == SVC_TCP ||
	    !svc->active)) {
		r->why = "SESS_OPEN of FTP active data for a service without "
		    "active mode";
		return -1;
	}
	if (m->sess_kind == SK_FTP_DATA && (m->ftp_port < svc->pasv_min ||
	    m->ftp_port > svc->pasv_max)) {
		r->why = "SESS_OPEN of FTP data on a port outside the service's "
		    "passive range";
		return -1;
	}
	if ((refused = policy_refuses(svc, &r->client)) != 0) {
		r->why = refused == 1 ? "SESS_OPEN for a client the service's "
		    "policy refuses" : "out of memory";
		return -1;
	}
	r->svc = svc;
	return 0;
}

int
scheck_open(const struct cfg *cfg, const struct msg *m, struct scheck *r)
{
	uint64_t need;

	memset(r, 0, sizeof(*r));
	if (m->type != FT_SESS_OPEN) {
		r->why = "not a SESS_OPEN";
		return -1;
	}
	switch (m->sess_kind) {
	case SK_CLIENT:
		need = FA_BIT(FA_SERVICE) | FA_BIT(FA_CLIENT_ADDR) |
		    FA_BIT(FA_CLIENT_PORT);
		break;
	case SK_FTP_DATA:
		need = FA_BIT(FA_SERVICE) | FA_BIT(FA_CLIENT_ADDR) |
		    FA_BIT(FA_CLIENT_PORT) | FA_BIT(FA_FTP_CTL) |
		    FA_BIT(FA_FTP_PORT);
		break;
	case SK_FTP_ACTIVE:
		need = FA_BIT(FA_SERVICE) | FA_BIT(FA_CLIENT_ADDR) |
		    FA_BIT(FA_CLIENT_PORT) | FA_BIT(FA_FTP_CTL) |
		    FA_BIT(FA_REQUEST);
		break;
	case SK_OUTBOUND:
		need = FA_BIT(FA_REQUEST) | FA_BIT(FA_DEST_ADDR);
		break;
	default:
		r->why = "SESS_OPEN of an unknown kind";
		return -1;
	}
	if ((m->have & need) != need) {
		r->why = "SESS_OPEN without what its kind needs";
		return -1;
	}
	if (m->sess_kind != SK_OUTBOUND)
		return check_client(cfg, m, r);
	if (cfg->out.line == 0) {
		r->why = "SESS_OPEN of an outbound session, and this agent has "
		    "no [outbound]";
		return -1;
	}
	if (scheck_dest(m->dest_addr) == -1) {
		r->why = "SESS_OPEN of an outbound session with a destination "
		    "that is not a numeric address and port";
		return -1;
	}
	return 0;
}
