/* edge_sandbox.c - privilege drop, Landlock or chroot, and a seccomp
 * allow-list for the edge.
 *
 * Order matters: look up the user while files are reachable, chroot
 * while root, drop groups, gid then uid, drop capabilities, set
 * no_new_privs (required for unprivileged Landlock and seccomp), confine
 * the file system, and install the system call filter last so that the
 * steps before it may use what it forbids. */
#include "edge/edge_sandbox.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_SANITIZER 1
#endif
#endif

static uid_t sb_uid;
static gid_t sb_gid;
static int sb_have_user;

int
sandbox_prepare(const struct sandbox_conf *sc, char *err, size_t errlen)
{
	struct passwd *pw;

	if (sc->disabled || sc->user == NULL)
		return 0;
	if (geteuid() != 0) {
		snprintf(err, errlen, "--user needs the edge to start as root");
		return -1;
	}
	errno = 0;
	if ((pw = getpwnam(sc->user)) == NULL) {
		snprintf(err, errlen, "--user %s: %s", sc->user,
		    errno ? strerror(errno) : "no such user");
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "--user %s: that is root", sc->user);
		return -1;
	}
	sb_uid = pw->pw_uid;
	sb_gid = pw->pw_gid;
	sb_have_user = 1;
	return 0;
}

uid_t
sandbox_uid(void)
{
	return sb_have_user ? sb_uid : geteuid();
}

static int
caps_set(int keep_bind, char *err, size_t errlen)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	uint32_t bit = 1u << CAP_NET_BIND_SERVICE;

	memset(data, 0, sizeof(data));
	if (keep_bind) {
		data[0].effective = bit;
		data[0].permitted = bit;
	}
	if (syscall(SYS_capset, &hdr, data) == -1) {
		snprintf(err, errlen, "capset: %s", strerror(errno));
		return -1;
	}
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	return 0;
}

static int
drop_user(const struct sandbox_conf *sc, int keep_bind, char *err,
    size_t errlen)
{
	int cap;

	if (sc->chroot_dir != NULL) {
		if (geteuid() != 0) {
			snprintf(err, errlen, "--chroot needs the edge to start as root");
			return -1;
		}
		if (chroot(sc->chroot_dir) == -1 || chdir("/") == -1) {
			snprintf(err, errlen, "chroot %s: %s", sc->chroot_dir,
			    strerror(errno));
			return -1;
		}
	}
	if (!sb_have_user)
		return 0;
	/* Nothing the edge does later needs a capability but binding low
	 * ports; the bounding set goes too, so nothing can come back. */
	for (cap = 0; cap <= CAP_LAST_CAP; cap++)
		if (!(keep_bind && cap == CAP_NET_BIND_SERVICE))
			(void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
	if (keep_bind && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "keepcaps: %s", strerror(errno));
		return -1;
	}
	if (setgroups(0, NULL) == -1 ||
	    setresgid(sb_gid, sb_gid, sb_gid) == -1 ||
	    setresuid(sb_uid, sb_uid, sb_uid) == -1) {
		snprintf(err, errlen, "dropping to user %s: %s", sc->user,
		    strerror(errno));
		return -1;
	}
	if (setuid(0) != -1) {
		snprintf(err, errlen, "could regain root after dropping it");
		return -1;
	}
	return 0;
}

/* Deny every file-system access Landlock knows of, with no exception.
 * Returns 1 if confined, 0 if the kernel has no Landlock, -1 on error. */
static int landlock_none(int *abi_out, int resolver, char *err, size_t errlen)
    __attribute__((unused));	/* sanitizer builds skip it */

/* The dialler's resolver (--allow-outbound) must read its configuration: grant
 * reading these files (and nothing under them, they are files). A file
 * that does not exist is skipped; failing to add a rule only means less
 * access, so it is logged, not fatal. */
static void
landlock_resolver_files(int ruleset)
{
	static const char *const files[] = { "/etc/hosts", "/etc/resolv.conf",
	    "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf" };
	struct landlock_path_beneath_attr pb;
	size_t i;
	int fd;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if ((fd = open(files[i], O_PATH | O_CLOEXEC)) == -1)
			continue;
		memset(&pb, 0, sizeof(pb));
		pb.allowed_access = LANDLOCK_ACCESS_FS_READ_FILE;
		pb.parent_fd = fd;
		if (syscall(SYS_landlock_add_rule, ruleset,
		    LANDLOCK_RULE_PATH_BENEATH, &pb, 0) == -1)
			log_warn("landlock: %s stays unreadable: %s", files[i],
			    strerror(errno));
		close(fd);
	}
}

