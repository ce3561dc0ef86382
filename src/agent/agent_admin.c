/* agent_admin.c - the operator's HTTP API (JSON) and /metrics.
 *
 * libmicrohttpd runs without threads of its own: it keeps an epoll set,
 * whose fd sits in the agent's event loop; MHD_run is called when that
 * fd is readable and on every tick (for its time-outs). So handlers run
 * in the loop like everything else and may touch agent state freely.
 *
 * Every request needs "Authorization: Bearer TOKEN" with the token from
 * [admin] token_file, compared in constant time (digests, so the length
 * does not show either). Answers are JSON, /metrics is Prometheus text. */
#include "agent/agent_admin.h"
#include "agent/agent_backend.h"
#include "agent/agent_ban.h"
#include "agent/agent_edge.h"
#include "agent/agent_handover.h"
#include "agent/agent_metrics.h"
#include "agent/agent_reload.h"
#include "agent/agent_sess.h"
#include "agent/agent_route.h"
#include "agent/stats_parse.h"
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#define ADMIN_BODY_MAX		4096	/* no endpoint takes a body */
#define ADMIN_CONN_MAX		32
#define ADMIN_TIMEOUT_S		10

static struct MHD_Daemon *admin_d;
static struct ev_io admin_io;
static int admin_lfd = -1;
static uint64_t admin_t0;

struct admin_req {
	size_t	 body;		/* upload bytes seen (discarded) */
	/* POST /reload: the connection waits, suspended, for the reload
	 * done off the loop; the answer, once in, is sent when MHD calls
	 * again. */
	enum rq_reload { RQ_NONE, RQ_WAIT, RQ_DONE } reload;
	int	 ok;		/* done: res holds what changed; else err */
	struct reload_result *res;
	char	 err[1024];
};

/* The one connection waiting for a reload (one runs at a time). */
static struct MHD_Connection *reload_conn;
static struct admin_req *reload_rq;

static void admin_logger(void *cls, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
admin_logger(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	(void)cls;
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	log_warn("admin: %s", line);
}

static enum MHD_Result
admin_send(struct MHD_Connection *c, unsigned int code, char *body,
    size_t len, const char *ctype, const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (body == NULL)
		return MHD_NO;		/* out of memory: drop the connection */
	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (allow != NULL)
		(void)MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
	if (code == MHD_HTTP_UNAUTHORIZED)
		(void)MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		    "Bearer realm=\"sallyport\"");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

/* Send j (reference stolen) as the JSON body. */
static enum MHD_Result
admin_json(struct MHD_Connection *c, unsigned int code, json_t *j,
    const char *allow)
{
	char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	size_t len = s != NULL ? strlen(s) : 0;
	char *body = NULL;

	json_decref(j);
	if (s != NULL && (body = malloc(len + 2)) != NULL) {
		memcpy(body, s, len);
		body[len++] = '\n';
		body[len] = '\0';
	}
	free(s);
	return admin_send(c, code, body, len, "application/json", allow);
}

static enum MHD_Result
admin_error(struct MHD_Connection *c, unsigned int code, const char *msg,
    const char *allow)
{
	return admin_json(c, code, json_pack("{ss}", "error", msg), allow);
}

static int
admin_authorized(struct MHD_Connection *c)
{
	const char *hdr, *tok;
	unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
	size_t len;
	int ok;

	hdr = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_AUTHORIZATION);
	if (agent_cfg.admin_token[0] == '\0' ||
	    route_bearer(hdr, &tok, &len) == -1)
		return 0;
	SHA256((const unsigned char *)agent_cfg.admin_token,
	    strlen(agent_cfg.admin_token), want);
	SHA256((const unsigned char *)tok, len, got);
	ok = CRYPTO_memcmp(want, got, sizeof(want)) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}

/* --- GET /api/v1/status ------------------------------------------------ */

static void
count_sess(const struct asess_info *si, void *arg)
{
	json_t *counts = arg;
	json_t *v = json_object_get(counts, si->service);

	(void)json_object_set_new(counts, si->service,
	    json_integer((v != NULL ? json_integer_value(v) : 0) + 1));
}

static const char *
health_name(enum backend_health h)
{
	return h == BH_UP ? "up" : h == BH_DOWN ? "down" : "unknown";
}

