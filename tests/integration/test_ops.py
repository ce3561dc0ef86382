"""Operations (issue 8): the agent's admin API, /metrics, live reload,
sallyportctl status/sessions/kill, --check, sd_notify, make install and
the systemd units. All traffic stays on 127.0.0.1.
"""

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

import sp
from sp import LOOPBACK, MiB


def remote_dir(sshd, tmp_path):
    d = sshd.root / tmp_path.name
    d.mkdir(parents=True, exist_ok=True)
    return d


def ctl(agent, *args, token_file=None, check=True):
    argv = [sp.CTL_BIN, *args, "--url", agent.url,
            "--token-file", token_file or agent.token_file]
    r = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    if check:
        assert r.returncode == 0, (argv, r.returncode, r.stdout, r.stderr)
    return r


def ssh_client_addr(popen, port, timeout=20):
    """The local address ("127.0.0.1:N") of the TCP connection that the ssh
    child of an sftp process has to `port`."""
    def find():
        kids = sp._children_of(popen.pid)
        if not kids:
            return None
        out = subprocess.run(["ss", "-tnpH", "state", "established",
                              "dport", f"= :{port}"], stdout=subprocess.PIPE,
                             text=True).stdout
        for ln in out.splitlines():
            if any(f"pid={k}," in ln for k in kids):
                return ln.split()[2]
        return None
    return sp.wait_until(find, timeout, f"ssh connection to port {port}")


def sessions(agent):
    st, _, body = agent.api("GET", "/api/v1/sessions")
    assert st == 200, body
    return body["sessions"]


def wait_refused(port, within):
    return sp.wait_until(lambda: sp.connect_errno(port, timeout=1) ==
                         errno.ECONNREFUSED, within, f"port {port} to close")


# --------------------------------------------------------------------------
# --check

def test_check_config(tmp_path, pki):
    good = sp.write_agent_conf(tmp_path / "good.conf", pki, ["127.0.0.1:7000"],
                               {"s": (10001, [10002])})
    r = sp.run([sp.AGENT_BIN, "--check", "--config", good], check=False)
    assert r.returncode == 0, r.stdout
    assert "ok" in r.stdout

    bad = tmp_path / "bad.conf"
    bad.write_text(good.read_text() + "\n[service t]\nlisten = nowhere\n")
    nlines = len(bad.read_text().splitlines())
    r = sp.run([sp.AGENT_BIN, "--check", "--config", bad], check=False)
    assert r.returncode == 1, r.stdout
    assert re.search(rf"{re.escape(str(bad))}:{nlines}: listen: ", r.stdout), \
        r.stdout

    # [admin]: a token others can read is refused; so is an empty one
    tok = tmp_path / "tok"
    sp.write_token(tok)
    adm = sp.write_agent_conf_admin(tmp_path / "adm.conf", pki,
                                    ["127.0.0.1:7000"], {}, 7080, tok)
    assert sp.run([sp.AGENT_BIN, "--check", "-c", adm], check=False) \
        .returncode == 0
    os.chmod(tok, 0o644)
    r = sp.run([sp.AGENT_BIN, "--check", "-c", adm], check=False)
    assert r.returncode == 1 and "readable or writable by others" in r.stdout
    tok.write_text("\n")
    os.chmod(tok, 0o600)
    r = sp.run([sp.AGENT_BIN, "--check", "-c", adm], check=False)
    assert r.returncode == 1 and "the token must be" in r.stdout


# --------------------------------------------------------------------------
# the API: every endpoint with and without the token

