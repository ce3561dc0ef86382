/* fuzz_dial.c - the dialler's check of a request (dial_check), the
 * first code in the dialler to see what the relay process sends, which
 * may be compromised. The input is the request's bytes (any length), the
 * operator's limits taken from its first byte.
 *
 * Checks: only a whole request is taken, and one taken keeps every limit:
 * an id, a port, a known reason, a NUL-terminated valid host and policy,
 * outbound only with --allow-outbound and from no chosen source, active
 * FTP only to ports from 1024, source port 20 only with
 * --active-ftp-port20 and no other but 0. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/outpol.h"
#include "edge/edge_dial.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct dial_conf c;
	struct dial_req q;
	char why[400];
	uint16_t sport;

	if (size < 1)
		return 0;
	c.outbound = data[0] & 1;
	c.port20 = (data[0] >> 1) & 1;
	data++;
	size--;
	memset(&q, 0, sizeof(q));
	memcpy(&q, data, size < sizeof(q) ? size : sizeof(q));
	if (dial_check(&c, &q, size, why, sizeof(why)) != 0)
		return 0;
	sport = ntohs(((const struct sockaddr_in *)(const void *)&q.src)->
	    sin_port);
	if (size != sizeof(q) || q.id == 0 || q.port == 0 ||
	    memchr(q.host, '\0', sizeof(q.host)) == NULL ||
	    memchr(q.policy, '\0', sizeof(q.policy)) == NULL ||
	    !outpol_valid_host(q.host) ||
	    (q.why == DW_OUTBOUND && (!c.outbound || q.src.ss_family != 0)) ||
	    (q.why == DW_ACTIVE_FTP && q.port < 1024) ||
	    (q.why != DW_OUTBOUND && q.why != DW_ACTIVE_FTP) ||
	    (q.src.ss_family != 0 && q.src.ss_family != AF_INET &&
	    q.src.ss_family != AF_INET6) ||
	    (sport != 0 && (sport != 20 || !c.port20)))
		__builtin_trap();
	return 0;
}