static int
landlock_none(int *abi_out, int resolver, char *err, size_t errlen)
{
	struct landlock_ruleset_attr attr;
	long abi;
	int fd;

	abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 1)
		return 0;
	*abi_out = (int)abi;
	memset(&attr, 0, sizeof(attr));
	attr.handled_access_fs = (1ull << 13) - 1;	/* ABI 1: bits 0-12 */
#ifdef LANDLOCK_ACCESS_FS_REFER
	if (abi >= 2)
		attr.handled_access_fs |= LANDLOCK_ACCESS_FS_REFER;
#endif
#ifdef LANDLOCK_ACCESS_FS_TRUNCATE
	if (abi >= 3)
		attr.handled_access_fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
#endif
	fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (fd == -1) {
		snprintf(err, errlen, "landlock: %s", strerror(errno));
		return -1;
	}
	if (resolver)
		landlock_resolver_files(fd);
	if (syscall(SYS_landlock_restrict_self, fd, 0) == -1) {
		snprintf(err, errlen, "landlock: %s", strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 1;
}

/* The system call filter as one table: each rule says for which
 * processes it holds (measured with strace over the integration tests).
 * Calls no rule allows fail with EPERM rather than kill: a refused call
 * is an error the edge logs, not a crash. No rule gives the relay
 * process connect(): only the dialler connects. */
enum {
	F_BASE = 1,	/* every process: key process, relay, dialler */
	F_RELAY = 2,	/* the relay process */
	F_DIAL = 4,	/* the dialler and its workers: fork (clone without
			 * CLONE_THREAD: no threads, no namespaces), connect,
			 * the resolver's sockets and files */
	F_SAN = 8,	/* a sanitizer build, which allows by default: what
			 * it denies all the same */
	F_SANR = 16,	/* ... and in the relay process */
};
enum { C_ANY, C_EQ, C_MASKED };
struct sc_rule {
	int		 nr;
	uint8_t		 who, cmp, arg;
	int		 err;		/* 0: allow; else fail with it */
	uint64_t	 mask, val;	/* argument arg (& mask) == val */
};
#define RULE(c, w, cmp, a, e, m, v) { SCMP_SYS(c), w, cmp, a, e, m, v }
#define ANY(c, w)		RULE(c, w, C_ANY, 0, 0, 0, 0)
#define EQ(c, w, a, v)		RULE(c, w, C_EQ, a, 0, 0, v)
#define MASKED(c, w, a, m, v)	RULE(c, w, C_MASKED, a, 0, m, v)
#define SAN_DENY(c, a, m, v)	RULE(c, F_SAN, C_MASKED, a, EPERM, m, v)
#define B	F_BASE
#define R	F_RELAY
#define D	F_DIAL
#define RD	(F_RELAY | F_DIAL)
#define CLONE_NOT (CLONE_THREAD | CLONE_VM | CLONE_NEWNS | CLONE_NEWUSER | \
	CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP)
