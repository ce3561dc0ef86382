/* agent_backend.c - the backends' run-time state (agent_backend.h). */
#include "agent/agent_backend.h"
#include "common/ev.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct bstate *states;

static struct bstate *
state_get(const char *svc, const char *str)
{
	struct bstate *b;

	for (b = states; b != NULL; b = b->next)
		if (strcmp(b->svc, svc) == 0 && strcmp(b->str, str) == 0) {
			b->refs++;
			return b;
		}
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	snprintf(b->svc, sizeof(b->svc), "%s", svc);
	snprintf(b->str, sizeof(b->str), "%s", str);
	b->refs = 1;
	b->next = states;
	states = b;
	return b;
}

static void
state_put(struct bstate *b)
{
	struct bstate **pp;

	if (b == NULL || --b->refs > 0)
		return;
	for (pp = &states; *pp != NULL; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	free(b);
}

int
backend_bind(struct cfg_service *arr, size_t n)
{
	struct cfg_service *s;
	size_t i, j;

	for (i = 0; i < n; i++) {
		s = &arr[i];
		for (j = 0; j < s->nbackends; j++)
			if ((s->backends[j].st = state_get(s->name,
			    s->backends[j].str)) == NULL) {
				backend_unbind(arr, n);
				return -1;
			}
	}
	return 0;
}

void
backend_unbind(struct cfg_service *arr, size_t n)
{
	struct cfg_service *s;
	size_t i, j;

	for (i = 0; i < n; i++) {
		s = &arr[i];
		for (j = 0; j < s->nbackends; j++) {
			state_put(s->backends[j].st);
			s->backends[j].st = NULL;
		}
	}
}

void
backend_hold(struct bstate *b)
{
	b->refs++;
	b->active++;
}

void
backend_release(struct bstate *b)
{
	if (b == NULL)
		return;
	if (b->active > 0)
		b->active--;
	state_put(b);
}

int
health_down(const struct cfg_service *svc, const struct cfg_backend *b)
{
	/* Without checks nothing would ever put a backend back, so the
	 * recorded outcome informs the operator (status, metrics) only. */
	return svc->health_ms > 0 && b->st->health == BH_DOWN;
}

int
backend_pick(const struct cfg_service *svc, uint32_t tried, size_t start)
{
	const struct cfg_backend *b, *best = NULL;
	size_t k, i, n = svc->nbackends;
	int besti = -1, down, best_down = 0;

	/* start is the edge's session id: reduced first, so that one near
	 * 2^64 cannot wrap and visit a backend twice and another never. */
	start = n > 0 ? start % n : 0;
	for (k = 0; k < n; k++) {
		i = (start + k) % n;
		if (tried & (1u << i))
			continue;
		b = &svc->backends[i];
		down = health_down(svc, b);
		if (best == NULL || down < best_down ||
		    (down == best_down && b->st->active < best->st->active)) {
			best_down = down;
			best = b;
			besti = (int)i;
		}
	}
	return besti;
}

void
health_report(const struct cfg_service *svc, const struct cfg_backend *b,
    int err)
{
	enum backend_health h = err == 0 ? BH_UP : BH_DOWN;
	struct bstate *st = b->st;
	int was_down = st->health == BH_DOWN;

	if (err != 0)
		snprintf(st->last_error, sizeof(st->last_error), "%s",
		    strerror(err));
	if (h == st->health)
		return;
	st->health = h;
	st->health_at = ev_now();
	if (svc->health_ms == 0)
		return;
	if (h == BH_DOWN)
		log_warn("service %s: backend %s down: %s", svc->name, b->str,
		    st->last_error);
	else if (was_down)
		log_info("service %s: backend %s up", svc->name, b->str);
}