def test_api_endpoints_and_auth(tmp_path, pki, edge):
    bs = sp.ByteServer(b"r" * 100)
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"bytes": (port, [bs.port])})
    endpoints = [("GET", "/api/v1/status"), ("GET", "/api/v1/sessions"),
                 ("DELETE", "/api/v1/sessions/1"), ("POST", "/api/v1/reload"),
                 ("GET", "/metrics"), ("GET", "/nonexistent")]
    for method, path in endpoints:
        for kw in ({"auth": False}, {"token": "x" * 64},
                   {"token": agent.token + "x"}, {"token": agent.token[:-1]}):
            st, hdrs, body = agent.api(method, path, **kw)
            assert st == 401, (method, path, kw, st, body)
            assert hdrs["content-type"] == "application/json"
            assert "token" in body["error"]
            assert hdrs.get("www-authenticate", "").startswith("Bearer")

    st, hdrs, body = agent.api("GET", "/api/v1/status")
    assert st == 200 and hdrs["content-type"] == "application/json"
    assert body["agent"] == "agent1"
    [e] = body["edges"]
    assert e["edge"] == edge.addr and e["state"] == "connected"
    assert isinstance(e["rtt_ms"], int)
    [s] = body["services"]
    assert s["name"] == "bytes" and s["listen"] == f"{LOOPBACK}:{port}"
    assert s["backends"] == [{"address": f"{LOOPBACK}:{bs.port}",
                              "health": "unknown", "last_error": None,
                              "since_seconds": None}]

    st, _, body = agent.api("GET", "/api/v1/sessions")
    assert st == 200 and body == {"sessions": []}

    # a live session: listed with its real client address, then cut
    c = socket.create_connection((LOOPBACK, port), timeout=10)
    c.sendall(b"hello")
    client = f"{LOOPBACK}:{c.getsockname()[1]}"
    ss = sp.wait_until(lambda: [x for x in sessions(agent)
                                if x["state"] == "relay"
                                and x["bytes_to_backend"] == 5], 10,
                       "session relaying")
    [x] = ss
    assert x["client"] == client and x["service"] == "bytes"
    assert x["backend"] == f"{LOOPBACK}:{bs.port}" and x["edge"] == edge.addr
    assert x["bytes_to_client"] == 0 and x["age_seconds"] >= 0
    st, _, body = agent.api("GET", "/api/v1/status")
    assert body["services"][0]["sessions"] == 1
    assert body["services"][0]["backends"][0]["health"] == "up"

    st, _, body = agent.api("DELETE", f"/api/v1/sessions/{x['id']}")
    assert st == 200 and body["killed"] == x["id"], body
    sp.wait_closed(c, 10)
    c.close()
    agent.proc.wait_log(["session", "closed", "reason=killed"])
    assert sessions(agent) == []
    st, _, body = agent.api("DELETE", f"/api/v1/sessions/{x['id']}")
    assert st == 404 and body["error"] == "no such session"

    st, hdrs, body = agent.api("GET", "/metrics")
    assert st == 200 and hdrs["content-type"].startswith("text/plain")
    assert "sallyport_sessions_total" in body

    st, _, body = agent.api("POST", "/api/v1/reload")
    assert st == 200 and body["reloaded"] is True and body["added"] == []

    for method, path in [("GET", "/"), ("GET", "/api/v1/nope"),
                         ("DELETE", "/api/v1/sessions/abc"),
                         ("DELETE", "/api/v1/sessions/0")]:
        st, hdrs, body = agent.api(method, path)
        assert st == 404 and hdrs["content-type"] == "application/json", path
        assert body["error"]
    for method, path, allow in [("POST", "/api/v1/status", "GET, HEAD"),
                                ("DELETE", "/api/v1/sessions", "GET, HEAD"),
                                ("GET", "/api/v1/reload", "POST"),
                                ("PUT", "/metrics", "GET, HEAD"),
                                ("GET", "/api/v1/sessions/5", "DELETE")]:
        st, hdrs, body = agent.api(method, path)
        assert st == 405, (method, path, st)
        assert hdrs["allow"] == allow and hdrs["content-type"] == \
            "application/json" and body["error"]
    bs.close()


# --------------------------------------------------------------------------
# sessions with real sftp clients: list them, cut one

SLOW = ["-l", "12000"]     # Kbit/s: 12 MiB take about 8 s


