#!/bin/bash
# test-fresh.sh - `make test-fresh`: does the README's `make test` pass on a
# Debian 12 machine nobody prepared?
#
# Builds a clean Debian 12 root with debootstrap (--variant=minbase, from
# the Debian archive the host's apt already uses; the mirror is read from
# the apt sources, never written here), caches it in $TEST_FRESH_CACHE
# (default /var/cache/sallyport-test-fresh), copies it to a working root,
# puts a fresh clone of HEAD in /root/sallyport and runs there, as root,
# what the README's Quick start says: install make, then `make test`.
# Nothing else is installed: whatever the tests need must come from
# scripts/deps.sh. Only the downloaded .deb files are kept between runs
# (a cache of downloads, bind-mounted on the root's /var/cache/apt/archives).
#
# Mounted in the root for the tests: proc, sys, dev, dev/pts, a tmpfs on
# run, and the root bound onto itself so that `ip netns exec` can make /
# a slave mount. All of it is unmounted on every way out, and processes
# left running in the root are ended first.
#
# Exit 0 and a PASS line when the README's promise held; otherwise a FAIL
# line that says what failed.
set -euo pipefail

SUITE=bookworm                      # Debian 12
CACHE=${TEST_FRESH_CACHE:-/var/cache/sallyport-test-fresh}
PRISTINE=$CACHE/$SUITE-minbase      # debootstrap's output, never run in
DEBS=$CACHE/debs                    # downloaded packages, reused
WORK=$CACHE/work                    # this run's root: a copy of PRISTINE
R=$WORK/root
MAX_AGE_DAYS=14                     # rebuild the pristine root after this
REPO=$(cd "$(dirname "$0")/.." && pwd)
T0=$(date +%s)

say()  { echo "test-fresh: $*"; }
fail() { say "FAIL: $*"; exit 1; }
minutes() { echo "$(( ($(date +%s) - T0 + 30) / 60 )) min"; }

[ "$(id -u)" -eq 0 ] || fail "run as root (debootstrap, chroot and mounts need it)"
for t in debootstrap chroot git findmnt flock; do
    command -v "$t" >/dev/null 2>&1 ||
        fail "$t not found: run 'sh scripts/deps.sh test-fresh' (make test-fresh does)"
done

# ---------------------------------------------------------------------------
# The Debian archive the host's apt uses, per suite: deb822 files
# (*.sources, `URIs:` lines) and one-line files (sources.list, *.list).

