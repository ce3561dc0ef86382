/* test_check.c - what the agent makes of a hostile edge's word: a
 * SESS_OPEN against the configuration (sess_check.c) and control frames
 * against what the agent asked (ctl_check.c), with good and hostile
 * input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "agent/ctl_check.h"
#include "agent/sess_check.h"
#include "common/end.h"

static struct cfg C;
static struct cfg_service SV[2];

static void
setup_cfg(void)
{
	memset(&C, 0, sizeof(C));
	memset(SV, 0, sizeof(SV));
	snprintf(SV[0].name, sizeof(SV[0].name), "echo");
	snprintf(SV[0].deny, sizeof(SV[0].deny), "10.0.0.0/8, fc00::/7");
	snprintf(SV[1].name, sizeof(SV[1].name), "ftp");
	snprintf(SV[1].allow, sizeof(SV[1].allow), "192.0.2.0/24");
	SV[1].proto = SVC_FTP;
	SV[1].pasv_min = 50000;
	SV[1].pasv_max = 50009;
	C.services = SV;
	C.nservices = 2;
}

static void
client(struct msg *m, uint8_t kind, const char *svc, const char *addr,
    uint16_t port)
{
	msg_init(m, FT_SESS_OPEN);
	msg_set_int(m, FA_SESSION, 1);
	msg_set_int(m, FA_SESS_KIND, kind);
	msg_set_str(m, FA_SERVICE, svc);
	msg_set_str(m, FA_CLIENT_ADDR, addr);
	msg_set_int(m, FA_CLIENT_PORT, port);
}

static void
test_addresses(void **state)
{
	static const char *const good[] = { "192.0.2.1", "127.0.0.1", "::1",
	    "2001:db8::1", "::ffff:192.0.2.1", "1.0.0.0", "223.255.255.255",
	    "255.255.255.254" };
	static const char *const bad[] = { "", "0.0.0.0", "0.1.2.3", "::",
	    "224.0.0.1", "239.255.255.255", "255.255.255.255", "ff02::1",
	    "::ffff:0.0.0.0", "::ffff:224.0.0.5", "::192.0.2.1", "::2",
	    "localhost", "192.0.2.1:80", "192.0.2.1 ", " 192.0.2.1",
	    "fe80::1%lo", "[::1]", "1.2.3", "192.0.2.256", "0x7f.1" };
	struct sockaddr_storage ss;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(scheck_addr(good[i], 1, &ss), 0);
		assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(scheck_addr(bad[i], 1, &ss), -1);
		assert_int_equal(ss.ss_family, 0);
	}
	assert_int_equal(scheck_addr("192.0.2.1", 0, &ss), -1);
}

static void
test_destinations(void **state)
{
	static const char *const good[] = { "198.51.100.9:443", "[::1]:22",
	    "[2001:db8::1]:65535", "127.0.0.1:1" };
	static const char *const bad[] = { "", ":443", "198.51.100.9",
	    "198.51.100.9:", "198.51.100.9:0", "198.51.100.9:65536",
	    "198.51.100.9:044", "198.51.100.9:443x", "::1:22", "[::1]22",
	    "[198.51.100.9]:443", "files.example.net:443", "[::1]:-1",
	    "0.0.0.0:443", "[::]:443", "224.0.0.1:443", "[",
	    "198.51.100.9:+443" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(scheck_dest(good[i]), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(scheck_dest(bad[i]), -1);
}

static void
test_sess_open(void **state)
{
	struct scheck r;
	struct msg m;

	(void)state;
	setup_cfg();
	client(&m, SK_CLIENT, "echo", "192.0.2.7", 5555);
	assert_int_equal(scheck_open(&C, &m, &r), 0);
	assert_ptr_equal(r.svc, &SV[0]);
	assert_int_equal(r.client.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)(void *)&r.client)->
	    sin_port), 5555);
	assert_int_equal(r.local.ss_family, 0);
	/* a local address needs its port, and must be one */
	msg_set_str(&m, FA_LOCAL_ADDR, "198.51.100.1");
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	msg_set_int(&m, FA_LOCAL_PORT, 22);
	assert_int_equal(scheck_open(&C, &m, &r), 0);
	assert_int_equal(r.local.ss_family, AF_INET);
	msg_set_str(&m, FA_LOCAL_ADDR, "0.0.0.0");
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	assert_null(r.svc);
	/* services and policies */
	client(&m, SK_CLIENT, "nosuch", "192.0.2.7", 5555);
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	assert_non_null(strstr(r.why, "does not offer"));
	client(&m, SK_CLIENT, "echo", "10.9.8.7", 5555);
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	assert_non_null(strstr(r.why, "policy refuses"));
	client(&m, SK_CLIENT, "echo", "::ffff:10.9.8.7", 5555);
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	client(&m, SK_CLIENT, "echo", "fd12::1", 5555);
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	client(&m, SK_CLIENT, "ftp", "198.51.100.1", 5555);
	assert_int_equal(scheck_open(&C, &m, &r), -1);	/* not allowed */
	client(&m, SK_CLIENT, "ftp", "192.0.2.1", 5555);
	assert_int_equal(scheck_open(&C, &m, &r), 0);
	/* what the kind needs */
	msg_init(&m, FT_SESS_OPEN);
	msg_set_int(&m, FA_SESSION, 1);
	msg_set_int(&m, FA_SESS_KIND, SK_CLIENT);
	msg_set_str(&m, FA_SERVICE, "echo");
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	assert_non_null(strstr(r.why, "what its kind needs"));
	/* not a SESS_OPEN */
	client(&m, SK_CLIENT, "echo", "192.0.2.7", 5555);
	m.type = FT_SESS_DENIED;
	assert_int_equal(scheck_open(&C, &m, &r), -1);
}

