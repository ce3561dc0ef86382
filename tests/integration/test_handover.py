"""Restart or upgrade either daemon without cutting a transfer (issue 20).

An edge started with --handover-socket takes every listener of the edge
running there; the old one relays its sessions to their end, then exits.
An agent with handover_socket does the same for the admin, SOCKS and
CONNECT listeners, and the edges give new sessions to the new agent only.
Real sshd, sftp, vsftpd, lftp and curl on 127.0.0.1; the edges keep their
default sandbox.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import sp

MiB = sp.MiB
BIG = 100 * MiB
TRANSFERS = 20


# --------------------------------------------------------------------------
# helpers

@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """sshd for many short sessions on a busy machine: without MaxStartups
    throttling (its random drops of unauthenticated connections would be
    sshd's refusals, not the gateway's) and without a re-exec per
    connection."""
    b = sp.start_sshd(tmp_path_factory.mktemp("sshd"))
    b.proc.stop()
    cfg = Path(b.proc.argv[-1])
    cfg.write_text(cfg.read_text().replace("MaxStartups 100:30:200",
                                           "MaxStartups 4000"))
    b.proc = sp.Proc("sshd", ["/usr/sbin/sshd", "-D", "-e", "-r", "-f", cfg],
                     cfg.parent / "sshd-busy.log")
    sp.wait_until(lambda: sp.read_banner(b.port, timeout=2), 20,
                  "sshd banner")
    yield b
    b.proc.stop()


def run_dir(tmp_path, mode=0o700):
    """A directory for the hand-over sockets: root's, writable by nobody
    else (hosock_connect refuses anything else)."""
    d = tmp_path / "run"
    d.mkdir(exist_ok=True)
    os.chmod(d, mode)
    return d


def edge_argv(pki, control, sock, extra=()):
    return [sp.EDGE_BIN, "--control", control, "--cert", pki.edge_crt,
            "--key", pki.edge_key, "--ca", pki.ca_crt,
            "--handover-socket", sock] + [str(x) for x in extra]


def start_edge(tmp_path, pki, sock, control=None, tag="edge", extra=()):
    """An edge with --handover-socket sock; with control (an address in
    use by a running edge) it takes over from that one: returns once the
    old one has released the control port."""
    fresh = control is None
    port = sp.free_port() if fresh else int(control.rsplit(":", 1)[1])
    control = control or f"{sp.LOOPBACK}:{port}"
    proc = sp.Proc(tag, edge_argv(pki, control, sock, extra),
                   tmp_path / f"{tag}.log")
    proc.wait_log("hand-over: the next edge process can take over",
                  timeout=90)
    if not fresh:
        assert proc.find("released the control port"), proc.tail()
    return sp.Edge(proc, port)


def sha256(path):
    return sp.sha256_file(path)


def big_file(path, size=BIG):
    """size random bytes, written once per test (head -c); the digest."""
    with open(path, "wb") as f:
        subprocess.run(["head", "-c", str(size), "/dev/urandom"], stdout=f,
                       check=True)
    return sha256(path)


class Opener:
    """Opens a session every 50 ms, throughout, each in a thread of its
    own so that one slow session does not hold back the next: connects
    to the service, reads the backend's SSH banner through the gateway,
    answers with a version line and closes. Every attempt must be served:
    a refused, reset or silent connection is a failure."""

    def __init__(self, port, every=0.05):
        self.port = port
        self.every = every
        self.attempts = 0
        self.failures = []
        self.lock = threading.Lock()
        self.stop_evt = threading.Event()
        self.workers = []
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _one(self):
        why = None
        try:
            s = socket.create_connection((sp.LOOPBACK, self.port),
                                         timeout=60)
            try:
                buf = b""
                while b"\n" not in buf and len(buf) < 512:
                    chunk = s.recv(512)
                    if not chunk:
                        break
                    buf += chunk
                if not buf.startswith(b"SSH-2.0"):
                    why = f"no banner: {buf!r}"
                else:
                    s.sendall(b"SSH-2.0-sallyport-opener\r\n")
            finally:
                s.close()
        except OSError as e:
            why = f"{type(e).__name__}: {e}"
        with self.lock:
            self.attempts += 1
            if why is not None:
                self.failures.append(why)

    def _loop(self):
        nxt = time.monotonic()
        while not self.stop_evt.is_set():
            w = threading.Thread(target=self._one, daemon=True)
            w.start()
            self.workers.append(w)
            nxt += self.every
            self.stop_evt.wait(max(0, nxt - time.monotonic()))

    def stop(self):
        self.stop_evt.set()
        self.t.join(10)
        for w in self.workers:
            w.join(60)
        return self.attempts, list(self.failures)


class Transfers:
    """TRANSFERS sftp sessions of BIG bytes each through port, half up and
    half down, slowed (sftp -l) so that every one is still running when
    the hand-over comes."""

    def __init__(self, sshd, port, tmp_path, tag):
        self.sshd = sshd
        self.tmp = tmp_path
        self.src = tmp_path / "big.bin"
        self.digest = big_file(self.src)
        self.remote_src = sshd.root / f"big-{tag}.bin"
        os.link(self.src, self.remote_src)
        self.procs, self.outs = [], []
        for i in range(TRANSFERS):
            if i % 2 == 0:
                out = sshd.root / f"up-{tag}-{i}.bin"
                cmd = f"put {self.src} {out}"
            else:
                out = tmp_path / f"down-{i}.bin"
                cmd = f"get {self.remote_src} {out}"
            # 32768 kbit/s: 4 MiB/s, a transfer lasts 25 s at least;
            # AES-GCM, the cheapest cipher where AES is in hardware.
            self.procs.append(sshd.sftp_popen(
                port, [cmd], tmp_path, name=f"t{i}",
                extra=["-l", "32768", "-c", "aes128-gcm@openssh.com"]))
            self.outs.append(out)

    def wait_moving(self, timeout=180):
        """Until every transfer has moved a MiB, and none has ended."""
        def moving():
            for p, out in zip(self.procs, self.outs):
                assert p.poll() is None, (
                    f"transfer ended early ({p.returncode}):\n"
                    + p.out_path.read_text())
                if not out.exists() or out.stat().st_size < MiB:
                    return False
            return True
        sp.wait_until(moving, timeout, "every transfer moving")

    def running(self):
        return sum(p.poll() is None for p in self.procs)

    def check(self, timeout=900):
        deadline = time.monotonic() + timeout
        for i, p in enumerate(self.procs):
            try:
                rc = p.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                rc = "timeout"
            assert rc == 0, (f"transfer {i} failed ({rc}):\n"
                             + p.out_path.read_text())
        for i, out in enumerate(self.outs):
            assert sha256(out) == self.digest, f"transfer {i}: corrupt"

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in self.outs + [self.src, self.remote_src]:
            try:
                os.unlink(f)
            except OSError:
                pass


class Pid:
    """A process this test did not start (an agent's upgrade starts it):
    stopped at the end like the others."""

    def __init__(self, pid):
        self.pid = pid

    def alive(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    def stop(self):
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            sp.wait_until(lambda: not self.alive(), 20, f"pid {self.pid} gone")


def ctl(agent, *args):
    return sp.run([sp.CTL_BIN] + list(args) + ["--url", agent.url,
                  "--token-file", agent.token_file], timeout=60)


def metric(agent, name, **labels):
    return sp.metric(sp.parse_metrics(agent.metrics()), name, **labels)


def closed_big(proc, pid=None):
    """The sessions proc logged closed cleanly with BIG bytes one way."""
    n = 0
    for ln in proc.find("session "):
        if pid is not None and f"[{pid}]:" not in ln:
            continue
        m = re.search(r"closed service=\S+ client=\S+ (?:backend=\S+ "
                      r"edge=\S+ )?bytes_in=(\d+) bytes_out=(\d+) .*"
                      r"reason=(\S+)", ln)
        if m and max(int(m.group(1)), int(m.group(2))) >= BIG:
            assert m.group(3) in ("client-closed", "server-closed"), ln
            n += 1
    return n


# --------------------------------------------------------------------------
# edge hand-over

@pytest.mark.parametrize("link", ["tls", "plain"])
def test_edge_handover_sftp(tmp_path, pki, sshd, link):
    """20 SFTP transfers of 100 MiB and a new session every 50 ms while a
    new edge takes over: every transfer completes with the right SHA-256,
    every new session is served, and the old edge exits when the last of
    its sessions ends."""
    sock = run_dir(tmp_path) / "edge.sock"
    old = start_edge(tmp_path, pki, sock, tag="edge-old")
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, old,
                                 {"sftp": (port, [sshd.port])},
                                 data_link=link)
    tr = Transfers(sshd, port, tmp_path, f"e{link}")
    opener = Opener(port)
    try:
        tr.wait_moving()
        amark = agent.proc.mark()
        new = start_edge(tmp_path, pki, sock, control=old.addr,
                         tag="edge-new")
        assert tr.running() == TRANSFERS
        agent.proc.wait_log("its process hands over to a new one: "
                            "reconnecting at once", since=amark)
        new.proc.wait_log(f"service sftp open on {sp.LOOPBACK}:{port}")
        old.proc.wait_log("hand-over: released to edge process "
                          f"{new.proc.pid}; draining")
        # The agent shows the old edge draining, with what it has left.
        edge_l = {"edge": old.addr}
        sp.wait_until(lambda: (metric(agent, "sallyport_edge_draining_"
                                      "sessions", **edge_l) or 0) >= 1,
                      30, "draining sessions in /metrics")
        assert metric(agent, "sallyport_edge_draining_processes",
                      **edge_l) == 1
        out = ctl(agent, "status").stdout
        assert re.search(r"connected\s+\S+\s+\d+\s+1 process, \d+ "
                         r"sessions", out), out
        # The old edge relays its transfers to their end, then goes.
        assert old.proc.alive()
        tr.check()
        assert old.proc.wait(120) == 0, old.proc.tail()
        old.proc.wait_log("drained: no session left; exiting")
        sp.wait_until(lambda: metric(agent, "sallyport_edge_draining_"
                                     "processes", **edge_l) == 0,
                      30, "no draining edge process in /metrics")
        time.sleep(1)               # new sessions after it went, too
    finally:
        attempts, failures = opener.stop()
        tr.cleanup()
    assert failures == [], f"{len(failures)} of {attempts}: {failures[:5]}"
    assert attempts >= 100, attempts
    # Every transfer stayed on the old edge; new sessions went to the new.
    assert closed_big(old.proc) == TRANSFERS
    assert new.proc.count(["new service=sftp"]) > 0
    assert new.proc.alive()
    # Session ids go on from the old edge's (RELEASE carries the next):
    # the agent tells sessions apart by them.
    both = session_ids(old.proc) & session_ids(new.proc)
    assert not both, f"session ids given by both edges: {sorted(both)[:5]}"


def session_ids(proc):
    return {int(m.group(1)) for m in
            re.finditer(r"session (\d+) new ", proc.log())}


# --------------------------------------------------------------------------
# agent hand-over

@pytest.mark.parametrize("link", ["tls", "plain"])
def test_agent_handover_sftp(tmp_path, pki, sshd, link):
    """The same load while a new agent takes over (sallyportctl upgrade):
    the edge gives new sessions to the new agent only, the old one
    finishes its transfers, then exits; status and /metrics show it
    draining meanwhile."""
    edge = sp.start_edge(tmp_path, pki)
    port = sp.free_port()
    sock = run_dir(tmp_path) / "agent.sock"
    old = sp.start_agent_admin(tmp_path, pki, edge,
                               {"sftp": (port, [sshd.port])}, data_link=link,
                               agent_extra=[f"handover_socket = {sock}"])
    tr = Transfers(sshd, port, tmp_path, f"a{link}")
    opener = Opener(port)
    new = None
    try:
        tr.wait_moving()
        out = ctl(old, "upgrade").stdout
        m = re.search(r"new agent process (\d+) started", out)
        assert m, out
        new = Pid(int(m.group(1)))
        old.proc.wait_log(f"hand-over: released to agent process {new.pid};"
                          " services withdrawn; draining")
        assert tr.running() == TRANSFERS
        # The admin API is the new process's; it shows the old draining.
        st, _, body = old.api("GET", "/api/v1/status")
        assert st == 200 and body["pid"] == new.pid, body
        assert body["draining"]["processes"] == 1, body
        sp.wait_until(lambda: (metric(old, "sallyport_draining_sessions")
                               or 0) >= 1, 30, "draining sessions in /metrics")
        out = ctl(old, "status").stdout
        assert re.search(r"draining: older agent 1 process, \d+ sessions",
                         out), out
        tr.check()
        assert old.proc.wait(120) == 0, old.proc.tail()
        old.proc.wait_log(f"[{old.proc.pid}]: info: drained: no session "
                          "left; exiting")
        assert new.alive()
        sp.wait_until(lambda: old.api("GET", "/api/v1/status")[2]
                      ["draining"] is None, 30, "nothing draining")
        time.sleep(1)
    finally:
        attempts, failures = opener.stop()
        tr.cleanup()
        if new is not None:
            new.stop()
    assert failures == [], f"{len(failures)} of {attempts}: {failures[:5]}"
    assert attempts >= 100, attempts
    assert closed_big(old.proc, old.proc.pid) == TRANSFERS
    assert old.proc.count([f"[{new.pid}]:", "opened service=sftp"]) > 0
    # One agent name, two processes: the edge told them apart.
    assert edge.proc.count("agent agent1 connected") == 2


# --------------------------------------------------------------------------
# FTP: a control session and its passive data connections across a
# hand-over

def ftp_gateway(tmp_path, pki, edge, agent_keys=()):
    """vsftpd (plain FTP, its own passive ports: the agent rewrites
    227) behind an FTP service; returns (backend, agent, port)."""
    base = sp.free_port_range(100)
    passive = (base, base + 99)
    b = sp.start_vsftpd(tmp_path / "ftp", host="127.0.0.2")
    port = sp.free_port()
    conf = sp.write_ftp_agent_conf(tmp_path / "agent.conf", pki, edge, "ftp",
                                   port, [b.addr], "ftp", passive)
    text = conf.read_text().replace(
        "[agent]\n", "[agent]\n" + "".join(f"{k} = {v}\n"
                                          for k, v in agent_keys), 1)
    conf.write_text(text)
    mark = edge.proc.mark()
    proc = sp.Proc("agent", [sp.AGENT_BIN, "--config", conf],
                   tmp_path / "agent.log")
    edge.proc.wait_log(f"ftp service ftp: passive ports {passive[0]}-"
                       f"{passive[1]} open", since=mark)
    return b, sp.Agent(proc, conf, {}), port


FLAG_WAIT = "!sh -c 'while [ ! -e {0} ]; do sleep 0.1; done'"


@pytest.mark.parametrize("who", ["edge", "agent"])
def test_handover_ftp(tmp_path, pki, who):
    """lftp holds an FTP control session across a hand-over: a download
    runs through it, and once the new process has taken over the same
    control session opens new passive data connections (a download, an
    upload, a listing); meanwhile curl opens new sessions. Every file
    arrives whole; the old process exits after the control session ends."""
    sock = run_dir(tmp_path) / f"{who}.sock"
    if who == "edge":
        edge = start_edge(tmp_path, pki, sock, tag="edge-old")
        b, agent, port = ftp_gateway(tmp_path, pki, edge)
    else:
        edge = sp.start_edge(tmp_path, pki)
        b, agent, port = ftp_gateway(tmp_path, pki, edge,
                                     [("handover_socket", sock)])
    src = tmp_path / "src.bin"
    digest = big_file(src, 30 * MiB)
    shutil.copy(src, b.root / "big.bin")
    flag = tmp_path / "go"
    a1, a2, up = tmp_path / "a1.bin", tmp_path / "a2.bin", "up/x.bin"
    # 2 MB/s: the first download is still running when the hand-over
    # comes; then the session waits for the flag, and goes on.
    script = ["set net:limit-rate 2000000", f"get big.bin -o {a1}",
              FLAG_WAIT.format(flag), "set net:limit-rate 0",
              f"get big.bin -o {a2}", f"put {src} -o {up}", "cls -l up/"]
    # A script file, one command a line: a "!" command takes its line.
    sf = tmp_path / "lftp.script"
    sf.write_text("\n".join(
        ["set ftp:passive-mode on", "set net:max-retries 1",
         "set net:timeout 60", "set cmd:fail-exit yes",
         "set ftp:prefer-epsv no", "set ftp:ssl-allow no",
         f"open -u anonymous,x ftp://{sp.LOOPBACK}:{port}"] + script) + "\n")
    lf = subprocess.Popen(["lftp", "-f", sf],
                          stdout=open(tmp_path / "lftp.out", "wb"),
                          stderr=subprocess.STDOUT)
    new = None
    try:
        sp.wait_until(lambda: a1.exists() and a1.stat().st_size > 2 * MiB,
                      60, "the first download to run")
        assert lf.poll() is None
        if who == "edge":
            new = start_edge(tmp_path, pki, sock, control=edge.addr,
                             tag="edge-new")
            old_proc = edge.proc
            new.proc.wait_log("ftp service ftp: passive ports")
        else:
            new = sp.Proc("agent-new", [sp.AGENT_BIN, "--config",
                                        agent.conf], tmp_path / "agent-new.log")
            old_proc = agent.proc
            old_proc.wait_log("hand-over: released to agent process")
        assert lf.poll() is None and a1.stat().st_size < 30 * MiB
        # A new session through the new process, whole.
        got = tmp_path / "curl.bin"
        sp.curl_ftp(["-u", "anonymous:x", "--disable-epsv", "-o", got,
                     f"ftp://{sp.LOOPBACK}:{port}/big.bin"])
        assert sha256(got) == digest
        flag.touch()
        assert lf.wait(300) == 0, (tmp_path / "lftp.out").read_text()
        assert old_proc.wait(60) == 0, old_proc.tail()
    finally:
        if lf.poll() is None:
            lf.kill()
    out = (tmp_path / "lftp.out").read_text()
    assert re.search(r"\s31457280\s.*x\.bin", out), out
    for f in (a1, a2, b.root / up):
        assert sha256(f) == digest, f
    # The data connections after the hand-over belonged to the control
    # session that began before it: the new edge sent them to the agent
    # with its id; the edge sent them to the old agent that holds it.
    if who == "edge":
        ctl_id = re.search(r"ftp-data control=(\d+) ",
                           "\n".join(old_proc.lines())).group(1)
        assert new.proc.count(f"ftp-data control={ctl_id} ") >= 3
        assert not new.proc.find("refused: no control session")
    else:
        lines = old_proc.lines()
        rel = next(i for i, ln in enumerate(lines)
                   if "hand-over: released to agent process" in ln)
        assert sum(f"[{old_proc.pid}]:" in ln and "ftp-data" in ln
                   for ln in lines[rel:]) >= 3


def test_edge_drain_timeout(tmp_path, pki, sshd):
    """--drain-timeout: the old edge cuts what is left, says so, exits."""
    sock = run_dir(tmp_path) / "edge.sock"
    old = start_edge(tmp_path, pki, sock, tag="edge-old",
                     extra=["--drain-timeout", "2"])
    port = sp.free_port()
    sp.start_agent(tmp_path, pki, old, {"sftp": (port, [sshd.port])})
    held = sp.tcp_connect(port, timeout=30)
    assert sp.recv_line(held, timeout=30).startswith(b"SSH-2.0")
    start_edge(tmp_path, pki, sock, control=old.addr, tag="edge-new")
    assert old.proc.wait(60) == 0, old.proc.tail()
    old.proc.wait_log("drain timeout: cutting 1 sessions still running "
                      "after 2 s")
    old.proc.wait_log(["closed service=sftp", "reason=stopping",
                       'detail="drain timeout"'])
    sp.wait_closed(held, 30)
    held.close()
    # The new edge serves.
    assert sp.read_banner(port, timeout=30)


def test_edge_handover_refused_other_uid(tmp_path, pki, sshd):
    """Only the edge's own user (or root) takes over: a process of
    another uid that reaches the socket is refused, gets no listener, and
    the running edge serves on."""
    # pytest's own directories are root's alone: one the other uid can
    # reach, root's and writable by nobody else.
    d = Path(tempfile.mkdtemp(prefix="sp-handover-"))
    os.chmod(d, 0o755)
    request_cleanup = d
    sock = d / "edge.sock"
    old = start_edge(tmp_path, pki, sock, tag="edge-old")
    port = sp.free_port()
    sp.start_agent(tmp_path, pki, old, {"sftp": (port, [sshd.port])})
    os.chmod(sock, 0o666)       # let the other uid reach it at all

    # A process of uid nobody asks for the listeners.
    hello = frame_handover(1, [(1, struct.pack(">H", 1))])
    r = subprocess.run(
        ["setpriv", "--reuid", "nobody", "--regid", "nogroup",
         "--clear-groups", "/usr/bin/python3", "-c", ASK_LISTENERS,
         str(sock), hello.hex()],
        capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout)
    assert got["fds"] == 0
    assert got["step"] == 10, got            # HO_REFUSED
    assert "runs as uid 65534" in got["text"]
    old.proc.wait_log("hand-over refused: process")
    assert old.proc.find("runs as uid 65534, not as uid 0 or root")

    # The real edge program as nobody: refused by the running one, and
    # says so; nothing changed.
    pdir = d / "pki"
    pdir.mkdir()
    for f in ("edge.crt", "edge.key", "ca.crt"):
        shutil.copy(pki.dir / f, pdir / f)
        os.chmod(pdir / f, 0o644)
    os.chmod(pdir, 0o755)
    r = subprocess.run(
        ["setpriv", "--reuid", "nobody", "--regid", "nogroup",
         "--clear-groups", sp.EDGE_BIN, "--control", old.addr,
         "--cert", pdir / "edge.crt", "--key", pdir / "edge.key",
         "--ca", pdir / "ca.crt", "--handover-socket", sock],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"hand-over at \S+ failed: running process "
                     f"{old.proc.pid}: it refused: process \\d+ runs as uid "
                     r"65534, not as uid 0 or root", r.stderr), r.stderr
    assert old.proc.alive()
    assert not old.proc.find("took the listeners")
    assert sp.read_banner(port, timeout=30)
    shutil.rmtree(request_cleanup, ignore_errors=True)


def test_edge_handover_unsafe_directory(tmp_path, pki):
    """A hand-over socket in a directory others may write is not used."""
    d = run_dir(tmp_path, 0o777)
    r = subprocess.run(edge_argv(pki, f"{sp.LOOPBACK}:{sp.free_port()}",
                                 d / "edge.sock"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "writable by nobody else" in r.stderr, r.stderr


def test_edge_handover_other_control_refused(tmp_path, pki, sshd):
    """A new edge must take over the control port its agents know: with
    another --control it exits, and the running edge serves on."""
    sock = run_dir(tmp_path) / "edge.sock"
    old = start_edge(tmp_path, pki, sock, tag="edge-old")
    port = sp.free_port()
    sp.start_agent(tmp_path, pki, old, {"sftp": (port, [sshd.port])})
    r = subprocess.run(edge_argv(pki, f"{sp.LOOPBACK}:{sp.free_port()}",
                                 sock),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "take over with the same --control" in r.stderr, r.stderr
    assert old.proc.alive()
    assert not old.proc.find("took the listeners")
    assert sp.read_banner(port, timeout=30)


def test_edge_handover_abandoned(tmp_path, pki, sshd):
    """A new process that takes the listeners and goes away before it
    says it runs with them changes nothing: the running edge serves on.
    What it was offered is every listener, each once."""
    sock = run_dir(tmp_path) / "edge.sock"
    old = start_edge(tmp_path, pki, sock, tag="edge-old")
    port = sp.free_port()
    sp.start_agent(tmp_path, pki, old, {"sftp": (port, [sshd.port])})
    hello = frame_handover(1, [(1, struct.pack(">H", 1))])
    r = subprocess.run(["/usr/bin/python3", "-c", ASK_LISTENERS, str(sock),
                        hello.hex()], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout)
    assert got["step"] == 3, got             # HO_OFFERED
    assert sorted(got["ports"]) == sorted([old.control_port, port])
    old.proc.wait_log("hand-over to edge process")
    assert old.proc.find("failed: it closed the connection; serving on")
    assert sp.read_banner(port, timeout=30)
    assert old.proc.alive()


class Notify:
    """A stand-in for systemd's notification socket: what each process
    sent, with its pid (SO_PASSCRED)."""

    def __init__(self, path):
        self.path = str(path)
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.s.bind(self.path)
        self.s.settimeout(0.1)
        self.got = []           # (pid, text)

    def env(self):
        return dict(os.environ, NOTIFY_SOCKET=self.path)

    def poll(self):
        try:
            while True:
                msg, anc, _, _ = self.s.recvmsg(4096, socket.CMSG_SPACE(12))
                pid = 0
                for lvl, typ, data in anc:
                    if typ == socket.SCM_CREDENTIALS:
                        pid = struct.unpack("iII", data[:12])[0]
                self.got.append((pid, msg.decode()))
        except (socket.timeout, BlockingIOError):
            pass
        return self.got


@pytest.mark.parametrize("who", ["edge", "agent"])
def test_handover_systemd_notify(tmp_path, pki, sshd, who):
    """What systemd sees (Type=notify, NotifyAccess=main): the first
    process says READY=1; at the hand-over it, the main process, names the
    new one MAINPID=, and the new one says nothing until it is main. The
    edge's --detach (ExecReload) returns 0 once the new edge runs."""
    note = Notify(tmp_path / "notify")
    sock = run_dir(tmp_path) / f"{who}.sock"
    port = sp.free_port()
    if who == "edge":
        control = f"{sp.LOOPBACK}:{sp.free_port()}"
        old = sp.Proc("edge-old", edge_argv(pki, control, sock),
                      tmp_path / "edge-old.log", env=note.env())
        old.wait_log("hand-over: the next edge process can take over")
        edge = sp.Edge(old, int(control.rsplit(":", 1)[1]))
        sp.start_agent(tmp_path, pki, edge, {"sftp": (port, [sshd.port])})
        # Its output goes on in the child (to the journal, under systemd):
        # a file, not a pipe run() would wait on.
        with open(tmp_path / "edge-new.log", "wb") as out:
            r = subprocess.run(edge_argv(pki, control, sock, ["--detach"]),
                               env=note.env(), stdout=out,
                               stderr=subprocess.STDOUT, timeout=120)
        assert r.returncode == 0, (tmp_path / "edge-new.log").read_text()
        line = old.wait_log("hand-over: released to edge process")
    else:
        edge = sp.start_edge(tmp_path, pki)
        a = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"sftp": (port, [sshd.port])},
                                 agent_extra=[f"handover_socket = {sock}"])
        a.proc.stop()           # again, with the notification socket
        old = sp.Proc("agent-old", [sp.AGENT_BIN, "--config", a.conf],
                      tmp_path / "agent-old.log", env=note.env())
        old.wait_log("hand-over: the next agent process can take over")
        sp.wait_until(lambda: sp.api_request(a.admin_port, "GET",
                                             "/api/v1/status", a.token)[0]
                      == 200, 30, "admin API")
        st, _, body = sp.api_request(a.admin_port, "POST", "/api/v1/upgrade",
                                     a.token)
        assert st == 202, body
        line = old.wait_log("hand-over: released to agent process")
    new = Pid(int(re.search(r"released to \w+ process (\d+)", line)
                  .group(1)))
    try:
        assert sp.read_banner(port, timeout=30)
        sp.wait_until(lambda: any(t == f"MAINPID={new.pid}"
                                  for _, t in note.poll()), 30, "MAINPID")
        assert old.wait(60) == 0, old.tail()
        got = note.poll()
        assert (old.pid, f"MAINPID={new.pid}") in got, got
        assert got[0] == (old.pid, "READY=1"), got
        # The new process has not spoken: it is not main until MAINPID.
        assert all(pid != new.pid for pid, _ in got), got
    finally:
        new.stop()


