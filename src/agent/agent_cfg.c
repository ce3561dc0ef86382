/* agent_cfg.c - the agent's INI configuration, parsed by libinih.
 *
 * inih does the lexing; this file only checks sections, keys and values.
 * Errors name the file and line: a reader wrapper counts lines, since
 * inih's handler is not told the line number. */
#include "agent/agent_cfg.h"
#include "agent/dial.h"
#include "common/cidr.h"
#include "common/log.h"
#include "common/outpol.h"

#include <errno.h>
#include <stdarg.h>
#include <ini.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>

int (*cfg_resolver)(const char *, const char *, struct net_addr *, char *,
    size_t) = dial_resolve;

struct cfg_parse {
	struct cfg		*c;
	FILE			*f;
	int			 line;
	int			 err_line;
	char			 err[256];
	struct cfg_service	*cur;		/* [service X] being read */
	int			 section_line;	/* line of the current [header] */
	int			 agent_line;	/* line of [agent], 0 if none */
	int			 admin_line;	/* line of [admin], 0 if none */
	char			 dir[PATH_MAX];
};

static char *
cfg_reader(char *str, int num, void *stream)
{
	struct cfg_parse *p = stream;
	char *r = fgets(str, num, p->f);
	size_t i;

	if (r == NULL)
		return NULL;
	p->line++;
	/* inih merges a repeated [header] into the section before it and
	 * does not report headers at all: note them here, so a second
	 * [service x] is caught and errors can point at the header. */
	i = strspn(str, " \t");
	if (str[i] == '[') {
		p->section_line = p->line;
		p->cur = NULL;
	}
	return r;
}

static void cfg_vfail(struct cfg_parse *p, int line, const char *fmt,
    va_list ap) __attribute__((format(printf, 3, 0)));

static void
cfg_vfail(struct cfg_parse *p, int line, const char *fmt, va_list ap)
{
	/* Record the first error only; inih goes on calling the handler. */
	if (p->err[0] == '\0') {
		p->err_line = line;
		(void)vsnprintf(p->err, sizeof(p->err), fmt, ap);
	}
}

