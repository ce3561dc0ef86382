/* frame.h - the control protocol codec (docs/protocol.md).
 *
 * Pure functions over byte arrays: no I/O, no allocation, so the decoder
 * can be unit-tested and fuzzed on its own. */
#ifndef SP_FRAME_H
#define SP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define FRAME_VERSION	1
#define FRAME_HDR	8
#define FRAME_MAX	65536		/* payload bytes */
#define FRAME_SECRET	32

enum frame_type {
	FT_HELLO = 1,
	FT_HELLO_OK = 2,
	FT_ERROR = 3,
	FT_SVC_OPEN = 4,
	FT_SVC_RESULT = 5,
	FT_SVC_CLOSE = 6,
	FT_SESS_NEW = 7,
	FT_SESS_REFUSE = 8,
	FT_PING = 9,
	FT_PONG = 10,
	FT_DATA_HELLO = 16,
	FT_DATA_OK = 17,
	/* data-link fast path (docs/protocol.md, "Fast path"): pooled links */
	FT_POOL_REQ = 18,
	FT_POOL_GRANT = 19,
	FT_POOL_HELLO = 20,
	FT_POOL_OK = 21,
	FT_SESS_ASSIGN = 22,
	/* A multiplexed TLS data link: many sessions as streams (mux.h). */
	FT_MUX_HELLO = 23,
	/* FTP (24-31; 25-31 unassigned): the passive ports a control
	 * session's data connections may arrive on (docs/ftp.md). */
	FT_FTP_PORTS = 24,
	/* 32-39: client policy (docs/protocol.md, "Client policy") */
	FT_SESS_DENIED = 32,
	FT_DENIED_SUMMARY = 33,
	/* Operations (40-47): the edge's counters for the agent's /metrics. */
	FT_STATS = 40,
	FT_STATS_REQ = 41,
	/* outbound (docs/protocol.md, "Outbound") */
	FT_OUT_OPEN = 48,
	FT_OUT_RESULT = 49,
	FT_OUT_POLICY = 50,
	FT_OUT_POLICY_OK = 51,
	/* Types 18-23 data-link fast path, 24-31 FTP, 32-39 client policy,
	 * 40-47 operations, 48-55 outbound. */
};

enum frame_tag {
	FA_VERSION = 1,
	FA_NAME = 2,
	FA_TEXT = 3,
	FA_SERVICE = 4,
	FA_LISTEN = 5,
	FA_STATUS = 6,
	FA_SESSION = 7,
	FA_CLIENT_ADDR = 8,
	FA_CLIENT_PORT = 9,
	FA_SECRET = 10,
	FA_NONCE = 11,
	/* 16-27: client policy and PROXY (docs/protocol.md, "Client policy") */
	FA_ALLOW = 16,
	FA_DENY = 17,
	FA_ACCEPT_PROXY = 18,
	FA_MAX_SESS_IP = 19,
	FA_MAX_RATE_IP = 20,
	FA_COUNT = 21,
	FA_LOCAL_ADDR = 22,
	FA_LOCAL_PORT = 23,
	/* 12-15 availability (docs/protocol.md "High availability"). */
	FA_PRIORITY = 12,
	/* Operations (28-33; 29-33 unassigned): counters as "name=value"
	 * tokens, parsed by common/stats.c. */
	FA_STATS = 28,
	/* outbound (docs/protocol.md, "Outbound") */
	FA_DEST_HOST = 34,
	FA_DEST_PORT = 35,
	FA_OUT_CODE = 36,
	FA_DEST_ADDR = 37,
	FA_OUT_ALLOW = 38,
	/* data-link fast path (54-61; 55-61 unassigned): which kind of data
	 * link an agent uses, and whether the edge takes it. */
	FA_DATA_LINK = 54,
	/* HELLO_OK: the edge takes reusable plain links; POOL_HELLO: this
	 * link is one (docs/protocol.md, "Reusable plain links"). */
	FA_LINK_REUSE = 55,
	/* FTP (46-53; 51-53 unassigned): SVC_OPEN of an FTP service, the
	 * ports of FTP_PORTS, and SESS_NEW of a passive data connection. */
	FA_PROTOCOL = 46,
	FA_PASV_MIN = 47,
	FA_PASV_MAX = 48,
	FA_FTP_CTL = 49,
	FA_FTP_PORT = 50,
	/* Tags 12-63 are assigned by later features, by range:
	 * 12-15 availability, 16-27 client policy and PROXY, 28-33
	 * operations, 34-45 outbound, 46-53 FTP, 54-61 data-link fast path,
	 * 62-63 limits. */
	FA_IDLE_TIMEOUT = 62,
	FA_MAX_TAG = 63,
};

