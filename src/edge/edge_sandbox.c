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
#include <linux/capability.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
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
drop_user(const struct sandbox_conf *sc, char *err, size_t errlen)
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
		if (!(sc->bind_low_ports && cap == CAP_NET_BIND_SERVICE))
			(void)prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
	if (sc->bind_low_ports && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == -1) {
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
static int landlock_none(int *abi_out, int outbound, char *err, size_t errlen)
    __attribute__((unused));	/* sanitizer builds skip it */

/* With --allow-outbound the resolver must read its configuration: grant
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
landlock_none(int *abi_out, int outbound, char *err, size_t errlen)
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
	if (outbound)
		landlock_resolver_files(fd);
	if (syscall(SYS_landlock_restrict_self, fd, 0) == -1) {
		snprintf(err, errlen, "landlock: %s", strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 1;
}

static int
rule(scmp_filter_ctx ctx, uint32_t action, int nr, unsigned n,
    struct scmp_arg_cmp a)
{
	if (n == 0)
		return seccomp_rule_add(ctx, action, nr, 0);
	return seccomp_rule_add(ctx, action, nr, 1, a);
}

/* Threads (glibc's resolver), never a new process: clone
 * only with CLONE_THREAD, and clone3 (whose flags a filter cannot see)
 * says ENOSYS so glibc falls back to clone. */
static int
seccomp_threads(scmp_filter_ctx ctx)
{
	struct scmp_arg_cmp none = SCMP_A0(SCMP_CMP_EQ, 0);

	if (rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(set_robust_list), 0, none) < 0 ||
	    rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(rseq), 0, none) < 0 ||
	    rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
	    SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)) < 0 ||
	    rule(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0, none) < 0)
		return -1;
	return 0;
}

/* With --allow-outbound: what edge_out.c and glibc's resolver need on
 * top of a relay's calls (measured with strace over test_outbound.py). */
static int
seccomp_outbound(scmp_filter_ctx ctx)
{
	static const int calls[] = {
		SCMP_SYS(connect), SCMP_SYS(sigaltstack), SCMP_SYS(sendmmsg), SCMP_SYS(ioctl),
		SCMP_SYS(sched_getaffinity),
	};
	struct scmp_arg_cmp none = SCMP_A0(SCMP_CMP_EQ, 0);
	size_t i;

	for (i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
		if (rule(ctx, SCMP_ACT_ALLOW, calls[i], 0, none) < 0)
			return -1;
	return seccomp_threads(ctx);
}

/* Allow each of calls[0..n) whatever its arguments. 0 or -1. */
static int
allow_all(scmp_filter_ctx ctx, const int *calls, size_t n)
{
	struct scmp_arg_cmp none = SCMP_A0(SCMP_CMP_EQ, 0);
	size_t i;

	for (i = 0; i < n; i++)
		if (rule(ctx, SCMP_ACT_ALLOW, calls[i], 0, none) < 0)
			return -1;
	return 0;
}

/* What the relay process makes on top of the base (measured with strace
 * over the integration tests). */
static int
seccomp_relay(scmp_filter_ctx ctx, int outbound)
{
	static const int calls[] = {
		SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(shutdown),
		SCMP_SYS(accept4), SCMP_SYS(accept), SCMP_SYS(epoll_wait),
		SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl), SCMP_SYS(bind),
		SCMP_SYS(listen), SCMP_SYS(setsockopt), SCMP_SYS(getsockopt),
		SCMP_SYS(getsockname), SCMP_SYS(getpeername), SCMP_SYS(fcntl),
		SCMP_SYS(pipe2), SCMP_SYS(splice), SCMP_SYS(lseek),
		SCMP_SYS(newfstatat), SCMP_SYS(fstat), SCMP_SYS(prlimit64),
		SCMP_SYS(uname), SCMP_SYS(sysinfo),
	};

	if (allow_all(ctx, calls, sizeof(calls) / sizeof(calls[0])) < 0 ||
	    /* Sockets of the internet families only: no AF_UNIX, no
	     * netlink, nothing that reaches local services. */
	    rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
	    SCMP_A0(SCMP_CMP_EQ, AF_INET)) < 0 ||
	    rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
	    SCMP_A0(SCMP_CMP_EQ, AF_INET6)) < 0 ||
	    /* Read-only opens (OpenSSL may look for its configuration);
	     * Landlock or the chroot leave nothing to read anyway. */
	    rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
	    SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC |
	    O_APPEND, O_RDONLY)) < 0)
		return -1;
	if (outbound)
		return seccomp_outbound(ctx);
	/* SIOCOUTQ only: a socket's send queue drains before it is reset
	 * (the outbound set allows all). */
	return rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
	    SCMP_A1(SCMP_CMP_EQ, SIOCOUTQ));
}

/* A sanitizer build allows by default; deny exec, writing files and
 * Unix sockets all the same. */
