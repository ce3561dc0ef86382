#!/bin/sh
# check-edge.sh BUILD - the edge links only what runs in the DMZ.
#
# The daemons are built with -ffunction-sections and linked with
# --gc-sections, so a binary holds only the functions something in it
# calls. This lists the functions the edge binary holds that come from
# src/common/ (shared code), and fails if it holds anything of the
# agent's or sallyportctl's own, or one of the shared functions that only
# the inside may run: accepting and refusing streams (the agent's half of
# a multiplexed link), refusing on a plain link, a TLS client, dialling.
set -eu
build=${1:-build}
edge=$build/sallyport-edge
[ -x "$edge" ] || { echo "check-edge: $edge missing: run make" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

nm --defined-only "$edge" | awk '$2 ~ /^[Tt]$/ {print $3}' | sort -u >"$tmp/edge"
for o in "$build"/obj/agent/*.o "$build"/obj/ctl/*.o; do
	nm --defined-only "$o" | awk '$2 == "T" && $3 != "main" {print $3}'
done | sort -u >"$tmp/inside"
for o in "$build"/obj/common/*.o; do
	nm --defined-only "$o" | awk '$2 == "T" {print $3}'
done | sort -u >"$tmp/common"
printf '%s\n' mux_accept mux_refuse plink_refuse tlsx_client_ctx dial_start \
    proxy_encode stats_parse cfg_load | sort -u >>"$tmp/inside"
sort -u -o "$tmp/inside" "$tmp/inside"

bad=$(comm -12 "$tmp/edge" "$tmp/inside")
shared=$(comm -12 "$tmp/edge" "$tmp/common" | wc -l)
if [ -n "$bad" ]; then
	echo "check-edge: the edge links code that only runs inside:" >&2
	echo "$bad" | sed 's/^/  /' >&2
	exit 1
fi
echo "check-edge: ok: $(wc -l <"$tmp/edge") functions, $shared of them from src/common/, none of the agent's"