static const struct sc_rule sc_rules[] = {
	ANY(brk, B), ANY(munmap, B), ANY(mremap, B), ANY(madvise, B),
	ANY(futex, B), ANY(getpid, B), ANY(gettid, B), ANY(getrandom, B),
	ANY(clock_gettime, B), ANY(clock_nanosleep, B), ANY(nanosleep, B),
	ANY(gettimeofday, B), ANY(time, B), ANY(rt_sigaction, B),
	ANY(rt_sigprocmask, B), ANY(rt_sigreturn, B), ANY(restart_syscall, B),
	ANY(exit, B), ANY(exit_group, B), ANY(sched_yield, B), ANY(tgkill, B),
	ANY(read, B), ANY(write, B), ANY(recvmsg, B), ANY(sendmsg, B),
	ANY(recvfrom, B), ANY(sendto, B), ANY(close, B), ANY(poll, B),
	ANY(ppoll, B),
	/* Memory, but never executable memory. */
	MASKED(mmap, B, 2, PROT_EXEC, 0), MASKED(mprotect, B, 2, PROT_EXEC, 0),
	ANY(readv, R), ANY(writev, R), ANY(shutdown, R), ANY(accept4, R),
	ANY(accept, R), ANY(epoll_wait, R), ANY(epoll_pwait, R),
	ANY(epoll_ctl, R), ANY(listen, R), ANY(getpeername, R),
	ANY(pipe2, R), ANY(splice, R), ANY(prlimit64, R), ANY(sysinfo, R),
	ANY(bind, RD), ANY(setsockopt, RD), ANY(getsockopt, RD),
	ANY(getsockname, RD), ANY(fcntl, RD), ANY(lseek, RD),
	ANY(newfstatat, RD), ANY(fstat, RD), ANY(uname, RD),
	/* Sockets of the internet families only: no AF_UNIX, no netlink,
	 * nothing that reaches local services. */
	EQ(socket, RD, 0, AF_INET), EQ(socket, RD, 0, AF_INET6),
	/* Read-only opens (OpenSSL may look for its configuration, the
	 * resolver for its own); Landlock or the chroot leave nothing else
	 * to read. */
	MASKED(openat, RD, 2, O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND,
	    O_RDONLY),
	/* SIOCOUTQ: a socket's send queue drains before it is reset. */
	EQ(ioctl, R, 1, SIOCOUTQ),
	ANY(connect, D), ANY(sendmmsg, D), EQ(ioctl, D, 1, FIONREAD),
	ANY(wait4, D), ANY(alarm, D), MASKED(clone, D, 0, CLONE_NOT, 0),
	ANY(set_robust_list, D),
	/* clone3's flags are out of a filter's reach: ENOSYS, and glibc
	 * falls back to clone. */
	RULE(clone3, D, C_ANY, 0, ENOSYS, 0, 0),
	RULE(connect, F_SANR, C_ANY, 0, EPERM, 0, 0),
	RULE(execve, F_SAN, C_ANY, 0, EPERM, 0, 0),
	RULE(execveat, F_SAN, C_ANY, 0, EPERM, 0, 0),
	RULE(creat, F_SAN, C_ANY, 0, EPERM, 0, 0),
	RULE(socket, F_SAN, C_EQ, 0, EPERM, 0, AF_UNIX),
	SAN_DENY(open, 1, O_ACCMODE, O_WRONLY),
	SAN_DENY(open, 1, O_ACCMODE, O_RDWR), SAN_DENY(open, 1, O_CREAT, O_CREAT),
	SAN_DENY(openat, 2, O_ACCMODE, O_WRONLY),
	SAN_DENY(openat, 2, O_ACCMODE, O_RDWR),
	SAN_DENY(openat, 2, O_CREAT, O_CREAT),
};

/* Install the rules for who. A sanitizer build, whose runtime needs a
 * looser default (LeakSanitizer reads /proc and stops threads at exit),
 * allows by default and denies what matters explicitly. */
static int
seccomp_install(unsigned who, char *err, size_t errlen)
{
	const struct sc_rule *r;
	struct scmp_arg_cmp c;
	scmp_filter_ctx ctx;
	uint32_t act;
	size_t i;
	int rc = -1, sanitizer = 0;

#ifdef SANDBOX_SANITIZER
	sanitizer = 1;
	who = F_SAN | (who & F_RELAY ? F_SANR : 0);
#endif
	if ((ctx = seccomp_init(sanitizer ? SCMP_ACT_ALLOW :
	    SCMP_ACT_ERRNO(EPERM))) == NULL) {
		snprintf(err, errlen, "seccomp_init failed");
		return -1;
	}
	for (i = 0; i < sizeof(sc_rules) / sizeof(sc_rules[0]); i++) {
		r = &sc_rules[i];
		if (!(r->who & who))
			continue;
		act = r->err != 0 ? SCMP_ACT_ERRNO((uint32_t)r->err) :
		    SCMP_ACT_ALLOW;
		c = (struct scmp_arg_cmp){ r->arg, r->cmp == C_EQ ? SCMP_CMP_EQ :
		    SCMP_CMP_MASKED_EQ, r->cmp == C_EQ ? r->val : r->mask,
		    r->val };
		if ((r->cmp == C_ANY ? seccomp_rule_add(ctx, act, r->nr, 0) :
		    seccomp_rule_add(ctx, act, r->nr, 1, c)) < 0) {
			snprintf(err, errlen, "seccomp rule %d failed", r->nr);
			goto out;
		}
	}
	if (seccomp_load(ctx) < 0) {
		snprintf(err, errlen, "seccomp_load failed");
		goto out;
	}
	rc = 0;
out:
	seccomp_release(ctx);
	return rc;
}

