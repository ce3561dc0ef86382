/* agent_reload.c - apply an edited configuration file to the running
 * agent (SIGHUP or POST /api/v1/reload).
 *
 * The new file is loaded whole into a new struct cfg, in a thread of its
 * own: looking up a backend's name may wait seconds on a DNS server, and
 * sessions, edges and the admin API must not wait with it. If anything is
 * wrong the running configuration is not touched. Otherwise services are
 * compared by name and every connected edge is told what changed:
 * SVC_CLOSE for a removed service, SVC_OPEN for a new one, both for one
 * whose listen address or client policy (allow, deny, accept_proxy_from,
 * per-address limits: enforced by the edge) changed. A change of
 * backends or of proxy_protocol needs no frame.
 * Running sessions never depend on the service table (agent_sess.c drops
 * its pointer once relaying), and the few still being set up keep the
 * old table, which is freed once none of them refers to it. What the
 * agent learnt about backends (sessions, health) is not in the table but
 * in their run-time state, which the new table shares by name.
 *
 * Edges, the agent's name, its certificate, key and CA, and the admin
 * listen address are fixed for the life of the process: a change to them
 * is reported as needing a restart and the running values are kept. */
#include "agent/agent_reload.h"
#include "agent/agent_audit.h"
#include "agent/agent_backend.h"
#include "agent/agent_edge.h"
#include "agent/agent_handover.h"
#include "agent/agent_sess.h"
#include "agent/bg.h"
#include "agent/tsrc.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

struct retired {
	struct cfg_service	*arr;
	size_t			 n;
	struct retired		*next;
};

static struct retired *retired;

static void
list_add(char *list, const char *name)
{
	size_t have = strnlen(list, RELOAD_LIST);

	if (have < RELOAD_LIST)
		(void)snprintf(list + have, RELOAD_LIST - have, "%s%s",
		    have ? " " : "", name);
}

static int
same_backends(const struct cfg_service *a, const struct cfg_service *b)
{
	size_t i;

	if (a->nbackends != b->nbackends)
		return 0;
	for (i = 0; i < a->nbackends; i++)
		if (strcmp(a->backends[i].str, b->backends[i].str) != 0)
			return 0;
	return 1;
}

static int
same_edges(const struct cfg *a, const struct cfg *b)
{
	size_t i;

	if (a->nedges != b->nedges)
		return 0;
	for (i = 0; i < a->nedges; i++)
		if (strcmp(a->edges[i].str, b->edges[i].str) != 0)
			return 0;
	return 1;
}

/* Keep what cannot change while running; note each difference. */
static void
keep_fixed(const struct cfg *old, struct cfg *nc, struct reload_result *res)
{
	if (!same_edges(old, nc)) {
		list_add(res->restart, "edge");
		memcpy(nc->edges, old->edges, sizeof(nc->edges));
		nc->nedges = old->nedges;
	}
	if (strcmp(old->name, nc->name) != 0) {
		list_add(res->restart, "name");
		memcpy(nc->name, old->name, sizeof(nc->name));
	}
	if (strcmp(old->cert, nc->cert) != 0 || strcmp(old->key, nc->key) != 0 ||
	    strcmp(old->ca, nc->ca) != 0) {
		list_add(res->restart, "cert/key/ca");
		memcpy(nc->cert, old->cert, sizeof(nc->cert));
		memcpy(nc->key, old->key, sizeof(nc->key));
		memcpy(nc->ca, old->ca, sizeof(nc->ca));
	}
	if (old->data_plain != nc->data_plain) {
		/* Declared to each edge in HELLO. */
		list_add(res->restart, "data_link");
		nc->data_plain = old->data_plain;
	}
	if ((old->out.line != 0) != (nc->out.line != 0) ||
	    strcmp(old->out.socks_listen, nc->out.socks_listen) != 0 ||
	    strcmp(old->out.http_listen, nc->out.http_listen) != 0) {
		/* The proxies' listeners start once; the policy and the
		 * credentials of a running [outbound] do change. */
		list_add(res->restart, "outbound");
		nc->out = old->out;
	}
	if (strcmp(old->ban_file, nc->ban_file) != 0) {
		/* Read at start (agent_ban.c): the bans in force stay. */
		list_add(res->restart, "ban_file");
		memcpy(nc->ban_file, old->ban_file, sizeof(nc->ban_file));
	}
	if (strcmp(old->handover, nc->handover) != 0) {
		/* Listened on since the start. */
		list_add(res->restart, "handover_socket");
		memcpy(nc->handover, old->handover, sizeof(nc->handover));
	}
	if (strcmp(old->admin_listen, nc->admin_listen) != 0) {
		/* The running listener keeps its token too. */
		list_add(res->restart, "admin.listen");
		memcpy(nc->admin_listen, old->admin_listen, sizeof(nc->admin_listen));
		memcpy(nc->admin_token_file, old->admin_token_file,
		    sizeof(nc->admin_token_file));
		memcpy(nc->admin_token, old->admin_token, sizeof(nc->admin_token));
	}
}

