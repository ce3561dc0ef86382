/* fuzz_ctl.c - the agent's handling of a hostile edge's control frames
 * (ctl_check.c), against a model of what the agent asked.
 *
 * The input is a script of steps, each a byte and its arguments:
 *
 *   0  the agent sends PING, nonce from the next 2 bytes (+1)
 *   1  ... SVC_OPEN     2  ... STATS_REQ     3  ... OUT_POLICY
 *   4  time goes on by the next byte, in tens of milliseconds
 *   5+ the edge sends a frame: type (next byte % 24), length (2 bytes,
 *      cut to what is left), that many bytes of payload, decoded as the
 *      agent decodes frames
 *
 * The configuration has the services "sftp" and "ftp". The model keeps,
 * apart from ctl_check.c, what a correct edge may send: HELLO_OK first
 * (or ERROR) and never again; a PONG for one of the last two PINGs not
 * answered yet (answers come in order); one SVC_RESULT, STATS or
 * OUT_POLICY_OK per request; SESS_DENIED for a service of ours, a
 * reason the edge refuses for and a client address, at most 100 a
 * service in a second, DENIED_SUMMARY with a count, at most 2 a service
 * in a second; nothing of the agent's own frames, nor SESS_OPEN or
 * LINK_HELLO. For every frame the verdict must be exactly the model's:
 * taken when a correct edge could have sent it, refused otherwise, and
 * the connection dropped for the frames after which it must be. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ctl_check.h"
#include "agent/sess_check.h"
#include "agent/stats_parse.h"
#include "common/end.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cfg C;
static struct cfg_service SV[2];

struct model {
	int		 ready;
	uint64_t	 nonce[2];	/* newest first; 0: none */
	int		 answered[2];
	unsigned	 asked[3];	/* SVC_OPEN, STATS_REQ, OUT_POLICY */
	uint64_t	 second;
	unsigned	 denied[2], summaries[2];
};

static void
setup(void)
{
	snprintf(SV[0].name, sizeof(SV[0].name), "sftp");
	snprintf(SV[1].name, sizeof(SV[1].name), "ftp");
	C.services = SV;
	C.nservices = 2;
}

static int
svc_index(const char *name)
{
	return strcmp(name, "sftp") == 0 ? 0 : strcmp(name, "ftp") == 0 ? 1 : -1;
}

/* The verdict a correct edge's frame gets, from the model. */
static enum actl_verdict
expect(struct model *md, const struct msg *m, uint64_t now)
{
	struct sockaddr_storage ss;
	struct stats_kv kv[STATS_MAX];
	const char *why;
	size_t n;
	int i, k;

	if (!md->ready) {
		if (m->type == FT_HELLO_OK) {
			md->ready = 1;
			return ACTL_OK;
		}
		return m->type == FT_ERROR ? ACTL_OK : ACTL_DROP;
	}
	if (now / 1000 != md->second) {
		md->second = now / 1000;
		memset(md->denied, 0, sizeof(md->denied));
		memset(md->summaries, 0, sizeof(md->summaries));
	}
	switch (m->type) {
	case FT_ERROR:
	case FT_OUT_FAIL:
	case FT_FTP_DIAL_FAIL:
	case FT_DRAINING:
		return ACTL_OK;
	case FT_PONG:
		for (k = 0; k < 2; k++)
			if (md->nonce[k] != 0 && !md->answered[k] &&
			    md->nonce[k] == m->nonce) {
				/* it, and any older, are answered */
				for (i = k; i < 2; i++)
					md->answered[i] = 1;
				return ACTL_OK;
			}
		return ACTL_IGNORE;
	case FT_SVC_RESULT:
		if (svc_index(m->service) == -1 || md->asked[0] == 0)
			return ACTL_IGNORE;
		md->asked[0]--;
		return ACTL_OK;
	case FT_STATS:
		if (md->asked[1] == 0)
			return ACTL_IGNORE;
		md->asked[1]--;
		return stats_parse(m->stats, strlen(m->stats), kv, STATS_MAX, &n,
		    &why) == 0 ? ACTL_OK : ACTL_IGNORE;
	case FT_OUT_POLICY_OK:
		if (md->asked[2] == 0)
			return ACTL_IGNORE;
		md->asked[2]--;
		return ACTL_OK;
	case FT_DENIED_SUMMARY:
		if ((i = svc_index(m->service)) == -1 || m->count == 0 ||
		    md->summaries[i] >= 2)
			return ACTL_IGNORE;
		md->summaries[i]++;
		return ACTL_OK;
	case FT_SESS_DENIED:
		if ((i = svc_index(m->service)) == -1 ||
		    (m->end != SE_DENIED && m->end != SE_LIMIT &&
		    m->end != SE_TIMEOUT && m->end != SE_ERROR) ||
		    scheck_addr(m->client_addr, m->client_port, &ss) == -1 ||
		    md->denied[i] >= 100)
			return ACTL_IGNORE;
		md->denied[i]++;
		return ACTL_OK;
	default:
		return ACTL_DROP;
	}
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model md;
	struct actl *c;
	struct msg *m;
	const char *why;
	uint64_t now = 1000000, nonce;
	enum actl_verdict v, want;
	size_t pos = 0, len;
	uint8_t op, type;

	setup();
	c = calloc(1, sizeof(*c));
	m = malloc(sizeof(*m));
	if (c == NULL || m == NULL)
		goto out;
	memset(&md, 0, sizeof(md));
	while (pos < size) {
		op = data[pos++];
		if (op == 0 && size - pos >= 2) {
			nonce = (uint64_t)get16(data + pos) + 1;
			pos += 2;
			actl_asked(c, FT_PING, nonce);
			md.nonce[1] = md.nonce[0];
			md.answered[1] = md.answered[0];
			md.nonce[0] = nonce;
			md.answered[0] = 0;
		} else if (op >= 1 && op <= 3) {
			actl_asked(c, op == 1 ? FT_SVC_OPEN : op == 2 ?
			    FT_STATS_REQ : FT_OUT_POLICY, 0);
			if (md.asked[op - 1] < ACTL_ASKED_MAX)
				md.asked[op - 1]++;
		} else if (op == 4 && pos < size) {
			now += 10u * data[pos++];
		} else if (op >= 5 && size - pos >= 3) {
			type = data[pos] % 24;
			len = get16(data + pos + 1);
			pos += 3;
			if (len > size - pos)
				len = size - pos;
			if (msg_decode(type, data + pos, len, m, &why) == 0) {
				v = actl_frame(c, &C, m, now, &why);
				want = expect(&md, m, now);
				if (v != want)
					abort();
				if (v != ACTL_OK && why == NULL)
					abort();
			}
			pos += len;
		}
		if (c->svc_asked > ACTL_ASKED_MAX || c->stats_asked >
		    ACTL_ASKED_MAX || c->policy_asked > ACTL_ASKED_MAX)
			abort();
	}
out:
	free(c);
	free(m);
	return 0;
}