static void
test_ftp_data(void **state)
{
	struct scheck r;
	struct msg m;

	(void)state;
	setup_cfg();
	client(&m, SK_FTP_DATA, "ftp", "192.0.2.7", 5555);
	msg_set_int(&m, FA_FTP_CTL, 3);
	assert_int_equal(scheck_open(&C, &m, &r), -1);	/* no port */
	msg_set_int(&m, FA_FTP_PORT, 50000);
	assert_int_equal(scheck_open(&C, &m, &r), 0);
	msg_set_int(&m, FA_FTP_PORT, 50009);
	assert_int_equal(scheck_open(&C, &m, &r), 0);
	msg_set_int(&m, FA_FTP_PORT, 50010);
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	assert_non_null(strstr(r.why, "outside the service's passive range"));
	msg_set_int(&m, FA_FTP_PORT, 49999);
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	msg_set_str(&m, FA_SERVICE, "echo");
	msg_set_int(&m, FA_FTP_PORT, 50001);
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	assert_non_null(strstr(r.why, "not FTP"));
}

/* Active mode: an FTP service that takes it, with the request and the
 * control session that asked for it. */
static void
test_ftp_active(void **state)
{
	struct scheck r;
	struct msg m;

	(void)state;
	setup_cfg();
	client(&m, SK_FTP_ACTIVE, "ftp", "192.0.2.7", 40000);
	msg_set_int(&m, FA_FTP_CTL, 3);
	assert_int_equal(scheck_open(&C, &m, &r), -1);	/* no request */
	assert_non_null(strstr(r.why, "without what its kind needs"));
	msg_set_int(&m, FA_REQUEST, 5);
	assert_int_equal(scheck_open(&C, &m, &r), -1);	/* not active */
	assert_non_null(strstr(r.why, "without active mode"));
	SV[1].active = 1;
	assert_int_equal(scheck_open(&C, &m, &r), 0);
	assert_ptr_equal(r.svc, &SV[1]);
	msg_set_str(&m, FA_SERVICE, "echo");
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	assert_non_null(strstr(r.why, "without active mode"));
}

