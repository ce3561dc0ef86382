/* frame.h - the protocol's frame codec (docs/protocol.md).
 *
 * Pure functions over byte arrays: no I/O, no allocation, so the decoder
 * can be unit-tested and fuzzed on its own. Both daemons decode what the
 * other sends with it: the edge treats an agent, and the agent an edge,
 * as a peer that may be hostile. */
#ifndef SP_FRAME_H
#define SP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define FRAME_VERSION	1
#define FRAME_HDR	8
#define FRAME_MAX	65536		/* payload bytes */
#define FRAME_KEY	32		/* LINK_KEY and PROOF */

/* In the order a session happens (docs/protocol.md). */
enum frame_type {
	/* the control connection */
	FT_HELLO = 1,		/* agent: VERSION, NAME, [DATA_LINK] */
	FT_HELLO_OK = 2,	/* edge: VERSION, NAME, LINK_KEY, KEY_ID */
	FT_ERROR = 3,		/* either: TEXT, then the sender closes */
	FT_SVC_OPEN = 4,	/* agent: a service and its policy */
	FT_SVC_RESULT = 5,	/* edge: SERVICE, STATUS, [TEXT] */
	FT_SVC_CLOSE = 6,	/* agent: SERVICE */
	FT_PING = 7,		/* agent: NONCE */
	FT_PONG = 8,		/* edge: NONCE */
	FT_STATS_REQ = 9,	/* agent */
	FT_STATS = 10,		/* edge: STATS */
	/* data links, and the one way a session starts */
	FT_LINK_HELLO = 11,	/* agent, first frame of a data link */
	FT_SESS_OPEN = 12,	/* edge, on a data link: a session */
	/* what the edge refused by itself */
	FT_SESS_DENIED = 13,	/* edge: a client refused at accept */
	FT_DENIED_SUMMARY = 14,	/* edge: how many more were */
	/* FTP: the passive ports of a control session */
	FT_FTP_PORTS = 15,	/* agent: SESSION, PASV_MIN, PASV_MAX */
	/* outbound */
	FT_OUT_POLICY = 16,	/* agent: OUT_ALLOW */
	FT_OUT_POLICY_OK = 17,	/* edge: STATUS, [TEXT] */
	FT_OUT_REQ = 18,	/* agent: REQUEST, DEST_HOST, DEST_PORT */
	FT_OUT_FAIL = 19,	/* edge: REQUEST, OUT_CODE, [TEXT] */
	/* bans (ban.h) */
	FT_BAN = 20,		/* agent: BANS, [BAN_CUT] */
	FT_UNBAN = 21,		/* agent: BANS */
	FT_BAN_SYNC = 22,	/* agent: its whole list has been sent */
	/* hand-over (hosock.h): a new process takes over from a running one */
	FT_DRAINING = 23,	/* edge, control: reconnect now, to the new one */
	FT_HANDOVER = 24,	/* process to process, on the hand-over socket:
				 * HO_STEP, by step (hosock.c) */
	/* FTP active mode: a data connection the edge dials to the partner */
	FT_FTP_DIAL = 27,	/* agent: REQUEST, FTP_CTL, DEST_PORT */
	FT_FTP_DIAL_FAIL = 28,	/* edge: REQUEST, OUT_CODE, [TEXT] */
	FT_MAX_TYPE = 28,
};

