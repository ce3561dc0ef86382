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
#include <stdarg.h>
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

/* --user's ids; 0: no --user (root is refused as one). */
static uid_t sb_uid;
static gid_t sb_gid;

/* Fill err and return -1: the way out of every step that fails. */
static int __attribute__((format(printf, 3, 4)))
sb_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int
sandbox_prepare(const struct sandbox_conf *sc, char *err, size_t errlen)
{
	struct passwd *pw;

	if (sc->disabled || sc->user == NULL)
		return 0;
	if (geteuid() != 0)
		return sb_fail(err, errlen,
		    "--user needs the edge to start as root");
	errno = 0;
	if ((pw = getpwnam(sc->user)) == NULL)
		return sb_fail(err, errlen, "--user %s: %s", sc->user,
		    errno ? strerror(errno) : "no such user");
	if (pw->pw_uid == 0)
		return sb_fail(err, errlen, "--user %s: that is root",
		    sc->user);
	sb_uid = pw->pw_uid;
	sb_gid = pw->pw_gid;
	return 0;
}

uid_t
sandbox_uid(void)
{
	return sb_uid != 0 ? sb_uid : geteuid();
}

/* chroot, the user, the capabilities (all but CAP_NET_BIND_SERVICE
 * with keep_bind) and no_new_privs, in that order. */
static int
drop_privs(const struct sandbox_conf *sc, int keep_bind, char *err,
    size_t errlen)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	uint32_t bind = keep_bind ? 1u << CAP_NET_BIND_SERVICE : 0;
	struct __user_cap_data_struct data[2] = { { .effective = bind,
	    .permitted = bind } };
	int cap;

	if (sc->chroot_dir != NULL && geteuid() != 0)
		return sb_fail(err, errlen,
		    "--chroot needs the edge to start as root");
	if (sc->chroot_dir != NULL && (chroot(sc->chroot_dir) == -1 ||
	    chdir("/") == -1))
		return sb_fail(err, errlen, "chroot %s: %s", sc->chroot_dir,
		    strerror(errno));
	if (sb_uid != 0) {
		/* Nothing the edge does later needs a capability but binding
		 * low ports; the bounding set goes too, so nothing can come
		 * back. */
		for (cap = 0; cap <= CAP_LAST_CAP; cap++)
			if (!(keep_bind && cap == CAP_NET_BIND_SERVICE))
				(void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
		if (keep_bind && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == -1)
			return sb_fail(err, errlen, "keepcaps: %s",
			    strerror(errno));
		if (setgroups(0, NULL) == -1 ||
		    setresgid(sb_gid, sb_gid, sb_gid) == -1 ||
		    setresuid(sb_uid, sb_uid, sb_uid) == -1)
			return sb_fail(err, errlen, "dropping to user %s: %s",
			    sc->user, strerror(errno));
		if (setuid(0) != -1)
			return sb_fail(err, errlen,
			    "could regain root after dropping it");
	}
	if (syscall(SYS_capset, &hdr, data) == -1)
		return sb_fail(err, errlen, "capset: %s", strerror(errno));
	(void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return sb_fail(err, errlen, "no_new_privs: %s",
		    strerror(errno));
	return 0;
}

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
		pb = (struct landlock_path_beneath_attr){ .parent_fd = fd,
		    .allowed_access = LANDLOCK_ACCESS_FS_READ_FILE };
		if (syscall(SYS_landlock_add_rule, ruleset,
		    LANDLOCK_RULE_PATH_BENEATH, &pb, 0) == -1)
			log_warn("landlock: %s stays unreadable: %s", files[i],
			    strerror(errno));
		close(fd);
	}
}

/* Deny every file-system access Landlock knows of, with no exception
 * (the resolver's files excepted). Returns 1 if confined, 0 if the
 * kernel has no Landlock, -1 on error. Sanitizer builds skip it. */
static int __attribute__((unused))
landlock_none(int resolver, char *err, size_t errlen)
{
	struct landlock_ruleset_attr attr;
	long abi;
	int fd, rc;

	abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);
	if (abi < 1)
		return 0;
	/* ABI 1 knows the rights 0-12, ABI 2 adds REFER (13), ABI 3
	 * TRUNCATE (14); the rights of later ABIs stay unhandled. */
	attr = (struct landlock_ruleset_attr){ .handled_access_fs =
	    (1ull << (abi < 3 ? 12 + abi : 15)) - 1 };
	fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (fd == -1)
		return sb_fail(err, errlen, "landlock: %s", strerror(errno));
	if (resolver)
		landlock_resolver_files(fd);
	rc = syscall(SYS_landlock_restrict_self, fd, 0) == -1 ?
	    sb_fail(err, errlen, "landlock: %s", strerror(errno)) : 1;
	close(fd);
	return rc;
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
struct sc_rule {
	int			 nr;
	unsigned		 who;
	uint32_t		 act;
	unsigned		 nargs;	/* 0: any arguments; 1: as cmp says */
	struct scmp_arg_cmp	 cmp;
};
#define RULE(c, w, act, n, a, op, x, y) \
	{ SCMP_SYS(c), w, act, n, { a, op, x, y } }