def test_sftp_sessions_listed_and_one_killed(tmp_path, pki, edge, sshd):
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"sftp": (port, [sshd.port])})
    rd = remote_dir(sshd, tmp_path)
    files, pops = {}, {}
    for n in ("a", "b"):
        files[n] = (tmp_path / f"{n}.bin",
                    sp.random_file(tmp_path / f"{n}.bin", 12 * MiB))
        pops[n] = sshd.sftp_popen(port, [f"put {files[n][0]} {rd}/{n}.bin"],
                                  tmp_path, extra=SLOW, name=f"sftp-{n}")
    addr = {n: ssh_client_addr(pops[n], port) for n in pops}

    def both_moving():
        ss = {x["client"]: x for x in sessions(agent)}
        if all(a in ss and ss[a]["bytes_to_backend"] > 256 * 1024
               for a in addr.values()):
            return ss
        return None
    ss = sp.wait_until(both_moving, 30, "both sftp sessions relaying")
    for n in pops:
        assert ss[addr[n]]["service"] == "sftp"
        assert ss[addr[n]]["backend"] == f"{LOOPBACK}:{sshd.port}"

    # the table for people names both clients, aligned under the header
    r = ctl(agent, "sessions")
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "SERVICE", "CLIENT"]
    col = lines[0].index("CLIENT")
    for n in pops:
        [ln] = [x for x in lines if addr[n] in x]
        assert ln.index(addr[n]) == col, r.stdout
    js = json.loads(ctl(agent, "sessions", "--json").stdout)
    assert {x["client"] for x in js["sessions"]} == set(addr.values())

    victim = ss[addr["a"]]["id"]
    r = ctl(agent, "kill", str(victim))
    assert f"session {victim} killed" in r.stdout
    assert pops["a"].wait(timeout=60) != 0, "killed transfer reported success"
    assert pops["b"].wait(timeout=120) == 0, pops["b"].out_path.read_text()
    assert sp.sha256_file(rd / "b.bin") == files["b"][1]
    assert not (rd / "a.bin").exists() or \
        (rd / "a.bin").stat().st_size < 12 * MiB
    agent.proc.wait_log(f"session {victim} closed service=sftp client={addr['a']}")
    assert agent.proc.count(["reason=killed"]) == 1

    r = ctl(agent, "kill", "999999", check=False)
    assert r.returncode == 1 and "HTTP 404" in r.stderr


def test_ctl_status_table_json_and_bad_token(tmp_path, pki, edge):
    bs = sp.ByteServer(b"")
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"svc1": (port, [bs.port, sp.free_port()])})
    r = ctl(agent, "status")
    assert "agent agent1" in r.stdout
    lines = r.stdout.splitlines()
    [hdr] = [x for x in lines if x.startswith("EDGE ")]
    [row] = [x for x in lines if x.startswith(edge.addr)]
    assert row.index("connected") == hdr.index("STATE")
    [hdr] = [x for x in lines if x.startswith("SERVICE ")]
    [row] = [x for x in lines if x.startswith("svc1 ")]
    assert row.index(f"{LOOPBACK}:{port}") == hdr.index("LISTEN")
    # two backends: health checks run by default (issue 7), so the first
    # check may already have found it up
    assert (f"{LOOPBACK}:{bs.port} (unknown)" in row or
            f"{LOOPBACK}:{bs.port} (up)" in row), row
    js = json.loads(ctl(agent, "status", "--json").stdout)
    assert js["edges"][0]["state"] == "connected"
    assert len(js["services"][0]["backends"]) == 2
    assert js["services"][0]["backends"][0]["address"] == f"{LOOPBACK}:{bs.port}"

    bad = tmp_path / "bad.token"
    sp.write_token(bad)
    r = ctl(agent, "status", token_file=bad, check=False)
    assert r.returncode == 1 and "HTTP 401" in r.stderr
    r = ctl(agent, "status", token_file=tmp_path / "missing", check=False)
    assert r.returncode == 1 and "missing" in r.stderr
    bs.close()


# --------------------------------------------------------------------------
# /metrics: promtool accepts it and the counters match known sessions

