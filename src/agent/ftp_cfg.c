/* ftp_cfg.c - the FTP keys of a [service] section (docs/ftp.md):
 * protocol, passive_ports, public_address, active, and a backend's optional
 * "passive=A-B" slice. Kept out of agent_cfg.c so that file only learns
 * that these keys exist. */
#include "agent/agent_cfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "A-B" with 1 <= A <= B <= 65535, at most FTP_CFG_PORTS ports. */
int
ftpcfg_range(const char *v, uint16_t *lo, uint16_t *hi)
{
	unsigned long a, b;
	char *end;

	if (v[0] < '0' || v[0] > '9')
		return -1;
	errno = 0;
	a = strtoul(v, &end, 10);
	if (errno != 0 || *end != '-' || end[1] < '0' || end[1] > '9')
		return -1;
	b = strtoul(end + 1, &end, 10);
	if (errno != 0 || *end != '\0' || a < 1 || a > b || b > 65535 ||
	    b - a + 1 > FTP_CFG_PORTS)
		return -1;
	*lo = (uint16_t)a;
	*hi = (uint16_t)b;
	return 0;
}

int
ftpcfg_key(struct cfg_service *s, const char *name, const char *value,
    char *err, size_t errlen)
{
	struct in_addr in;

	if (strcmp(name, "protocol") == 0) {
		if (strcmp(value, "tcp") == 0)
			s->proto = SVC_TCP;
		else if (strcmp(value, "ftp") == 0)
			s->proto = SVC_FTP;
		else if (strcmp(value, "ftps") == 0)
			s->proto = SVC_FTPS;
		else {
			snprintf(err, errlen, "protocol: '%s' is not tcp, ftp "
			    "(plain FTP or explicit FTPS) or ftps (implicit "
			    "FTPS)", value);
			return -1;
		}
		return 1;
	}
	if (strcmp(name, "passive_ports") == 0) {
		if (ftpcfg_range(value, &s->pasv_min, &s->pasv_max) == -1) {
			snprintf(err, errlen, "passive_ports: '%s' is not a range "
			    "A-B of 1 to %d ports", value, FTP_CFG_PORTS);
			return -1;
		}
		return 1;
	}
	if (strcmp(name, "public_address") == 0) {
		/* A 227 reply can only carry IPv4. */
		if (strlen(value) >= sizeof(s->public_addr) ||
		    inet_pton(AF_INET, value, &in) != 1) {
			snprintf(err, errlen, "public_address: '%s' is not a "
			    "numeric IPv4 address", value);
			return -1;
		}
		snprintf(s->public_addr, sizeof(s->public_addr), "%s", value);
		memcpy(s->public_ip, &in.s_addr, 4);
		return 1;
	}
	if (strcmp(name, "active") == 0) {
		if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0) {
			snprintf(err, errlen, "active: '%s' is not yes or no",
			    value);
			return -1;
		}
		s->active = strcmp(value, "yes") == 0;
		return 1;
	}
	return 0;
}

int
ftpcfg_backend_opt(struct cfg_backend *b, const char *opt, char *err,
    size_t errlen)
{
	if (strncmp(opt, "passive=", 8) != 0 ||
	    ftpcfg_range(opt + 8, &b->pasv_min, &b->pasv_max) == -1) {
		snprintf(err, errlen, "backend: '%s' is not passive=A-B", opt);
		return -1;
	}
	return 0;
}

/* Even slices of the passive range in backend order; the last takes
 * the rest. */
static int
slices_even(struct cfg_service *s, char *err, size_t errlen)
{
	size_t i, each = ((size_t)s->pasv_max - s->pasv_min + 1) / s->nbackends;
	struct cfg_backend *b;

	if (each == 0) {
		snprintf(err, errlen, "passive_ports %u-%u: fewer ports than "
		    "backends", s->pasv_min, s->pasv_max);
		return -1;
	}
	for (i = 0; i < s->nbackends; i++) {
		b = &s->backends[i];
		b->pasv_min = (uint16_t)(s->pasv_min + i * each);
		b->pasv_max = i + 1 == s->nbackends ? s->pasv_max :
		    (uint16_t)(b->pasv_min + each - 1);
	}
	return 0;
}

int
ftpcfg_check(struct cfg_service *s, char *err, size_t errlen)
{
	struct cfg_backend *b;
	size_t i, j, given = 0;

	for (i = 0; i < s->nbackends; i++)
		if (s->backends[i].pasv_min != 0)
			given++;
	if (s->proto == SVC_TCP &&
	    (s->pasv_min != 0 || s->public_addr[0] != '\0' || given > 0)) {
		snprintf(err, errlen, "passive_ports, public_address and "
		    "backend passive= need protocol = ftp or ftps");
		return -1;
	}
	/* The agent reads PORT on a plain control channel only, and names
	 * its own address in it: a server that sees the partner's (source
	 * = client) would not connect there. */
	if (s->active && (s->proto != SVC_FTP || s->source != SRC_AGENT)) {
		snprintf(err, errlen, "active = yes needs protocol = ftp (the "
		    "agent must read PORT on the control channel) and source = "
		    "agent");
		return -1;
	}
	if (s->proto == SVC_TCP)
		return 0;
	/* A data connection from a load balancer carries no PROXY header
	 * the edge would read, and a PROXY header sent to the backend
	 * would reach the plain-FTP filter as a command. */
	if (s->accept_proxy[0] != '\0') {
		snprintf(err, errlen, "accept_proxy_from is not supported with "
		    "protocol %s", s->proto == SVC_FTP ? "ftp" : "ftps");
		return -1;
	}
	if (s->proto == SVC_FTP && s->proxy_protocol != 0) {
		snprintf(err, errlen, "proxy_protocol is not supported with "
		    "protocol ftp (use ftps, or no PROXY header)");
		return -1;
	}
	if (s->pasv_min == 0 || s->public_addr[0] == '\0') {
		snprintf(err, errlen, "protocol %s needs passive_ports and "
		    "public_address", s->proto == SVC_FTP ? "ftp" : "ftps");
		return -1;
	}
	if (given != 0 && given != s->nbackends) {
		snprintf(err, errlen, "give passive= on every backend or on none");
		return -1;
	}
	if (given == 0)
		return slices_even(s, err, errlen);
	for (i = 0; i < s->nbackends; i++) {
		b = &s->backends[i];
		if (b->pasv_min < s->pasv_min || b->pasv_max > s->pasv_max) {
			snprintf(err, errlen, "backend %s: passive=%u-%u is not "
			    "inside passive_ports %u-%u", b->str, b->pasv_min,
			    b->pasv_max, s->pasv_min, s->pasv_max);
			return -1;
		}
		for (j = 0; j < i; j++)
			if (b->pasv_min <= s->backends[j].pasv_max &&
			    s->backends[j].pasv_min <= b->pasv_max) {
				snprintf(err, errlen, "backends %s and %s: their "
				    "passive ranges overlap", s->backends[j].str,
				    b->str);
				return -1;
			}
	}
	return 0;
}

int
ftpcfg_backend_of(const struct cfg_service *s, uint16_t port)
{
	size_t i;

	for (i = 0; i < s->nbackends; i++)
		if (port >= s->backends[i].pasv_min &&
		    port <= s->backends[i].pasv_max)
			return (int)i;
	return -1;
}
