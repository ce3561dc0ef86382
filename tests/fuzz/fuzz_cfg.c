/* fuzz_cfg.c - libFuzzer harness for the agent's configuration loader.
 * The input becomes the file; referenced cert/key/ca files exist so the
 * fuzzer can reach the service sections. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent_cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static char path[128];

/* Numeric only: a fuzzed host name must never become a DNS query. */
static int
numeric_resolver(const char *host, const char *port, struct net_addr *a,
    char *err, size_t errlen)
{
	char s[600];

	snprintf(s, sizeof(s), strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
	return net_parse(s, a, err, errlen);
}

static void
once(void)
{
	static const char *const names[] = { "a.crt", "a.key", "ca.crt" };
	char p[160];
	FILE *f;
	size_t i;

	snprintf(dir, sizeof(dir), "/tmp/sp-fuzz-cfg-%ld", (long)getpid());
	(void)mkdir(dir, 0700);
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		if ((f = fopen(p, "w")) != NULL)
			fclose(f);
	}
	snprintf(path, sizeof(path), "%s/agent.conf", dir);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg c;
	char err[1024];
	FILE *f;

	if (path[0] == '\0') {
		cfg_resolver = numeric_resolver;
		once();
	}
	if ((f = fopen(path, "w")) == NULL)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	if (cfg_load(path, &c, err, sizeof(err)) == 0) {
		/* What loads is within its documented bounds. */
		if (c.data_links < 1 || c.data_links > CFG_LINKS_MAX ||
		    c.nedges < 1 || c.nedges > CFG_MAX_EDGES ||
		    c.nservices > CFG_MAX_SERVICES)
			__builtin_trap();
		cfg_free(&c);
	}
	else if (strncmp(err, path, strlen(path)) != 0)
		__builtin_trap();	/* every error names the file */
	return 0;
}
