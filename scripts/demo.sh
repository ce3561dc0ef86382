#!/bin/bash
# demo.sh - `make demo`: a throwaway PKI, a real OpenSSH sshd as the
# backend on a loopback port, an edge and an agent, an sftp upload and
# download through the edge to prove it, then wait for Ctrl-C.
# Nothing of the machine's own sshd is touched; everything lives in
# build/demo and is removed on the next run.
set -euo pipefail

BUILD=${SALLYPORT_BUILD:-build}
DIR=$PWD/$BUILD/demo
PY=/usr/bin/python3
pids=()

# stop RC: end everything this script started, exit with RC.
stop() {
	trap - EXIT INT TERM
	echo
	echo "demo: stopping"
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	exit "$1"
}
trap 'stop $?' EXIT
trap 'stop 0' INT TERM

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for FILE TEXT: until FILE contains TEXT, at most 15 s.
wait_for() {
	for _ in $(seq 150); do
		grep -q -- "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: timed out waiting for '$2' in $1" >&2
	tail -n 20 "$1" >&2
	exit 1
}

rm -rf "$DIR"
mkdir -p "$DIR/files"
cd "$DIR"
CTL=$(free_port); SSHD=$(free_port); PUB=$(free_port)

"$OLDPWD/$BUILD/sallyportctl" pki init pki >/dev/null

# The backend: sshd with its own host key, accepting one demo user key.
ssh-keygen -q -t ed25519 -N '' -f host_key
ssh-keygen -q -t ed25519 -N '' -f user_key
cp user_key.pub authorized_keys
[ "$(id -u)" -eq 0 ] && mkdir -p /run/sshd
cat > sshd_config <<CONF
ListenAddress 127.0.0.1:$SSHD
HostKey $DIR/host_key
AuthorizedKeysFile $DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PidFile none
Subsystem sftp internal-sftp
CONF
/usr/sbin/sshd -D -e -f sshd_config 2>sshd.log &
pids+=($!)

cat > agent.conf <<CONF
[agent]
name = demo-agent
edge = 127.0.0.1:$CTL
cert = pki/agent.crt
key  = pki/agent.key
ca   = pki/ca.crt

[service sftp]
listen  = 127.0.0.1:$PUB     ; opened on the edge
backend = 127.0.0.1:$SSHD    ; the sshd above, dialled by the agent
CONF

"$OLDPWD/$BUILD/sallyport-edge" --control 127.0.0.1:$CTL --cert pki/edge.crt \
	--key pki/edge.key --ca pki/ca.crt 2>edge.log &
pids+=($!)
wait_for edge.log "control listening"
"$OLDPWD/$BUILD/sallyport-agent" --config agent.conf 2>agent.log &
pids+=($!)
wait_for edge.log "service sftp open"

SFTP="sftp -P $PUB -i $DIR/user_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
DEST=$(id -un)@127.0.0.1
head -c 10485760 /dev/urandom > files/upload.bin
printf 'put files/upload.bin %s/files/on-server.bin\nget %s/files/on-server.bin files/download.bin\n' \
	"$DIR" "$DIR" > batch
$SFTP -b batch "$DEST" >/dev/null 2>sftp.log || { cat sftp.log >&2; exit 1; }
a=$(sha256sum < files/upload.bin | cut -d' ' -f1)
b=$(sha256sum < files/download.bin | cut -d' ' -f1)
if [ "$a" != "$b" ]; then
	echo "demo: FAILED: the file came back different" >&2
	exit 1
fi

cat <<TXT

sallyport demo is running (all on loopback):
  backend sshd   127.0.0.1:$SSHD   (never reached from outside)
  edge control   127.0.0.1:$CTL    (the agent dialled out to it)
  edge public    127.0.0.1:$PUB    (partners connect here)

Proved: a 10 MiB file went up and came back down through the edge with sftp,
SHA-256 $a both ways.

Try it yourself:
  $SFTP $DEST

Logs: $DIR/edge.log  $DIR/agent.log
Press Ctrl-C to stop everything.
TXT
tail -n 0 -f edge.log agent.log &
pids+=($!)
wait
