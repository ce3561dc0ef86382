/* net.h - socket helpers shared by edge and agent. No connect() here:
 * the agent dials in src/agent/dial.c, which the edge never links; the
 * edge's only connect() is in its dialler process (src/edge/edge_dial.c). */
#ifndef SP_NET_H
#define SP_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NET_ADDRSTR 64		/* "[v6]:port" fits */

struct net_addr {
	struct sockaddr_storage	ss;
	socklen_t		len;
};

/* Parse a numeric "IPv4:port", "[IPv6]:port" or "*:port" (all IPv4
 * addresses). No name lookups. Returns 0, or -1 with err filled. */
int	net_parse(const char *s, struct net_addr *a, char *err, size_t errlen);
/* A numeric IPv4 or IPv6 address (no brackets) and a port, any port 0
 * included. 0, or -1 if ip is not numeric. */
int	net_from_ip(const char *ip, uint16_t port, struct net_addr *a);
/* Split "host:port" or "[host]:port" into its parts; host may be a name.
 * Returns 0 or -1. */
int	net_split(const char *s, char *host, size_t hostlen, char *port,
	    size_t portlen);
/* "ip:port" of a, "[ip]:port" for IPv6. Always NUL-terminates. */
void	net_fmt(const struct sockaddr *sa, char *out, size_t outlen);
/* Only the numeric IP of sa, and its port. */
void	net_fmt_ip(const struct sockaddr *sa, char *out, size_t outlen,
	    uint16_t *port);
/* Bound, listening, non-blocking, close-on-exec socket, with Nagle off
 * for the connections it accepts. -1 with err. */
int	net_listen(const struct net_addr *a, int backlog, char *err,
	    size_t errlen);
/* accept4 non-blocking + close-on-exec; -1 with errno on failure. */
int	net_accept(int lfd, struct net_addr *peer);
/* 1 if a is the wildcard address (0.0.0.0 or ::), which a connection
 * accepted on it does not name: its own local address does. */
int	net_is_any(const struct net_addr *a);
int	net_set_nodelay(int fd);
/* The pending error of a socket (0 if none): how a non-blocking connect
 * ended, or why epoll reported EPOLLERR. */
int	net_sock_error(int fd);

#endif