enum frame_tag {
	FA_VERSION = 1,		/* u16 */
	FA_NAME = 2,		/* string, 1..63: agent or edge name */
	FA_TEXT = 3,		/* string, 0..1023 */
	FA_SERVICE = 4,		/* string, 1..63 of [A-Za-z0-9_.-] */
	FA_LISTEN = 5,		/* string: numeric address:port */
	FA_STATUS = 6,		/* u8: 0 ok, 1 failed */
	FA_SESSION = 7,		/* u64, never 0 */
	FA_CLIENT_ADDR = 8,	/* string: numeric IP address */
	FA_CLIENT_PORT = 9,	/* u16 */
	FA_LOCAL_ADDR = 10,	/* string: numeric IP address */
	FA_LOCAL_PORT = 11,	/* u16 */
	FA_NONCE = 12,		/* u64 */
	FA_LINK_KEY = 13,	/* 32 bytes */
	FA_KEY_ID = 14,		/* u64 */
	FA_COUNTER = 15,	/* u64, never 0 */
	FA_PROOF = 16,		/* 32 bytes */
	FA_DATA_LINK = 17,	/* u8: DATA_LINK_TLS or DATA_LINK_PLAIN */
	FA_SESS_KIND = 18,	/* u8: SK_* */
	FA_PRIORITY = 19,	/* u32: higher is preferred */
	FA_IDLE_TIMEOUT = 20,	/* u32 seconds, 0: none */
	FA_ALLOW = 21,		/* string: CIDR list */
	FA_DENY = 22,
	FA_ACCEPT_PROXY = 23,
	FA_MAX_SESS_IP = 24,	/* u32 */
	FA_MAX_RATE_IP = 25,	/* u32 */
	FA_COUNT = 26,		/* u32 */
	FA_END = 27,		/* u8: enum sess_end (end.h) */
	FA_STATS = 28,		/* string: name=value tokens */
	FA_PROTOCOL = 29,	/* string: "ftp" or "ftps" */
	FA_PASV_MIN = 30,	/* u16 */
	FA_PASV_MAX = 31,	/* u16 */
	FA_FTP_CTL = 32,	/* u64: an FTP control session */
	FA_FTP_PORT = 33,	/* u16: a passive port */
	FA_OUT_ALLOW = 34,	/* string: outbound rules */
	FA_REQUEST = 35,	/* u64, never 0: an outbound request */
	FA_DEST_HOST = 36,	/* string, 1..255 */
	FA_DEST_PORT = 37,	/* u16, not 0 */
	FA_DEST_ADDR = 38,	/* string: numeric ip:port */
	FA_OUT_CODE = 39,	/* u8: a SOCKS5 reply code */
	FA_LINKS_KEEP = 40,	/* u16: idle plain links the edge keeps */
	FA_BANS = 41,		/* bytes: records of 21 bytes (ban.h) */
	FA_BAN_CUT = 42,	/* u8: 1 cut the banned ranges' sessions */
	FA_HO_STEP = 45,	/* u8: HO_*, a hand-over message's step */
	FA_INSTANCE = 46,	/* u64, not 0: an agent process, random */
	FA_PROCESSES = 47,	/* u32: draining processes, the sender's chain */
	FA_FTP_ACTIVE = 49,	/* u8: 1, the FTP service takes active mode */
	FA_MAX_TAG = 63,
};

#define FA_BIT(t)	(1ull << (t))

/* Values of FA_DATA_LINK. */
#define DATA_LINK_TLS	0
#define DATA_LINK_PLAIN	1

/* Values of FA_SESS_KIND: what a SESS_OPEN carries. */
#define SK_CLIENT	0	/* a partner's connection to a service */
#define SK_FTP_DATA	1	/* a passive data connection (FTP_CTL, FTP_PORT) */
#define SK_OUTBOUND	2	/* the destination of an OUT_REQ (REQUEST, DEST_ADDR) */
#define SK_FTP_ACTIVE	3	/* an active-mode data connection the edge dialled
				 * for an FTP_DIAL (FTP_CTL, REQUEST) */
#define SK_MAX		3

/* Values of FA_HO_STEP: the hand-over socket's messages (hosock.h). */
#define HO_HELLO	1	/* new to old: VERSION */
#define HO_LISTENERS	2	/* old to new: COUNT listeners attached */
#define HO_OFFERED	3	/* old to new: COUNT in all; SESSION (edge) */
#define HO_TAKEN	4	/* new to old: running with them */
#define HO_RELEASE	5	/* edge: old to new, SESSION; agent: new to old */
#define HO_WITHDRAWN	6	/* agent: old to new, services withdrawn */
#define HO_FTP		7	/* edge: old to new, an FTP control session */
#define HO_FTP_END	8	/* edge: old to new, FTP_CTL ended */
#define HO_STATUS	9	/* old to new: COUNT sessions still running */
#define HO_REFUSED	10	/* old to new: TEXT, then it closes */
#define HO_STEP_MAX	10

#define MSG_NAME_MAX	64	/* names: up to 63 bytes + NUL */
#define MSG_TEXT_MAX	1024
#define MSG_ADDR_MAX	64
#define MSG_CIDRS_MAX	4096	/* a CIDR list: up to 4095 bytes + NUL */
#define MSG_STATS_MAX	2048	/* FA_STATS: up to 2047 bytes + NUL */
#define MSG_HOST_MAX	256	/* DEST_HOST: up to 255 bytes + NUL */
#define MSG_POLICY_MAX	4096	/* OUT_ALLOW: up to 4095 bytes + NUL */
#define MSG_PROTO_MAX	16	/* PROTOCOL: up to 15 bytes + NUL */
#define MSG_BANS_MAX	(21 * 1024)	/* BANS: 1024 records */