#define FA_BIT(t)	(1ull << (t))

/* Values of FA_DATA_LINK. */
#define DATA_LINK_TLS	0
#define DATA_LINK_PLAIN	1

#define MSG_NAME_MAX	64	/* names: up to 63 bytes + NUL */
#define MSG_TEXT_MAX	1024
#define MSG_ADDR_MAX	64
#define MSG_CIDRS_MAX	4096	/* a CIDR list: up to 4095 bytes + NUL */
#define MSG_STATS_MAX	2048	/* FA_STATS: up to 2047 bytes + NUL */
#define MSG_HOST_MAX	256	/* DEST_HOST: up to 255 bytes + NUL */
#define MSG_POLICY_MAX	4096	/* OUT_ALLOW: up to 4095 bytes + NUL */
#define MSG_PROTO_MAX	16	/* PROTOCOL: up to 15 bytes + NUL */

/* A decoded message. `have` has FA_BIT(tag) set for every attribute
 * present; strings are NUL-terminated and validated. */
struct msg {
	uint16_t	type;
	uint64_t	have;
	uint16_t	version;
	uint8_t		status;
	uint16_t	client_port;
	uint64_t	session;
	uint64_t	nonce;
	uint32_t	priority;	/* FA_PRIORITY: higher is preferred */
	uint32_t	idle_timeout;	/* seconds; 0: none */
	uint8_t		data_link;	/* DATA_LINK_TLS or DATA_LINK_PLAIN */
	uint8_t		link_reuse;	/* FA_LINK_REUSE: 1 yes */
	char		name[MSG_NAME_MAX];
	char		text[MSG_TEXT_MAX];
	char		service[MSG_NAME_MAX];
	char		listen[MSG_ADDR_MAX];
	char		client_addr[MSG_ADDR_MAX];
	uint8_t		secret[FRAME_SECRET];
	/* client policy (tags 16-23) */
	uint32_t	max_sess_ip;
	uint32_t	max_rate_ip;
	uint32_t	count;
	uint16_t	local_port;
	char		local_addr[MSG_ADDR_MAX];
	char		allow[MSG_CIDRS_MAX];
	char		deny[MSG_CIDRS_MAX];
	char		accept_proxy[MSG_CIDRS_MAX];
	char		stats[MSG_STATS_MAX];
	uint16_t	dest_port;
	uint8_t		out_code;
	char		dest_host[MSG_HOST_MAX];
	char		dest_addr[MSG_ADDR_MAX];
	char		out_allow[MSG_POLICY_MAX];
	char		protocol[MSG_PROTO_MAX];
	uint16_t	pasv_min;
	uint16_t	pasv_max;
	uint16_t	ftp_port;
	uint64_t	ftp_ctl;
};

/* Decode a frame header. Returns 0 and sets *type and *len, or -1 with
 * *why set (oversized payload, non-zero flags, unknown type). */
int	frame_hdr_decode(const uint8_t *hdr, uint16_t *type, uint32_t *len,
	    const char **why);
/* Decode the payload of a frame of the given type into m (zeroed first).
 * Fails closed: a malformed, truncated, repeated or missing required
 * attribute returns -1 with *why set. Unknown tags are skipped. */
int	msg_decode(uint16_t type, const uint8_t *p, size_t len, struct msg *m,
	    const char **why);
/* Append the frame for m (attributes named in m->have) to out, which is
 * not allowed to grow past max. Returns 0, or -1 if it does not fit. */
int	msg_encode(const struct msg *m, struct buf *out, size_t max);
/* Convenience for building: zero m and set its type. */
void	msg_init(struct msg *m, uint16_t type);
/* Copy a string attribute into m, truncating safely, and mark it present. */
void	msg_set_str(struct msg *m, int tag, const char *s);
const char *frame_type_name(uint16_t type);
/* 1 if s is a valid service name: 1..63 bytes of [A-Za-z0-9_.-]. */
int	frame_valid_service(const char *s);

#endif