static int cfg_fail(struct cfg_parse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int cfg_fail_at(struct cfg_parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An error on the line just read. Returns 0 for inih's handler. */
static int
cfg_fail(struct cfg_parse *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_vfail(p, p->line, fmt, ap);
	va_end(ap);
	return 0;
}

/* An error about an earlier line, such as a section's header. */
static int
cfg_fail_at(struct cfg_parse *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_vfail(p, line, fmt, ap);
	va_end(ap);
	return 0;
}

static int
cfg_copy(struct cfg_parse *p, char *dst, size_t dstlen, const char *name,
    const char *value)
{
	if (value[0] == '\0')
		return cfg_fail(p, "%s: empty value", name);
	if (strlen(value) >= dstlen)
		return cfg_fail(p, "%s: value too long", name);
	memcpy(dst, value, strlen(value) + 1);
	return 1;
}

/* A relative path is taken relative to the configuration file. */
static int
cfg_path(struct cfg_parse *p, char *dst, const char *name, const char *value)
{
	int n;

	if (value[0] == '\0')
		return cfg_fail(p, "%s: empty value", name);
	if (value[0] == '/')
		n = snprintf(dst, PATH_MAX, "%s", value);
	else
		n = snprintf(dst, PATH_MAX, "%s/%s", p->dir, value);
	if (n < 0 || n >= PATH_MAX)
		return cfg_fail(p, "%s: path too long", name);
	if (access(dst, R_OK) == -1)
		return cfg_fail(p, "%s: %s", dst, strerror(errno));
	return 1;
}

/* A file the agent will write: its directory must exist. */
static int
cfg_out_path(struct cfg_parse *p, char *dst, const char *name,
    const char *value)
{
	char tmp[PATH_MAX];
	int n;

	if (value[0] == '\0')
		return cfg_fail(p, "%s: empty value", name);
	if (value[0] == '/')
		n = snprintf(dst, PATH_MAX, "%s", value);
	else
		n = snprintf(dst, PATH_MAX, "%s/%s", p->dir, value);
	if (n < 0 || n >= PATH_MAX)
		return cfg_fail(p, "%s: path too long", name);
	snprintf(tmp, sizeof(tmp), "%s", dst);
	if (access(dirname(tmp), W_OK) == -1)
		return cfg_fail(p, "%s: directory of %s: %s", name, dst,
		    strerror(errno));
	return 1;
}

/* A whole number 0..10^9 (0 = no limit). */
static int
cfg_count(struct cfg_parse *p, uint32_t *v, const char *name,
    const char *value)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(value, &end, 10);
	if (value[0] < '0' || value[0] > '9' || errno != 0 || *end != '\0' ||
	    n > 1000000000ul)
		return cfg_fail(p, "%s: '%s' is not a whole number 0-1000000000",
		    name, value);
	*v = (uint32_t)n;
	return 1;
}

/* Add value (one or more ranges, comma-separated) to a list. */
static int
cfg_cidrs(struct cfg_parse *p, char *dst, const char *name, const char *value)
{
	struct cidr_list *l;
	char err[256];
	size_t have = strlen(dst), add = strlen(value);
	int rc = 1;

	if ((l = malloc(sizeof(*l))) == NULL)
		return cfg_fail(p, "out of memory");
	if (cidr_list_parse(value, l, err, sizeof(err)) == -1)
		rc = cfg_fail(p, "%s: %s", name, err);
	else if (l->n == 0)
		rc = cfg_fail(p, "%s: empty value", name);
	else if (have + (have ? 2 : 0) + add >= MSG_CIDRS_MAX)
		rc = cfg_fail(p, "%s: the list is longer than %d bytes", name,
		    MSG_CIDRS_MAX - 1);
	else {
		snprintf(dst + have, MSG_CIDRS_MAX - have, "%s%s",
		    have ? ", " : "", value);
		/* The whole list must stay within CIDR_LIST_MAX ranges. */
		if (cidr_list_parse(dst, l, err, sizeof(err)) == -1)
			rc = cfg_fail(p, "%s: %s", name, err);
	}
	free(l);
	return rc;
}

/* Seconds, fractions allowed, up to an hour; zero only if zero_ok. */
static int
cfg_seconds(struct cfg_parse *p, uint64_t *ms, const char *name,
    const char *value, int zero_ok)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' || !(v >= 0) ||
	    (v == 0 && !zero_ok) || v > 3600)
		return cfg_fail(p, "%s: '%s' is not a number of seconds %s",
		    name, value, zero_ok ? "[0-3600]" : "(0-3600]");
	*ms = (uint64_t)(v * 1000.0);
	return 1;
}

/* A number of data links, 1..max. */
static int
cfg_links(struct cfg_parse *p, unsigned *out, const char *name,
    const char *value, unsigned max)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || value[0] == '-' ||
	    v == 0 || v > max)
		return cfg_fail(p, "%s: '%s' is not a number of links (1 to %u)",
		    name, value, max);
	*out = (unsigned)v;
	return 1;
}

