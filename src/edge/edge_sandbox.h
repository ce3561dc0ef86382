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
	int		 outbound;	/* --allow-outbound: the dialler resolves */
	int		 port20;	/* --active-ftp-port20: the dialler keeps
					 * CAP_NET_BIND_SERVICE */
	int		 disabled;	/* --no-sandbox, for debugging only */
};

/* The edge's processes, each with a sandbox of its own. */
enum sb_role {
	SB_RELAY,	/* talks to the internet and the agents; never connects */
	SB_KEYPROC,	/* signs with the private key (edge_keyproc.c) */
	SB_DIALLER,	/* alone connects out (edge_dial.c) */
};

/* Look the user up now, while /etc/passwd is still reachable.
 * 0, or -1 with err filled. */
int	sandbox_prepare(const struct sandbox_conf *sc, char *err, size_t errlen);
/* The uid the edge runs as once sandboxed (--user's, else its own). */
uid_t	sandbox_uid(void);
/* Drop privileges, confine the file system, install the system call
 * filter of role. After this the process cannot open files for writing,
 * exec, or reach any path (the dialler: the resolver's files, with
 * --allow-outbound). 0, or -1 with err filled (the caller must exit). */
int	sandbox_enter(const struct sandbox_conf *sc, enum sb_role role,
	    char *err, size_t errlen);
/* Fork a helper process (the key process, the dialler), joined to this
 * one by a SOCK_SEQPACKET socket pair and named name (as ps shows it).
 * The child closes every other descriptor, ignores the signals that stop
 * the edge (it ends when its socket does, or with its parent) and runs
 * serve(fd, arg), which enters its own sandbox and never returns. The
 * parent's end (close-on-exec), or -1 with err filled. */
int	sandbox_helper(const char *name, void (*serve)(int fd, void *arg),
	    void *arg, char *err, size_t errlen);
/* Try what the sandbox must forbid and log each result (test hook). */
void	sandbox_selftest(void);

#endif