/* A gauge from an edge's last STATS; 0 if it did not say. */
static uint64_t
edge_gauge(const struct aedge *e, const char *name)
{
	struct stats_kv kv[STATS_MAX];
	const char *why;
	size_t n, i;

	if (e->stats[0] == '\0' || stats_parse(e->stats, strlen(e->stats), kv,
	    STATS_MAX, &n, &why) == -1)
		return 0;
	for (i = 0; i < n; i++)
		if (strcmp(kv[i].name, name) == 0)
			return kv[i].value;
	return 0;
}

/* Older processes still draining, or null. */
static json_t *
draining_json(uint64_t procs, uint64_t sessions)
{
	if (procs == 0)
		return json_null();
	return json_pack("{sI sI}", "processes", (json_int_t)procs,
	    "sessions", (json_int_t)sessions);
}

static json_t *
status_json(void)
{
	json_t *root, *edges, *svcs, *backends, *counts, *o, *cnt;
	const struct aedge *e;
	const struct cfg_service *s;
	const struct cfg_backend *b;
	uint64_t now = ev_now_update(), procs, sess;
	size_t i, j;

	counts = json_object();
	asess_foreach(count_sess, counts);
	edges = json_array();
	for (i = 0; i < aedge_count(); i++) {
		e = aedge_get(i);
		o = json_pack("{ss ss ss sI sI}",
		    "edge", e->ce->str,
		    "name", e->edge_name,
		    "state", aedge_state_name(e->state),
		    "reconnects", (json_int_t)(e->connects > 0 ? e->connects - 1 : 0),
		    "connects", (json_int_t)e->connects);
		if (e->state == AE_READY) {
			(void)json_object_set_new(o, "rtt_ms", json_integer(
			    (json_int_t)e->rtt_ms));
			(void)json_object_set_new(o, "connected_seconds",
			    json_integer((json_int_t)((now - e->connected_at) / 1000)));
		} else {
			(void)json_object_set_new(o, "rtt_ms", json_null());
			(void)json_object_set_new(o, "connected_seconds", json_null());
		}
		(void)json_object_set_new(o, "last_error", e->last_error[0] ?
		    json_string(e->last_error) : json_null());
		/* Edge processes that handed over, still relaying. */
		(void)json_object_set_new(o, "draining", draining_json(
		    edge_gauge(e, "draining_processes"),
		    edge_gauge(e, "draining_sessions")));
		(void)json_array_append_new(edges, o);
	}
	svcs = json_array();
	for (i = 0; i < agent_cfg.nservices; i++) {
		s = &agent_cfg.services[i];
		backends = json_array();
		for (j = 0; j < s->nbackends; j++) {
			b = &s->backends[j];
			o = json_pack("{ss ss}", "address", b->str,
			    "health", health_name(b->st->health));
			(void)json_object_set_new(o, "last_error",
			    b->st->health == BH_DOWN && b->st->last_error[0] ?
			    json_string(b->st->last_error) : json_null());
			(void)json_object_set_new(o, "since_seconds",
			    b->st->health == BH_UNKNOWN ? json_null() :
			    json_integer((json_int_t)((now - b->st->health_at) / 1000)));
			(void)json_array_append_new(backends, o);
		}
		cnt = json_object_get(counts, s->name);
		o = json_pack("{ss ss sI so}", "name", s->name, "listen", s->listen,
		    "sessions", cnt != NULL ? json_integer_value(cnt) : (json_int_t)0,
		    "backends", backends);
		(void)json_object_set_new(o, "source", json_string(
		    s->source == SRC_AGENT ? "agent" : s->source == SRC_CLIENT ?
		    "client" : "client-port"));
		/* not offered at the edges, and why (tsrc.c) */
		(void)json_object_set_new(o, "refused", s->refused[0] ?
		    json_string(s->refused) : json_null());
		(void)json_array_append_new(svcs, o);
	}
	root = json_pack("{ss ss ss sI sI so so}",
	    "agent", agent_cfg.name,
	    "version", AGENT_VERSION,
	    "config", agent_cfg.path,
	    "pid", (json_int_t)getpid(),
	    "uptime_seconds", (json_int_t)((now - admin_t0) / 1000),
	    "edges", edges,
	    "services", svcs);
	json_decref(counts);
	aho_old(&procs, &sess);
	(void)json_object_set_new(root, "draining", draining_json(procs, sess));
	return root;
}

