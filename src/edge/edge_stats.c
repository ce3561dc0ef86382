/* edge_stats.c - the edge's counters as a STATS frame (edge_stats.h). */
#include "edge/edge_stats.h"
#include "edge/edge_adm.h"
#include "edge/edge_ban.h"
#include "edge/edge_ftp.h"
#include "edge/edge_handover.h"
#include "edge/edge_limit.h"
#include "edge/edge_link.h"
#include "edge/edge_lis.h"
#include "edge/edge_sess.h"
#include "common/fconn.h"

#include <stdio.h>
#include <string.h>

struct edge_stats edge_stats;

int
estats_put(char *out, size_t outlen, const char *name, uint64_t value)
{
	size_t have = strnlen(out, outlen);
	int r;

	if (have >= outlen)
		return -1;
	r = snprintf(out + have, outlen - have, "%s%s=%llu", have ? " " : "",
	    name, (unsigned long long)value);
	if (r >= 0 && (size_t)r < outlen - have)
		return 0;
	out[have] = '\0';
	return -1;
}

void
estats_msg(struct msg *m)
{
	const struct { const char *name; uint64_t v; } kv[] = {
		{ "sessions_accepted_total", edge_stats.sessions_accepted },
		{ "sessions_joined_total", edge_stats.sessions_joined },
		{ "sessions_refused_total", edge_stats.sessions_refused },
		{ "sessions_agent_lost_total", edge_stats.sessions_agent_lost },
		{ "control_accepted_total", edge_stats.control_accepted },
		{ "control_refused_total", edge_stats.control_refused },
		{ "agents_connected", edge_stats.agents_connected },
		{ "data_links_refused_total", edge_stats.data_links_refused },
		{ "mux_links_total", edge_stats.links_mux },
		{ "plain_links_total", edge_stats.links_plain },
		{ "plain_links_reused_total", edge_stats.links_reused },
		{ "clients_tracked", adm_tracked() },
	};
	char name[64];
	size_t i;
	int k;

	msg_init(m, FT_STATS);
	msg_have(m, FA_STATS);
	/* A counter that does not fit is left out (the frame has room for
	 * far more than there are). */
	for (i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
		(void)estats_put(m->stats, sizeof(m->stats), kv[i].name, kv[i].v);
	esess_stats(m->stats, sizeof(m->stats));
	esvc_stats(m->stats, sizeof(m->stats));
	elink_stats(m->stats, sizeof(m->stats));
	eftp_stats(m->stats, sizeof(m->stats));
	eban_stats(m->stats, sizeof(m->stats));
	eho_stats(m->stats, sizeof(m->stats));
	/* How often each limit was hit: limit_sessions_total, ... */
	for (k = 0; k < LIM_COUNT; k++) {
		snprintf(name, sizeof(name), "limit_%s_total", lim_name(k));
		(void)estats_put(m->stats, sizeof(m->stats), name,
		    lim_counter[k] + (k == LIM_FRAME ? fconn_bad_frames : 0));
	}
}
