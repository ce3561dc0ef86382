#!/bin/sh
# deps.sh - install the Debian packages sallyport needs to build and test.
#
# Idempotent and silent when everything is already installed. Runs
# `apt-get update` at most once, and only when something is missing. Never
# starts or enables a system service: while packages install, a policy-rc.d
# that answers 101 ("action forbidden") is in place, so invoke-rc.d /
# deb-systemd-invoke do not start the nginx or ssh services.
set -eu

PACKAGES="build-essential pkg-config clang libssl-dev libinih-dev libcmocka-dev libseccomp-dev
netcat-openbsd iperf3 socat gnuplot-nox
openssh-server openssh-client nginx-light curl strace python3 python3-pytest
iproute2 openssl procps
libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libsystemd-dev
prometheus systemd man-db haproxy"

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

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends $missing >/dev/null

# Packages that ship a service get it enabled by their maintainer scripts
# even when starting it is forbidden; undo that for what we just installed.
if command -v systemctl >/dev/null 2>&1; then
    for p in $missing; do
        case "$p" in
            openssh-server) units="ssh.service ssh.socket" ;;
            nginx-light)    units="nginx.service" ;;
            haproxy)        units="haproxy.service" ;;
            prometheus)     units="prometheus.service" ;;   # for promtool only
            iperf3)         units="iperf3.service" ;;
            *)              units="" ;;
        esac
        for u in $units; do
            $SUDO systemctl disable --quiet "$u" >/dev/null 2>&1 || true
        done
    done
fi