/* --- GET /api/v1/sessions ---------------------------------------------- */

static void
list_sess(const struct asess_info *si, void *arg)
{
	json_t *o = json_pack("{sI ss ss ss ss ss sI sI sf}",
	    "id", (json_int_t)si->id,
	    "service", si->service,
	    "client", si->client,
	    "backend", si->backend,
	    "edge", si->edge,
	    "state", si->state,
	    "bytes_to_backend", (json_int_t)si->bytes_to_backend,
	    "bytes_to_client", (json_int_t)si->bytes_to_client,
	    "age_seconds", (double)si->age_ms / 1000.0);

	if (o != NULL && si->backend[0] == '\0')
		(void)json_object_set_new(o, "backend", json_null());
	(void)json_array_append_new(arg, o);
}

/* --- POST /api/v1/reload ----------------------------------------------- */

static json_t *
name_list(const char *list)
{
	json_t *a = json_array();
	const char *p = list, *sp;

	while (*p != '\0') {
		sp = strchr(p, ' ');
		(void)json_array_append_new(a, json_stringn(p, sp != NULL ?
		    (size_t)(sp - p) : strlen(p)));
		if (sp == NULL)
			break;
		p = sp + 1;
	}
	return a;
}

static void
admin_reloaded(void *arg, const struct reload_result *res, const char *err)
{
	(void)arg;
	if (reload_conn == NULL)
		return;		/* the API stopped meanwhile */
	if (res != NULL)
		*reload_rq->res = *res;
	else
		snprintf(reload_rq->err, sizeof(reload_rq->err), "%s", err);
	reload_rq->ok = res != NULL;
	reload_rq->reload = RQ_DONE;
	MHD_resume_connection(reload_conn);
	reload_conn = NULL;
	reload_rq = NULL;
}

static enum MHD_Result
admin_reload(struct MHD_Connection *c, struct admin_req *rq)
{
	const struct reload_result *res = rq->res;
	json_t *j;

	if (rq->reload == RQ_NONE) {
		log_info("admin: reload requested");
		if (reload_busy())
			return admin_error(c, MHD_HTTP_CONFLICT,
			    "a reload is under way already", NULL);
		/* EBUSY now: too many lookups of edges' names wait. */
		if ((rq->res = malloc(sizeof(*rq->res))) == NULL ||
		    reload_start(admin_reloaded, NULL) == -1)
			return admin_error(c, rq->res != NULL && errno == EBUSY ?
			    MHD_HTTP_SERVICE_UNAVAILABLE :
			    MHD_HTTP_INTERNAL_SERVER_ERROR,
			    strerror(rq->res == NULL ? ENOMEM : errno), NULL);
		rq->reload = RQ_WAIT;
		reload_conn = c;
		reload_rq = rq;
		MHD_suspend_connection(c);
		return MHD_YES;
	}
	if (!rq->ok)
		return admin_json(c, MHD_HTTP_UNPROCESSABLE_CONTENT,
		    json_pack("{ss sb}", "error", rq->err, "reloaded", 0), NULL);
	j = json_pack("{sb so so so so so}", "reloaded", 1,
	    "added", name_list(res->added),
	    "removed", name_list(res->removed),
	    "listen_changed", name_list(res->changed),
	    "backends_changed", name_list(res->backends),
	    "restart_needed", name_list(res->restart));
	return admin_json(c, MHD_HTTP_OK, j, NULL);
}

/* --- bans ----------------------------------------------------------------- */

static void
list_ban(const struct aban *x, void *arg)
{
	char r[BAN_STR_MAX];
	uint64_t now = (uint64_t)time(NULL);

	ban_range_fmt(&x->b.c, r, sizeof(r));
	(void)json_array_append_new(arg, json_pack("{ss sI so so ss}",
	    "addr", r, "created", (json_int_t)x->created,
	    "expires", x->b.until ? json_integer((json_int_t)x->b.until) :
	    json_null(), "left", x->b.until ? json_integer((json_int_t)
	    (x->b.until - now)) : json_null(), "reason", x->reason));
}

static json_t *
saved_json(int saved)
{
	return saved == -1 ? json_null() : json_boolean(saved);
}

/* GET lists; POST ?addr=RANGE[&for=DURATION][&reason=TEXT][&cut=1] bans;
 * DELETE ?addr=RANGE lifts. */
