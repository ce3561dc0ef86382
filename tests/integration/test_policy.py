"""Who is connecting: PROXY protocol to backends and from front load
balancers, per-service access policy enforced at the edge, and the agent's
audit log.

Clients use distinct loopback source addresses (127.0.0.x) so that the
address each component reports can be told apart. All traffic stays on
127.0.0.0/8.
"""

import os
import re
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

import sp
from sp import LOOPBACK, MiB

EDGE_NEW = re.compile(r"session (\d+) new service=(\S+) client=(\S+)")
EDGE_REFUSED = re.compile(r"session (\d+) refused service=(\S+) client=(\S+) "
                          r"reason=(\S+)")

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, sport, dst="127.0.0.1", dport=80):
    body = (socket.inet_aton(src) + socket.inet_aton(dst)
            + struct.pack(">HH", sport, dport))
    return V2_SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(body)) + body


def dropped_after(src_ip, port, payload):
    """Connect from src_ip and send payload; True if the connection is
    reset or closed with nothing received (however early that happens)."""
    try:
        s = sp.connect_from(src_ip, port)
    except OSError:
        return True
    try:
        s.sendall(payload)
    except OSError:
        s.close()
        return True
    line = sp.recv_line(s, timeout=15)
    s.close()
    return line is None


def sessions(recs):
    return [r for r in recs if r.get("event") == "session"]


def assert_audit_complete(edge, audit_path, timeout=30):
    """Every session the edge started or refused (one by one) appears in
    the audit log exactly once, and nothing else does."""
    def edge_ids():
        ids = set()
        for ln in edge.proc.lines():
            m = EDGE_NEW.search(ln) or EDGE_REFUSED.search(ln)
            if m:
                ids.add(int(m.group(1)))
        return ids

    def complete():
        want = edge_ids()
        got = [r["session"] for r in sessions(sp.read_audit(audit_path))]
        return want == set(got) and (want, got)
    try:
        want, got = sp.wait_until(complete, timeout, "audit log complete")
    except AssertionError:
        want = edge_ids()
        got = [r["session"] for r in sessions(sp.read_audit(audit_path))]
        raise AssertionError(f"edge sessions not in audit: "
                             f"{sorted(want - set(got))[:20]}; audit "
                             f"sessions unknown to the edge: "
                             f"{sorted(set(got) - want)[:20]}")
    assert len(got) == len(set(got)), "a session is in the audit log twice"
    for r in sessions(sp.read_audit(audit_path)):
        for k in ("session", "service", "edge", "client_addr", "client_port",
                  "backend", "start", "end", "bytes_in", "bytes_out",
                  "reason"):
            assert k in r, f"audit record without {k}: {r}"
        assert r["reason"] in ("client-closed", "server-closed", "denied",
                               "limit", "timeout", "error", "killed",
                               "refused", "stopping"), r
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                            r["start"]), r
        assert r["start"] <= r["end"], r
    return want


@pytest.fixture
def count_server():
    s = sp.CountServer(reply=0)
    yield s
    s.close()


def agent_with(tmp_path, pki, edge, services, audit=True):
    keys = [("audit_log", tmp_path / "audit.log")] if audit else []
    return sp.start_agent_ex(tmp_path, pki, edge, services, agent_keys=keys)


# --------------------------------------------------------------------------
# PROXY protocol toward the backend (nginx logs the real client)

@pytest.mark.parametrize("version", ["v1", "v2"])
def test_nginx_sees_client_address(tmp_path, pki, edge, version):
    ng = sp.start_nginx_proxy_protocol(tmp_path / "nginx")
    sha = sp.random_file(ng.root / "f.bin", 3 * MiB)
    port = sp.free_port()
    agent_with(tmp_path, pki, edge, {"web": {
        "listen": port, "backends": [ng.port],
        "keys": [("proxy_protocol", version)]}})
    out = tmp_path / "got.bin"
    r = sp.run(["curl", "-sS", "--fail", "--interface", "127.0.0.5",
                "-o", out, f"http://{LOOPBACK}:{port}/f.bin"],
               timeout=60, check=False)
    assert r.returncode == 0, r.stdout
    assert sp.sha256_file(out) == sha
    line = sp.wait_until(lambda: [ln for ln in ng.access_lines()
                                  if "GET /f.bin" in ln], 20,
                         "nginx access log line")[0]
    # $proxy_protocol_addr is the partner; $remote_addr the agent
    assert line.startswith("127.0.0.5:"), line
    assert " 200 " in line, line
    rec = sp.wait_audit(tmp_path / "audit.log",
                        lambda r: r.get("client_addr") == "127.0.0.5")[0]
    assert rec["service"] == "web"
    assert rec["backend"] == f"{LOOPBACK}:{ng.port}"
    assert rec["bytes_out"] >= 3 * MiB
    assert_audit_complete(edge, tmp_path / "audit.log")