#define ANY(c, w)		RULE(c, w, SCMP_ACT_ALLOW, 0, 0, 0, 0, 0)
#define EQ(c, w, a, v)	RULE(c, w, SCMP_ACT_ALLOW, 1, a, SCMP_CMP_EQ, v, 0)
#define MASKED(c, w, a, m, v)	\
	RULE(c, w, SCMP_ACT_ALLOW, 1, a, SCMP_CMP_MASKED_EQ, m, v)
#define DENY(c, w, n, a, op, x, y) \
	RULE(c, w, SCMP_ACT_ERRNO(EPERM), n, a, op, x, y)
#define NO(c, w)		DENY(c, w, 0, 0, 0, 0, 0)
#define SAN_DENY(c, a, m, v)	DENY(c, F_SAN, 1, a, SCMP_CMP_MASKED_EQ, m, v)
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
	RULE(clone3, D, SCMP_ACT_ERRNO(ENOSYS), 0, 0, 0, 0, 0),
	NO(connect, F_SANR), NO(execve, F_SAN), NO(execveat, F_SAN),
	NO(creat, F_SAN),
	DENY(socket, F_SAN, 1, 0, SCMP_CMP_EQ, AF_UNIX, 0),
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
	scmp_filter_ctx ctx;
	size_t i;
	int rc = 0, sanitizer = 0;

#ifdef SANDBOX_SANITIZER
	sanitizer = 1;
	who = F_SAN | (who & F_RELAY ? F_SANR : 0);
#endif
	if ((ctx = seccomp_init(sanitizer ? SCMP_ACT_ALLOW :
	    SCMP_ACT_ERRNO(EPERM))) == NULL)
		return sb_fail(err, errlen, "seccomp_init failed");
	for (i = 0; rc == 0 && i < sizeof(sc_rules) / sizeof(*r); i++) {
		r = &sc_rules[i];
		if ((r->who & who) && seccomp_rule_add_array(ctx, r->act, r->nr,
		    r->nargs, &r->cmp) < 0)
			rc = sb_fail(err, errlen, "seccomp rule %d failed",
			    r->nr);
	}
	if (rc == 0 && seccomp_load(ctx) < 0)
		rc = sb_fail(err, errlen, "seccomp_load failed");
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
	int ll = 0;
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
	if (drop_privs(sc, keep_bind, err, errlen) == -1)
		return -1;
	if (geteuid() == 0 && sb_uid == 0 && role == SB_RELAY)
		log_warn("running as root: give --user to drop privileges");
#ifdef SANDBOX_SANITIZER
	if (role == SB_RELAY)
		log_warn("sanitizer build: no Landlock, seccomp allows by default "
		    "(exec, writes and the relay's connect still denied)");
#else
	if ((ll = landlock_none(role == SB_DIALLER && sc->outbound, err,
	    errlen)) == -1)
		return -1;
	if (ll == 0 && sc->chroot_dir == NULL && role == SB_RELAY)
		log_warn("no Landlock in this kernel: give --chroot an empty "
		    "directory to keep the edge away from the file system");
#endif
	/* getuid() is not in the filter. */
	uid = (long)getuid();
	if (seccomp_install(who[role], err, errlen) == -1)
		return -1;
	if (role == SB_RELAY)
		log_info("sandbox: uid %ld, capabilities %s, file system %s, "
		    "seccomp filter on, no connect (the dialler connects)", uid,
		    sc->bind_low_ports ? "net_bind_service only" : "none",
		    ll == 1 ? "closed (Landlock)" :
		    sc->chroot_dir != NULL ? "chroot" : "open");
	return 0;
}

int
sandbox_helper(const char *name, void (*serve)(int fd, void *arg), void *arg,
    char *err, size_t errlen)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1)
		return sb_fail(err, errlen, "socketpair: %s", strerror(errno));
	if ((pid = fork()) == -1) {
		sb_fail(err, errlen, "fork: %s", strerror(errno));
		close(sv[0]);
		sv[0] = -1;
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
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	serve(sv[1], arg);
	_exit(1);
}

/* One try of the self-test: denied (failed, and so it should), or an
 * error: it succeeded, or failed for another reason (errno). */
static void
selftest_log(const char *what, int failed, int denied)
{
	if (denied)
		log_info("sandbox selftest: %s denied: %s", what,
		    strerror(errno));
	else if (!failed)
		log_err("sandbox selftest: %s SUCCEEDED", what);
	else
		log_err("sandbox selftest: %s failed otherwise: %s", what,
		    strerror(errno));
}

void
sandbox_selftest(void)
{
	char *const argv[] = { (char *)"/bin/true", NULL };
	char *const envp[] = { NULL };
	struct sockaddr_in doc = { .sin_family = AF_INET,
	    .sin_port = htons(9), .sin_addr.s_addr = htonl(0xc0000201) };
	int fd, rc;

	fd = open("/tmp/sallyport-edge-selftest", O_WRONLY | O_CREAT | O_TRUNC,
	    0600);
	selftest_log("open for writing", fd == -1, fd == -1);
	if (fd != -1)
		close(fd);
	rc = execve(argv[0], argv, envp);
	selftest_log("exec", rc == -1, rc == -1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	selftest_log("unix socket", fd == -1, fd == -1);
	if (fd != -1)
		close(fd);
	/* A datagram socket: were connect() allowed, no packet would go. */
	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) != -1) {
		rc = connect(fd, (const struct sockaddr *)&doc, sizeof(doc));
		selftest_log("connect", rc == -1, rc == -1 && errno == EPERM);
		close(fd);
	}
}