/* A decimal integer 0..max: digits only, no sign, no blanks. */
static int
cfg_uint(struct cfg_parse *p, uint32_t *out, const char *name,
    const char *value, uint32_t max)
{
	unsigned long v;
	char *end;

	errno = 0;
	if (value[0] < '0' || value[0] > '9' || strlen(value) > 10)
		goto bad;
	v = strtoul(value, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		goto bad;
	*out = (uint32_t)v;
	return 1;
bad:
	return cfg_fail(p, "%s: '%s' is not a whole number from 0 to %u",
	    name, value, max);
}

static int
cfg_agent_key(struct cfg_parse *p, const char *name, const char *value)
{
	struct cfg *c = p->c;
	struct cfg_edge *e;

	if (strcmp(name, "edge") == 0) {
		if (c->nedges == CFG_MAX_EDGES)
			return cfg_fail(p, "edge: more than 16 edges");
		e = &c->edges[c->nedges];
		if (!cfg_copy(p, e->str, sizeof(e->str), name, value))
			return 0;
		if (net_split(value, e->host, sizeof(e->host), e->port,
		    sizeof(e->port)) == -1 || strspn(e->port, "0123456789") !=
		    strlen(e->port) || atoi(e->port) < 1 || atoi(e->port) > 65535)
			return cfg_fail(p, "edge: '%s' is not HOST:PORT", value);
		c->nedges++;
		return 1;
	}
	if (strcmp(name, "name") == 0) {
		if (!frame_valid_service(value))
			return cfg_fail(p, "name: '%s': use 1-63 of A-Z a-z 0-9 _ . -",
			    value);
		return cfg_copy(p, c->name, sizeof(c->name), name, value);
	}
	if (strcmp(name, "cert") == 0)
		return cfg_path(p, c->cert, name, value);
	if (strcmp(name, "key") == 0)
		return cfg_path(p, c->key, name, value);
	if (strcmp(name, "ca") == 0)
		return cfg_path(p, c->ca, name, value);
	if (strcmp(name, "connect_timeout") == 0)
		return cfg_seconds(p, &c->connect_timeout_ms, name, value, 0);
	if (strcmp(name, "audit_log") == 0)
		return cfg_out_path(p, c->audit_log, name, value);
	if (strcmp(name, "ban_file") == 0)
		return cfg_out_path(p, c->ban_file, name, value);
	if (strcmp(name, "data_link") == 0) {
		if (strcmp(value, "tls") == 0)
			c->data_plain = 0;
		else if (strcmp(value, "plain") == 0)
			c->data_plain = 1;
		else
			return cfg_fail(p, "data_link: '%s': use tls or plain", value);
		return 1;
	}
	if (strcmp(name, "data_links") == 0)
		return cfg_links(p, &c->data_links, name, value, CFG_LINKS_MAX);
	/* A Unix socket: its path must fit sun_path (108 bytes). */
	if (strcmp(name, "handover_socket") == 0)
		return cfg_out_path(p, c->handover, name, value) &&
		    (strlen(c->handover) < 100 || cfg_fail(p, "%s: %s: longer "
		    "than 99 bytes", name, c->handover));
	if (strcmp(name, "drain_timeout") == 0)
		return cfg_uint(p, &c->drain_s, name, value, 604800);
	return cfg_fail(p, "unknown key '%s' in [agent]", name);
}

/* backend = HOST:PORT, and for FTP an optional " passive=A-B". */
static int
cfg_backend(struct cfg_parse *p, struct cfg_service *s, const char *value)
{
	struct cfg_backend *b;
	char host[CFG_STR], port[16], err[CFG_STR + 64], hp[CFG_STR];
	const char *opt;

	if (s->nbackends == CFG_MAX_BACKENDS)
		return cfg_fail(p, "backend: more than 16 in [service %s]",
		    s->name);
	b = &s->backends[s->nbackends];
	opt = value + strcspn(value, " \t");
	snprintf(hp, sizeof(hp), "%.*s", (int)(opt - value), value);
	opt += strspn(opt, " \t");
	if (*opt != '\0' && ftpcfg_backend_opt(b, opt, err, sizeof(err)) == -1)
		return cfg_fail(p, "%s", err);
	if (!cfg_copy(p, b->str, sizeof(b->str), "backend", hp))
		return 0;
	if (net_split(hp, host, sizeof(host), port, sizeof(port)) == -1)
		return cfg_fail(p, "backend: '%s' is not HOST:PORT", value);
	if (cfg_resolver(host, port, &b->addr, err, sizeof(err)) == -1)
		return cfg_fail(p, "backend: %s", err);
	s->nbackends++;
	return 1;
}

/* idle_timeout, of a service or of [outbound]: seconds, 0 for none. */
static int
cfg_idle(struct cfg_parse *p, uint32_t *dst, const char *value)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v > 604800 ||
	    value[0] == '-')
		return cfg_fail(p, "idle_timeout: '%s' is not a number of "
		    "seconds (0 to 604800; 0 means none)", value);
	*dst = (uint32_t)v;
	return 1;
}

