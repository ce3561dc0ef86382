/* fuzz_sess.c - the agent's check of a SESS_OPEN from a hostile edge
 * (sess_check.c), and the backend it would dial for what passes.
 *
 * The first input byte's bit 0 says whether the agent has [outbound];
 * the rest is one whole frame, decoded as the agent decodes it. The
 * configuration is fixed: "echo" (TCP, two backends, inside ranges
 * denied), "ftp" (FTP, passive 50000-50099, only 192.0.2.0/24 and
 * 2001:db8::/32 allowed, one backend), "web" (TCP, no policy, three
 * backends). Whatever the frame, what must hold:
 *
 *   - a refusal says why and names no service;
 *   - a session that passes is of its kind's needs, names a service of
 *     the configuration by its own name, has a client address that is
 *     one (a family, the port it said, not unspecified, multicast or
 *     broadcast), that the service's deny list does not hold and its
 *     allow list does; FTP data only for "ftp", on a port of its range;
 *     outbound only with [outbound], to a numeric address and port;
 *   - every backend the agent would dial for it (backend_pick, until it
 *     has tried them all) is a backend of that service in the
 *     configuration, each at most once, and nothing from the frame is
 *     ever a dialled address.
 *
 * The same bytes, as text, also go through scheck_addr and scheck_dest,
 * whose yes must survive an independent look. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_backend.h"
#include "agent/sess_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cfg C;
static struct cfg_service SV[3];

static void
backend(struct cfg_service *s, const char *ip, uint16_t port)
{
	struct cfg_backend *b = &s->backends[s->nbackends++];
	struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&b->addr.ss;

	snprintf(b->str, sizeof(b->str), "%s:%u", ip, port);
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1)
		abort();
}

static void
setup(void)
{
	static int done;

	if (done)
		return;
	done = 1;
	snprintf(SV[0].name, sizeof(SV[0].name), "echo");
	snprintf(SV[0].listen, sizeof(SV[0].listen), "127.0.0.1:7000");
	snprintf(SV[0].deny, sizeof(SV[0].deny),
	    "10.0.0.0/8, 172.16.0.0/12, fc00::/7");
	backend(&SV[0], "127.0.0.1", 7001);
	backend(&SV[0], "127.0.0.1", 7002);
	snprintf(SV[1].name, sizeof(SV[1].name), "ftp");
	snprintf(SV[1].listen, sizeof(SV[1].listen), "127.0.0.1:2121");
	snprintf(SV[1].allow, sizeof(SV[1].allow),
	    "192.0.2.0/24, 2001:db8::/32");
	SV[1].proto = SVC_FTP;
	SV[1].pasv_min = 50000;
	SV[1].pasv_max = 50099;
	SV[1].active = 1;
	backend(&SV[1], "127.0.0.1", 7021);
	snprintf(SV[2].name, sizeof(SV[2].name), "web");
	snprintf(SV[2].listen, sizeof(SV[2].listen), "127.0.0.1:8080");
	backend(&SV[2], "127.0.0.1", 7081);
	backend(&SV[2], "127.0.0.2", 7082);
	backend(&SV[2], "127.0.0.3", 7083);
	C.services = SV;
	C.nservices = 3;
	if (backend_bind(SV, 3) == -1)
		abort();
}

/* The 16-byte form's IPv4 part, if it has one. */
static const uint8_t *
v4_of(const struct sockaddr_storage *ss, uint8_t buf[4])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };
	const struct sockaddr_in *s4 = (const void *)ss;
	const struct sockaddr_in6 *s6 = (const void *)ss;

	if (ss->ss_family == AF_INET) {
		memcpy(buf, &s4->sin_addr, 4);
		return buf;
	}
	if (memcmp(&s6->sin6_addr, mapped, 12) == 0) {
		memcpy(buf, (const uint8_t *)&s6->sin6_addr + 12, 4);
		return buf;
	}
	return NULL;
}

/* An address a TCP peer can have, looked at without sess_check.c. */
static void
check_peer(const struct sockaddr_storage *ss, uint16_t port)
{
	const struct sockaddr_in *s4 = (const void *)ss;
	const struct sockaddr_in6 *s6 = (const void *)ss;
	static const uint8_t zero[16];
	uint8_t b[4];
	const uint8_t *v4;

	if (ss->ss_family == AF_INET) {
		if (ntohs(s4->sin_port) != port)
			abort();
	} else if (ss->ss_family == AF_INET6) {
		if (ntohs(s6->sin6_port) != port)
			abort();
		if (s6->sin6_addr.s6_addr[0] == 0xff ||
		    memcmp(&s6->sin6_addr, zero, 16) == 0)
			abort();
	} else
		abort();
	if (port == 0)
		abort();
	if ((v4 = v4_of(ss, b)) != NULL && (v4[0] == 0 ||
	    (v4[0] >= 224 && v4[0] <= 239) ||
	    (v4[0] == 255 && v4[1] == 255 && v4[2] == 255 && v4[3] == 255)))
		abort();
}

