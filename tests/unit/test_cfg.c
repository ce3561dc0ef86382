/* test_cfg.c - the agent's configuration loader: every error names the
 * file and the line, and bad files are refused whole. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent_cfg.h"
#include "common/cidr.h"

static char dir[] = "/tmp/sp-cfg-XXXXXX";
static char path[PATH_MAX];

static int
setup(void **state)
{
	static const char *const names[] = { "a.crt", "a.key", "ca.crt" };
	char p[PATH_MAX];
	size_t i;
	FILE *f;

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		if ((f = fopen(p, "w")) == NULL)
			return -1;
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/agent.conf", dir);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[PATH_MAX + 16];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#define AGENT_OK "[agent]\nedge = 127.0.0.1:7000\ncert = a.crt\nkey = a.key\nca = ca.crt\n"

/* Write text as the config, load it; returns cfg_load's result. */
static int
load(const char *text, struct cfg *c, char *err, size_t errlen)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	err[0] = '\0';
	return cfg_load(path, c, err, errlen);
}

/* Expect a failure whose message is "PATH:line: ...contains...". */
static void
expect_error(const char *text, int line, const char *contains)
{
	struct cfg c;
	char err[1024], prefix[PATH_MAX + 16];

	assert_int_equal(load(text, &c, err, sizeof(err)), -1);
	snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
	if (strncmp(err, prefix, strlen(prefix)) != 0 ||
	    strstr(err, contains) == NULL)
		fail_msg("got '%s', want prefix '%s' and '%s'", err, prefix, contains);
}

static void
test_good(void **state)
{
	struct cfg c;
	char err[1024];

	(void)state;
	assert_int_equal(load(AGENT_OK "name = in-1\nedge = [::1]:7001\n"
	    "\n[service sftp]\nlisten = 127.0.0.1:10022 ; public\n"
	    "backend = 127.0.0.1:2222\nbackend = localhost:2223\n"
	    "[service https]\nlisten = *:10443\nbackend = 127.0.0.1:443\n",
	    &c, err, sizeof(err)), 0);
	assert_string_equal(c.name, "in-1");
	assert_int_equal(c.nedges, 2);
	assert_string_equal(c.edges[1].host, "::1");
	assert_string_equal(c.edges[1].port, "7001");
	assert_int_equal(c.nservices, 2);
	assert_string_equal(c.services[0].listen, "127.0.0.1:10022");
	assert_int_equal(c.services[0].nbackends, 2);
	/* relative paths are resolved against the file's directory */
	assert_non_null(strstr(c.cert, dir));
	cfg_free(&c);
}

/* The data path: data_link picks the kind, data_links how many per edge
 * (1..64, the default by kind). The keys of the old data paths are gone:
 * a file that still has them is refused, not half-understood. */
static void
test_data_links(void **state)
{
	struct cfg c;
	char err[1024];

	(void)state;
	assert_int_equal(load(AGENT_OK, &c, err, sizeof(err)), 0);
	assert_int_equal(c.data_plain, 0);
	assert_int_equal(c.data_links, CFG_LINKS_TLS);
	cfg_free(&c);
	assert_int_equal(load(AGENT_OK "data_link = plain\n", &c, err,
	    sizeof(err)), 0);
	assert_int_equal(c.data_plain, 1);
	assert_int_equal(c.data_links, CFG_LINKS_PLAIN);
	cfg_free(&c);
	assert_int_equal(load(AGENT_OK "data_link = plain\ndata_links = 1\n",
	    &c, err, sizeof(err)), 0);
	assert_int_equal(c.data_plain, 1);
	assert_int_equal(c.data_links, 1);
	cfg_free(&c);
	assert_int_equal(load(AGENT_OK "data_links = 64\ndata_link = tls\n",
	    &c, err, sizeof(err)), 0);
	assert_int_equal(c.data_plain, 0);
	assert_int_equal(c.data_links, CFG_LINKS_MAX);
	cfg_free(&c);
	expect_error(AGENT_OK "data_link = clear\n", 6, "use tls or plain");
	expect_error(AGENT_OK "data_link =\n", 6, "use tls or plain");
	expect_error(AGENT_OK "data_links = 0\n", 6, "data_links");
	expect_error(AGENT_OK "data_links = 65\n", 6, "not a number of links");
	expect_error(AGENT_OK "data_links = -1\n", 6, "data_links");
	expect_error(AGENT_OK "data_links = 4x\n", 6, "data_links");
	expect_error(AGENT_OK "data_links =\n", 6, "data_links");
	expect_error(AGENT_OK "data_links = 99999999999999999999999\n", 6,
	    "data_links");
	expect_error(AGENT_OK "data_links = 18446744073709551617\n", 6,
	    "data_links");
	/* gone with the old data paths */
	expect_error(AGENT_OK "data_mux = yes\n", 6,
	    "unknown key 'data_mux' in [agent]");
	expect_error(AGENT_OK "data_pool = 4\n", 6,
	    "unknown key 'data_pool' in [agent]");
	expect_error(AGENT_OK "relay_threads = 0\n", 6,
	    "unknown key 'relay_threads' in [agent]");
}

