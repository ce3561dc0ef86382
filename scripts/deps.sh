#!/bin/sh
# deps.sh - install the Debian packages sallyport needs to build and test.
#
#   sh scripts/deps.sh              what the build, the tests (make test), the
#                                   demo and the benchmark use
#   sh scripts/deps.sh test-fresh   what `make test-fresh` needs on the host
#                                   that builds the fresh Debian 12 root
#
# This file is the one list: every package that any of them runs is named
# here, and nothing else installs packages (scripts/check-tools.sh only
# checks that what the tests run is there, naming the package).
#
# Idempotent and silent when everything is already installed. Runs
# `apt-get update` at most once, and only when something is missing; the
# downloads are retried, so a passing hiccup of the archive is not a
# failure. Never starts or enables a system service: while packages
# install, a policy-rc.d that answers 101 ("action forbidden") is in place,
# so invoke-rc.d / deb-systemd-invoke do not start the nginx or ssh services.
set -eu

# Build: compilers, the fuzzers' clang runtime (libclang_rt.fuzzer and the
# sanitizers' runtimes: clang links -fsanitize=fuzzer against them), libraries.
# Tests, demo and benchmark: the real servers and clients they start (sshd,
# sftp/scp, nginx, curl, vsftpd and lftp for FTP/FTPS, haproxy, iperf3,
# socat, fail2ban), the tools they call (ip and ss, ps, strace, prlimit,
# openssl, promtool, man, systemd-analyze, gnuplot, mandoc for make
# check-man, iptables for the transparent-source routing) and pytest.
PACKAGES="build-essential pkg-config clang libclang-rt-14-dev
libssl-dev libinih-dev libcmocka-dev libseccomp-dev
libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libsystemd-dev
python3 python3-pytest
openssh-server openssh-client nginx-light curl vsftpd lftp haproxy
netcat-openbsd iperf3 socat gnuplot-nox fail2ban python3-pyinotify
iproute2 iptables procps strace util-linux openssl prometheus systemd man-db mandoc"

# The host side of `make test-fresh` (scripts/test-fresh.sh): debootstrap
# builds the clean Debian 12 root; everything inside it comes from PACKAGES.
TEST_FRESH_PACKAGES="debootstrap"

case "${1:-}" in
    "")         ;;
    test-fresh) PACKAGES=$TEST_FRESH_PACKAGES ;;
    *)          echo "usage: deps.sh [test-fresh]" >&2; exit 2 ;;
esac

missing=""
for p in $PACKAGES; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *" ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "deps.sh: missing packages:$missing; not root and no sudo" >&2
    exit 1
fi

echo "deps.sh: installing:$missing" >&2

POLICY=/usr/sbin/policy-rc.d
SAVED="$POLICY.sallyport-saved"
policy_state=none   # none: untouched; created: ours, remove; replaced: restore
cleanup() {
    case "$policy_state" in
        created)  $SUDO rm -f "$POLICY" ;;
        replaced) $SUDO mv -f "$SAVED" "$POLICY" ;;
    esac
    policy_state=none
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Forbid every service start while the packages install (see invoke-rc.d(8):
# exit status 101 means "action forbidden by policy"). An existing
# policy-rc.d (container images ship one) is set aside and put back.
tmp=$(mktemp)
printf '#!/bin/sh\n# sallyport deps.sh: no service starts during install\nexit 101\n' >"$tmp"
if [ -e "$POLICY" ]; then
    $SUDO cp -p "$POLICY" "$SAVED"
    policy_state=replaced
else
    policy_state=created
fi
$SUDO install -m 0755 "$tmp" "$POLICY"
rm -f "$tmp"

# Each download is retried by apt (Acquire::Retries); the whole update and
# install is tried up to 3 times, a minute apart at most, before giving up.
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::Retries=5"
try=1
while :; do
    # shellcheck disable=SC2086
    if $APT update >/dev/null &&
       $APT install -y --no-install-recommends $missing >/dev/null; then
        break
    fi
    if [ "$try" -ge 3 ]; then
        echo "deps.sh: apt-get failed $try times; giving up" >&2
        exit 1
    fi
    echo "deps.sh: apt-get failed (try $try of 3); trying again" >&2
    sleep $((try * 20))
    try=$((try + 1))
done

# Packages that ship a service get it enabled by their maintainer scripts
# even when starting it is forbidden; undo that for what we just installed.
if command -v systemctl >/dev/null 2>&1; then
    for p in $missing; do
        case "$p" in
            openssh-server) units="ssh.service ssh.socket" ;;
            nginx-light)    units="nginx.service" ;;
            haproxy)        units="haproxy.service" ;;
            vsftpd)         units="vsftpd.service" ;;
            prometheus)     units="prometheus.service" ;;   # for promtool only
            iperf3)         units="iperf3.service" ;;
            *)              units="" ;;
        esac
        for u in $units; do
            $SUDO systemctl disable --quiet "$u" >/dev/null 2>&1 || true
        done
    done
fi
