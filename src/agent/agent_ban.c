/* agent_ban.c - the operator's bans (agent_ban.h). */
#include "agent/agent_ban.h"
#include "agent/agent_sess.h"
#include "agent/agent_cfg.h"
#include "agent/agent_edge.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>

#define LINE_MAX_BAN	(BAN_STR_MAX + 48 + BAN_REASON_MAX)

static struct bantab tab;
static int inited;
static char file[PATH_MAX];
static uint64_t last_tick;

static uint64_t
now_s(void)
{
	return (uint64_t)time(NULL);
}

static void
tab_init(void)
{
	uint64_t seed;

	if (inited)
		return;
	if (RAND_bytes((uint8_t *)&seed, sizeof(seed)) != 1)
		log_fatal("RAND_bytes failed");
	bantab_init(&tab, seed, NULL);
	inited = 1;
}

/* --- ban_file -------------------------------------------------------------- */

struct writer {
	FILE	*f;
	uint64_t now;
};

static int
write_one(struct ban *b, void *arg)
{
	const struct aban *x = (const struct aban *)(void *)b;
	struct writer *w = arg;
	char r[BAN_STR_MAX];

	if (b->until != 0 && b->until <= w->now)
		return 0;
	ban_range_fmt(&b->c, r, sizeof(r));
	(void)fprintf(w->f, "%s %llu %llu %s\n", r,
	    (unsigned long long)b->until, (unsigned long long)x->created,
	    x->reason);
	return 0;
}

/* Write every ban to file: a temporary file beside it, synced, renamed
 * over it, the directory synced; a crash leaves the old list or the new
 * one. 1 saved, 0 not (logged), -1 no ban_file. */
static int
save(void)
{
	char tmp[PATH_MAX + 8], dir[PATH_MAX];
	struct writer w;
	int fd, dfd, ok;

	if (file[0] == '\0')
		return -1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1 ||
	    (w.f = fdopen(fd, "w")) == NULL) {
		log_err("ban_file %s: %s", tmp, strerror(errno));
		if (fd != -1)
			close(fd);
		return 0;
	}
	w.now = now_s();
	(void)fprintf(w.f, "# sallyport bans, written by the agent: RANGE UNTIL "
	    "CREATED REASON (seconds since 1970; UNTIL 0: until lifted)\n");
	(void)bantab_sweep(&tab, write_one, &w);
	ok = fflush(w.f) == 0 && fsync(fd) == 0;
	if (fclose(w.f) != 0)
		ok = 0;
	if (!ok || rename(tmp, file) == -1) {
		log_err("ban_file %s: %s", file, strerror(errno));
		(void)unlink(tmp);
		return 0;
	}
	snprintf(dir, sizeof(dir), "%s", file);
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 1;
}