/* A decoded message. `have` has FA_BIT(tag) set for every attribute
 * present; strings are NUL-terminated and hold printable ASCII only. */
struct msg {
	uint16_t	type;
	uint64_t	have;
	uint16_t	version;
	uint8_t		status;
	uint8_t		data_link;
	uint8_t		sess_kind;
	uint8_t		end;
	uint8_t		out_code;
	uint8_t		ftp_active;
	uint8_t		ban_cut;
	uint8_t		ho_step;
	uint16_t	client_port;
	uint16_t	local_port;
	uint16_t	pasv_min;
	uint16_t	pasv_max;
	uint16_t	ftp_port;
	uint16_t	dest_port;
	uint16_t	links_keep;
	uint32_t	priority;
	uint32_t	idle_timeout;
	uint32_t	max_sess_ip;
	uint32_t	max_rate_ip;
	uint32_t	count;
	uint32_t	processes;
	uint64_t	session;
	uint64_t	nonce;
	uint64_t	key_id;
	uint64_t	counter;
	uint64_t	ftp_ctl;
	uint64_t	request;
	uint64_t	instance;
	uint8_t		link_key[FRAME_KEY];
	uint8_t		proof[FRAME_KEY];
	char		name[MSG_NAME_MAX];
	char		text[MSG_TEXT_MAX];
	char		service[MSG_NAME_MAX];
	char		listen[MSG_ADDR_MAX];
	char		client_addr[MSG_ADDR_MAX];
	char		local_addr[MSG_ADDR_MAX];
	char		protocol[MSG_PROTO_MAX];
	char		dest_host[MSG_HOST_MAX];
	char		dest_addr[MSG_ADDR_MAX];
	char		stats[MSG_STATS_MAX];
	char		allow[MSG_CIDRS_MAX];
	char		deny[MSG_CIDRS_MAX];
	char		accept_proxy[MSG_CIDRS_MAX];
	char		out_allow[MSG_POLICY_MAX];
	/* BANS is not copied: it points into the decoded payload, valid as
	 * long as that is (or, to encode, at the caller's bytes). */
	const uint8_t	*bans;
	uint32_t	bans_len;
};

/* Decode a frame header. Returns 0 and sets *type and *len, or -1 with
 * *why set (oversized payload, non-zero flags, unknown type). */
int	frame_hdr_decode(const uint8_t *hdr, uint16_t *type, uint32_t *len,
	    const char **why);
/* Decode the payload of a frame of the given type into m (zeroed first).
 * Fails closed: a malformed, truncated or repeated attribute, a missing
 * required one, a zero SESSION, COUNTER or REQUEST, an unknown
 * SESS_KIND or END value returns -1 with *why set. Unknown tags are
 * skipped. */
int	msg_decode(uint16_t type, const uint8_t *p, size_t len, struct msg *m,
	    const char **why);
/* Decode one whole frame, header and payload, that fills p[0..n) exactly.
 * 0, or -1 with *why. */
int	msg_decode_frame(const uint8_t *p, size_t n, struct msg *m,
	    const char **why);
/* Append the frame for m (attributes named in m->have) to out, which is
 * not allowed to grow past max. Returns 0, or -1 if it does not fit. */
int	msg_encode(const struct msg *m, struct buf *out, size_t max);
/* Convenience for building: zero m and set its type. */
void	msg_init(struct msg *m, uint16_t type);
/* Copy a string attribute into m, truncating safely, and mark it present. */
void	msg_set_str(struct msg *m, int tag, const char *s);
/* Set a number attribute (cut to its width) and mark it present. */
void	msg_set_int(struct msg *m, int tag, uint64_t v);
/* Mark attribute tag present (its field set by the caller). */
static inline void msg_have(struct msg *m, int tag) { m->have |= FA_BIT(tag); }
const char *frame_type_name(uint16_t type);
/* 1 if s is a valid service name: 1..63 bytes of [A-Za-z0-9_.-]. */
int	frame_valid_service(const char *s);

#endif