int
sandbox_enter(const struct sandbox_conf *sc, enum sb_role role, char *err,
    size_t errlen)
{
	static const unsigned who[] = { [SB_RELAY] = F_BASE | F_RELAY,
	    [SB_KEYPROC] = F_BASE, [SB_DIALLER] = F_BASE | F_DIAL };
	int keep_bind = role == SB_RELAY ? sc->bind_low_ports :
	    role == SB_DIALLER ? sc->port20 : 0;
	int abi = 0, ll;
	long uid;

	err[0] = '\0';
	if (sc->disabled) {
		if (role == SB_RELAY)
			log_warn("sandbox disabled (--no-sandbox): for debugging only");
		return 0;
	}
#ifndef SANDBOX_SANITIZER
	/* No core dumps and no ptrace by same-uid processes (LeakSanitizer
	 * needs ptrace on itself at exit, so sanitizer builds stay dumpable). */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
	if (drop_user(sc, keep_bind, err, errlen) == -1)
		return -1;
	if (geteuid() == 0 && !sb_have_user && role == SB_RELAY)
		log_warn("running as root: give --user to drop privileges");
	if (caps_set(keep_bind, err, errlen) == -1)
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "no_new_privs: %s", strerror(errno));
		return -1;
	}
#ifdef SANDBOX_SANITIZER
	ll = 0;
	if (role == SB_RELAY)
		log_warn("sanitizer build: no Landlock, seccomp allows by default "
		    "(exec, writes and the relay's connect still denied)");
#else
	if ((ll = landlock_none(&abi, role == SB_DIALLER && sc->outbound, err,
	    errlen)) == -1)
		return -1;
	if (ll == 0 && sc->chroot_dir == NULL && role == SB_RELAY)
		log_warn("no Landlock in this kernel: give --chroot an empty "
		    "directory to keep the edge away from the file system");
#endif
	uid = (long)getuid();
	if (seccomp_install(who[role], err, errlen) == -1)
		return -1;
	if (role == SB_RELAY)
		log_info("sandbox: uid %ld, capabilities %s, file system %s, "
		    "seccomp filter on, no connect (the dialler connects)", uid,
		    sc->bind_low_ports ? "net_bind_service only" : "none",
		    ll == 1 ? "closed (Landlock)" :
		    sc->chroot_dir != NULL ? "chroot" : "open");
	(void)abi;
	return 0;
}

int
sandbox_helper(const char *name, void (*serve)(int fd, void *arg), void *arg,
    char *err, size_t errlen)
{
	struct sigaction sa;
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid != 0) {
		close(sv[1]);
		return sv[0];
	}
	log_forked();
	/* Nothing of the parent's but the log (stderr): not the other
	 * helper's socket, not the event loop. */
	(void)close_range(3, (unsigned)sv[1] - 1, 0);
	(void)close_range((unsigned)sv[1] + 1, ~0u, 0);
	(void)prctl(PR_SET_NAME, name, 0, 0, 0);
	/* The parent handles signals; this one ends with its socket. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	serve(sv[1], arg);
	_exit(1);
}

void
sandbox_selftest(void)
{
	char *const argv[] = { (char *)"/bin/true", NULL };
	char *const envp[] = { NULL };
	struct sockaddr_in doc = { .sin_family = AF_INET,
	    .sin_port = htons(9), .sin_addr.s_addr = htonl(0xc0000201) };
	int fd;

	fd = open("/tmp/sallyport-edge-selftest", O_WRONLY | O_CREAT | O_TRUNC,
	    0600);
	if (fd != -1) {
		close(fd);
		log_err("sandbox selftest: open for writing SUCCEEDED");
	} else
		log_info("sandbox selftest: open for writing denied: %s",
		    strerror(errno));
	if (execve(argv[0], argv, envp) == -1)
		log_info("sandbox selftest: exec denied: %s", strerror(errno));
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) != -1) {
		close(fd);
		log_err("sandbox selftest: unix socket SUCCEEDED");
	} else
		log_info("sandbox selftest: unix socket denied: %s",
		    strerror(errno));
	/* A datagram socket: were connect() allowed, no packet would go. */
	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) != -1) {
		if (connect(fd, (const struct sockaddr *)&doc, sizeof(doc)) == -1 &&
		    errno == EPERM)
			log_info("sandbox selftest: connect denied: %s",
			    strerror(errno));
		else
			log_err("sandbox selftest: connect SUCCEEDED or failed "
			    "otherwise: %s", strerror(errno));
		close(fd);
	}
}