def test_metrics_promtool_and_counts(tmp_path, pki, edge):
    reply = b"z" * 1000
    bs = sp.ByteServer(reply)
    p_ok, p_dead = sp.free_port(), sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge, {
        "bytes": (p_ok, [bs.port]), "dead": (p_dead, [sp.free_port()])})
    sizes = [10000, 20000, 300000]
    for n in sizes:
        assert sp.byte_session(p_ok, os.urandom(n)) == reply
    try:
        c = socket.create_connection((LOOPBACK, p_dead), timeout=10)
        sp.wait_closed(c, 15)
        c.close()
    except ConnectionError:
        pass    # on a pooled plain link the reset can beat connect()'s return
    agent.proc.wait_log(["closed service=dead", "reason=refused"])

    def ended_clean(m):
        return sum(sp.metric(m, "sallyport_sessions_total", service="bytes",
                             reason=r) for r in ("client-closed",
                                                 "server-closed"))

    def settled():
        m = sp.parse_metrics(agent.metrics())
        if ended_clean(m) != 3:
            return None
        want = [
            (("sallyport_sessions_total",), dict(service="dead", reason="refused"), 1),
            (("sallyport_edge_sessions_accepted_total",), dict(edge=edge.addr), 4),
            (("sallyport_edge_bytes_from_clients_total",), dict(edge=edge.addr), sum(sizes)),
        ]
        return m if all(sp.metric(m, n[0], **lab) == v
                        for n, lab, v in want) else None
    m = sp.wait_until(settled, 15, "metrics to match the sessions run")
    M = lambda name, **lab: sp.metric(m, name, **lab)   # noqa: E731
    assert M("sallyport_bytes_total", service="bytes",
             direction="to_backend") == sum(sizes)
    assert M("sallyport_bytes_total", service="bytes",
             direction="to_client") == 3 * len(reply)
    assert M("sallyport_bytes_total", service="dead",
             direction="to_backend") == 0
    for o in ("refused", "denied", "limit", "timeout", "error", "killed",
              "stopping"):
        assert M("sallyport_sessions_total", service="bytes", reason=o) == 0
    assert M("sallyport_sessions_open", service="bytes") == 0
    assert M("sallyport_session_setup_seconds_count") == 3
    assert M("sallyport_session_setup_seconds_bucket", le="+Inf") == 3
    assert M("sallyport_session_setup_seconds_bucket", le="10.000") == 3
    assert M("sallyport_edges_connected") == 1
    assert M("sallyport_edge_up", edge=edge.addr) == 1
    assert M("sallyport_control_reconnects_total", edge=edge.addr) == 0
    assert M("sallyport_backend_up", service="bytes",
             backend=f"{LOOPBACK}:{bs.port}") == 1
    assert M("sallyport_backends_up", service="dead") == 0
    assert M("sallyport_edge_sessions_joined_total", edge=edge.addr) == 4
    assert M("sallyport_edge_sessions_refused_total", edge=edge.addr) == 1
    assert M("sallyport_edge_bytes_to_clients_total", edge=edge.addr) == \
        3 * len(reply)
    assert M("sallyport_edge_agents_connected", edge=edge.addr) == 1
    assert M("sallyport_edge_services_open", edge=edge.addr) == 2
    assert M("sallyport_edge_limit_claim_timeout_total", edge=edge.addr) == 0

    text = agent.metrics()
    r = subprocess.run(["promtool", "check", "metrics"], input=text,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout
    # promtool does reject a broken exposition (the check can fail)
    r = subprocess.run(["promtool", "check", "metrics"],
                       input=text.replace("# TYPE sallyport_bytes_total counter\n",
                                          "# TYPE sallyport_bytes_total gauge\n# TYPE sallyport_bytes_total counter\n"),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    assert r.returncode != 0

    # reconnects are counted: restart the edge on the same port
    edge.proc.stop()
    e2 = sp.Edge(sp.Proc("edge2", edge.proc.argv, tmp_path / "edge2.log"),
                 edge.control_port)
    e2.proc.wait_log("control listening")
    sp.wait_until(lambda: sp.metric(sp.parse_metrics(agent.metrics()),
                                    "sallyport_control_reconnects_total",
                                    edge=edge.addr) == 1, 40, "a reconnect")
    bs.close()


# --------------------------------------------------------------------------
# live reload

def test_reload_while_a_long_transfer_runs(tmp_path, pki, edge, sshd):
    bx, by = sp.ByteServer(b"X" * 10), sp.ByteServer(b"Y" * 10)
    p = {k: sp.free_port() for k in ("long", "gone", "chg", "mv1", "mv2", "new")}
    first = {"long": (p["long"], [sshd.port]), "gone": (p["gone"], [bx.port]),
             "chg": (p["chg"], [bx.port]), "mv": (p["mv1"], [bx.port])}
    agent = sp.start_agent_admin(tmp_path, pki, edge, first)
    for k in ("gone", "chg", "mv1"):
        assert sp.byte_session(p[k], b"q") == b"X" * 10

    rd = remote_dir(sshd, tmp_path)
    src = tmp_path / "long.bin"
    digest = sp.random_file(src, 12 * MiB)
    longp = sshd.sftp_popen(p["long"], [f"put {src} {rd}/long.bin"], tmp_path,
                            extra=SLOW, name="sftp-long")
    sp.wait_until(lambda: [x for x in sessions(agent) if x["service"] == "long"
                           and x["bytes_to_backend"] > 256 * 1024], 30,
                  "long transfer under way")

    second = {"long": (p["long"], [sshd.port]), "chg": (p["chg"], [by.port]),
              "mv": (p["mv2"], [bx.port]), "new": (p["new"], [bx.port])}
    sp.write_agent_conf_admin(agent.conf, pki, [edge.addr], second,
                              agent.admin_port, agent.token_file)
    st, _, body = agent.api("POST", "/api/v1/reload")
    assert st == 200, body
    assert body["added"] == ["new"] and body["removed"] == ["gone"]
    assert body["listen_changed"] == ["mv"]
    assert body["backends_changed"] == ["chg"]
    assert body["restart_needed"] == []
    # added: reachable soon after the reload has answered, with no restart
    # of the agent (a wait from the reply, with a generous 10 s deadline
    # for a sanitizer build on 2 busy cores)
    sp.wait_until(lambda: sp.connect_errno(p["new"], timeout=1) == 0, 10,
                  "new service reachable")
    assert sp.byte_session(p["new"], b"q") == b"X" * 10
    # removed: its port closes; moved: old closes, new opens
    wait_refused(p["gone"], 5)
    wait_refused(p["mv1"], 5)
    assert sp.byte_session(p["mv2"], b"q") == b"X" * 10
    # backend changed: new sessions go to the new backend
    assert sp.byte_session(p["chg"], b"q") == b"Y" * 10
    assert longp.poll() is None, "the long transfer ended before the reload was done"

    # a broken file is refused with the reason; nothing changes
    good_text = agent.conf.read_text()
    agent.conf.write_text(good_text + "\n[service broken]\nlisten = 127.0.0.1:1\n"
                          "backend = nohostport\n")
    nlines = len(agent.conf.read_text().splitlines())
    st, _, body = agent.api("POST", "/api/v1/reload")
    assert st == 422 and body["reloaded"] is False
    assert f"{agent.conf}:{nlines}: backend: " in body["error"], body
    mark = agent.proc.mark()
    agent.proc.signal(signal.SIGHUP)
    agent.proc.wait_log(["reload refused", f"{agent.conf}:{nlines}:"],
                        since=mark)
    st, _, body = agent.api("GET", "/api/v1/status")
    assert sorted(s["name"] for s in body["services"]) == \
        ["chg", "long", "mv", "new"]
    assert sp.byte_session(p["new"], b"q") == b"X" * 10
    assert sp.byte_session(p["chg"], b"q") == b"Y" * 10
    assert sp.connect_errno(p["gone"]) == errno.ECONNREFUSED

    # SIGHUP with a good file: "gone" comes back
    third = dict(second, gone=(p["gone"], [by.port]))
    sp.write_agent_conf_admin(agent.conf, pki, [edge.addr], third,
                              agent.admin_port, agent.token_file)
    mark = agent.proc.mark()
    agent.proc.signal(signal.SIGHUP)
    agent.proc.wait_log(["configuration reloaded", "added=[gone]"], since=mark)
    sp.wait_until(lambda: sp.connect_errno(p["gone"], timeout=1) == 0, 2,
                  "gone reachable again")
    assert sp.byte_session(p["gone"], b"q") == b"Y" * 10

    assert longp.wait(timeout=120) == 0, longp.out_path.read_text()
    assert sp.sha256_file(rd / "long.bin") == digest
    assert agent.proc.count("reason=killed") == 0
    assert agent.proc.alive() and edge.proc.alive()
    bx.close()
    by.close()


# --------------------------------------------------------------------------
# sd_notify readiness

def _notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(20)
    return s, path


def _notify_env(path):
    env = dict(os.environ)
    env["NOTIFY_SOCKET"] = str(path)
    return env


def test_sd_notify_ready_and_stopping(tmp_path, pki):
    s, path = _notify_socket(tmp_path)
    port = sp.free_port()
    e = sp.Proc("edge", [sp.EDGE_BIN, "--control", f"{LOOPBACK}:{port}",
                         "--cert", pki.edge_crt, "--key", pki.edge_key,
                         "--ca", pki.ca_crt], tmp_path / "edge.log",
                env=_notify_env(path))
    assert s.recv(4096) == b"READY=1"
    assert sp.connect_errno(port) == 0, "READY=1 before the control port was up"
    edge = sp.Edge(e, port)
    conf = sp.write_agent_conf(tmp_path / "a.conf", pki, [edge.addr],
                               {"s": (sp.free_port(), [sp.free_port()])})
    a = sp.Proc("agent", [sp.AGENT_BIN, "-c", conf], tmp_path / "agent.log",
                env=_notify_env(path))
    assert s.recv(4096) == b"READY=1"
    a.signal(signal.SIGHUP)
    assert s.recv(4096) == b"RELOADING=1"
    assert s.recv(4096) == b"READY=1"
    a.signal(signal.SIGTERM)
    assert s.recv(4096) == b"STOPPING=1"
    assert a.wait(10) == 0
    e.signal(signal.SIGTERM)
    assert s.recv(4096) == b"STOPPING=1"
    assert e.wait(10) == 0
    s.close()


# --------------------------------------------------------------------------
# make install, man pages, systemd units

def _build_args():
    """make arguments that reuse the build under test (build/ or build-asan/)."""
    args = [f"BUILD={sp.BUILD.name}"]
    if sp.BUILD.name.endswith("-asan"):
        args.append("SAN=asan")
    return args


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    r = sp.run(["make", "-C", sp.ROOT, "install", f"DESTDIR={dest}",
                "PREFIX=/usr", *_build_args()], check=False,
               timeout=300)
    assert r.returncode == 0, r.stdout
    return dest


def test_make_install_layout(installed):
    want = ["usr/bin/sallyport-edge", "usr/bin/sallyport-agent",
            "usr/bin/sallyportctl",
            "usr/lib/systemd/system/sallyport-edge.service",
            "usr/lib/systemd/system/sallyport-agent.service",
            "usr/share/man/man8/sallyport-edge.8",
            "usr/share/man/man8/sallyport-agent.8",
            "usr/share/man/man8/sallyportctl.8",
            "usr/share/man/man5/sallyport-agent.conf.5"]
    for w in want:
        assert (installed / w).is_file(), w
    for b in want[:3]:
        assert os.access(installed / b, os.X_OK)
    assert (installed / "usr/lib/sysusers.d/sallyport.conf").is_file()
    # the fail2ban action, where fail2ban reads it
    assert "sallyportctl" in (installed / "etc/fail2ban/action.d/"
                              "sallyport.conf").read_text()
    # the unit's ExecStart points at the installed binary
    unit = (installed / want[3]).read_text()
    assert "ExecStart=/usr/bin/sallyport-edge " in unit
    # man pages render without warnings
    for m in want[5:]:
        r = subprocess.run(["man", "--warnings=w", "-l", str(installed / m)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=dict(os.environ, MANPAGER="cat",
                                               MANWIDTH="80"), timeout=60)
        assert r.returncode == 0 and r.stderr == "", (m, r.stderr)
        assert "NAME" in r.stdout


def test_systemd_analyze_verify(tmp_path):
    """systemd-analyze verify wants the ExecStart binaries and the man pages
    of Documentation= to exist where the unit says: install with PREFIX
    set to a temporary directory (no DESTDIR), so the units point there."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing (package systemd)")
    prefix = tmp_path / "usr"
    sp.run(["make", "-C", sp.ROOT, "install", f"PREFIX={prefix}",
            *_build_args()], timeout=300)
    env = dict(os.environ, MANPATH=f"{prefix}/share/man:")

    def verify(unit):
        return subprocess.run(["systemd-analyze", "verify", str(unit)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=120, env=env)
    units = prefix / "lib/systemd/system"
    for u in ("sallyport-edge.service", "sallyport-agent.service"):
        text = (units / u).read_text()
        assert f"ExecStart={prefix}/bin/" in text
        assert "Type=notify" in text and "NoNewPrivileges=yes" in text
        r = verify(units / u)
        assert r.returncode == 0 and r.stdout.strip() == "", (u, r.stdout)
    edge = (units / "sallyport-edge.service").read_text()
    for d in ("DynamicUser=yes", "ProtectSystem=strict",
              "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
              "SystemCallFilter=@system-service"):
        assert d in edge
    assert "\nReadWritePaths=" not in edge

    # the check is real: a misspelt directive or a missing binary is reported
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.service").write_text(edge.replace("NoNewPrivileges=",
                                                "NoNewPrivilege="))
    r = verify(bad / "x.service")
    assert "NoNewPrivilege" in r.stdout, r.stdout
    (bad / "y.service").write_text(edge.replace(f"{prefix}/bin/sallyport-edge",
                                                f"{prefix}/bin/nonexistent"))
    r = verify(bad / "y.service")
    assert r.returncode != 0 and "nonexistent" in r.stdout, r.stdout
