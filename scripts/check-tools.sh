#!/bin/sh
# check-tools.sh - is everything the build and the tests run on this
# machine? Run by `make test` after scripts/deps.sh, before anything is
# built, so that a package missing from deps.sh's list is named at once
# instead of surfacing as a test failure an hour later.
#
# Each line below is something the build or the tests use and the Debian
# package it comes from. This script installs nothing (deps.sh is the one
# install list): it only says what is missing and where it comes from.
set -u

missing=0

# need KIND WHAT PACKAGE: KIND is cmd (on PATH), file (exists) or user.
need() {
    case "$1" in
        cmd)  command -v "$2" >/dev/null 2>&1 ;;
        file) [ -e "$2" ] ;;
        user) getent passwd "$2" >/dev/null 2>&1 ;;
    esac && return 0
    echo "check-tools: missing $1 $2 (Debian package $3; scripts/deps.sh installs it, or lacks it in PACKAGES)" >&2
    missing=$((missing + 1))
}

# build
need cmd  cc                 build-essential
need cmd  make               build-essential
need cmd  nm                 build-essential
need cmd  pkg-config         pkg-config
need cmd  clang              clang
need file /usr/include/openssl/ssl.h     libssl-dev
need file /usr/include/ini.h             libinih-dev
need file /usr/include/cmocka.h          libcmocka-dev
need file /usr/include/seccomp.h         libseccomp-dev
need file /usr/include/microhttpd.h      libmicrohttpd-dev
need file /usr/include/jansson.h         libjansson-dev
need file "/usr/include/$(cc -print-multiarch 2>/dev/null)/curl/curl.h" libcurl4-openssl-dev
need file /usr/include/systemd/sd-daemon.h libsystemd-dev
# fuzzers: clang links -fsanitize=fuzzer against this runtime
if command -v clang >/dev/null 2>&1; then
    need file "$(clang -print-resource-dir)/lib/linux/libclang_rt.fuzzer-$(uname -m).a" \
        libclang-rt-14-dev
fi

# tests, demo, benchmark
# The Makefile runs Debian's /usr/bin/python3, whatever else is on PATH.
need file /usr/bin/python3    python3
if [ -x /usr/bin/python3 ] &&
   ! /usr/bin/python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "check-tools: missing python3 module pytest (Debian package python3-pytest; scripts/deps.sh installs it, or lacks it in PACKAGES)" >&2
    missing=$((missing + 1))
fi
need file /usr/sbin/sshd      openssh-server
need cmd  ssh                 openssh-client
need cmd  sftp                openssh-client
need cmd  scp                 openssh-client
need cmd  ssh-keygen          openssh-client
need file /usr/sbin/nginx     nginx-light
need cmd  curl                curl
need file /usr/sbin/vsftpd    vsftpd
need user ftp                 vsftpd
need cmd  lftp                lftp
need file /usr/sbin/haproxy   haproxy
need cmd  nc                  netcat-openbsd
need cmd  iperf3              iperf3
need cmd  socat               socat
need file /usr/bin/fail2ban-server fail2ban
need file /usr/bin/fail2ban-client fail2ban
if [ -x /usr/bin/python3 ] &&
   ! /usr/bin/python3 -c 'import pyinotify' >/dev/null 2>&1; then
    echo "check-tools: missing python3 module pyinotify (Debian package python3-pyinotify), fail2ban's backend in the tests" >&2
    missing=$((missing + 1))
fi
need file /usr/sbin/iptables  iptables
need cmd  gnuplot             gnuplot-nox
need cmd  ip                  iproute2
need cmd  ss                  iproute2
need cmd  ps                  procps
need cmd  strace              strace
need cmd  prlimit             util-linux
need cmd  openssl             openssl
need cmd  promtool            prometheus
need cmd  man                 man-db
need cmd  mandoc              mandoc
need cmd  systemd-analyze     systemd

if [ "$missing" -ne 0 ]; then
    echo "check-tools: $missing missing: the tests cannot run on this machine" >&2
    exit 1
fi
echo "check-tools: ok"
