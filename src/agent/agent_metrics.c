/* agent_metrics.c - the agent's counters and their Prometheus text
 * exposition (format 0.0.4). Everything is computed in the event loop:
 * per-service counters are kept here, running sessions, edges and
 * backends are read from their owners when the text is rendered, and
 * the edges' own counters arrive in STATS frames, so nothing in the DMZ
 * is scraped. */
#include "agent/agent_metrics.h"
#include "agent/agent_backend.h"
#include "agent/agent_ban.h"
#include "agent/agent_edge.h"
#include "agent/agent_handover.h"
#include "agent/agent_sess.h"
#include "agent/stats_parse.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Session set-up time (SESS_OPEN to relaying), in milliseconds. */
static const uint64_t hist_le_ms[] = { 5, 10, 25, 50, 100, 250, 500, 1000,
    2500, 5000, 10000 };
#define HIST_N (sizeof(hist_le_ms) / sizeof(hist_le_ms[0]))

/* Counters per service name. Entries outlive the service (a reload may
 * remove it) so that counters never go backwards while the agent runs. */
struct msvc {
	char		 name[MSG_NAME_MAX];
	uint64_t	 open;
	uint64_t	 total[SE_COUNT];	/* ended, by how */
	uint64_t	 bytes[2];	/* ended sessions: to backend, to client */
	uint64_t	 live[2];	/* scratch while rendering */
	struct msvc	*next;
};

static struct msvc *msvcs;
static uint64_t hist_bucket[HIST_N];
static uint64_t hist_count, hist_sum_ms;

static struct msvc *
msvc_get(const char *name)
{
	struct msvc *m, **pp;

	/* Appended in first-seen order: the exposition stays stable. */
	for (pp = &msvcs; (m = *pp) != NULL; pp = &m->next)
		if (strcmp(m->name, name) == 0)
			return m;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	snprintf(m->name, sizeof(m->name), "%s", name);
	*pp = m;
	return m;
}

void
metrics_sess_open(const char *svc)
{
	struct msvc *m = msvc_get(svc);

	if (m != NULL)
		m->open++;
}

void
metrics_sess_joined(uint64_t setup_ms)
{
	size_t i;

	for (i = 0; i < HIST_N; i++)
		if (setup_ms <= hist_le_ms[i])
			hist_bucket[i]++;
	hist_count++;
	hist_sum_ms += setup_ms;
}

void
metrics_sess_end(const char *svc, enum sess_end how, uint64_t to_backend,
    uint64_t to_client)
{
	struct msvc *m = msvc_get(svc);

	if (m == NULL)
		return;
	if (m->open > 0)
		m->open--;
	if ((unsigned)how < SE_COUNT)
		m->total[how]++;
	m->bytes[0] += to_backend;
	m->bytes[1] += to_client;
}

void
metrics_free(void)
{
	struct msvc *m;

	while ((m = msvcs) != NULL) {
		msvcs = m->next;
		free(m);
	}
}

/* Label values here are service names, addresses and edge strings from
 * the configuration: printable ASCII. Escape what the format requires. */
