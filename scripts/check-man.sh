#!/bin/sh
# check-man.sh [BUILD] - the man pages are clean and say what the programs do.
#
# For every page in man/:
#  - mandoc's linter reports nothing, at its "style" level (stricter than
#    "warning");
#  - mandoc and man(1) (groff, through man-db) both render it without a
#    complaint.
# Then, against the programs themselves, so that no list kept here can go
# stale:
#  - every option that `--help` of sallyport-edge, sallyport-agent and
#    sallyportctl prints appears in that program's page, and every option
#    the page's OPTIONS section lists is still in --help (a removed option
#    must leave the page too);
#  - every key the agent's configuration loader accepts appears in
#    sallyport-agent.conf(5) as "key =", and every "key =" the page lists
#    is still accepted. The keys are the names the loader compares with
#    strcmp(name, "...") in src/agent/agent_cfg.c and src/agent/ftp_cfg.c:
#    a key is accepted there or nowhere. Sections likewise.
#
# Prints each problem and exits 1; exits 2 when it cannot run.
set -eu
build=${1:-build}
src=src/agent
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

command -v mandoc >/dev/null 2>&1 ||
	{ echo "check-man: mandoc missing (Debian package mandoc)" >&2; exit 2; }
command -v man >/dev/null 2>&1 ||
	{ echo "check-man: man missing (Debian package man-db)" >&2; exit 2; }
for p in sallyport-edge sallyport-agent sallyportctl; do
	[ -x "$build/$p" ] ||
		{ echo "check-man: $build/$p missing: run make" >&2; exit 2; }
done

problem() {
	echo "check-man: $*" >&2
	fail=1
}

# The page as plain text, one paragraph per line (no filling into a
# width, so an option or a key is never split), overstrike removed.
render() {
	mandoc -T ascii -O width=1000 "$1" | sed 's/.\x08//g'
}

# Whether the word (an option or a key, taken literally) is in file,
# not as part of a longer word.
has_word() {
	grep -qE -- "(^|[^A-Za-z0-9_-])$1([^A-Za-z0-9_-]|\$)" "$2"
}

# --- lint and render ---------------------------------------------------------

for page in man/*.[0-9]; do
	if ! mandoc -T lint -W style "$page" >"$tmp/lint" 2>&1 || [ -s "$tmp/lint" ]; then
		problem "$page: mandoc -T lint -W style:"
		sed 's/^/  /' "$tmp/lint" >&2
	fi
	if ! mandoc -T utf8 "$page" >/dev/null 2>"$tmp/err" || [ -s "$tmp/err" ]; then
		problem "$page: mandoc -T utf8 fails:"
		sed 's/^/  /' "$tmp/err" >&2
	fi
	if ! MANPAGER=cat MANWIDTH=80 man --warnings -l "$page" >"$tmp/out" \
	    2>"$tmp/err" || [ -s "$tmp/err" ] || [ ! -s "$tmp/out" ]; then
		problem "$page: man -l fails or warns:"
		sed 's/^/  /' "$tmp/err" >&2
	fi
done

# --- options -----------------------------------------------------------------

# Options printed by a --help: words starting with - or -- that follow a
# blank, a comma, a bracket, a parenthesis or a bar.
help_options() {
	"$build/$1" --help | grep -oE -- '(^|[][ ,|(])--?[A-Za-z][A-Za-z0-9-]*' |
	    sed 's/^[][ ,|(]*//' | sort -u
}

# Options a page lists as the tags of its OPTIONS section (indented 7
# columns in mandoc's output; their descriptions are indented further).
page_options() {
	awk '/^[A-Z]/ { sec = $0; next }
	    sec == "OPTIONS" && /^       -/ { print }' "$1" |
	    grep -oE -- '(^|[ ,|[])--?[A-Za-z][A-Za-z0-9-]*' |
	    sed 's/^[][ ,|]*//' | sort -u
}

for p in sallyport-edge sallyport-agent sallyportctl; do
	page=man/$p.8
	[ -f "$page" ] || { problem "$page missing"; continue; }
	render "$page" >"$tmp/$p.txt"
	help_options "$p" >"$tmp/$p.help"
	[ -s "$tmp/$p.help" ] ||
		{ echo "check-man: $p --help printed no option" >&2; exit 2; }
	n=0
	while read -r opt; do
		n=$((n + 1))
		has_word "$opt" "$tmp/$p.txt" ||
			problem "$page: $opt (in $p --help) is not documented"
	done <"$tmp/$p.help"
	page_options "$tmp/$p.txt" >"$tmp/$p.page"
	while read -r opt; do
		grep -qxF -- "$opt" "$tmp/$p.help" ||
			problem "$page: OPTIONS lists $opt, which $p --help does not have"
	done <"$tmp/$p.page"
	echo "check-man: $p: $n options in --help"
done

# --- configuration keys ------------------------------------------------------

conf=man/sallyport-agent.conf.5
render "$conf" >"$tmp/conf.txt"
grep -ohE 'strcmp\(name, "[a-z_]+"\)' "$src/agent_cfg.c" "$src/ftp_cfg.c" |
    sed -E 's/.*"([a-z_]+)".*/\1/' | sort -u >"$tmp/keys"
grep -ohE 'strcmp\(section, "[a-z]+"\)' "$src/agent_cfg.c" |
    sed -E 's/.*"([a-z]+)".*/[\1]/' | sort -u >"$tmp/sections"
grep -qE 'strncmp\(section, "service ", 8\)' "$src/agent_cfg.c" &&
    echo "[service" >>"$tmp/sections"
# A loader rewritten some other way must not make this check pass by
# finding nothing.
if [ "$(wc -l <"$tmp/keys")" -lt 20 ] || ! grep -qx edge "$tmp/keys" ||
    [ "$(wc -l <"$tmp/sections")" -lt 4 ]; then
	echo "check-man: cannot find the agent's keys in $src/agent_cfg.c" \
	    "(strcmp(name, \"...\")): update this script" >&2
	exit 2
fi
while read -r k; do
	grep -qE "(^|[^a-z_])$k =" "$tmp/conf.txt" ||
		problem "$conf: key $k (accepted by $src/agent_cfg.c) is not documented"
done <"$tmp/keys"
while read -r s; do
	grep -qF -- "$s" "$tmp/conf.txt" ||
		problem "$conf: section $s is not documented"
done <"$tmp/sections"
# The keys the page lists: "key =" at the start of a tag or of a line of
# the example.
sed -nE 's/^       ([a-z_]+) =.*/\1/p' "$tmp/conf.txt" | sort -u >"$tmp/listed"
while read -r k; do
	grep -qxF "$k" "$tmp/keys" ||
		problem "$conf: lists key $k, which the agent does not accept"
done <"$tmp/listed"
echo "check-man: sallyport-agent.conf: $(wc -l <"$tmp/keys") keys accepted"

if [ "$fail" -ne 0 ]; then
	echo "check-man: FAIL (above)" >&2
	exit 1
fi
echo "check-man: ok"