static void
test_errors_name_file_and_line(void **state)
{
	(void)state;
	expect_error(AGENT_OK "bogus = 1\n", 6, "unknown key 'bogus' in [agent]");
	expect_error(AGENT_OK "[service s]\nlisten = 127.0.0.1:1\nlisen = x\n",
	    8, "unknown key 'lisen'");
	expect_error(AGENT_OK "[nonsense]\nx = 1\n", 6, "unknown section");
	expect_error(AGENT_OK "[service s]\nlisten = localhost:1\n", 7,
	    "numeric");
	expect_error(AGENT_OK "[service s]\nlisten = 127.0.0.1:99999\n", 7,
	    "bad port");
	expect_error(AGENT_OK "[service s]\nlisten = 127.0.0.1:1\nbackend = nope\n",
	    8, "not HOST:PORT");
	expect_error(AGENT_OK "[service bad/name]\nlisten = 127.0.0.1:1\n", 6,
	    "service names");
	expect_error("[agent]\nedge = 127.0.0.1\n", 2, "not HOST:PORT");
	expect_error("[agent]\ncert = /nonexistent/x.crt\n", 2, "No such file");
	expect_error("[agent]\nthis line is not ini\n", 2, "syntax error");
	expect_error("edge = 1.2.3.4:5\n", 1, "outside any section");
	expect_error(AGENT_OK "[service s]\nlisten = 127.0.0.1:1\n"
	    "listen = 127.0.0.1:2\n", 8, "given twice");
	expect_error(AGENT_OK "connect_timeout = -3\n", 6, "seconds");
}

static void
test_whole_file_checks(void **state)
{
	(void)state;
	/* Errors about a whole section point at its header line. */
	expect_error(AGENT_OK "\n[service s]\nbackend = 127.0.0.1:1\n", 7,
	    "no 'listen ='");
	expect_error(AGENT_OK "[service s]\nlisten = 127.0.0.1:1\n", 6,
	    "no 'backend ='");
	expect_error(AGENT_OK "[service a]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"
	    "[service b]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n", 9,
	    "already used by [service a]");
	expect_error(AGENT_OK "[service a]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"
	    "[service a]\nlisten = 127.0.0.1:3\n", 9, "defined twice");
}