/* Carry the round-robin cursor over to the new table (what sessions
 * found out about backends lives in their run-time state, which the new
 * table shares: agent_backend.h). */
static void
carry_state(const struct cfg_service *os, struct cfg_service *ns)
{
	ns->rr = os->rr;
}

/* Whether what the edge is told about a service changed: the pushed
 * definitions are compared whole (listen, idle time-out, and whatever is
 * added later), so such a change is applied as a close and an open. The
 * priority is left out: the edge takes a new one from a repeated SVC_OPEN
 * (see svc_prio_changed), without closing anything. */
static int
svc_def_changed(const struct cfg_service *a, const struct cfg_service *b)
{
	struct msg ma, mb;

	aedge_svc_msg(a, &ma);
	aedge_svc_msg(b, &mb);
	ma.priority = mb.priority = 0;
	ma.have &= ~FA_BIT(FA_PRIORITY);
	mb.have &= ~FA_BIT(FA_PRIORITY);
	return memcmp(&ma, &mb, sizeof(ma)) != 0;
}

static int
svc_prio_changed(const struct cfg_service *a, const struct cfg_service *b)
{
	return a->priority != b->priority;
}

/* After the swap: open what is new or changed, from the new table (the
 * old one is r). */
static void
open_new(const struct retired *r, struct reload_result *res)
{
	struct cfg_service *os, *ns;
	size_t i, k;

	for (i = 0; i < agent_cfg.nservices; i++) {
		ns = &agent_cfg.services[i];
		os = NULL;
		for (k = 0; k < r->n; k++)
			if (strcmp(r->arr[k].name, ns->name) == 0)
				os = &r->arr[k];
		if (os == NULL)
			list_add(res->added, ns->name);
		if (os == NULL || svc_def_changed(os, ns) ||
		    svc_prio_changed(os, ns) || os->refused[0] != '\0')
			aedge_svc_open(ns);
	}
}

/* A reload under way: the file is read, and its backends' names looked
 * up, off the loop (bg.h), into nc; the loop applies it. */
struct reload_job {
	char		 path[sizeof(agent_cfg.path)];
	struct cfg	*nc;
	int		 rc;
	char		 err[1024];
	reload_cb	*cb;
	void		*arg;
	struct reload_result res;
};

static struct reload_job *running;

