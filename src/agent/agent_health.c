/* agent_health.c - backend health checks.
 *
 * Every health_interval, each backend of a service with checks gets a
 * non-blocking TCP connect (through dial.c, like any other connection the
 * agent opens); the connection is closed as soon as it is up. A backend
 * that refuses, fails or does not answer within the interval (or the
 * connect time-out, if shorter) is marked down and skipped for new
 * sessions while another is up; the first check that connects puts it
 * back. Only changes are logged: "backend X down: why", "backend X up".
 * Sessions report their dials too (health_report), so the state is
 * also what the admin API and the metrics show. */
#include "agent/agent_backend.h"
#include "agent/dial.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct probe {
	struct dial		 dial;
	struct cfg_service	*svc;
	struct cfg_backend	*b;
	uint64_t		 next;		/* when the next check starts */
	uint64_t		 deadline;	/* while dialling: give up then */
};

static struct probe *probes;
static size_t nprobes;

static void
probe_done(struct dial *d, int fd, int err)
{
	struct probe *pr = d->arg;

	if (fd == -1) {
		health_report(pr->svc, pr->b, err);
		return;
	}
	close(fd);
	health_report(pr->svc, pr->b, 0);
}

static void
probe_start(struct probe *pr, uint64_t now)
{
	uint64_t limit = pr->svc->health_ms;

	if (agent_cfg.connect_timeout_ms < limit)
		limit = agent_cfg.connect_timeout_ms;
	pr->next = now + pr->svc->health_ms;
	pr->deadline = now + limit;
	if (dial_start(&pr->dial, &pr->b->addr, probe_done, pr) == -1)
		health_report(pr->svc, pr->b, errno);
}

void
health_start(void)
{
	struct cfg_service *svc;
	size_t i, j, n = 0;

	for (i = 0; i < agent_cfg.nservices; i++)
		if (agent_cfg.services[i].health_ms > 0)
			n += agent_cfg.services[i].nbackends;
	if (n == 0)
		return;
	if ((probes = calloc(n, sizeof(*probes))) == NULL)
		log_fatal("health checks: out of memory");
	for (i = 0; i < agent_cfg.nservices; i++) {
		svc = &agent_cfg.services[i];
		if (svc->health_ms == 0)
			continue;
		for (j = 0; j < svc->nbackends; j++) {
			probes[nprobes].svc = svc;
			probes[nprobes].b = &svc->backends[j];
			probes[nprobes].next = 0;	/* first check at once */
			nprobes++;
		}
	}
	log_info("health checks on %zu backends", nprobes);
}

void
health_tick(uint64_t now)
{
	struct probe *pr;
	size_t i;

	for (i = 0; i < nprobes; i++) {
		pr = &probes[i];
		if (pr->dial.active) {
			if (now < pr->deadline)
				continue;
			dial_cancel(&pr->dial);
			health_report(pr->svc, pr->b, ETIMEDOUT);
		}
		if (now >= pr->next)
			probe_start(pr, now);
	}
}

void
health_stop(void)
{
	size_t i;

	for (i = 0; i < nprobes; i++)
		dial_cancel(&probes[i].dial);
	free(probes);
	probes = NULL;
	nprobes = 0;
}