# archive_uri SUITE: print the first URI the host's apt uses for SUITE.
archive_uri() {
    local f u
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        u=$(awk -v suite="$1" '
            function flush() {
                if (!done && en != "no" && (" " ty " ") ~ / deb / &&
                    (" " su " ") ~ (" " suite " ") && ur != "") {
                    split(ur, a, " "); print a[1]; done = 1
                }
                ty = su = ur = en = ""
            }
            /^[ \t]*#/  { next }
            /^[ \t]*$/  { flush(); next }
            {
                k = tolower($1); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
                if (k == "types:") ty = v
                else if (k == "suites:") su = v
                else if (k == "uris:") ur = v
                else if (k == "enabled:") en = tolower(v)
            }
            END { flush() }' "$f")
        [ -n "$u" ] && { echo "${u%/}"; return 0; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        u=$(awk -v suite="$1" '
            $1 == "deb" {
                i = 2
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f")
        [ -n "$u" ] && { echo "${u%/}"; return 0; }
    done
    return 1
}

MIRROR=$(archive_uri "$SUITE") ||
    fail "no Debian archive for $SUITE in the host's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/)"

# The host's way of reaching the archive (a proxy, a snapshot's expired
# Valid-Until) goes into the root with it.
apt_setting() { apt-config shell V "$1" 2>/dev/null | sed -n "s/^V='\(.*\)'$/\1/p"; }
HTTP_PROXY_SETTING=$(apt_setting Acquire::http::Proxy)
APT_CONF=""
for k in Acquire::http::Proxy Acquire::https::Proxy Acquire::Check-Valid-Until Acquire::Check-Date; do
    v=$(apt_setting "$k")
    [ -n "$v" ] && APT_CONF="$APT_CONF$k \"$v\";"$'\n'
done

# ---------------------------------------------------------------------------
# One run at a time; cleanup on every way out.

mkdir -p "$CACHE" "$DEBS/partial"
exec 9>"$CACHE/lock"
flock -n 9 || fail "another make test-fresh is running (lock $CACHE/lock)"

# mounts_under DIR: mount points at or below DIR, deepest first.
mounts_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo |
        sort -r
}

# Processes whose root is the working root: daemons a failed test left.
kill_inside() {
    local p n=0
    for sig in TERM KILL; do
        for p in /proc/[0-9]*; do
            [ "$(readlink "$p/root" 2>/dev/null)" = "$R" ] || continue
            kill "-$sig" "${p#/proc/}" 2>/dev/null && n=$((n + 1))
        done
        [ "$n" -eq 0 ] && return 0
        # give TERM a moment to work before KILL, bounded
        for _ in $(seq 50); do
            ls -l /proc/[0-9]*/root 2>/dev/null | grep -q " -> $R\$" || return 0
            sleep 0.1
        done
    done
}

unmount_all() {
    local m left
    kill_inside
    for m in $(mounts_under "$R"); do
        umount -l "$m" 2>/dev/null || true
    done
    left=$(mounts_under "$R")
    if [ -n "$left" ]; then
        say "WARNING: still mounted after cleanup:"$'\n'"$left" >&2
        return 1
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    unmount_all || rc=1
    exit "$rc"
}
trap cleanup EXIT
trap 'say "FAIL: interrupted"; exit 130' INT
trap 'say "FAIL: terminated"; exit 143' TERM HUP

# remove_tree DIR: rm -rf, but never through a mount point.
remove_tree() {
    [ -e "$1" ] || return 0
    if [ -n "$(mounts_under "$1")" ]; then
        fail "refusing to remove $1: something is still mounted under it"
    fi
    rm -rf --one-file-system "$1"
}

# A previous run killed before its cleanup may have left mounts behind.
unmount_all || fail "could not unmount what a previous run left under $R"
remove_tree "$WORK"

# ---------------------------------------------------------------------------
# The pristine root: debootstrap once, retried, rebuilt when stale.

if [ -f "$PRISTINE/.complete" ] &&
   [ -n "$(find "$PRISTINE/.complete" -mtime +"$MAX_AGE_DAYS" 2>/dev/null)" ]; then
    say "cached root older than $MAX_AGE_DAYS days: building it again"
    remove_tree "$PRISTINE"
fi
if [ ! -f "$PRISTINE/.complete" ]; then
    say "building a clean Debian 12 root: debootstrap --variant=minbase $SUITE from $MIRROR"
    mkdir -p "$CACHE/debootstrap-debs"
    try=1
    while :; do
        remove_tree "$PRISTINE"
        if env ${HTTP_PROXY_SETTING:+http_proxy="$HTTP_PROXY_SETTING"} \
               debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap-debs" \
               "$SUITE" "$PRISTINE" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
            touch "$PRISTINE/.complete"
            break
        fi
        if [ "$try" -ge 3 ]; then
            tail -n 20 "$CACHE/debootstrap.log"
            fail "debootstrap failed $try times (log: $CACHE/debootstrap.log); the README's promise was not tested"
        fi
        say "debootstrap failed (try $try of 3; log: $CACHE/debootstrap.log): trying again"
        sleep $((try * 30))
        try=$((try + 1))
    done
fi

# ---------------------------------------------------------------------------
# This run's root: a copy of the pristine one, the host's archive and name
# service, and a fresh clone of HEAD.

mkdir -p "$WORK"
cp -a "$PRISTINE" "$R"
rm -f "$R/.complete"

{
    echo "# written by sallyport's scripts/test-fresh.sh from the host's apt sources"
    for s in "$SUITE" "$SUITE-updates" "$SUITE-security"; do
        u=$(archive_uri "$s") || continue
        printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n' "$u" "$s"
    done
} >"$R/etc/apt/sources.list.d/debian.sources"
rm -f "$R/etc/apt/sources.list"
[ -n "$APT_CONF" ] && printf '%s' "$APT_CONF" >"$R/etc/apt/apt.conf.d/00test-fresh-host"
cp -L /etc/resolv.conf "$R/etc/resolv.conf"
cp -L /etc/hosts "$R/etc/hosts"

HEAD=$(git -C "$REPO" rev-parse HEAD)
git clone -q --no-hardlinks "$REPO" "$R/root/sallyport"
git -C "$R/root/sallyport" checkout -q --detach "$HEAD"
say "root $R, clone of $(git -C "$REPO" log -1 --format='%h %s' "$HEAD")"
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]; then
    say "note: uncommitted changes in $REPO are not part of this run"
fi

mount --bind "$R" "$R"              # ip netns exec makes / a slave mount
mount --make-private "$R"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --bind /dev "$R/dev"
mount --make-private "$R/dev"       # what is mounted below stays in the root
mount --bind /dev/pts "$R/dev/pts"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mount --bind "$DEBS" "$R/var/cache/apt/archives"

# ---------------------------------------------------------------------------
# The README's Quick start, as root in the root, with a clean environment.

say "running the README's commands in the fresh root: apt-get install make; make test"
# In the background, so that a signal to this script is handled at once
# (bash runs traps only between foreground commands): the cleanup ends
# whatever runs in the root.
chroot "$R" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM=dumb \
    /bin/bash -euo pipefail -c '
        cd /root/sallyport
        for try in 1 2 3; do
            if apt-get -q -o Acquire::Retries=5 update >/dev/null &&
               DEBIAN_FRONTEND=noninteractive apt-get -q -o Acquire::Retries=5 \
                   install -y --no-install-recommends make >/dev/null; then
                break
            fi
            [ "$try" -lt 3 ] || { echo "apt-get install make failed 3 times" >&2; exit 1; }
            sleep $((try * 20))
        done
        make test' </dev/null &
rc=0
wait $! || rc=$?

if [ "$rc" -eq 0 ]; then
    say "PASS: the README's \`make test\` passed in a fresh Debian 12 root ($(minutes), commit ${HEAD:0:12})"
    unmount_all
    remove_tree "$WORK"
    exit 0
fi
fail "the README's \`make test\` failed (exit $rc) in a fresh Debian 12 root ($(minutes), commit ${HEAD:0:12}): see above; the root is kept in $R until the next run"