/* Swap nc in for the running configuration; tell the edges. */
static int
apply(struct cfg *nc, struct reload_result *res, char *err, size_t errlen)
{
	struct cfg_service *os, *ns;
	struct retired *r;
	size_t i;
	int policy, audit;

	tsrc_check(nc);
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    backend_bind(nc->services, nc->nservices) == -1) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	keep_fixed(&agent_cfg, nc, res);

	/* Diff by name; frames are sent after the swap, from the new table. */
	for (i = 0; i < agent_cfg.nservices; i++) {
		os = &agent_cfg.services[i];
		if ((ns = cfg_service(nc, os->name)) == NULL) {
			list_add(res->removed, os->name);
			aedge_svc_close(os->name);
			continue;
		}
		carry_state(os, ns);
		if (ns->refused[0] != '\0' && os->refused[0] == '\0') {
			list_add(res->changed, os->name);
			aedge_svc_close(os->name);
		} else if (svc_def_changed(os, ns)) {
			list_add(res->changed, os->name);
			aedge_svc_close(os->name);
		} else if (!same_backends(os, ns))
			list_add(res->backends, os->name);
	}
	r->arr = agent_cfg.services;
	r->n = agent_cfg.nservices;
	r->next = retired;
	retired = r;
	policy = strcmp(agent_cfg.out.allow, nc->out.allow) != 0;
	audit = strcmp(agent_cfg.audit_log, nc->audit_log) != 0;
	agent_cfg = *nc;
	/* agent_cfg now owns the token and the table: wipe the copy. */
	OPENSSL_cleanse(nc, sizeof(*nc));
	if (policy)
		aedge_out_policy();
	if (audit)
		audit_reopen(agent_cfg.audit_log);

	open_new(r, res);
	/* Probes point into the service table: move them to the new one
	 * before the old can be freed. */
	health_stop();
	health_start();
	log_info("configuration reloaded: %zu services; added=[%s] removed=[%s] "
	    "changed=[%s] backends-changed=[%s]%s%s%s",
	    agent_cfg.nservices, res->added, res->removed, res->changed,
	    res->backends, res->restart[0] ? " restart needed for [" : "",
	    res->restart, res->restart[0] ? "] (running values kept)" : "");
	reload_tick();
	return 0;
}

/* In a thread: may wait on DNS servers, touches only j. */
static void
job_load(void *arg)
{
	struct reload_job *j = arg;

	j->rc = cfg_load(j->path, j->nc, j->err, sizeof(j->err));
}

static void
job_done(void *arg)
{
	struct reload_job *j = arg;

	running = NULL;
	/* Handing over began while the file was read: the process taking
	 * over has read it too, and this one serves its last sessions
	 * only. */
	if (j->rc == 0 && aho_draining()) {
		snprintf(j->err, sizeof(j->err), "the agent hands over to a "
		    "new process (reload that one)");
		cfg_free(j->nc);
		j->rc = -1;
	}
	if (j->rc == 0 && apply(j->nc, &j->res, j->err, sizeof(j->err)) == -1) {
		cfg_free(j->nc);
		j->rc = -1;
	}
	if (j->rc == -1)
		log_err("reload refused, configuration unchanged: %s", j->err);
	j->cb(j->arg, j->rc == 0 ? &j->res : NULL, j->err);
	free(j->nc);
	free(j);
}

int
reload_start(reload_cb *cb, void *arg)
{
	struct reload_job *j;
	int e;

	if (running != NULL) {
		errno = EBUSY;
		return -1;
	}
	errno = ENOMEM;
	if ((j = calloc(1, sizeof(*j))) == NULL ||
	    (j->nc = calloc(1, sizeof(*j->nc))) == NULL)
		goto fail;
	snprintf(j->path, sizeof(j->path), "%s", agent_cfg.path);
	j->cb = cb;
	j->arg = arg;
	if (bg_run(job_load, job_done, j, 0) == -1)
		goto fail;
	running = j;
	return 0;
fail:
	e = errno;
	if (j != NULL)
		free(j->nc);
	free(j);
	errno = e;
	return -1;
}

int
reload_busy(void)
{
	return running != NULL;
}

void
reload_tick(void)
{
	struct retired **pp = &retired, *r;

	while ((r = *pp) != NULL) {
		if (asess_uses(r->arr, r->n)) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		backend_unbind(r->arr, r->n);
		free(r->arr);
		free(r);
	}
}

void
reload_stop(void)
{
	struct retired *r;

	while ((r = retired) != NULL) {
		retired = r->next;
		backend_unbind(r->arr, r->n);
		free(r->arr);
		free(r);
	}
}
