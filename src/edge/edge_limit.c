/* edge_limit.c - limit counters and rate-limited limit logging. */
#include "edge/edge_limit.h"
#include "common/ev.h"
#include "common/frame.h"
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>

struct edge_limits lim = {
	.max_sessions = LIM_SESSIONS_DEFAULT, .max_pending = 1000,
	.max_per_ip = 256, .max_handshakes = 256, .handshake_ms = 10000,
	.claim_ms = 10000, .max_frame = FRAME_MAX, .max_links = 64,
	.max_bans = 262144,
};
uint64_t lim_counter[LIM_COUNT];

static uint64_t lim_last_log[LIM_COUNT];
static uint64_t lim_held[LIM_COUNT];

static const char *const lim_names[LIM_COUNT] = {
	[LIM_SESSIONS] = "sessions",
	[LIM_PENDING] = "pending",
	[LIM_PER_IP] = "per_ip",
	[LIM_CLAIM_TIMEOUT] = "claim_timeout",
	[LIM_HANDSHAKES] = "handshakes",
	[LIM_HANDSHAKE_TIMEOUT] = "handshake_timeout",
	[LIM_FRAME] = "frame",
	[LIM_IDLE] = "idle_timeout",
	[LIM_FDS] = "fds",
	[LIM_LINKS] = "links",
	[LIM_BANNED] = "banned",
	[LIM_BANS] = "bans",
};

const char *
lim_name(enum lim_kind k)
{
	return (unsigned)k < LIM_COUNT ? lim_names[k] : "?";
}

void
lim_hit(enum lim_kind k, const char *fmt, ...)
{
	char text[512], more[64] = "";
	uint64_t now = ev_now();
	va_list ap;

	lim_counter[k]++;
	if (lim_last_log[k] != 0 && now - lim_last_log[k] < 1000) {
		lim_held[k]++;
		return;
	}
	va_start(ap, fmt);
	(void)vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (lim_held[k] > 0)
		snprintf(more, sizeof(more), "and %llu more since the last "
		    "line; ", (unsigned long long)lim_held[k]);
	log_warn("limit %s hit: %s (%s%llu in all)", lim_name(k), text, more,
	    (unsigned long long)lim_counter[k]);
	lim_last_log[k] = now;
	lim_held[k] = 0;
}
