/* agent_metrics.h - the agent's counters, and their Prometheus text
 * exposition; the edges' own counters arrive in STATS frames. */
#ifndef SP_AGENT_METRICS_H
#define SP_AGENT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/end.h"

void	metrics_sess_open(const char *svc);
void	metrics_sess_joined(uint64_t setup_ms);
void	metrics_sess_end(const char *svc, enum sess_end how,
	    uint64_t to_backend, uint64_t to_client);
/* The exposition text, malloc'd (the caller frees), or NULL. */
char	*metrics_render(size_t *len);
void	metrics_free(void);

#endif