def test_proxy_header_bytes_and_off(tmp_path, pki, edge):
    """The header is the first thing the backend reads, it is not counted
    as the client's bytes, and with proxy_protocol off nothing is added."""
    on, off = sp.CountServer(reply=777), sp.CountServer(reply=0)
    try:
        p_on, p_off = sp.free_port(), sp.free_port()
        agent_with(tmp_path, pki, edge, {
            "on": {"listen": p_on, "backends": [on.port],
                   "keys": [("proxy_protocol", "v1")]},
            "off": {"listen": p_off, "backends": [off.port]}})
        for port in (p_on, p_off):
            s = sp.greeted_from("127.0.0.7", port)
            assert s is not None
            s.sendall(b"x" * 1000)
            s.shutdown(socket.SHUT_WR)
            sp.recv_all(s)
            s.close()
        sp.wait_until(lambda: on.conns() and off.conns(), 20, "backends done")
        head, total = on.conns()[0]
        m = re.match(rb"PROXY TCP4 127\.0\.0\.7 127\.0\.0\.1 (\d+) (\d+)\r\n",
                     head)
        assert m, head[:120]
        assert int(m.group(2)) == p_on
        assert head[m.end():] == b"x" * (512 - m.end())
        assert total == m.end() + 1000
        assert off.conns()[0] == (b"x" * 512, 1000)
        recs = sp.wait_audit(tmp_path / "audit.log",
                             lambda r: r.get("event") == "session", count=2)
        by = {r["service"]: r for r in recs}
        assert by["on"]["bytes_in"] == 1000
        assert by["on"]["bytes_out"] == len(sp.CountServer.GREETING) + 777
        assert by["on"]["client_port"] == int(m.group(1))
        assert by["off"]["bytes_in"] == 1000
        assert by["off"]["bytes_out"] == len(sp.CountServer.GREETING)
        for r in recs:     # the client half-closed first
            assert r["reason"] == "client-closed", r
        assert_audit_complete(edge, tmp_path / "audit.log")
    finally:
        on.close()
        off.close()


# --------------------------------------------------------------------------
# HAProxy in front of the edge (accept_proxy_from)

def test_haproxy_in_front(tmp_path, pki, edge):
    ng = sp.start_nginx_proxy_protocol(tmp_path / "nginx")
    sha = sp.random_file(ng.root / "f.bin", 1 * MiB)
    port = sp.free_port()
    agent_with(tmp_path, pki, edge, {"web": {
        "listen": port, "backends": [ng.port],
        "keys": [("proxy_protocol", "v2"),
                 ("accept_proxy_from", "127.0.0.1/32")]}})
    hp = sp.start_haproxy(tmp_path / "haproxy", port, "send-proxy-v2")
    out = tmp_path / "got.bin"
    r = sp.run(["curl", "-sS", "--fail", "--interface", "127.0.0.6",
                "-o", out, f"http://{LOOPBACK}:{hp.port}/f.bin"],
               timeout=60, check=False)
    assert r.returncode == 0, r.stdout
    assert sp.sha256_file(out) == sha
    line = sp.wait_until(lambda: [ln for ln in ng.access_lines()
                                  if "GET /f.bin" in ln], 20, "nginx log")[0]
    assert line.startswith("127.0.0.6:"), line
    rec = sp.wait_audit(tmp_path / "audit.log",
                        lambda r: r.get("event") == "session")[0]
    assert rec["client_addr"] == "127.0.0.6", rec
    assert rec["reason"] in ("client-closed", "server-closed"), rec
    edge.proc.wait_log(["session", "new service=web client=127.0.0.6:"])

    # A valid header, but from a peer outside accept_proxy_from: refused.
    assert dropped_after("127.0.0.8", port, v2_header("192.0.2.1", 4444)
                         + b"GET /f.bin HTTP/1.0\r\n\r\n")
    rec = sp.wait_audit(tmp_path / "audit.log",
                        lambda r: r.get("client_addr") == "127.0.0.8")[0]
    assert rec["reason"] == "denied", rec
    assert "accept_proxy_from" in rec["detail"], rec
    assert rec["backend"] is None and rec["bytes_in"] == 0

    # From the load balancer's address, but no header (or a bad one):
    # refused too, and the bytes are never mistaken for a client's.
    assert dropped_after(LOOPBACK, port, b"GET /f.bin HTTP/1.0\r\n\r\n")
    rec = sp.wait_audit(tmp_path / "audit.log",
                        lambda r: r.get("reason") == "error")[0]
    assert rec["client_addr"] == LOOPBACK and "PROXY" in rec["detail"], rec
    # A PROXY header that never completes: closed after the time-out.
    s = sp.connect_from(LOOPBACK, port)
    s.sendall(V2_SIG)
    assert sp.wait_closed(s, 15) >= 4
    s.close()
    sp.wait_audit(tmp_path / "audit.log", lambda r: r.get("reason") == "timeout")

    assert [ln for ln in ng.access_lines() if "GET" in ln] == [line], \
        "a refused connection reached the backend"
    assert "192.0.2.1" not in edge.proc.log()
    assert_audit_complete(edge, tmp_path / "audit.log")
    hp.proc.stop()


