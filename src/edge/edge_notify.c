/* edge_notify.c - the few lines of the sd_notify protocol the edge needs.
 * libsystemd's sd_notify() makes a new socket per call, which the edge's
 * seccomp filter refuses, and would link a large library into the DMZ
 * binary; this keeps one datagram socket opened before the sandbox. */
#include "edge/edge_notify.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;

void
notify_open(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	size_t n;

	if (path == NULL || (path[0] != '/' && path[0] != '@') ||
	    (n = strlen(path)) >= sizeof(notify_addr.sun_path))
		return;
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, path, n);
	if (path[0] == '@')		/* abstract namespace */
		notify_addr.sun_path[0] = '\0';
	notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
	    (path[0] == '@' ? 0 : 1));
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

void
notify_send(const char *state)
{
	if (notify_fd == -1)
		return;
	(void)sendto(notify_fd, state, strlen(state), MSG_NOSIGNAL,
	    (struct sockaddr *)&notify_addr, notify_len);
}