static enum MHD_Result
admin_bans(struct MHD_Connection *c, const char *method)
{
	const char *addr, *dur, *reason, *cut, *why;
	char err[128], r[BAN_STR_MAX];
	uint32_t secs = 0;
	struct cidr rg;
	json_t *a;
	int saved;

	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
		a = json_array();
		aban_foreach(list_ban, a);
		return admin_json(c, MHD_HTTP_OK, json_pack("{so}", "bans", a),
		    NULL);
	}
	addr = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "addr");
	dur = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "for");
	reason = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "reason");
	cut = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "cut");
	if (addr == NULL || ban_range_parse(addr, &rg, &why) == -1)
		return admin_error(c, MHD_HTTP_BAD_REQUEST, addr == NULL ?
		    "addr=ADDR or addr=CIDR is required" : why, NULL);
	ban_range_fmt(&rg, r, sizeof(r));
	if (strcmp(method, "DELETE") == 0) {
		if (aban_lift(&rg, &saved) == -1)
			return admin_error(c, MHD_HTTP_NOT_FOUND, "no such ban",
			    NULL);
		return admin_json(c, MHD_HTTP_OK, json_pack("{ss so}", "lifted",
		    r, "saved", saved_json(saved)), NULL);
	}
	if (dur != NULL && ban_duration_parse(dur, &secs, &why) == -1)
		return admin_error(c, MHD_HTTP_BAD_REQUEST, why, NULL);
	if (reason == NULL)
		reason = "";
	if (!ban_reason_valid(reason))
		return admin_error(c, MHD_HTTP_BAD_REQUEST, "reason: at most 200 "
		    "bytes of printable ASCII", NULL);
	if (cut != NULL && strcmp(cut, "0") != 0 && strcmp(cut, "1") != 0)
		return admin_error(c, MHD_HTTP_BAD_REQUEST, "cut: 0 or 1", NULL);
	if (aban_add(&rg, secs, reason, cut != NULL && cut[0] == '1', &saved,
	    err, sizeof(err)) == -1)
		return admin_error(c, MHD_HTTP_INSUFFICIENT_STORAGE, err, NULL);
	return admin_json(c, MHD_HTTP_OK, json_pack("{ss so so}", "banned", r,
	    "for", secs ? json_integer(secs) : json_null(), "saved",
	    saved_json(saved)), NULL);
}

/* --- POST /api/v1/upgrade ---------------------------------------------- */

static enum MHD_Result
admin_upgrade(struct MHD_Connection *c)
{
	char err[256];
	pid_t pid;

	if (aho_upgrade(&pid, err, sizeof(err)) == -1)
		return admin_error(c, MHD_HTTP_CONFLICT, err, NULL);
	return admin_json(c, MHD_HTTP_ACCEPTED, json_pack("{sI ss}", "started",
	    (json_int_t)pid, "handover_socket", agent_cfg.handover), NULL);
}

/* --- dispatch ----------------------------------------------------------- */