/* Insert or change the ban of c. The ban, or NULL (too many: err). */
static struct aban *
put(const struct cidr *c, uint64_t until, uint64_t created,
    const char *reason, char *err, size_t errlen)
{
	struct aban *x = (struct aban *)(void *)bantab_find(&tab, c, 0);

	if (x == NULL) {
		if (tab.n >= ABAN_MAX) {
			snprintf(err, errlen, "%d bans held already", ABAN_MAX);
			return NULL;
		}
		if ((x = calloc(1, sizeof(*x))) == NULL) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		x->b.c = *c;
		if (bantab_add(&tab, &x->b) == -1) {
			free(x);
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
	}
	x->b.until = until;
	x->created = created;
	snprintf(x->reason, sizeof(x->reason), "%s", reason);
	return x;
}

int
aban_load(const char *path, char *err, size_t errlen)
{
	char line[LINE_MAX_BAN + 2], reason[BAN_REASON_MAX], e2[64];
	uint64_t until, created, now = now_s();
	const char *why;
	struct cidr c;
	size_t n, kept = 0;
	int lineno = 0, rc = -1;
	FILE *f;

	tab_init();
	snprintf(file, sizeof(file), "%s", path);
	if (file[0] == '\0')
		return 0;
	if ((f = fopen(file, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "ban_file %s: %s", file, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		n = strlen(line);
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		else if (!feof(f)) {
			snprintf(err, errlen, "ban_file %s:%d: line too long",
			    file, lineno);
			goto out;
		}
		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (ban_line_parse(line, &c, &until, &created, reason, &why) == -1) {
			snprintf(err, errlen, "ban_file %s:%d: %s", file, lineno,
			    why);
			goto out;
		}
		if (until != 0 && until <= now)
			continue;
		/* A hand-edited UNTIL far off: at most the longest ban, so
		 * that what the edges hear (u32 seconds) never wraps. */
		if (until != 0 && until - now > BAN_FOR_MAX)
			until = now + BAN_FOR_MAX;
		if (put(&c, until, created, reason, e2, sizeof(e2)) == NULL) {
			snprintf(err, errlen, "ban_file %s:%d: %s", file, lineno,
			    e2);
			goto out;
		}
		kept++;
	}
	log_info("ban_file %s: %zu bans in force", file, kept);
	rc = 0;
out:
	fclose(f);
	return rc;
}

/* --- changes ------------------------------------------------------------------ */

static void
push(uint16_t type, const struct cidr *c, uint32_t ttl, int cut)
{
	uint8_t rec[BAN_REC];
	struct msg m;

	ban_rec_put(rec, c, ttl);
	msg_init(&m, type);
	m.bans = rec;
	m.bans_len = BAN_REC;
	msg_have(&m, FA_BANS);
	if (cut)
		msg_set_int(&m, FA_BAN_CUT, 1);
	aedge_send_all(&m);
}

int
aban_add(const struct cidr *c, uint32_t secs, const char *reason, int cut,
    int *saved, char *err, size_t errlen)
{
	uint64_t now = now_s();
	char r[BAN_STR_MAX];

	tab_init();
	if (put(c, secs ? now + secs : 0, now, reason, err, errlen) == NULL)
		return -1;
	ban_range_fmt(c, r, sizeof(r));
	if (secs != 0)
		log_info("ban %s for %u s%s reason=\"%s\"", r, secs,
		    cut ? ", sessions cut" : "", reason);
	else
		log_info("ban %s until lifted%s reason=\"%s\"", r,
		    cut ? ", sessions cut" : "", reason);
	push(FT_BAN, c, secs, cut);
	if (cut)
		(void)asess_cut(c);
	*saved = save();
	return 0;
}

int
aban_lift(const struct cidr *c, int *saved)
{
	struct ban *b;
	char r[BAN_STR_MAX];

	tab_init();
	if ((b = bantab_find(&tab, c, 0)) == NULL ||
	    (b->until != 0 && b->until <= now_s()))
		return -1;
	bantab_del(&tab, b);
	ban_range_fmt(c, r, sizeof(r));
	log_info("ban %s lifted", r);
	push(FT_UNBAN, c, 0, 0);
	*saved = save();
	return 0;
}

struct each {
	void	(*fn)(const struct aban *, void *);
	void	*arg;
	uint64_t now;
};

static int
each_one(struct ban *b, void *arg)
{
	struct each *e = arg;

	if (b->until == 0 || b->until > e->now)
		e->fn((const struct aban *)(void *)b, e->arg);
	return 0;
}

void
aban_foreach(void (*fn)(const struct aban *, void *), void *arg)
{
	struct each e = { fn, arg, now_s() };

	(void)bantab_sweep(&tab, each_one, &e);
}

size_t
aban_count(void)
{
	return tab.n;
}

/* --- an edge connects ------------------------------------------------------------ */

struct collect {
	struct cidr	*v;
	size_t		 n;
};

static int
collect_one(struct ban *b, void *arg)
{
	struct collect *c = arg;

	c->v[c->n++] = b->c;
	return 0;
}

void
aban_edge_up(struct aedge *e)
{
	struct collect c = { NULL, 0 };

	aban_edge_down(e);
	/* Only the ranges: each is looked up again when its turn comes, so
	 * what changed meanwhile (sent at once) is not undone. */
	if (tab.n > 0 && (c.v = calloc(tab.n, sizeof(*c.v))) == NULL) {
		log_err("edge %s: cannot send the bans: out of memory",
		    e->ce->str);
		return;
	}
	(void)bantab_sweep(&tab, collect_one, &c);
	e->ban_sync = c.v;
	e->ban_nsync = c.n;
	e->ban_next = 0;
	e->ban_syncing = 1;
	aban_edge_tick(e);
}

void
aban_edge_tick(struct aedge *e)
{
	static uint8_t recs[BAN_FRAME_RECS * BAN_REC];
	uint64_t now = now_s();
	const struct ban *b;
	struct msg m;
	size_t k;

	while (e->ban_syncing && buf_len(&e->fc.out) < FCONN_OUT_MAX / 2) {
		for (k = 0; k < BAN_FRAME_RECS && e->ban_next < e->ban_nsync;
		    e->ban_next++) {
			b = bantab_find(&tab, &e->ban_sync[e->ban_next], 0);
			if (b == NULL || (b->until != 0 && b->until <= now))
				continue;
			ban_rec_put(recs + k++ * BAN_REC, &b->c, b->until == 0 ?
			    0 : (uint32_t)(b->until - now));
		}
		if (k > 0) {
			msg_init(&m, FT_BAN);
			m.bans = recs;
			m.bans_len = (uint32_t)(k * BAN_REC);
			msg_have(&m, FA_BANS);
		} else {
			msg_init(&m, FT_BAN_SYNC);
			log_info("edge %s: %zu bans sent", e->ce->str, e->ban_nsync);
			aban_edge_down(e);
		}
		if (fconn_send(&e->fc, &m) == -1)
			return;
	}
}

void
aban_edge_down(struct aedge *e)
{
	free(e->ban_sync);
	e->ban_sync = NULL;
	e->ban_nsync = e->ban_next = 0;
	e->ban_syncing = 0;
}

static int
expired(struct ban *b, void *arg)
{
	char r[BAN_STR_MAX];

	if (b->until == 0 || b->until > *(uint64_t *)arg)
		return 0;
	ban_range_fmt(&b->c, r, sizeof(r));
	log_info("ban %s expired", r);
	return 1;
}

void
aban_tick(void)
{
	uint64_t now = now_s();

	if (tab.n == 0 || now == last_tick)
		return;
	last_tick = now;
	(void)bantab_sweep(&tab, expired, &now);
}

void
aban_stop(void)
{
	bantab_clear(&tab);
}