# A client of the hand-over socket: sends the HELLO frame given in hex,
# reads the answers until OFFERED or REFUSED, prints what came as JSON.
ASK_LISTENERS = r"""
import array, json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.sendall(bytes.fromhex(sys.argv[2]))
out = {"fds": 0, "ports": [], "step": 0, "text": ""}
while True:
    msg, anc, flags, _ = s.recvmsg(4096, socket.CMSG_SPACE(128 * 4))
    if not msg:
        break
    for lvl, typ, data in anc:
        fds = array.array("i")
        fds.frombytes(data[:len(data) - len(data) % 4])
        for fd in fds:
            t = socket.socket(fileno=fd)
            out["ports"].append(t.getsockname()[1])
            out["fds"] += 1
    pos, step = 8, 0
    while pos + 4 <= len(msg):
        tag, n = struct.unpack(">HH", msg[pos:pos + 4])
        v = msg[pos + 4:pos + 4 + n]
        if tag == 45:
            step = v[0]
        if tag == 3:
            out["text"] = v.decode()
        pos += 4 + n
    out["step"] = step
    if step in (3, 10):
        break
print(json.dumps(out))
"""


def frame_handover(step, attrs):
    """A HANDOVER frame (type 24) with HO_STEP (45) and attrs [(tag, v)]."""
    payload = struct.pack(">HH", 45, 1) + bytes([step])
    for tag, v in attrs:
        payload += struct.pack(">HH", tag, len(v)) + v
    return struct.pack(">HHI", 24, 0, len(payload)) + payload