static enum MHD_Result
admin_handle(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_size, void **con_cls)
{
	struct admin_req *rq = *con_cls;
	struct route rt;
	char *text, msg[128];
	size_t len, n;

	(void)cls;
	(void)version;
	(void)upload;
	if (rq == NULL) {
		if ((rq = calloc(1, sizeof(*rq))) == NULL)
			return MHD_NO;
		*con_cls = rq;
		return MHD_YES;
	}
	/* Back from a reload, which may have changed the token: the
	 * request was let in before it. */
	if (rq->reload == RQ_DONE)
		return admin_reload(c, rq);
	if (*upload_size > 0) {
		/* No endpoint reads a body; count it to bound it, drop it. */
		rq->body += *upload_size;
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->body > ADMIN_BODY_MAX)
		return admin_error(c, MHD_HTTP_CONTENT_TOO_LARGE,
		    "request body too large", NULL);
	if (!admin_authorized(c)) {
		log_warn("admin: %s %s refused: missing or wrong token", method,
		    url);
		return admin_error(c, MHD_HTTP_UNAUTHORIZED,
		    "missing or wrong bearer token", NULL);
	}
	if (route_parse(method, url, &rt) == -1) {
		if (rt.status == 405) {
			snprintf(msg, sizeof(msg), "method %s not allowed here",
			    method);
			return admin_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, msg,
			    rt.allow);
		}
		return admin_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint", NULL);
	}
	switch (rt.ep) {
	case RT_STATUS:
		return admin_json(c, MHD_HTTP_OK, status_json(), NULL);
	case RT_SESSIONS: {
		json_t *a = json_array();
		asess_foreach(list_sess, a);
		return admin_json(c, MHD_HTTP_OK, json_pack("{so}", "sessions", a),
		    NULL);
	}
	case RT_SESSION:
		if ((n = asess_kill(rt.id)) == 0)
			return admin_error(c, MHD_HTTP_NOT_FOUND, "no such session",
			    NULL);
		log_info("admin: session %llu killed (%zu)",
		    (unsigned long long)rt.id, n);
		return admin_json(c, MHD_HTTP_OK, json_pack("{sI sI}", "killed",
		    (json_int_t)rt.id, "count", (json_int_t)n), NULL);
	case RT_BANS:
		return admin_bans(c, method);
	case RT_RELOAD:
		return admin_reload(c, rq);
	case RT_UPGRADE:
		log_info("admin: upgrade requested");
		return admin_upgrade(c);
	case RT_METRICS:
		if ((text = metrics_render(&len)) == NULL)
			return admin_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory", NULL);
		return admin_send(c, MHD_HTTP_OK, text, len,
		    "text/plain; version=0.0.4; charset=utf-8", NULL);
	case RT_NONE:
		break;
	}
	return admin_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint", NULL);
}

static void
admin_done(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct admin_req *rq = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (rq != NULL)
		free(rq->res);
	free(rq);
	*con_cls = NULL;
}

static void
admin_run(void)
{
	MHD_UNSIGNED_LONG_LONG t;
	int i;

	/* MHD's epoll is edge-triggered inside: run again while it says work
	 * is ready now, so an answer does not wait for the next tick. */
	for (i = 0; i < 8; i++) {
		(void)MHD_run(admin_d);
		if (MHD_get_timeout(admin_d, &t) != MHD_YES || t > 0)
			break;
	}
}

static void
admin_io_cb(struct ev_io *io, uint32_t events)
{
	(void)io;
	(void)events;
	admin_run();
}

int
admin_start(const char *listen, char *err, size_t errlen)
{
	const union MHD_DaemonInfo *info;
	struct net_addr a;
	int fd;

	admin_t0 = ev_now();
	if (net_parse(listen, &a, err, errlen) == -1)
		return -1;
	if ((fd = aho_listener(&a)) == -1 &&
	    (fd = net_listen(&a, 64, err, errlen)) == -1)
		return -1;
	admin_lfd = fd;
	admin_d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
	    MHD_ALLOW_SUSPEND_RESUME, 0,
	    NULL, NULL, admin_handle, NULL,
	    /* first, so that MHD reports every message through it */
	    MHD_OPTION_EXTERNAL_LOGGER, admin_logger, NULL,
	    MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)ADMIN_CONN_MAX,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)ADMIN_TIMEOUT_S,
	    MHD_OPTION_NOTIFY_COMPLETED, admin_done, NULL,
	    MHD_OPTION_END);
	if (admin_d == NULL) {
		close(fd);
		admin_lfd = -1;
		snprintf(err, errlen, "cannot start the HTTP server");
		return -1;
	}
	info = MHD_get_daemon_info(admin_d, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL) {
		admin_stop();
		snprintf(err, errlen, "HTTP server has no epoll fd");
		return -1;
	}
	ev_io_init(&admin_io, info->epoll_fd, admin_io_cb);
	if (ev_set(&admin_io, EPOLLIN) == -1) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		admin_stop();
		return -1;
	}
	log_info("admin API listening on %s", listen);
	return 0;
}

void
admin_tick(void)
{
	if (admin_d != NULL)
		admin_run();
}

int
admin_listener(void)
{
	return admin_d != NULL ? admin_lfd : -1;
}

void
admin_stop(void)
{
	if (admin_d == NULL)
		return;
	/* MHD stops only with no connection suspended; the reload's answer,
	 * if it still comes, goes nowhere. */
	if (reload_conn != NULL) {
		MHD_resume_connection(reload_conn);
		reload_conn = NULL;
		reload_rq = NULL;
	}
	ev_del(&admin_io);
	MHD_stop_daemon(admin_d);
	admin_d = NULL;
	admin_lfd = -1;
}