static void
test_outbound(void **state)
{
	struct scheck r;
	struct msg m;

	(void)state;
	setup_cfg();
	msg_init(&m, FT_SESS_OPEN);
	msg_set_int(&m, FA_SESSION, 1);
	msg_set_int(&m, FA_SESS_KIND, SK_OUTBOUND);
	msg_set_int(&m, FA_REQUEST, 9);
	msg_set_str(&m, FA_DEST_ADDR, "198.51.100.9:443");
	assert_int_equal(scheck_open(&C, &m, &r), -1);	/* no [outbound] */
	assert_non_null(strstr(r.why, "no [outbound]"));
	C.out.line = 12;
	assert_int_equal(scheck_open(&C, &m, &r), 0);
	assert_null(r.svc);
	msg_set_str(&m, FA_DEST_ADDR, "evil.example:443");
	assert_int_equal(scheck_open(&C, &m, &r), -1);
	m.have &= ~FA_BIT(FA_DEST_ADDR);
	assert_int_equal(scheck_open(&C, &m, &r), -1);
}

static enum actl_verdict
frame_verdict(struct actl *c, struct msg *m, uint64_t now, const char **why)
{
	*why = NULL;
	return actl_frame(c, &C, m, now, why);
}

static void
test_control_order(void **state)
{
	struct actl c;
	struct msg m;
	const char *why;

	(void)state;
	setup_cfg();
	memset(&c, 0, sizeof(c));
	/* only HELLO_OK (or ERROR) first */
	msg_init(&m, FT_PONG);
	m.nonce = 1;
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_DROP);
	msg_init(&m, FT_ERROR);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	msg_init(&m, FT_HELLO_OK);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_DROP);
	assert_non_null(strstr(why, "HELLO_OK again"));
	/* the agent's own frames, and data-link frames, drop it */
	msg_init(&m, FT_SESS_OPEN);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_DROP);
	msg_init(&m, FT_SVC_OPEN);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_DROP);
	msg_init(&m, FT_LINK_HELLO);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_DROP);
	msg_init(&m, FT_FTP_DIAL);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_DROP);
	/* failures of requests (checked where they wait), a hand-over */
	msg_init(&m, FT_FTP_DIAL_FAIL);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	msg_init(&m, FT_DRAINING);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	msg_init(&m, FT_ERROR);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
}

static void
test_control_replies(void **state)
{
	struct actl c;
	struct msg m;
	const char *why;

	(void)state;
	setup_cfg();
	memset(&c, 0, sizeof(c));
	c.ready = 1;
	/* PONG: of the last two PINGs, in order, once */
	msg_init(&m, FT_PONG);
	m.nonce = 5;
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	actl_asked(&c, FT_PING, 5);
	actl_asked(&c, FT_PING, 6);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	m.nonce = 6;
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	actl_asked(&c, FT_PING, 7);
	actl_asked(&c, FT_PING, 8);
	actl_asked(&c, FT_PING, 9);
	m.nonce = 7;		/* three behind: forgotten */
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	m.nonce = 9;		/* the newest answers the older too */
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	m.nonce = 8;
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	/* one answer per request, for a service of ours */
	msg_init(&m, FT_SVC_RESULT);
	msg_set_str(&m, FA_SERVICE, "echo");
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	actl_asked(&c, FT_SVC_OPEN, 0);
	msg_set_str(&m, FA_SERVICE, "nosuch");
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	msg_set_str(&m, FA_SERVICE, "echo");
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	msg_init(&m, FT_STATS);
	msg_set_str(&m, FA_STATS, "a_total=1");
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	actl_asked(&c, FT_STATS_REQ, 0);
	actl_asked(&c, FT_STATS_REQ, 0);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	msg_set_str(&m, FA_STATS, "a_total=01");
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	msg_init(&m, FT_OUT_POLICY_OK);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
	actl_asked(&c, FT_OUT_POLICY, 0);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_OK);
	assert_int_equal(frame_verdict(&c, &m, 1000, &why), ACTL_IGNORE);
}

