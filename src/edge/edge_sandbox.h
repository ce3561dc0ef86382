/* edge_sandbox.h - least privilege for the edge once it has bound its
 * control port and loaded its certificate. */
#ifndef SP_EDGE_SANDBOX_H
#define SP_EDGE_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

struct sandbox_conf {
	const char	*user;		/* drop to this user (needs root) */
	const char	*chroot_dir;	/* chroot here (needs root) */
	int		 bind_low_ports; /* keep CAP_NET_BIND_SERVICE */
	int		 outbound;	/* --allow-outbound: connect, DNS */
	int		 disabled;	/* --no-sandbox, for debugging only */
};

/* Look the user up now, while /etc/passwd is still reachable.
 * 0, or -1 with err filled. */
int	sandbox_prepare(const struct sandbox_conf *sc, char *err, size_t errlen);
/* The uid the edge runs as once sandboxed (--user's, else its own). */
uid_t	sandbox_uid(void);
/* Drop privileges, confine the file system, install the system call
 * filter: the relay process's, or (keyproc) the key process's narrower
 * one (it only answers on its socket). After this the process cannot
 * open files for writing, exec, or reach any path. 0, or -1 with err
 * filled (the caller must exit). */
int	sandbox_enter(const struct sandbox_conf *sc, int keyproc, char *err,
	    size_t errlen);
/* Try what the sandbox must forbid and log each result (test hook). */
void	sandbox_selftest(void);

#endif