static void
label(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void
family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
add_live(const struct asess_info *si, void *arg)
{
	struct msvc *m = msvc_get(si->service);

	(void)arg;
	if (m != NULL) {
		m->live[0] += si->bytes_to_backend;
		m->live[1] += si->bytes_to_client;
	}
}

static void
render_sessions(FILE *f)
{
	static const char *const dir[2] = { "to_backend", "to_client" };
	struct msvc *m;
	size_t i;

	for (m = msvcs; m != NULL; m = m->next)
		m->live[0] = m->live[1] = 0;
	asess_foreach(add_live, NULL);

	family(f, "sallyport_sessions_open", "gauge",
	    "Sessions being set up or relayed, by service.");
	for (m = msvcs; m != NULL; m = m->next) {
		fputs("sallyport_sessions_open{service=\"", f);
		label(f, m->name);
		fprintf(f, "\"} %llu\n", (unsigned long long)m->open);
	}
	family(f, "sallyport_sessions_total", "counter",
	    "Sessions ended, by service and how they ended.");
	for (m = msvcs; m != NULL; m = m->next)
		for (i = SE_NONE + 1; i < SE_COUNT; i++) {
			fputs("sallyport_sessions_total{service=\"", f);
			label(f, m->name);
			fprintf(f, "\",reason=\"%s\"} %llu\n",
			    end_name((enum sess_end)i),
			    (unsigned long long)m->total[i]);
		}
	family(f, "sallyport_bytes_total", "counter",
	    "Bytes relayed by service and direction, running sessions included.");
	for (m = msvcs; m != NULL; m = m->next)
		for (i = 0; i < 2; i++) {
			fputs("sallyport_bytes_total{service=\"", f);
			label(f, m->name);
			fprintf(f, "\",direction=\"%s\"} %llu\n", dir[i],
			    (unsigned long long)(m->bytes[i] + m->live[i]));
		}
	family(f, "sallyport_session_setup_seconds", "histogram",
	    "Time from the edge's SESS_OPEN to relaying (the backend's answer).");
	for (i = 0; i < HIST_N; i++)
		fprintf(f, "sallyport_session_setup_seconds_bucket{le=\"%llu.%03llu\"} "
		    "%llu\n", (unsigned long long)(hist_le_ms[i] / 1000),
		    (unsigned long long)(hist_le_ms[i] % 1000),
		    (unsigned long long)hist_bucket[i]);
	fprintf(f, "sallyport_session_setup_seconds_bucket{le=\"+Inf\"} %llu\n",
	    (unsigned long long)hist_count);
	fprintf(f, "sallyport_session_setup_seconds_sum %llu.%03llu\n",
	    (unsigned long long)(hist_sum_ms / 1000),
	    (unsigned long long)(hist_sum_ms % 1000));
	fprintf(f, "sallyport_session_setup_seconds_count %llu\n",
	    (unsigned long long)hist_count);
}

static void
render_edges(FILE *f)
{
	const struct aedge *e;
	size_t i, n = aedge_count(), up = 0;

	family(f, "sallyport_edge_up", "gauge",
	    "1 if the control channel to the edge is up.");
	for (i = 0; i < n; i++) {
		e = aedge_get(i);
		up += e->state == AE_READY;
		fputs("sallyport_edge_up{edge=\"", f);
		label(f, e->ce->str);
		fprintf(f, "\"} %d\n", e->state == AE_READY);
	}
	family(f, "sallyport_edges_connected", "gauge",
	    "Edges whose control channel is up.");
	fprintf(f, "sallyport_edges_connected %zu\n", up);
	family(f, "sallyport_control_reconnects_total", "counter",
	    "Control channels established again after the first.");
	for (i = 0; i < n; i++) {
		e = aedge_get(i);
		fputs("sallyport_control_reconnects_total{edge=\"", f);
		label(f, e->ce->str);
		fprintf(f, "\"} %llu\n", (unsigned long long)
		    (e->connects > 0 ? e->connects - 1 : 0));
	}
	family(f, "sallyport_edge_rtt_seconds", "gauge",
	    "Last heartbeat round-trip time to the edge.");
	for (i = 0; i < n; i++) {
		e = aedge_get(i);
		if (e->connects == 0)
			continue;
		fputs("sallyport_edge_rtt_seconds{edge=\"", f);
		label(f, e->ce->str);
		fprintf(f, "\"} %llu.%03llu\n", (unsigned long long)(e->rtt_ms / 1000),
		    (unsigned long long)(e->rtt_ms % 1000));
	}
	family(f, "sallyport_edge_violations_total", "counter",
	    "Frames from the edge that a correct edge never sends.");
	for (i = 0; i < n; i++) {
		e = aedge_get(i);
		fputs("sallyport_edge_violations_total{edge=\"", f);
		label(f, e->ce->str);
		fprintf(f, "\"} %llu\n", (unsigned long long)e->violations);
	}
}

/* The edges' own counters, one family per name, every edge that reported
 * it inside the family (the format wants a family's lines together). */
static void
render_edge_stats(FILE *f)
{
	struct stats_kv (*kv)[STATS_MAX];
	size_t nkv[CFG_MAX_EDGES], n = aedge_count(), i, j, k, l;
	const struct aedge *e;
	const char *why, *name;
	char fam[128];
	int seen;

	if ((kv = calloc(CFG_MAX_EDGES, sizeof(*kv))) == NULL)
		return;
	for (i = 0; i < n; i++) {
		e = aedge_get(i);
		nkv[i] = 0;
		if (e->stats[0] != '\0' && stats_parse(e->stats, strlen(e->stats),
		    kv[i], STATS_MAX, &nkv[i], &why) == -1)
			nkv[i] = 0;	/* checked on arrival; cannot happen */
	}
	for (i = 0; i < n; i++)
		for (j = 0; j < nkv[i]; j++) {
			name = kv[i][j].name;
			/* Emitted already, with an earlier edge? */
			seen = 0;
			for (k = 0; k < i && !seen; k++)
				for (l = 0; l < nkv[k] && !seen; l++)
					seen = strcmp(kv[k][l].name, name) == 0;
			if (seen)
				continue;
			snprintf(fam, sizeof(fam), "sallyport_edge_%s", name);
			family(f, fam, strlen(name) > 6 && strcmp(name +
			    strlen(name) - 6, "_total") == 0 ? "counter" : "gauge",
			    "Reported by the edge over the control channel.");
			for (k = i; k < n; k++)
				for (l = 0; l < nkv[k]; l++)
					if (strcmp(kv[k][l].name, name) == 0) {
						fprintf(f, "%s{edge=\"", fam);
						label(f, aedge_get(k)->ce->str);
						fprintf(f, "\"} %llu\n", (unsigned long long)
						    kv[k][l].value);
					}
		}
	free(kv);
}

static void
render_backends(FILE *f)
{
	const struct cfg_service *s;
	size_t i, j, up;

	family(f, "sallyport_backend_up", "gauge",
	    "0 if the last connection to the backend failed, else 1.");
	for (i = 0; i < agent_cfg.nservices; i++) {
		s = &agent_cfg.services[i];
		for (j = 0; j < s->nbackends; j++) {
			fputs("sallyport_backend_up{service=\"", f);
			label(f, s->name);
			fputs("\",backend=\"", f);
			label(f, s->backends[j].str);
			fprintf(f, "\"} %d\n", s->backends[j].st->health != BH_DOWN);
		}
	}
	family(f, "sallyport_backends_up", "gauge",
	    "Backends of the service not known to be down.");
	for (i = 0; i < agent_cfg.nservices; i++) {
		s = &agent_cfg.services[i];
		for (j = 0, up = 0; j < s->nbackends; j++)
			up += s->backends[j].st->health != BH_DOWN;
		fputs("sallyport_backends_up{service=\"", f);
		label(f, s->name);
		fprintf(f, "\"} %zu\n", up);
	}
}

/* Older agent processes that handed over to this one and still finish
 * their sessions (the edges' own come in their STATS). */
static void
render_draining(FILE *f)
{
	uint64_t procs, sessions;

	aho_old(&procs, &sessions);
	family(f, "sallyport_draining_processes", "gauge",
	    "Older agent processes still finishing their sessions.");
	fprintf(f, "sallyport_draining_processes %llu\n",
	    (unsigned long long)procs);
	family(f, "sallyport_draining_sessions", "gauge",
	    "Sessions those processes still carry.");
	fprintf(f, "sallyport_draining_sessions %llu\n",
	    (unsigned long long)sessions);
}

char *
metrics_render(size_t *len)
{
	char *text = NULL;
	FILE *f;

	if ((f = open_memstream(&text, len)) == NULL)
		return NULL;
	/* Configured services appear even before their first session. */
	for (size_t i = 0; i < agent_cfg.nservices; i++)
		(void)msvc_get(agent_cfg.services[i].name);
	render_sessions(f);
	render_edges(f);
	family(f, "sallyport_bans", "gauge", "Bans held by this agent "
	    "(expired ones go within a second).");
	fprintf(f, "sallyport_bans %zu\n", aban_count());
	render_backends(f);
	render_draining(f);
	render_edge_stats(f);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