/* Keys of a [service] that take a word or a number. */
static int
cfg_service_word(struct cfg_parse *p, struct cfg_service *s,
    const char *name, const char *value)
{
	static const char *const pp[] = { "off", "v1", "v2" };
	int i;

	if (strcmp(name, "proxy_protocol") == 0) {
		for (i = 0; i < 3; i++)
			if (strcmp(value, pp[i]) == 0) {
				s->proxy_protocol = i;
				return 1;
			}
		return cfg_fail(p, "proxy_protocol: '%s': use v1, v2 or off",
		    value);
	}
	if (strcmp(name, "source") == 0) {
		static const char *const src[] = { "agent", "client",
		    "client-port" };
		for (i = 0; i < 3; i++)
			if (strcmp(value, src[i]) == 0) {
				s->source = (enum svc_source)i;
				return 1;
			}
		return cfg_fail(p, "source: '%s': use agent, client or "
		    "client-port", value);
	}
	if (strcmp(name, "priority") == 0) {
		if (s->priority_set)
			return cfg_fail(p, "priority: given twice in [service %s]",
			    s->name);
		s->priority_set = 1;
		return cfg_uint(p, &s->priority, name, value, CFG_PRIORITY_MAX);
	}
	if (strcmp(name, "health_interval") == 0) {
		if (s->health_set)
			return cfg_fail(p, "health_interval: given twice in "
			    "[service %s]", s->name);
		s->health_set = 1;
		return cfg_seconds(p, &s->health_ms, name, value, 1);
	}
	if (strcmp(name, "idle_timeout") == 0)
		return cfg_idle(p, &s->idle_timeout, value);
	return cfg_fail(p, "unknown key '%s' in [service %s]", name, s->name);
}

static int
cfg_service_key(struct cfg_parse *p, const char *name, const char *value)
{
	struct cfg_service *s = p->cur;
	struct net_addr a;
	char err[CFG_STR + 64];
	int rc;

	if ((rc = ftpcfg_key(s, name, value, err, sizeof(err))) != 0)
		return rc == 1 ? 1 : cfg_fail(p, "%s", err);
	if (strcmp(name, "listen") == 0) {
		if (s->listen[0] != '\0')
			return cfg_fail(p, "listen: given twice in [service %s]",
			    s->name);
		if (net_parse(value, &a, err, sizeof(err)) == -1)
			return cfg_fail(p, "listen: %s (the edge takes numeric "
			    "addresses only)", err);
		return cfg_copy(p, s->listen, sizeof(s->listen), name, value);
	}
	if (strcmp(name, "backend") == 0)
		return cfg_backend(p, s, value);
	if (strcmp(name, "allow") == 0)
		return cfg_cidrs(p, s->allow, name, value);
	if (strcmp(name, "deny") == 0)
		return cfg_cidrs(p, s->deny, name, value);
	if (strcmp(name, "accept_proxy_from") == 0)
		return cfg_cidrs(p, s->accept_proxy, name, value);
	if (strcmp(name, "source_deny") == 0) {
		s->source_deny_set = 1;
		if (strcmp(value, "none") == 0)
			return 1;
		return cfg_cidrs(p, s->source_deny, name, value);
	}
	if (strcmp(name, "max_sessions_per_ip") == 0)
		return cfg_count(p, &s->max_sess_ip, name, value);
	if (strcmp(name, "max_new_sessions_per_ip_per_minute") == 0)
		return cfg_count(p, &s->max_rate_ip, name, value);
	return cfg_service_word(p, s, name, value);
}