static void
denied(struct msg *m, const char *svc, uint8_t end, const char *addr)
{
	msg_init(m, FT_SESS_DENIED);
	msg_set_int(m, FA_SESSION, 3);
	msg_set_str(m, FA_SERVICE, svc);
	msg_set_str(m, FA_CLIENT_ADDR, addr);
	msg_set_int(m, FA_CLIENT_PORT, 4444);
	msg_set_int(m, FA_END, end);
	msg_set_str(m, FA_TEXT, "policy");
}

static void
test_control_refusals(void **state)
{
	struct actl c;
	struct msg m;
	const char *why;
	int i;

	(void)state;
	setup_cfg();
	memset(&c, 0, sizeof(c));
	c.ready = 1;
	denied(&m, "echo", SE_DENIED, "198.51.100.1");
	assert_int_equal(frame_verdict(&c, &m, 5000, &why), ACTL_OK);
	denied(&m, "nosuch", SE_DENIED, "198.51.100.1");
	assert_int_equal(frame_verdict(&c, &m, 5000, &why), ACTL_IGNORE);
	denied(&m, "echo", SE_CLIENT_CLOSED, "198.51.100.1");
	assert_int_equal(frame_verdict(&c, &m, 5000, &why), ACTL_IGNORE);
	denied(&m, "echo", SE_REFUSED, "198.51.100.1");
	assert_int_equal(frame_verdict(&c, &m, 5000, &why), ACTL_IGNORE);
	denied(&m, "echo", SE_LIMIT, "evil.example");
	assert_int_equal(frame_verdict(&c, &m, 5000, &why), ACTL_IGNORE);
	denied(&m, "echo", SE_TIMEOUT, "::");
	assert_int_equal(frame_verdict(&c, &m, 5000, &why), ACTL_IGNORE);
	/* at most ACTL_DENIED_PER_S a service in a second */
	denied(&m, "echo", SE_ERROR, "198.51.100.1");
	for (i = 1; i < ACTL_DENIED_PER_S; i++)
		assert_int_equal(frame_verdict(&c, &m, 5000, &why), ACTL_OK);
	assert_int_equal(frame_verdict(&c, &m, 5999, &why), ACTL_IGNORE);
	denied(&m, "ftp", SE_ERROR, "198.51.100.1");	/* another service */
	assert_int_equal(frame_verdict(&c, &m, 5999, &why), ACTL_OK);
	denied(&m, "echo", SE_ERROR, "198.51.100.1");
	assert_int_equal(frame_verdict(&c, &m, 6000, &why), ACTL_OK);
	/* summaries: of something, twice a second at most */
	msg_init(&m, FT_DENIED_SUMMARY);
	msg_set_str(&m, FA_SERVICE, "echo");
	msg_set_int(&m, FA_COUNT, 0);
	assert_int_equal(frame_verdict(&c, &m, 7000, &why), ACTL_IGNORE);
	msg_set_int(&m, FA_COUNT, 17);
	assert_int_equal(frame_verdict(&c, &m, 7000, &why), ACTL_OK);
	assert_int_equal(frame_verdict(&c, &m, 7000, &why), ACTL_OK);
	assert_int_equal(frame_verdict(&c, &m, 7000, &why), ACTL_IGNORE);
	assert_int_equal(frame_verdict(&c, &m, 8000, &why), ACTL_OK);
}

static void
test_control_saturates(void **state)
{
	struct actl c;
	int i;

	(void)state;
	memset(&c, 0, sizeof(c));
	for (i = 0; i < 3 * ACTL_ASKED_MAX; i++)
		actl_asked(&c, FT_STATS_REQ, 0);
	assert_int_equal(c.stats_asked, ACTL_ASKED_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addresses),
		cmocka_unit_test(test_destinations),
		cmocka_unit_test(test_sess_open),
		cmocka_unit_test(test_ftp_data),
		cmocka_unit_test(test_ftp_active),
		cmocka_unit_test(test_outbound),
		cmocka_unit_test(test_control_order),
		cmocka_unit_test(test_control_replies),
		cmocka_unit_test(test_control_refusals),
		cmocka_unit_test(test_control_saturates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