static void
test_missing_agent_keys(void **state)
{
	struct cfg c;
	char err[1024];

	(void)state;
	assert_int_equal(load("[agent]\ncert = a.crt\n", &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "agent.conf:1: [agent]: no 'edge =' line"));
	assert_int_equal(load("[agent]\nedge = 127.0.0.1:1\n", &c, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "cert, key and ca are all required"));
	assert_int_equal(cfg_load("/nonexistent/agent.conf", &c, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/agent.conf: No such file"));
}

static void
test_policy_keys(void **state)
{
	struct cfg c;
	char err[1024];

	(void)state;
	assert_int_equal(load(AGENT_OK "audit_log = audit.log\n"
	    "[service s]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"
	    "proxy_protocol = v2\nallow = 10.0.0.0/8, 2001:db8::/32\n"
	    "allow = 192.0.2.7\ndeny = 10.9.0.0/16\n"
	    "accept_proxy_from = 127.0.0.1\nmax_sessions_per_ip = 5\n"
	    "max_new_sessions_per_ip_per_minute = 0\n"
	    "[service t]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:2\n"
	    "proxy_protocol = v1\n",
	    &c, err, sizeof(err)), 0);
	assert_non_null(strstr(c.audit_log, dir));
	assert_int_equal(c.services[0].proxy_protocol, 2);
	assert_int_equal(c.services[1].proxy_protocol, 1);
	/* a repeated list key adds to the list */
	assert_string_equal(c.services[0].allow,
	    "10.0.0.0/8, 2001:db8::/32, 192.0.2.7");
	assert_string_equal(c.services[0].deny, "10.9.0.0/16");
	assert_string_equal(c.services[0].accept_proxy, "127.0.0.1");
	assert_int_equal(c.services[0].max_sess_ip, 5);
	assert_int_equal(c.services[0].max_rate_ip, 0);
	assert_int_equal(c.services[1].max_sess_ip, 0);
	cfg_free(&c);

	/* source = client and its list; ban_file */
	assert_int_equal(load(AGENT_OK "ban_file = bans\n"
	    "[service s]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"
	    "source = client\nsource_deny = 192.0.2.0/24\n"
	    "[service t]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:2\n"
	    "source = client-port\nsource_deny = none\n"
	    "[service u]\nlisten = 127.0.0.1:4\nbackend = 127.0.0.1:2\n",
	    &c, err, sizeof(err)), 0);
	assert_non_null(strstr(c.ban_file, dir));
	assert_int_equal(c.services[0].source, SRC_CLIENT);
	assert_string_equal(c.services[0].source_deny, "192.0.2.0/24");
	assert_int_equal(c.services[1].source, SRC_CLIENT_PORT);
	assert_true(c.services[1].source_deny_set);
	assert_string_equal(c.services[1].source_deny, "");
	assert_int_equal(c.services[2].source, SRC_AGENT);
	assert_false(c.services[2].source_deny_set);
	cfg_free(&c);
}

#define SVC_OK "[service s]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"

static void
test_policy_errors(void **state)
{
	char big[MSG_CIDRS_MAX + 256];
	size_t i, n;

	(void)state;
	expect_error(AGENT_OK SVC_OK "proxy_protocol = v3\n", 9, "use v1, v2 or off");
	expect_error(AGENT_OK SVC_OK "allow = 10.0.0.0/33\n", 9, "allow:");
	expect_error(AGENT_OK SVC_OK "deny = 10.1.2.3/8\n", 9, "beyond the prefix");
	expect_error(AGENT_OK SVC_OK "deny = 10.0.0.0/8,,\n", 9, "empty item");
	expect_error(AGENT_OK SVC_OK "accept_proxy_from = lb.example\n", 9,
	    "not an IP address");
	expect_error(AGENT_OK SVC_OK "max_sessions_per_ip = -1\n", 9,
	    "whole number");
	expect_error(AGENT_OK SVC_OK "max_sessions_per_ip = 5x\n", 9,
	    "whole number");
	expect_error(AGENT_OK SVC_OK "max_new_sessions_per_ip_per_minute = "
	    "99999999999\n", 9, "whole number");
	expect_error(AGENT_OK "audit_log = /nonexistent/dir/audit.log\n", 6,
	    "audit_log");
	expect_error(AGENT_OK "ban_file = /nonexistent/dir/bans\n", 6,
	    "ban_file");
	expect_error(AGENT_OK SVC_OK "source = partner\n", 9,
	    "use agent, client or client-port");
	expect_error(AGENT_OK SVC_OK "source = \n", 9, "source");
	expect_error(AGENT_OK SVC_OK "source_deny = 10.0.0.1/8\n", 9,
	    "beyond the prefix");
	expect_error(AGENT_OK SVC_OK "source_deny = none, 10.0.0.0/8\n", 9,
	    "source_deny");
	/* more ranges than one list holds: the 129th line is the error */
	n = (size_t)snprintf(big, sizeof(big), AGENT_OK SVC_OK);
	for (i = 0; i <= CIDR_LIST_MAX; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n,
		    "allow = 10.%zu.0.0/16\n", i);
	expect_error(big, 9 + CIDR_LIST_MAX, "more than");
}

static void
test_hostile_lines(void **state)
{
	struct cfg c;
	char err[1024], *big;
	size_t n = 100000;

	(void)state;
	/* A very long line and binary junk are errors, never a crash. */
	big = malloc(n + 64);
	assert_non_null(big);
	memcpy(big, "[agent]\nname = ", 15);
	memset(big + 15, 'x', n);
	memcpy(big + 15 + n, "\n", 2);
	assert_int_equal(load(big, &c, err, sizeof(err)), -1);
	free(big);
	assert_int_equal(load("[agent]\n\x01\x02\xff=\xfe\n", &c, err,
	    sizeof(err)), -1);
	assert_int_equal(load("[service ]\nlisten=1\n", &c, err, sizeof(err)), -1);
	/* A tab inside a value never reaches the edge, which refuses it. */
	expect_error(AGENT_OK "[service s]\nlisten = 127.0.0.1:2222\n"
	    "backend = 127.0.0.1:22\nallow = 10.0.0.0/8,\t192.0.2.0/24\n", 9,
	    "allow: a control character");
}

static void
write_file(const char *name, const char *text, mode_t mode)
{
	char p[PATH_MAX];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(p, mode), 0);
}

static void
test_admin(void **state)
{
	struct cfg c;
	char err[1024];

	(void)state;
	write_file("tok", "0123456789abcdef0123\n", 0600);
	assert_int_equal(load(AGENT_OK "[admin]\nlisten = 127.0.0.1:7080\n"
	    "token_file = tok\n", &c, err, sizeof(err)), 0);
	assert_string_equal(c.admin_listen, "127.0.0.1:7080");
	assert_string_equal(c.admin_token, "0123456789abcdef0123");
	cfg_free(&c);
	/* no [admin]: off */
	assert_int_equal(load(AGENT_OK, &c, err, sizeof(err)), 0);
	assert_string_equal(c.admin_listen, "");
	cfg_free(&c);

	expect_error(AGENT_OK "[admin]\nlisten = 127.0.0.1:7080\n", 6,
	    "listen and token_file are both required");
	expect_error(AGENT_OK "[admin]\nlisten = localhost:7080\n", 7, "numeric");
	expect_error(AGENT_OK "[admin]\nport = 1\n", 7, "unknown key 'port' in [admin]");
	expect_error(AGENT_OK "[admin]\nlisten = 127.0.0.1:1\ntoken_file = nope\n",
	    8, "No such file");
	write_file("tok", "0123456789abcdef0123\n", 0644);
	expect_error(AGENT_OK "[admin]\nlisten = 127.0.0.1:1\ntoken_file = tok\n",
	    6, "readable or writable by others");
	write_file("tok", "0123456789abcdef0123\n", 0620);
	expect_error(AGENT_OK "[admin]\nlisten = 127.0.0.1:1\ntoken_file = tok\n",
	    6, "readable or writable by others");
	write_file("tok", "\n", 0600);
	expect_error(AGENT_OK "[admin]\nlisten = 127.0.0.1:1\ntoken_file = tok\n",
	    6, "the token must be 16 to 1024 bytes");
	write_file("tok", "short\n", 0600);
	expect_error(AGENT_OK "[admin]\nlisten = 127.0.0.1:1\ntoken_file = tok\n",
	    6, "the token must be");
	write_file("tok", "0123456789 abcdef0123\n", 0600);
	expect_error(AGENT_OK "[admin]\nlisten = 127.0.0.1:1\ntoken_file = tok\n",
	    6, "printable characters without spaces");
	write_file("tok", "0123456789abcdef\n0123\n", 0600);
	expect_error(AGENT_OK "[admin]\nlisten = 127.0.0.1:1\ntoken_file = tok\n",
	    6, "printable characters without spaces");
}

static void
test_outbound(void **state)
{
	struct cfg c;
	char err[1024];

	(void)state;
	assert_int_equal(load(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1080\n"
	    "http_connect_listen = 127.0.0.1:3128\n"
	    "allow_destination = *.partner.net:22, 198.51.100.0/24:990-999\n"
	    "allow_destination = 127.0.0.1/32:8443\n"
	    "auth_user = inside\nauth_password = pw\n", &c, err, sizeof(err)), 0);
	assert_int_equal(c.out.line, 6);
	assert_string_equal(c.out.socks_listen, "127.0.0.1:1080");
	assert_string_equal(c.out.http_listen, "127.0.0.1:3128");
	assert_string_equal(c.out.allow, "*.partner.net:22, 198.51.100.0/24:990-999,"
	    "127.0.0.1/32:8443");
	assert_int_equal(c.out.nrules, 3);
	assert_string_equal(c.out.user, "inside");
	assert_int_equal(c.out.idle_timeout, 3600);
	cfg_free(&c);
	assert_int_equal(load(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1\n"
	    "idle_timeout = 0\n", &c, err, sizeof(err)), 0);
	assert_int_equal(c.out.idle_timeout, 0);
	cfg_free(&c);
	/* no [outbound]: nothing to run */
	assert_int_equal(load(AGENT_OK, &c, err, sizeof(err)), 0);
	assert_int_equal(c.out.line, 0);
	cfg_free(&c);

	expect_error(AGENT_OK "[outbound]\nsocks_listen = localhost:1080\n", 7,
	    "socks_listen");
	expect_error(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1\n"
	    "allow_destination = example.com\n", 8, "not a destination rule");
	expect_error(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1\n"
	    "allow_destination = 10.1.2.3/8:22\n", 8, "not a destination rule");
	expect_error(AGENT_OK "[outbound]\nallow_destination = a:1\n", 6,
	    "neither socks_listen nor http_connect_listen");
	expect_error(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1\n"
	    "auth_user = u\n", 6, "auth_user and auth_password go together");
	expect_error(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1\n"
	    "auth_user = u:v\n", 8, "without ':'");
	expect_error(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1\n"
	    "http_connect_listen = 127.0.0.1:1\n", 6, "the same address");
	expect_error(AGENT_OK "[outbound]\nsocks_port = 1\n", 7,
	    "unknown key 'socks_port' in [outbound]");
	expect_error(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1\n"
	    "idle_timeout = -1\n", 8, "idle_timeout: '-1' is not a number");
	expect_error(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1\n"
	    "idle_timeout = 604801\n", 8, "0 to 604800");
	expect_error(AGENT_OK "[outbound]\nsocks_listen = 127.0.0.1:1\n"
	    "idle_timeout = 5s\n", 8, "not a number");
}

static void
test_ftp(void **state)
{
	struct cfg c;
	struct cfg_service *s;
	char err[1024];

	(void)state;
	/* Even slices in backend order; the last takes the rest. */
	assert_int_equal(load(AGENT_OK "[service f]\nlisten = 0.0.0.0:21\n"
	    "protocol = ftp\npassive_ports = 30000-30050\n"
	    "public_address = 203.0.113.7\nbackend = 127.0.0.1:2121\n"
	    "backend = 127.0.0.1:2122\n", &c, err, sizeof(err)), 0);
	s = cfg_service(&c, "f");
	assert_non_null(s);
	assert_int_equal(s->proto, SVC_FTP);
	assert_int_equal(s->backends[0].pasv_min, 30000);
	assert_int_equal(s->backends[0].pasv_max, 30024);
	assert_int_equal(s->backends[1].pasv_min, 30025);
	assert_int_equal(s->backends[1].pasv_max, 30050);
	assert_int_equal(s->public_ip[0], 203);
	assert_string_equal(s->backends[1].str, "127.0.0.1:2122");
	assert_int_equal(ftpcfg_backend_of(s, 30025), 1);
	assert_int_equal(ftpcfg_backend_of(s, 29999), -1);
	assert_int_equal(s->active, 0);		/* passive only by default */
	cfg_free(&c);
	assert_int_equal(load(AGENT_OK "[service f]\nlisten = 0.0.0.0:21\n"
	    "protocol = ftp\npassive_ports = 30000-30050\nactive = yes\n"
	    "public_address = 203.0.113.7\nbackend = 127.0.0.1:2121\n",
	    &c, err, sizeof(err)), 0);
	assert_int_equal(cfg_service(&c, "f")->active, 1);
	cfg_free(&c);
	/* Explicit slices. */
	assert_int_equal(load(AGENT_OK "[service f]\nlisten = 0.0.0.0:990\n"
	    "protocol = ftps\npassive_ports = 30000-30099\n"
	    "public_address = 203.0.113.7\n"
	    "backend = 127.0.0.1:990  passive=30050-30099\n"
	    "backend = 127.0.0.1:991 passive=30000-30009\n",
	    &c, err, sizeof(err)), 0);
	s = cfg_service(&c, "f");
	assert_int_equal(s->proto, SVC_FTPS);
	assert_int_equal(s->backends[0].pasv_min, 30050);
	assert_int_equal(s->backends[1].pasv_max, 30009);
	assert_int_equal(ftpcfg_backend_of(s, 30020), -1);
	cfg_free(&c);

#define FSVC "[service f]\nlisten = 0.0.0.0:21\n"
	expect_error(AGENT_OK FSVC "protocol = sftp\n", 8, "protocol: 'sftp'");
	expect_error(AGENT_OK FSVC "passive_ports = 30000\n", 8,
	    "passive_ports");
	expect_error(AGENT_OK FSVC "passive_ports = 30000-29999\n", 8,
	    "passive_ports");
	expect_error(AGENT_OK FSVC "passive_ports = 1-1001\n", 8,
	    "1 to 1000 ports");
	expect_error(AGENT_OK FSVC "passive_ports = 0-10\n", 8, "passive_ports");
	expect_error(AGENT_OK FSVC "passive_ports = 1-70000\n", 8,
	    "passive_ports");
	expect_error(AGENT_OK FSVC "passive_ports = -5-10\n", 8, "passive_ports");
	expect_error(AGENT_OK FSVC "public_address = ftp.example.com\n", 8,
	    "public_address");
	expect_error(AGENT_OK FSVC "public_address = ::1\n", 8,
	    "numeric IPv4");
	expect_error(AGENT_OK FSVC "backend = 127.0.0.1:21 passive=\n", 8,
	    "passive=A-B");
	expect_error(AGENT_OK FSVC "backend = 127.0.0.1:21 active=1-2\n", 8,
	    "passive=A-B");
	expect_error(AGENT_OK FSVC "active = 1\n", 8, "not yes or no");
	expect_error(AGENT_OK FSVC "active = YES\n", 8, "not yes or no");
	expect_error(AGENT_OK FSVC "active = \n", 8, "not yes or no");
	/* Checked with the section. */
	expect_error(AGENT_OK FSVC "protocol = ftp\nbackend = 127.0.0.1:21\n",
	    6, "needs passive_ports and public_address");
	expect_error(AGENT_OK FSVC "passive_ports = 1-2\nbackend = "
	    "127.0.0.1:21\n", 6, "need protocol = ftp or ftps");
	/* Active mode needs a control channel the agent can read. */
	expect_error(AGENT_OK FSVC "active = yes\nbackend = 127.0.0.1:21\n", 6,
	    "active = yes needs protocol = ftp");
	expect_error(AGENT_OK FSVC "protocol = ftps\npassive_ports = 30000-30010\n"
	    "public_address = 1.2.3.4\nactive = yes\nbackend = 127.0.0.1:21\n",
	    6, "active = yes needs protocol = ftp");
	/* ... and a server that sees the agent (PORT names the agent). */
	expect_error(AGENT_OK FSVC "protocol = ftp\npassive_ports = 30000-30010\n"
	    "public_address = 1.2.3.4\nactive = yes\nsource = client\n"
	    "backend = 127.0.0.1:21\n", 6, "and source = agent");
	expect_error(AGENT_OK FSVC "protocol = ftp\npassive_ports = 30000-30000\n"
	    "public_address = 1.2.3.4\nbackend = 127.0.0.1:21\n"
	    "backend = 127.0.0.1:22\n", 6, "fewer ports than backends");
	expect_error(AGENT_OK FSVC "protocol = ftp\npassive_ports = 30000-30010\n"
	    "public_address = 1.2.3.4\nbackend = 127.0.0.1:21 passive=30000-30005\n"
	    "backend = 127.0.0.1:22\n", 6, "every backend or on none");
	expect_error(AGENT_OK FSVC "protocol = ftp\npassive_ports = 30000-30010\n"
	    "public_address = 1.2.3.4\nbackend = 127.0.0.1:21 passive=30000-30005\n"
	    "backend = 127.0.0.1:22 passive=30005-30010\n", 6, "overlap");
	expect_error(AGENT_OK FSVC "protocol = ftp\npassive_ports = 30000-30010\n"
	    "public_address = 1.2.3.4\nbackend = 127.0.0.1:21 passive=29990-30005\n",
	    6, "not inside passive_ports");
#undef FSVC
}

/* priority and health_interval: defaults, bounds and hostile values. */
static void
test_availability_keys(void **state)
{
	struct cfg c;
	char err[1024];
	static const char *const bad_prio[] = { "-1", "+1", "65536", "1 2",
	    "1x", "0x10", "99999999999999999999", "" };
	static const char *const bad_hc[] = { "-1", "3601", "x", "1e9",
	    "nan", "inf" };
	char text[512];
	size_t i;

	(void)state;
	assert_int_equal(load(AGENT_OK
	    "[service one]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n"
	    "[service two]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:2\n"
	    "backend = 127.0.0.1:4\npriority = 65535\n"
	    "[service three]\nlisten = 127.0.0.1:5\nbackend = 127.0.0.1:2\n"
	    "backend = 127.0.0.1:4\nhealth_interval = 0\n"
	    "[service four]\nlisten = 127.0.0.1:6\nbackend = 127.0.0.1:2\n"
	    "health_interval = 0.5\npriority = 0\n",
	    &c, err, sizeof(err)), 0);
	/* one backend: no checks unless asked; two: every 5 s */
	assert_int_equal(c.services[0].health_ms, 0);
	assert_int_equal(c.services[0].priority, 0);
	assert_int_equal(c.services[1].health_ms, CFG_HEALTH_DEFAULT_MS);
	assert_int_equal(c.services[1].priority, 65535);
	assert_int_equal(c.services[2].health_ms, 0);
	assert_int_equal(c.services[3].health_ms, 500);
	cfg_free(&c);

	for (i = 0; i < sizeof(bad_prio) / sizeof(bad_prio[0]); i++) {
		snprintf(text, sizeof(text), AGENT_OK "[service s]\n"
		    "listen = 127.0.0.1:1\npriority = %s\n", bad_prio[i]);
		expect_error(text, 8, bad_prio[i][0] == '\0' ? "priority" :
		    "not a whole number from 0 to 65535");
	}
	for (i = 0; i < sizeof(bad_hc) / sizeof(bad_hc[0]); i++) {
		snprintf(text, sizeof(text), AGENT_OK "[service s]\n"
		    "listen = 127.0.0.1:1\nhealth_interval = %s\n", bad_hc[i]);
		expect_error(text, 8, "seconds [0-3600]");
	}
	expect_error(AGENT_OK "[service s]\nlisten = 127.0.0.1:1\n"
	    "priority = 1\npriority = 2\n", 9, "given twice");
	expect_error(AGENT_OK "[service s]\nlisten = 127.0.0.1:1\n"
	    "health_interval = 1\nhealth_interval = 2\n", 9, "given twice");
	expect_error(AGENT_OK "priority = 1\n", 6, "unknown key 'priority'");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_data_links),
		cmocka_unit_test(test_errors_name_file_and_line),
		cmocka_unit_test(test_whole_file_checks),
		cmocka_unit_test(test_missing_agent_keys),
		cmocka_unit_test(test_policy_keys),
		cmocka_unit_test(test_policy_errors),
		cmocka_unit_test(test_hostile_lines),
		cmocka_unit_test(test_admin),
		cmocka_unit_test(test_outbound),
		cmocka_unit_test(test_ftp),
		cmocka_unit_test(test_availability_keys),
	};
	return cmocka_run_group_tests_name("cfg", tests, setup, teardown);
}