# --------------------------------------------------------------------------
# allow / deny / limits (decided at the edge)

def test_allow_deny(tmp_path, pki, edge, count_server):
    port = sp.free_port()
    agent_with(tmp_path, pki, edge, {"svc": {
        "listen": port, "backends": [count_server.port],
        "keys": [("allow", "127.0.0.0/24, 127.0.2.0/24"),
                 ("deny", "127.0.0.13")]}})
    ok = sp.greeted_from("127.0.0.12", port)
    ok2 = sp.greeted_from("127.0.2.1", port)
    assert ok is not None and ok2 is not None, "allowed client dropped"
    assert sp.greeted_from("127.0.0.13", port) is None, "denied client served"
    assert sp.greeted_from("127.0.1.5", port) is None, \
        "client outside allow served"
    ok.close()
    ok2.close()
    audit = tmp_path / "audit.log"
    denied = sp.wait_audit(audit, lambda r: r.get("reason") == "denied",
                           count=2)
    by = {r["client_addr"]: r for r in denied}
    assert "deny" in by["127.0.0.13"]["detail"]
    assert "allow" in by["127.0.1.5"]["detail"]
    for r in denied:
        assert r["backend"] is None and r["bytes_in"] == r["bytes_out"] == 0
    edge.proc.wait_log(["refused service=svc client=127.0.0.13:",
                        "reason=denied detail="])
    sp.wait_audit(audit, lambda r: r.get("client_addr") in
                  ("127.0.0.12", "127.0.2.1") and r["reason"] != "denied",
                  count=2)
    # denied clients never reached the backend: only the two allowed did
    assert count_server.accepted == 2
    assert_audit_complete(edge, audit)


def test_max_sessions_per_ip(tmp_path, pki, edge, count_server):
    port = sp.free_port()
    agent_with(tmp_path, pki, edge, {"svc": {
        "listen": port, "backends": [count_server.port],
        "keys": [("max_sessions_per_ip", "2")]}})
    a = [sp.greeted_from("127.0.0.21", port) for _ in range(2)]
    assert all(a), "sessions within the limit dropped"
    assert sp.greeted_from("127.0.0.21", port) is None, "third session served"
    other = sp.greeted_from("127.0.0.22", port)
    assert other is not None, "another address suffered from the limit"
    audit = tmp_path / "audit.log"
    rec = sp.wait_audit(audit, lambda r: r.get("reason") == "limit")[0]
    assert rec["client_addr"] == "127.0.0.21"
    # one ends: room again
    a[0].shutdown(socket.SHUT_WR)
    sp.recv_all(a[0])
    a[0].close()
    sp.wait_audit(audit, lambda r: r.get("client_addr") == "127.0.0.21" and
                  r["reason"] == "client-closed")
    # the agent logs the end a moment before the edge counts it down
    edge.proc.wait_log(["closed service=svc client=127.0.0.21:"])
    again = sp.greeted_from("127.0.0.21", port)
    assert again is not None, "limit not released when a session ended"
    for s in (a[1], other, again):
        s.close()
    assert count_server.accepted == 4
    assert_audit_complete(edge, audit)