static int
seccomp_denies(scmp_filter_ctx ctx)
{
	static const struct { int nr; unsigned arg; uint64_t mask, val; } d[] = {
		{ SCMP_SYS(open), 1, O_ACCMODE, O_WRONLY },
		{ SCMP_SYS(open), 1, O_ACCMODE, O_RDWR },
		{ SCMP_SYS(open), 1, O_CREAT, O_CREAT },
		{ SCMP_SYS(openat), 2, O_ACCMODE, O_WRONLY },
		{ SCMP_SYS(openat), 2, O_ACCMODE, O_RDWR },
		{ SCMP_SYS(openat), 2, O_CREAT, O_CREAT },
	};
	uint32_t deny = SCMP_ACT_ERRNO(EPERM);
	struct scmp_arg_cmp none = SCMP_A0(SCMP_CMP_EQ, 0), c;
	size_t i;

	if (rule(ctx, deny, SCMP_SYS(execve), 0, none) < 0 ||
	    rule(ctx, deny, SCMP_SYS(execveat), 0, none) < 0 ||
	    rule(ctx, deny, SCMP_SYS(creat), 0, none) < 0 ||
	    rule(ctx, deny, SCMP_SYS(socket), 1,
	    SCMP_A0(SCMP_CMP_EQ, AF_UNIX)) < 0)
		return -1;
	for (i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		c = (struct scmp_arg_cmp){ d[i].arg, SCMP_CMP_MASKED_EQ,
		    d[i].mask, d[i].val };
		if (rule(ctx, deny, d[i].nr, 1, c) < 0)
			return -1;
	}
	return 0;
}

/* The system calls a running edge makes, and nothing else. Denied calls
 * fail with EPERM rather than kill: a refused call is an error the edge
 * logs, not a crash. Sanitizer builds, whose runtime needs a looser
 * default (LeakSanitizer reads /proc and stops threads at exit), allow by
 * default and deny what matters explicitly. */
static int
seccomp_install(int keyproc, int outbound, char *err, size_t errlen)
{
	static const int base_calls[] = {
		SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap),
		SCMP_SYS(madvise), SCMP_SYS(futex), SCMP_SYS(getpid),
		SCMP_SYS(gettid), SCMP_SYS(getrandom), SCMP_SYS(clock_gettime),
		SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
		SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(rt_sigaction),
		SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
		SCMP_SYS(restart_syscall), SCMP_SYS(exit), SCMP_SYS(exit_group),
		SCMP_SYS(sched_yield), SCMP_SYS(tgkill), SCMP_SYS(read),
		SCMP_SYS(write), SCMP_SYS(recvmsg), SCMP_SYS(sendmsg),
		SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(close),
		SCMP_SYS(poll), SCMP_SYS(ppoll),
	};
	scmp_filter_ctx ctx;
	int rc = -1, sanitizer = 0;

#ifdef SANDBOX_SANITIZER
	sanitizer = 1;
#endif
	if ((ctx = seccomp_init(sanitizer ? SCMP_ACT_ALLOW :
	    SCMP_ACT_ERRNO(EPERM))) == NULL) {
		snprintf(err, errlen, "seccomp_init failed");
		return -1;
	}
	if (sanitizer) {
		if (seccomp_denies(ctx) < 0)
			goto out;
	} else if (allow_all(ctx, base_calls,
	    sizeof(base_calls) / sizeof(base_calls[0])) < 0 ||
	    (!keyproc && seccomp_relay(ctx, outbound) < 0) ||
	    /* Memory, but never executable memory. */
	    rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
	    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) < 0 ||
	    rule(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
	    SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)) < 0)
		goto out;
	if (seccomp_load(ctx) < 0) {
		snprintf(err, errlen, "seccomp_load failed");
		goto out;
	}
	rc = 0;
out:
	if (rc == -1 && err[0] == '\0')
		snprintf(err, errlen, "building the seccomp filter failed");
	seccomp_release(ctx);
	return rc;
}

static int
sandbox_common(const struct sandbox_conf *sc, int keyproc, char *err,
    size_t errlen)
{
	int abi = 0, ll;
	long uid;

	err[0] = '\0';
	if (sc->disabled) {
		if (!keyproc)
			log_warn("sandbox disabled (--no-sandbox): for debugging only");
		return 0;
	}
#ifndef SANDBOX_SANITIZER
	/* No core dumps and no ptrace by same-uid processes (LeakSanitizer
	 * needs ptrace on itself at exit, so sanitizer builds stay dumpable). */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
#endif
	if (drop_user(sc, err, errlen) == -1)
		return -1;
	if (geteuid() == 0 && !sb_have_user)
		log_warn("running as root: give --user to drop privileges");
	if (caps_set(!keyproc && sc->bind_low_ports, err, errlen) == -1)
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "no_new_privs: %s", strerror(errno));
		return -1;
	}
#ifdef SANDBOX_SANITIZER
	ll = 0;
	if (!keyproc)
		log_warn("sanitizer build: no Landlock, seccomp allows by default "
		    "(exec and writes still denied)");
#else
	if ((ll = landlock_none(&abi, !keyproc && sc->outbound, err, errlen)) == -1)
		return -1;
	if (ll == 0 && sc->chroot_dir == NULL && !keyproc)
		log_warn("no Landlock in this kernel: give --chroot an empty "
		    "directory to keep the edge away from the file system");
#endif
	uid = (long)getuid();
	if (seccomp_install(keyproc, !keyproc && sc->outbound, err,
	    errlen) == -1)
		return -1;
	if (!keyproc)
		log_info("sandbox: uid %ld, capabilities %s, file system %s, "
		    "seccomp filter on%s", uid,
		    sc->bind_low_ports ? "net_bind_service only" : "none",
		    ll == 1 ? "closed (Landlock)" :
		    sc->chroot_dir != NULL ? "chroot" : "open",
		    sc->outbound ? " (outbound: connect and resolver allowed)" : "");
	(void)abi;
	return 0;
}

int
sandbox_enter(const struct sandbox_conf *sc, char *err, size_t errlen)
{
	return sandbox_common(sc, 0, err, errlen);
}

int
sandbox_enter_keyproc(const struct sandbox_conf *sc, char *err, size_t errlen)
{
	return sandbox_common(sc, 1, err, errlen);
}

void
sandbox_selftest(void)
{
	char *const argv[] = { (char *)"/bin/true", NULL };
	char *const envp[] = { NULL };
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
}