static int
cfg_admin_key(struct cfg_parse *p, const char *name, const char *value)
{
	struct cfg *c = p->c;
	struct net_addr a;
	char err[CFG_STR];

	if (strcmp(name, "listen") == 0) {
		if (net_parse(value, &a, err, sizeof(err)) == -1)
			return cfg_fail(p, "listen: %s (numeric ADDR:PORT)", err);
		return cfg_copy(p, c->admin_listen, sizeof(c->admin_listen), name,
		    value);
	}
	if (strcmp(name, "token_file") == 0)
		return cfg_path(p, c->admin_token_file, name, value);
	return cfg_fail(p, "unknown key '%s' in [admin]", name);
}

/* Read the admin bearer token: one line of 16-1024 printable bytes, no
 * spaces; trailing newline and blanks are dropped. The file must be a
 * regular file that others cannot read or write: anyone who can read it
 * can cut sessions. Returns 1, or 0 after cfg_fail_at. */
static int
cfg_read_token(struct cfg_parse *p)
{
	struct cfg *c = p->c;
	struct stat st;
	char buf[CFG_TOKEN_MAX + 2];
	ssize_t n;
	size_t len = 0, i;
	int fd, ok = 0;

	if ((fd = open(c->admin_token_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return cfg_fail_at(p, p->admin_line, "[admin]: token_file %s: %s",
		    c->admin_token_file, strerror(errno));
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		cfg_fail_at(p, p->admin_line, "[admin]: token_file %s: not a "
		    "regular file", c->admin_token_file);
		goto out;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) {
		cfg_fail_at(p, p->admin_line, "[admin]: token_file %s: readable "
		    "or writable by others (chmod 600)", c->admin_token_file);
		goto out;
	}
	while (len < sizeof(buf) - 1 &&
	    (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
	    buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	if (len < CFG_TOKEN_MIN || len > CFG_TOKEN_MAX) {
		cfg_fail_at(p, p->admin_line, "[admin]: token_file %s: the token "
		    "must be %d to %d bytes", c->admin_token_file, CFG_TOKEN_MIN,
		    CFG_TOKEN_MAX);
		goto out;
	}
	for (i = 0; i < len; i++)
		if (buf[i] < 0x21 || buf[i] > 0x7e) {
			cfg_fail_at(p, p->admin_line, "[admin]: token_file %s: the "
			    "token must be one line of printable characters "
			    "without spaces", c->admin_token_file);
			goto out;
		}
	memcpy(c->admin_token, buf, len);
	c->admin_token[len] = '\0';
	ok = 1;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return ok;
}

static int
cfg_outbound_key(struct cfg_parse *p, const char *name, const char *value)
{
	struct cfg_outbound *o = &p->c->out;
	struct outpol *pol;
	struct net_addr a;
	char err[CFG_STR + 64];
	size_t have, n;
	int rc;

	if (strcmp(name, "socks_listen") == 0 ||
	    strcmp(name, "http_connect_listen") == 0) {
		char *dst = name[0] == 's' ? o->socks_listen : o->http_listen;
		if (dst[0] != '\0')
			return cfg_fail(p, "%s: given twice", name);
		if (net_parse(value, &a, err, sizeof(err)) == -1)
			return cfg_fail(p, "%s: %s", name, err);
		return cfg_copy(p, dst, MSG_ADDR_MAX, name, value);
	}
	if (strcmp(name, "allow_destination") == 0) {
		/* Parse to report errors here, with the line; the edge parses
		 * the same text again when it arrives. */
		if ((pol = malloc(sizeof(*pol))) == NULL)
			return cfg_fail(p, "out of memory");
		rc = outpol_parse(value, pol, err, sizeof(err));
		n = pol->n;
		free(pol);
		if (rc == -1)
			return cfg_fail(p, "allow_destination: %s", err);
		if (n == 0)
			return cfg_fail(p, "allow_destination: empty value");
		have = strlen(o->allow);
		if (o->nrules + n > OUTPOL_MAX_RULES ||
		    have + 1 + strlen(value) >= sizeof(o->allow))
			return cfg_fail(p, "allow_destination: more than %d rules "
			    "or %d bytes in all", OUTPOL_MAX_RULES,
			    MSG_POLICY_MAX - 1);
		snprintf(o->allow + have, sizeof(o->allow) - have, "%s%s",
		    have > 0 ? "," : "", value);
		o->nrules += n;
		return 1;
	}
	if (strcmp(name, "auth_user") == 0) {
		if (strlen(value) > 255 || strchr(value, ':') != NULL)
			return cfg_fail(p, "auth_user: 1-255 bytes without ':'");
		return cfg_copy(p, o->user, sizeof(o->user), name, value);
	}
	if (strcmp(name, "auth_password") == 0) {
		if (strlen(value) > 255)
			return cfg_fail(p, "auth_password: at most 255 bytes");
		return cfg_copy(p, o->pass, sizeof(o->pass), name, value);
	}
	if (strcmp(name, "idle_timeout") == 0)
		return cfg_idle(p, &o->idle_timeout, value);
	return cfg_fail(p, "unknown key '%s' in [outbound]", name);
}

static int
cfg_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct cfg_parse *p = user;
	struct cfg *c = p->c;
	struct cfg_service *s;
	const char *svc;
	size_t i;

	if (p->err[0] != '\0')
		return 0;
	/* A control byte (a tab inside a list, say) would reach the edge in
	 * a frame, which takes printable bytes only, and the agent would be
	 * refused on every reconnect: refuse it here, with the line. */
	for (i = 0; value[i] != '\0'; i++)
		if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
			return cfg_fail(p, "%s: a control character (a tab?) in "
			    "the value", name);
	if (strcmp(section, "agent") == 0) {
		if (p->agent_line == 0)
			p->agent_line = p->section_line;
		return cfg_agent_key(p, name, value);
	}
	if (strcmp(section, "admin") == 0) {
		if (p->admin_line == 0)
			p->admin_line = p->section_line;
		return cfg_admin_key(p, name, value);
	}
	if (section[0] == '\0')
		return cfg_fail(p, "'%s' is outside any section", name);
	if (strcmp(section, "outbound") == 0) {
		if (c->out.line == 0) {
			c->out.line = p->section_line;
			c->out.idle_timeout = 3600;
		}
		return cfg_outbound_key(p, name, value);
	}
	if (strncmp(section, "service ", 8) != 0)
		return cfg_fail_at(p, p->section_line, "unknown section [%s]",
		    section);
	svc = section + 8;
	if (p->cur == NULL) {
		if (!frame_valid_service(svc))
			return cfg_fail_at(p, p->section_line, "[%s]: service "
			    "names are 1-63 of A-Z a-z 0-9 _ . -", section);
		for (i = 0; i < c->nservices; i++)
			if (strcmp(c->services[i].name, svc) == 0)
				return cfg_fail_at(p, p->section_line,
				    "[service %s] defined twice", svc);
		if (c->nservices == CFG_MAX_SERVICES)
			return cfg_fail_at(p, p->section_line,
			    "more than 256 services");
		s = &c->services[c->nservices++];
		memset(s, 0, sizeof(*s));
		snprintf(s->name, sizeof(s->name), "%s", svc);
		s->line = p->section_line;
		s->idle_timeout = 3600;
		p->cur = s;
	}
	return cfg_service_key(p, name, value);
}

static int
cfg_check(struct cfg_parse *p)
{
	struct cfg *c = p->c;
	struct cfg_service *s;
	char err[CFG_STR + 64];
	size_t i, j;

	if (c->nedges == 0)
		return cfg_fail_at(p, p->agent_line, "[agent]: no 'edge =' line");
	if (c->cert[0] == '\0' || c->key[0] == '\0' || c->ca[0] == '\0')
		return cfg_fail_at(p, p->agent_line, "[agent]: cert, key and ca are all "
		    "required");
	if (p->admin_line != 0) {
		c->admin_line = p->admin_line;
		if (c->admin_listen[0] == '\0' || c->admin_token_file[0] == '\0')
			return cfg_fail_at(p, p->admin_line, "[admin]: listen and "
			    "token_file are both required");
		if (!cfg_read_token(p))
			return 0;
	}
	if (c->out.line != 0) {
		if (c->out.socks_listen[0] == '\0' && c->out.http_listen[0] == '\0')
			return cfg_fail_at(p, c->out.line, "[outbound]: neither "
			    "socks_listen nor http_connect_listen");
		if ((c->out.user[0] == '\0') != (c->out.pass[0] == '\0'))
			return cfg_fail_at(p, c->out.line, "[outbound]: auth_user "
			    "and auth_password go together");
		if (strcmp(c->out.socks_listen, c->out.http_listen) == 0)
			return cfg_fail_at(p, c->out.line, "[outbound]: socks_listen "
			    "and http_connect_listen are the same address");
	}
	for (i = 0; i < c->nservices; i++) {
		s = &c->services[i];
		if (s->listen[0] == '\0')
			return cfg_fail_at(p, s->line, "[service %s]: no "
			    "'listen =' line", s->name);
		if (s->nbackends == 0)
			return cfg_fail_at(p, s->line, "[service %s]: no "
			    "'backend =' line", s->name);
		if (ftpcfg_check(s, err, sizeof(err)) == -1)
			return cfg_fail_at(p, s->line, "[service %s]: %s", s->name,
			    err);
		/* Checks pay off where there is another backend to use. */
		if (!s->health_set)
			s->health_ms = s->nbackends > 1 ? CFG_HEALTH_DEFAULT_MS : 0;
		for (j = 0; j < i; j++)
			if (strcmp(c->services[j].listen, s->listen) == 0)
				return cfg_fail_at(p, s->line, "[service %s]: "
				    "listen address "
				    "already used by [service %s]", s->name,
				    c->services[j].name);
	}
	return 1;
}

int
cfg_load(const char *path, struct cfg *c, char *err, size_t errlen)
{
	struct cfg_parse p;
	char tmp[PATH_MAX];
	int rc;

	memset(c, 0, sizeof(*c));
	memset(&p, 0, sizeof(p));
	p.c = c;
	c->connect_timeout_ms = 10000;
	snprintf(c->path, sizeof(c->path), "%s", path);
	if (gethostname(c->name, sizeof(c->name) - 1) == -1 ||
	    !frame_valid_service(c->name))
		snprintf(c->name, sizeof(c->name), "agent");
	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(p.dir, sizeof(p.dir), "%s", dirname(tmp));
	if ((c->services = calloc(CFG_MAX_SERVICES, sizeof(*c->services))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	if ((p.f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	rc = ini_parse_stream(cfg_reader, &p, cfg_handler, &p);
	fclose(p.f);
	if (p.err[0] == '\0' && rc > 0) {
		p.err_line = rc;
		snprintf(p.err, sizeof(p.err), "syntax error (expected "
		    "[section] or key = value)");
	}
	if (p.err[0] == '\0')
		(void)cfg_check(&p);
	if (c->data_links == 0)
		c->data_links = c->data_plain ? CFG_LINKS_PLAIN : CFG_LINKS_TLS;
	if (p.err[0] != '\0') {
		if (p.err_line > 0)
			snprintf(err, errlen, "%s:%d: %s", path, p.err_line, p.err);
		else
			snprintf(err, errlen, "%s: %s", path, p.err);
		goto fail;
	}
	return 0;
fail:
	cfg_free(c);
	return -1;
}

void
cfg_free(struct cfg *c)
{
	OPENSSL_cleanse(c->admin_token, sizeof(c->admin_token));
	free(c->services);
	c->services = NULL;
	c->nservices = 0;
}

struct cfg_service *
cfg_service(struct cfg *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nservices; i++)
		if (strcmp(c->services[i].name, name) == 0)
			return &c->services[i];
	return NULL;
}