/* The policies of the fixed configuration, by hand. */
static void
check_policy(const struct cfg_service *svc, const struct sockaddr_storage *ss)
{
	const struct sockaddr_in6 *s6 = (const void *)ss;
	uint8_t b[4];
	const uint8_t *v4 = v4_of(ss, b);
	const uint8_t *a6 = ss->ss_family == AF_INET6 && v4 == NULL ?
	    s6->sin6_addr.s6_addr : NULL;

	if (svc == &SV[0]) {
		if (v4 != NULL && (v4[0] == 10 || (v4[0] == 172 &&
		    (v4[1] & 0xf0) == 16)))
			abort();
		if (a6 != NULL && (a6[0] & 0xfe) == 0xfc)
			abort();
	}
	if (svc == &SV[1]) {
		if (v4 != NULL && !(v4[0] == 192 && v4[1] == 0 && v4[2] == 2))
			abort();
		if (a6 != NULL && !(a6[0] == 0x20 && a6[1] == 0x01 &&
		    a6[2] == 0x0d && a6[3] == 0xb8))
			abort();
	}
}

/* The backends a session of svc would dial, one after another. */
static void
check_dials(const struct cfg_service *svc, const struct sockaddr_storage *client,
    size_t start)
{
	uint32_t tried = 0;
	size_t n = 0;
	int i;

	while ((i = backend_pick(svc, tried, start)) != -1) {
		if (i < 0 || (size_t)i >= svc->nbackends || (tried & (1u << i)))
			abort();
		tried |= 1u << i;
		if (++n > svc->nbackends)
			abort();
		/* the address dialled is the configuration's, never the
		 * client's that the edge named */
		if (memcmp(&svc->backends[i].addr.ss, client,
		    sizeof(*client)) == 0)
			abort();
	}
	if (n != svc->nbackends)
		abort();
}

static void
check_text(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	char s[MSG_ADDR_MAX];
	const char *colon;
	size_t n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;

	memcpy(s, data, n);
	s[n] = '\0';
	if (scheck_addr(s, 443, &ss) == 0)
		check_peer(&ss, 443);
	if (scheck_dest(s) == 0) {
		if ((colon = strrchr(s, ':')) == NULL || colon[1] == '0' ||
		    atol(colon + 1) < 1 || atol(colon + 1) > 65535)
			abort();
		if ((s[0] == '[') != (strchr(s, ']') != NULL))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scheck r;
	const char *why;
	struct msg *m;

	setup();
	if (size < 1)
		return 0;
	C.out.line = data[0] & 1;
	check_text(data + 1, size - 1);
	if ((m = malloc(sizeof(*m))) == NULL)
		return 0;
	if (msg_decode_frame(data + 1, size - 1, m, &why) == -1)
		goto out;
	if (scheck_open(&C, m, &r) == -1) {
		if (r.why == NULL || r.svc != NULL)
			abort();
		goto out;
	}
	if (m->type != FT_SESS_OPEN)
		abort();
	if (m->sess_kind == SK_OUTBOUND) {
		if (!C.out.line || !(m->have & FA_BIT(FA_REQUEST)) ||
		    !(m->have & FA_BIT(FA_DEST_ADDR)) || r.svc != NULL)
			abort();
		goto out;
	}
	if (r.svc == NULL || r.svc < SV || r.svc >= SV + 3 ||
	    strcmp(r.svc->name, m->service) != 0)
		abort();
	check_peer(&r.client, m->client_port);
	if (r.local.ss_family != 0)
		check_peer(&r.local, m->local_port);
	check_policy(r.svc, &r.client);
	if (m->sess_kind == SK_FTP_DATA) {
		if (r.svc != &SV[1] || m->ftp_port < 50000 || m->ftp_port > 50099)
			abort();
	} else if (m->sess_kind == SK_FTP_ACTIVE) {
		/* the backend is the one waiting: nothing is dialled */
		if (r.svc != &SV[1] || !(m->have & FA_BIT(FA_REQUEST)) ||
		    !(m->have & FA_BIT(FA_FTP_CTL)))
			abort();
	} else if (m->sess_kind == SK_CLIENT)
		check_dials(r.svc, &r.client, (size_t)m->session);
	else
		abort();
out:
	free(m);
	return 0;
}