def test_max_new_sessions_per_minute(tmp_path, pki, edge, count_server):
    port = sp.free_port()
    agent_with(tmp_path, pki, edge, {"svc": {
        "listen": port, "backends": [count_server.port],
        "keys": [("max_new_sessions_per_ip_per_minute", "3")]}})
    for i in range(3):
        s = sp.greeted_from("127.0.0.31", port)
        assert s is not None, f"session {i + 1} of 3 dropped"
        s.close()
    assert sp.greeted_from("127.0.0.31", port) is None, "4th in a minute served"
    s = sp.greeted_from("127.0.0.32", port)
    assert s is not None, "another address suffered from the rate limit"
    s.close()
    audit = tmp_path / "audit.log"
    rec = sp.wait_audit(audit, lambda r: r.get("reason") == "limit")[0]
    assert rec["client_addr"] == "127.0.0.31"
    assert "per minute" in rec["detail"]
    assert count_server.accepted == 4
    assert_audit_complete(edge, audit)


def test_flood_does_not_starve_others(tmp_path, pki, edge, sshd):
    """2,000+ connections from one address while another address moves a
    file by sftp: the transfer completes, the flood is refused at the edge
    and every connection of the flood is accounted for in the audit log
    (one by one, or in a summary once the per-second report budget is
    spent)."""
    port = sp.free_port()
    agent_with(tmp_path, pki, edge, {"sftp": {
        "listen": port, "backends": [sshd.port],
        "keys": [("max_sessions_per_ip", "4"),
                 ("max_new_sessions_per_ip_per_minute", "60")]}})
    rd = sshd.root / tmp_path.name
    rd.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "up.bin"
    size = 24 * MiB
    sha = sp.random_file(src, size)

    lock = threading.Lock()
    stats = {"n": 0, "err": 0}
    done = threading.Event()
    MIN, MAX = 2000, 20000

    def flood():
        while True:
            with lock:
                if (stats["n"] >= MIN and done.is_set()) or stats["n"] >= MAX:
                    return
                stats["n"] += 1
            try:
                s = sp.connect_from("127.0.0.40", port, timeout=10)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                with lock:
                    stats["err"] += 1

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
    f0 = time.monotonic()
    for t in threads:
        t.start()
    sp.wait_until(lambda: stats["n"] >= 300, 60, "flood under way")
    t0 = time.monotonic()
    r = sshd.sftp(port, [f"put {src} {rd}/up.bin"], tmp_path,
                  extra=["-o", "BindAddress=127.0.0.41"], timeout=240,
                  check=False)
    done.set()
    flood_during = stats["n"]
    for t in threads:
        t.join(timeout=300)
    flood_secs = time.monotonic() - f0
    assert r.returncode == 0, f"sftp under flood failed:\n{r.stdout}"
    assert sp.sha256_file(rd / "up.bin") == sha
    assert flood_during > 300, "the flood did not overlap the transfer"
    total = stats["n"]
    assert total >= MIN
    audit = tmp_path / "audit.log"

    def flood_accounted():
        recs = sp.read_audit(audit)
        one = [r for r in sessions(recs) if r["client_addr"] == "127.0.0.40"]
        summ = sum(r["count"] for r in recs
                   if r.get("event") == "denied-summary")
        return len(one) + summ == total and (one, summ)
    one, summ = sp.wait_until(flood_accounted, 60,
                              f"audit accounts for {total} flood connections")
    refused = [r for r in one if r["reason"] in ("denied", "limit")]
    served = [r for r in one if r["reason"] not in ("denied", "limit")]
    # the rate limit lets a burst of 60 through, then one a second
    allowed = 60 + int(flood_secs) + 2
    assert len(served) <= allowed, (len(served), flood_secs)
    assert len(refused) + summ >= total - allowed
    up = sp.wait_audit(audit, lambda r: r.get("client_addr") == "127.0.0.41")[0]
    assert up["reason"] in ("client-closed", "server-closed"), up
    # the upload's bytes: the file plus SSH's overhead, not more than 5 %
    assert size <= up["bytes_in"] <= size * 1.05 + 256 * 1024, up
    assert_audit_complete(edge, audit, timeout=60)
    print(f"flood: {total} connections ({stats['err']} connect errors), "
          f"{len(served)} served, {len(refused)} refused one by one, "
          f"{summ} in summaries; sftp took {time.monotonic() - t0:.1f}s")


# --------------------------------------------------------------------------
# audit log: completeness, byte counts, SIGHUP reopen

def test_audit_sftp_and_reopen(tmp_path, pki, edge, sshd):
    port = sp.free_port()
    agent = agent_with(tmp_path, pki, edge, {"sftp": {
        "listen": port, "backends": [sshd.port]}})
    audit = tmp_path / "audit.log"
    rd = sshd.root / tmp_path.name
    rd.mkdir(parents=True, exist_ok=True)
    sizes = {"a.bin": 5 * MiB, "b.bin": 300 * 1024}
    for name, size in sizes.items():
        sha = sp.random_file(tmp_path / name, size)
        sshd.sftp(port, [f"put {tmp_path / name} {rd}/{name}"], tmp_path,
                  extra=["-o", "BindAddress=127.0.0.51"])
        assert sp.sha256_file(rd / name) == sha
    got = tmp_path / "back.bin"
    sshd.sftp(port, [f"get {rd}/a.bin {got}"], tmp_path,
              extra=["-o", "BindAddress=127.0.0.52"])
    recs = sp.wait_audit(audit, lambda r: r.get("event") == "session", count=3)
    up = sorted((r for r in recs if r["client_addr"] == "127.0.0.51"),
                key=lambda r: r["session"])
    down = [r for r in recs if r["client_addr"] == "127.0.0.52"]
    assert len(up) == 2 and len(down) == 1
    for r, size in zip(up, sizes.values()):
        assert size <= r["bytes_in"] <= size * 1.05 + 64 * 1024, r
        assert r["bytes_out"] < 64 * 1024, r
    assert sizes["a.bin"] <= down[0]["bytes_out"] <= \
        sizes["a.bin"] * 1.05 + 64 * 1024, down[0]
    assert down[0]["bytes_in"] < 64 * 1024
    assert_audit_complete(edge, audit)

    # logrotate: move the file away, SIGHUP, new records go to a new file
    rotated = tmp_path / "audit.log.1"
    os.rename(audit, rotated)
    mark = agent.proc.mark()
    agent.proc.signal(signal.SIGHUP)
    agent.proc.wait_log("audit log", since=mark)
    agent.proc.wait_log("reopened", since=mark)
    sshd.sftp(port, [f"ls {rd}"], tmp_path,
              extra=["-o", "BindAddress=127.0.0.53"])
    new = sp.wait_audit(audit, lambda r: r.get("event") == "session")
    assert [r["client_addr"] for r in new] == ["127.0.0.53"]
    assert len(sessions(sp.read_audit(rotated))) == 3
    assert agent.proc.alive()


def test_reload_changes_policy(tmp_path, pki, edge, count_server):
    """SIGHUP with a changed deny list: the edge enforces the new policy;
    the audit log, reopened by the same SIGHUP, keeps recording."""
    port = sp.free_port()
    svc = {"svc": {"listen": port, "backends": [count_server.port],
                   "keys": [("deny", "127.0.0.62")]}}
    agent = agent_with(tmp_path, pki, edge, svc)
    s = sp.greeted_from("127.0.0.61", port)
    assert s is not None
    s.close()
    svc["svc"]["keys"] = [("deny", "127.0.0.61, 127.0.0.62")]
    sp.write_agent_conf_ex(agent.proc.argv[-1], pki, [edge.addr], svc,
                           [("audit_log", tmp_path / "audit.log")])
    mark, amark = edge.proc.mark(), agent.proc.mark()
    agent.proc.signal(signal.SIGHUP)
    agent.proc.wait_log("configuration reloaded", since=amark)
    agent.proc.wait_log("reopened", since=amark)
    edge.proc.wait_log(f"service svc open on {LOOPBACK}:{port}", since=mark)
    assert sp.greeted_from("127.0.0.61", port) is None, "new deny not enforced"
    s = sp.greeted_from("127.0.0.63", port)
    assert s is not None
    s.close()
    rec = sp.wait_audit(tmp_path / "audit.log",
                        lambda r: r.get("client_addr") == "127.0.0.61" and
                        r["reason"] == "denied")[0]
    assert "deny" in rec["detail"]
    assert_audit_complete(edge, tmp_path / "audit.log")
