"""Core end-to-end tests for sallyport: edge + agent + real backends.

All traffic stays on 127.0.0.1.
"""

import errno
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

import fakeagent as fa
import sp
import spproto as p
from sp import LOOPBACK, MiB

SESSION_CLOSED = re.compile(
    r"session (\d+) closed service=(\S+) client=\S+ bytes_in=(\d+) "
    r"bytes_out=(\d+) duration=\S+ reason=(\S+)")


def remote_dir(sshd, tmp_path):
    """A fresh directory on the backend's disk for this test."""
    d = sshd.root / tmp_path.name
    d.mkdir(parents=True, exist_ok=True)
    return d


def sftp_ls(g, tmp_path, path=None):
    return g.sshd.sftp(g.port, [f"ls -l {path or g.sshd.root}"], tmp_path,
                       timeout=60)


def assert_refused_promptly(port, within):
    """Poll TCP connects to port until one is refused (ECONNREFUSED);
    fail if that takes longer than `within` seconds. Returns the time."""
    t0 = time.monotonic()
    last = None
    while True:
        last = sp.connect_errno(port, timeout=1.0)
        if last == errno.ECONNREFUSED:
            return time.monotonic() - t0
        if time.monotonic() - t0 > within:
            raise AssertionError(
                f"port {port} still not refusing after {within}s "
                f"(last connect: {errno.errorcode.get(last, last)})")
        time.sleep(sp.POLL)


def closed_sessions(edge, since=0):
    out = []
    for ln in edge.proc.find(SESSION_CLOSED, since):
        m = SESSION_CLOSED.search(ln)
        out.append({"id": int(m.group(1)), "service": m.group(2),
                    "in": int(m.group(3)), "out": int(m.group(4)),
                    "reason": m.group(5)})
    return out


def wait_session_with_bytes(edge, nbytes, since, timeout=30):
    """Wait for a 'session N closed' line carrying at least nbytes in one
    direction (the naming of in/out is the edge's business)."""
    def pred(ln):
        m = SESSION_CLOSED.search(ln)
        return bool(m) and max(int(m.group(3)), int(m.group(4))) >= nbytes
    return edge.proc.wait_log(pred, timeout=timeout, since=since)


# --------------------------------------------------------------------------
# bulk transfers

def assert_link(edge, link, since):
    """Every session that ended since `since` ran over a `link` data link;
    plain links moved all their bytes with splice()."""
    for ln in edge.proc.find(SESSION_CLOSED, since):
        m = re.search(r"bytes_in=(\d+) bytes_out=(\d+) .* link=(\S+) "
                      r"spliced=(\d+)", ln)
        assert m, ln
        want = {"tls": ("tls",), "plain": ("plain",)}[link]
        assert m.group(3) in want, ln
        if link == "plain":
            assert int(m.group(4)) == int(m.group(1)) + int(m.group(2)), ln


def test_sftp_100m(sftp_gw_link, tmp_path):
    g, ssh = sftp_gw_link, sftp_gw_link.sshd
    start = g.edge.proc.mark()
    rd = remote_dir(ssh, tmp_path)
    size = 100 * MiB
    src, back, remote = tmp_path / "big.bin", tmp_path / "big.back", rd / "big.bin"
    try:
        h = sp.random_file(src, size)

        mark = g.edge.proc.mark()
        ssh.sftp(g.port, [f"put {src} {remote}"], tmp_path, timeout=900)
        assert remote.stat().st_size == size
        assert sp.sha256_file(remote) == h, "backend copy differs after upload"
        wait_session_with_bytes(g.edge, size, mark)

        mark = g.edge.proc.mark()
        ssh.sftp(g.port, [f"get {remote} {back}"], tmp_path, timeout=900)
        assert back.stat().st_size == size
        assert sp.sha256_file(back) == h, "downloaded copy differs"
        wait_session_with_bytes(g.edge, size, mark)
    finally:
        for f in (src, back, remote):
            f.unlink(missing_ok=True)

    # scp, SFTP-based (default) and legacy (-O)
    ssize = 8 * MiB + 12345
    small = tmp_path / "small.bin"
    hs = sp.random_file(small, ssize)
    for legacy in (False, True):
        tag = "legacy" if legacy else "sftp"
        r = rd / f"scp-{tag}.bin"
        local = tmp_path / f"scp-{tag}.back"
        ssh.scp(g.port, small, ssh.remote(r), legacy=legacy)
        assert sp.sha256_file(r) == hs, f"scp ({tag}) upload corrupted"
        ssh.scp(g.port, ssh.remote(r), local, legacy=legacy)
        assert sp.sha256_file(local) == hs, f"scp ({tag}) download corrupted"
    assert_link(g.edge, g.link, start)


def test_50_concurrent_sftp(sftp_gw_link, tmp_path):
    g, ssh = sftp_gw_link, sftp_gw_link.sshd
    rd = remote_dir(ssh, tmp_path)
    n = 50
    hashes, procs = {}, {}
    mark = g.edge.proc.mark()
    for i in range(n):
        hashes[i] = sp.random_file(tmp_path / f"f{i}.bin", MiB)
    for i in range(n):
        procs[i] = ssh.sftp_popen(
            g.port, [f"put {tmp_path}/f{i}.bin {rd}/f{i}.bin",
                     f"get {rd}/f{i}.bin {tmp_path}/f{i}.back"],
            tmp_path, name=f"sftp{i}")
    deadline = time.monotonic() + 300
    failures = []
    for i, proc in procs.items():
        try:
            rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
        if rc != 0:
            failures.append(f"sftp{i}: rc={rc}: {proc.out_path.read_text()[-500:]}")
    assert not failures, f"{len(failures)} of {n} sessions failed:\n" + \
        "\n".join(failures[:10])
    for i in range(n):
        assert sp.sha256_file(rd / f"f{i}.bin") == hashes[i], f"backend f{i}"
        assert sp.sha256_file(tmp_path / f"f{i}.back") == hashes[i], f"back f{i}"
    # the edge saw (at least) 50 distinct sessions, and all of them ended
    new = g.edge.proc.find(re.compile(r"session \d+ new service=sftp "), mark)
    ids = {int(re.search(r"session (\d+) new", ln).group(1)) for ln in new}
    assert len(ids) >= n, f"edge logged {len(ids)} distinct sessions"
    sp.wait_until(lambda: len({s["id"] for s in closed_sessions(g.edge, mark)})
                  >= n, 30, "50 session-closed lines")
    assert_link(g.edge, g.link, mark)


# --------------------------------------------------------------------------
# availability

def test_no_agent_refused_promptly(tmp_path, pki, edge, sshd):
    port = sp.free_port()
    # 1. edge up, no agent ever: the service port refuses (ECONNREFUSED from
    #    the kernel, not a connection left hanging, which would time out)
    err = sp.connect_errno(port, timeout=10)
    assert err == errno.ECONNREFUSED, errno.errorcode.get(err, err)

    # 2. an agent opens the service (the port now really answers) ...
    agent = sp.start_agent(tmp_path, pki, edge, {"sftp": (port, [sshd.port])})
    assert sp.read_banner(port, timeout=10), "service did not relay sshd banner"
    # ... and leaves: from its exit on (the right event: the edge sees the
    # control connection close), the port must refuse promptly. The time
    # is the point: the edge closes the port when the agent's connection
    # ends, not when a silent agent is declared dead after 6 s. 3 s stays
    # clear of that and leaves room for an ASan edge on 2 busy cores.
    mark = edge.proc.mark()
    agent.proc.signal(signal.SIGTERM)
    assert agent.proc.wait(10) is not None, "agent ignored SIGTERM"
    assert_refused_promptly(port, within=3.0)
    edge.proc.wait_log("service sftp closed", since=mark, timeout=10)
    assert edge.proc.alive()
    err = sp.connect_errno(port, timeout=10)
    assert err == errno.ECONNREFUSED, errno.errorcode.get(err, err)


def test_agent_sigkill_restart(sftp_gw, tmp_path, pki):
    g = sftp_gw
    edge_pid = g.edge.proc.pid
    sftp_ls(g, tmp_path)

    mark = g.edge.proc.mark()
    g.agent.proc.kill()                     # SIGKILL
    assert g.agent.proc.returncode == -signal.SIGKILL
    # the kernel closes a killed agent's connection: the edge must not
    # wait for the 6 s heartbeat death (3 s: room for ASan on 2 busy cores)
    assert_refused_promptly(g.port, within=3.0)
    g.edge.proc.wait_log("service sftp closed", since=mark, timeout=10)

    # Restart, and measure the time to the first relayed SSH banner from
    # the edge's log of the new agent's connection: the process's own
    # start-up (slow under ASan) is not what this is about, serving at
    # once once connected is. 3 s: the services arrive in the agent's
    # first frames, so this takes milliseconds on an idle machine; the
    # rest is headroom for a sanitizer build on 2 busy cores, and still
    # less than the 6 s after which a silent agent would be dropped.
    mark = g.edge.proc.mark()
    agent2 = sp.start_agent(tmp_path, pki, g.edge,
                            {"sftp": (g.port, [g.sshd.port])},
                            tag="agent2", wait=False)
    sp.wait_until(lambda: g.edge.proc.find("agent agent1 connected from",
                                           mark)
                  or not agent2.proc.alive(), 30, "the agent to connect")
    assert agent2.proc.alive(), "restarted agent died:\n" + agent2.proc.tail()
    t0 = time.monotonic()
    ok_at = None
    while time.monotonic() - t0 < 30:
        left = 30 - (time.monotonic() - t0)
        if sp.read_banner(g.port, timeout=min(5.0, max(0.1, left))):
            ok_at = time.monotonic() - t0
            break
        assert agent2.proc.alive(), "restarted agent died:\n" + agent2.proc.tail()
        time.sleep(sp.POLL)
    assert ok_at is not None, "service never came back after agent restart"
    assert ok_at <= 3.0, \
        f"service back only {ok_at:.2f}s after the agent connected"
    sftp_ls(g, tmp_path)

    assert g.edge.proc.alive() and g.edge.proc.pid == edge_pid
    assert g.edge.proc.count("control listening on") == 1, "edge restarted?"
    assert g.edge.proc.count(["agent agent1 connected from"]) >= 2


def test_control_drop_during_transfer(tmp_path, pki, edge, sshd):
    fwd = sp.Forwarder(edge.control_port)
    try:
        port = sp.free_port()
        agent = sp.start_agent(tmp_path, pki, edge, {"sftp": (port, [sshd.port])},
                               edges=[f"{LOOPBACK}:{fwd.port}"])
        assert fwd.accepted() >= 1, "agent did not go through the forwarder"
        rd = remote_dir(sshd, tmp_path)
        size = 48 * MiB
        remote, local = rd / "dl.bin", tmp_path / "dl.bin"
        h = sp.random_file(remote, size)

        # ~4 MiB/s: the download lasts about 12 s
        p = sshd.sftp_popen(port, [f"get {remote} {local}"], tmp_path,
                            extra=["-l", "32768"], name="slowget")
        try:
            sp.wait_until(lambda: (local.exists() and local.stat().st_size
                                   >= 2 * MiB) or p.poll() is not None,
                          60, "download to start")
            assert p.poll() is None, ("download finished before the cut:\n"
                                      + p.out_path.read_text())
            got = local.stat().st_size
            assert got < size
            amark, emark = agent.proc.mark(), edge.proc.mark()
            fwd.cut(0)                      # the control connection only
            agent.proc.wait_log(f"edge {LOOPBACK}:{fwd.port} lost",
                                since=amark, timeout=20)
            rc = p.wait(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert rc == 0, p.out_path.read_text()
        assert sp.sha256_file(local) == h, "download corrupted after control drop"
        # the agent came back: a second control connection
        edge.proc.wait_log("agent agent1 connected from", since=emark,
                           timeout=40)
        assert edge.proc.count("agent agent1 connected from") >= 2
        assert fwd.accepted() >= 3      # control, data link, new control
        assert edge.proc.alive() and agent.proc.alive()
        # and the service works again through the new control connection
        sp.wait_until(lambda: sp.read_banner(port, timeout=5), 20,
                      "service back after reconnect")
        local.unlink()
        remote.unlink()
    finally:
        fwd.close()


# --------------------------------------------------------------------------
# hostile input on the control port

def _send_and_expect_close(edge, payload, half_close=False):
    mark = edge.proc.mark()
    s = sp.tcp_connect(edge.control_port)
    lport = s.getsockname()[1]
    try:
        try:
            s.sendall(payload)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass                            # edge already closed: fine
        took = sp.wait_closed(s, timeout=10)
    finally:
        s.close()
    edge.proc.wait_log([f"{LOOPBACK}:{lport}", "refused"], since=mark,
                       timeout=10)
    return took


def test_control_port_garbage(sftp_gw, tmp_path):
    g = sftp_gw
    junk = bytearray(os.urandom(4096))
    junk[0] = 0x00 if junk[0] == 0x16 else junk[0]
    cases = {
        "random": bytes(junk),
        "http": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: t\r\n\r\n",
        "tls-junk": b"\x16\x03\x01\x00\x20" + os.urandom(32),
    }
    for name, payload in cases.items():
        _send_and_expect_close(g.edge, payload)
        assert g.edge.proc.alive(), f"edge died on {name}"
    # a truncated ClientHello record, then EOF
    _send_and_expect_close(g.edge, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                           + os.urandom(20), half_close=True)
    assert g.edge.proc.alive()
    # the service still works
    sftp_ls(g, tmp_path)
    assert g.agent.proc.count("lost") == 0, "agent lost its edge"


def test_control_handshake_timeout(tmp_path, pki, edge):
    """Nothing, a partial TLS record, or a TLS session without a frame:
    each is dropped by the edge's 10 s handshake time-out."""
    t0 = {"silent": time.monotonic()}      # each from just before its connect
    silent = sp.tcp_connect(edge.control_port)
    t0["partial"] = time.monotonic()
    partial = sp.tcp_connect(edge.control_port)
    partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    ctx = fa.client_context(pki.ca_crt, pki.agent_crt, pki.agent_key)
    t0["tls-no-frame"] = time.monotonic()
    noframe = fa.tls_connect(ctx, edge.control_port)
    results = {}

    def watch(name, s):
        try:
            sp.wait_closed(s, timeout=40)
            results[name] = time.monotonic() - t0[name]
        except AssertionError:
            results[name] = None

    ts = [threading.Thread(target=watch, args=a)
          for a in (("silent", silent), ("partial", partial),
                    ("tls-no-frame", noframe))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    for s in (silent, partial, noframe):
        s.close()
    # The time is the point. The edge's clock for a connection starts when
    # it accepts it, after the connect began: closed before 10 s (less
    # the clocks' rounding) is the edge's fault. The edge checks every
    # 200 ms; 20 s leaves an ASan edge on 2 busy cores room to get there.
    for name, took in results.items():
        assert took is not None, f"{name}: not closed within 40 s"
        assert 9.9 <= took <= 20.0, f"{name}: closed after {took:.1f}s, want ~10"
    assert edge.proc.alive()


def test_tls_client_without_cert(sftp_gw, tmp_path, pki):
    g = sftp_gw
    # positive control: with the agent certificate the same code path works
    good = fa.FakeAgent(g.edge.control_port, pki.ca_crt, pki.agent_crt,
                        pki.agent_key, name="probe")
    assert good.connect().type == p.HELLO_OK
    good.close()

    mark = g.edge.proc.mark()
    ctx = fa.client_context(pki.ca_crt)     # verifies the edge, no client cert
    raw = sp.tcp_connect(g.edge.control_port)
    lport = raw.getsockname()[1]
    got = None
    try:
        s = ctx.wrap_socket(raw, server_hostname=LOOPBACK)
        s.settimeout(10)
        try:
            s.sendall(p.frame(p.HELLO, VERSION=1, NAME="nocert"))
            got = p.Reader(s).frame()
        except (EOFError, OSError):
            pass                            # alert / close: expected
        s.close()
    except (ssl.SSLError, OSError):
        raw.close()                         # handshake failed: expected
    assert got is None or got.type == p.ERROR, f"edge answered {got}"
    g.edge.proc.wait_log([f"{LOOPBACK}:{lport}", "refused"], since=mark)
    assert g.edge.proc.alive()
    sftp_ls(g, tmp_path)


def test_cert_from_other_ca(sftp_gw, tmp_path, pki, other_pki):
    g = sftp_gw
    good = fa.FakeAgent(g.edge.control_port, pki.ca_crt, pki.agent_crt,
                        pki.agent_key, name="probe")
    assert good.connect().type == p.HELLO_OK    # positive control
    good.close()

    # the other CA's agent certificate (the edge itself is trusted)
    mark = g.edge.proc.mark()
    bad = fa.FakeAgent(g.edge.control_port, pki.ca_crt, other_pki.agent_crt,
                       other_pki.agent_key, name="intruder")
    with pytest.raises((ssl.SSLError, EOFError, OSError, fa.ProtocolError)):
        bad.connect()
    bad.close()
    assert bad.local_port is not None
    g.edge.proc.wait_log([f"{LOOPBACK}:{bad.local_port}", "refused"], since=mark)

    # the real agent with the other CA's certificate gets nowhere either
    port = sp.free_port()
    mark = g.edge.proc.mark()
    sp.write_agent_conf(tmp_path / "intruder.conf", other_pki, [g.edge.addr],
                        {"evil": (port, [g.sshd.port])}, name="intruder")
    # it must trust the real edge to get as far as presenting its cert
    conf = (tmp_path / "intruder.conf").read_text().replace(
        f"ca = {other_pki.ca_crt}", f"ca = {pki.ca_crt}")
    (tmp_path / "intruder.conf").write_text(conf)
    intruder = sp.Proc("intruder", [sp.AGENT_BIN, "--config",
                                    tmp_path / "intruder.conf"],
                       tmp_path / "intruder.log")
    g.edge.proc.wait_log("refused", since=mark, timeout=15)
    assert not g.edge.proc.find("agent intruder connected", since=mark)
    assert not g.edge.proc.find("service evil open", since=mark)
    assert sp.connect_errno(port) == errno.ECONNREFUSED
    intruder.stop()

    assert g.edge.proc.alive()
    sftp_ls(g, tmp_path)


# --------------------------------------------------------------------------
# data links, with a fake agent (fakeagent.py) against the real edge

LINKS = ["tls", "plain"]


@pytest.fixture
def vedge(tmp_path, pki):
    """An edge that logs at debug level (-v): plain links parked."""
    return sp.start_edge(tmp_path, pki, extra=["-v"])


def fake_agent(edge, pki, name="fake1", plain=False, service="echo"):
    """A connected fake agent offering `service` on a fresh port
    (.svc_port); no data link yet."""
    a = fa.FakeAgent(edge.control_port, pki.ca_crt, pki.agent_crt,
                     pki.agent_key, name=name, plain=plain)
    a.connect()
    a.svc_port = sp.free_port()
    status, text = a.svc_open(service, f"{LOOPBACK}:{a.svc_port}")
    assert status == 0, f"SVC_OPEN failed: {text}"
    edge.proc.wait_log(f"service {service} open on {LOOPBACK}:{a.svc_port}")
    return a


def link_up(edge, a, link, since, **greet):
    """A data link of the fake agent a that the edge took (its log says
    so): a MuxLink or a PlainLink."""
    if link == "tls":
        dl = a.mux_link(**greet)
        edge.proc.wait_log(f"multiplexed data link of agent {a.name} from "
                           f"{LOOPBACK}:{dl.local_port} up", since=since)
    else:
        dl = a.plain_link(**greet)
        edge.proc.wait_log(f"plain data link from {LOOPBACK}:"
                           f"{dl.local_port} parked for agent {a.name}",
                           since=since)
    return dl


def link_refused(edge, a, why, plain, since, **greet):
    """A greeting the edge must close without a byte in answer, logging
    why. Returns the local port of the refused link."""
    sock, lport, _ = a.greet(plain=plain, **greet)
    try:
        assert p.closed_unanswered(sock) == b"", "the edge answered"
    finally:
        sock.close()
    edge.proc.wait_log([f"from {LOOPBACK}:{lport} refused", why],
                       since=since)
    return lport


def client(port, first=b"ping\n"):
    c = sp.tcp_connect(port)
    c.sendall(first)
    return c


def recv_exact(sock, n, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        b = sock.recv(n - len(buf))
        if not b:
            break
        buf += b
    return buf


def echo_once(c, links, msg=b"ping\n"):
    """The session client c started (c sent msg): found on one of links,
    msg read there, answered with msg reversed. Returns (link, stream or
    SESS_OPEN frame)."""
    dl, s = fa.next_session(links)
    if isinstance(dl, fa.MuxLink):
        opened = s.open
        assert s.recv_exact(len(msg)) == msg
        s.send(msg[::-1])
    else:
        opened = s
        assert dl.recv_exact(len(msg)) == msg
        dl.send(msg[::-1])
    assert opened.type == p.SESS_OPEN
    assert opened["SESS_KIND"] == p.SK_CLIENT
    assert opened["CLIENT_ADDR"] == LOOPBACK
    assert opened["CLIENT_PORT"] == c.getsockname()[1]
    assert recv_exact(c, len(msg)) == msg[::-1]
    return dl, s


def end_session(c, dl, s):
    """Close both directions cleanly (client first)."""
    c.shutdown(socket.SHUT_WR)
    if isinstance(dl, fa.MuxLink):
        s.wait_fin()
        s.send_fin()
    else:
        assert dl.recv_chunk() == ("end", b"")
        dl.send_end()
    c.settimeout(10)
    assert c.recv(10) == b""
    c.close()


@pytest.mark.parametrize("link", LINKS)
def test_link_proofs(vedge, pki, link):
    """A data link is taken only with a proof made with the link key of
    the agent's control connection, for a counter not used before; every
    other greeting is closed without a byte in answer and logged: a
    replayed counter, a wrong proof (which uses up no counter), an unknown
    key id, counter 0 or below the window, the other kind's proof."""
    edge = vedge
    plain = link == "plain"
    a = fake_agent(edge, pki, plain=plain)
    try:
        key, kid = a.key, a.kid
        assert len(key) == 32
        # positive control: counter 1, the right proof, a session over it
        mark = edge.proc.mark()
        dl1 = link_up(edge, a, link, mark)
        assert dl1.counter == 1
        c = client(a.svc_port)
        end_session(c, *echo_once(c, [dl1]))

        hostile = [
            (dict(counter=1), "link counter used already"),     # replay
            (dict(counter=2, proof=os.urandom(32)), "wrong link proof"),
            (dict(counter=2, kid=kid ^ 1), "unknown link key"),
            # (the frame codec refuses a counter of 0 before the proof)
            (dict(counter=0), "an id of 0"),
            # the proof of the other kind of link, right otherwise
            (dict(counter=2, kind=p.LINK_TLS if plain else p.LINK_PLAIN),
             "wrong link proof"),
        ]
        for greet, why in hostile:
            link_refused(edge, a, why, plain, edge.proc.mark(), **greet)
        # counter 2 was not used up by the wrong proofs
        mark = edge.proc.mark()
        dl2 = link_up(edge, a, link, mark, counter=2)
        # far ahead, then far behind: below the 64-counter window
        dl3 = link_up(edge, a, link, mark, counter=100)
        link_refused(edge, a, "link counter below the window", plain,
                     mark, counter=36)
        assert edge.proc.count(re.compile(r"data link from \S+ refused"),
                               mark) == 1
        # every link taken still carries sessions; the refused ones left
        # them alone
        for _ in range(3):
            c = client(a.svc_port)
            end_session(c, *echo_once(c, [dl1, dl2, dl3]))
        assert not a.closed.is_set(), a.error
    finally:
        a.close()
    assert edge.proc.alive()


def test_plain_greeting_needs_a_plain_agent(vedge, pki):
    """An edge none of whose agents uses plain links drops a plain
    greeting at its first byte, unread and unanswered, even one with a
    good proof (which therefore uses up no counter)."""
    edge = vedge
    a = fake_agent(edge, pki, plain=False)
    try:
        mark = edge.proc.mark()
        sock, lport, ctr = a.greet(plain=True, kind=p.LINK_PLAIN)
        try:
            assert p.closed_unanswered(sock) == b""
        finally:
            sock.close()
        edge.proc.wait_log([f"connection from {LOOPBACK}:{lport} refused",
                            "no agent uses plain data links"], since=mark)
        # the same counter over TLS: taken
        dl = link_up(edge, a, "tls", mark, counter=ctr)
        c = client(a.svc_port)
        end_session(c, *echo_once(c, [dl]))
    finally:
        a.close()


@pytest.mark.parametrize("link", LINKS)
def test_agent_refusal_resets_client(vedge, pki, link):
    """The agent refuses a session on its link (a mux RST with END
    refused, or a plain link's refusal chunk): the edge resets the client
    and logs the refusal with the agent's text; a refused plain
    link is not used again."""
    edge = vedge
    a = fake_agent(edge, pki, plain=link == "plain")
    try:
        dl = link_up(edge, a, link, 0)
        mark = edge.proc.mark()
        c = client(a.svc_port)
        dl, s = fa.next_session([dl])
        if link == "tls":
            s.send_rst("refused", "no backend answered (fake)")
        else:
            dl.refuse("refused", "no backend answered (fake)")
        with pytest.raises(ConnectionResetError):
            c.settimeout(10)
            while c.recv(65536):
                pass
        c.close()
        # reset by the refusal, not later by a time-out: the reason in
        # the edge's log says which, so no bound on the time is needed
        line = edge.proc.wait_log(re.compile(
            r"session \d+ closed service=echo .* reason=refused "
            r'detail="no backend answered \(fake\)" link=' + link),
            since=mark)
        assert "bytes_out=0" in line, line
        if link == "plain":
            # the edge closes the refused link rather than park it; what
            # came before is the client's first chunk at most
            assert dl.wait_closed() in (b"", p.chunk(b"ping\n"))
            assert edge.proc.count("(reused)", mark) == 0
        else:
            # the link itself lives on and takes the next session
            c = client(a.svc_port)
            end_session(c, *echo_once(c, [dl]))
    finally:
        a.close()


@pytest.mark.parametrize("link", LINKS)
def test_data_link_half_close(vedge, pki, link):
    """A client's FIN reaches the agent as the end of its direction (mux
    FIN, or a plain end marker) while the other direction still flows;
    the session ends once both sides closed, and a plain link is parked
    again and carries the next session."""
    edge = vedge
    a = fake_agent(edge, pki, plain=link == "plain")
    try:
        dl = link_up(edge, a, link, 0)
        mark = edge.proc.mark()
        c = client(a.svc_port)
        _, s = fa.next_session([dl])
        c.shutdown(socket.SHUT_WR)
        if link == "tls":
            assert s.recv_exact(5) == b"ping\n"
            s.wait_fin()
            s.send(b"after-fin\n")
        else:
            assert dl.recv_until_end() == (b"ping\n", "end")
            dl.send(b"after-fin\n")
        assert recv_exact(c, 10) == b"after-fin\n"
        c.settimeout(2)
        with pytest.raises(socket.timeout):
            c.recv(1)                   # still open toward the client
        if link == "tls":
            s.send_fin()
        else:
            dl.send_end()
        c.settimeout(10)
        assert c.recv(100) == b"", "agent's end not passed on to the client"
        c.close()
        line = edge.proc.wait_log(SESSION_CLOSED, since=mark, timeout=10)
        assert f"closed service=echo client={LOOPBACK}:" in line, line
        assert "bytes_in=5 bytes_out=10 " in line, line
        assert "reason=client-closed" in line and f"link={link} " in line
        if link == "plain":
            edge.proc.wait_log(f"plain data link parked for agent "
                               f"{a.name} (reused)", since=mark)
        c = client(a.svc_port, b"again\n")
        end_session(c, *echo_once(c, [dl], b"again\n"))
    finally:
        a.close()


@pytest.mark.parametrize("client_done", [False, True],
                         ids=["both-open", "client-done"])
def test_plain_link_fin_before_marker(vedge, pki, client_done):
    """A plain link the agent closes before its end marker (a FIN, as the
    kernel of an agent killed mid-transfer sends) is an error, never a
    clean end: the client gets every byte sent before it, then a reset,
    not an EOF; the edge logs reason=error and why, and resets the link
    rather than park it. client_done: the client's direction had ended
    (the agent read the edge's marker), so only the agent's is missing.
    The agent's control connection lives on and a new link carries the
    next session."""
    edge = vedge
    a = fake_agent(edge, pki, plain=True)
    try:
        dl = link_up(edge, a, "plain", 0)
        mark = edge.proc.mark()
        c = client(a.svc_port)
        fa.next_session([dl])
        assert dl.recv_exact(5) == b"ping\n"
        if client_done:
            c.shutdown(socket.SHUT_WR)
            assert dl.recv_until_end() == (b"", "end")
        data = os.urandom(200000)
        dl.send(data)
        dl.send_fin()
        got = bytearray()
        c.settimeout(20)
        with pytest.raises(ConnectionResetError):
            while True:
                b = c.recv(65536)
                assert b, "a link closed before its marker looked complete"
                got += b
        c.close()
        assert got == data, f"got {len(got)} of {len(data)} bytes"
        line = edge.proc.wait_log(SESSION_CLOSED, since=mark)
        assert "bytes_in=5 bytes_out=200000 " in line, line
        assert "reason=error detail=\"data link closed before the " \
            "session's end\" link=plain " in line, line
        assert dl.wait_closed() == b""
        assert edge.proc.count("(reused)", mark) == 0
        assert not a.closed.is_set(), a.error
        dl = link_up(edge, a, "plain", mark)
        c = client(a.svc_port, b"again\n")
        end_session(c, *echo_once(c, [dl], b"again\n"))
    finally:
        a.close()


def test_claim_timeout(tmp_path, pki):
    """A client that finds no data link of the agent free within
    --claim-timeout is closed (reason=timeout); the agent's control
    connection is untouched, and a link that comes later takes the next
    client."""
    edge = sp.start_edge(tmp_path, pki, claim_timeout=2)
    a = fake_agent(edge, pki, name="lazy", service="lazy")
    try:
        mark = edge.proc.mark()
        t0 = time.monotonic()
        c = sp.tcp_connect(a.svc_port)
        sp.wait_closed(c, timeout=30)
        took = time.monotonic() - t0
        c.close()
        # The time is the point: the edge's clock starts when it accepts
        # the client, after t0, so not before 2 s (less rounding); 10 s
        # leaves an ASan edge on 2 busy cores room on its 200 ms ticks.
        assert 1.9 <= took <= 10.0, f"client closed after {took:.2f}s"
        edge.proc.wait_log(re.compile(
            r"session \d+ closed service=lazy .* reason=timeout "
            r'detail="no data link within 2000 ms"'), since=mark)
        edge.proc.wait_log("limit claim_timeout hit", since=mark)
        assert a.error is None and not a.closed.is_set()
        dl = link_up(edge, a, "tls", mark)
        c = client(a.svc_port)
        end_session(c, *echo_once(c, [dl]))
    finally:
        a.close()


# --------------------------------------------------------------------------
# another protocol

@pytest.mark.parametrize("link", LINKS)
def test_https_end_to_end(tmp_path, pki, edge, nginx, link):
    size = 5 * MiB
    h = sp.random_file(nginx.root / "file", size)
    port = sp.free_port()
    mark = edge.proc.mark()
    sp.start_agent(tmp_path, pki, edge, {"https": (port, [nginx.port])},
                   data_link=link)
    out = tmp_path / "file.got"
    url = f"https://{LOOPBACK}:{port}/file"
    r = sp.run(["curl", "-q", "--noproxy", "*", "-sS", "--max-time", "60",
                "--cacert", nginx.cert, "-o", out,
                "-w", "%{ssl_verify_result} %{http_code}", url], check=False)
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip() == "0 200", r.stdout
    assert out.stat().st_size == size
    assert sp.sha256_file(out) == h
    wait_session_with_bytes(edge, size, mark)
    assert_link(edge, link, mark)
    # control: the certificate really is verified (unknown CA -> exit 60)
    r = sp.run(["curl", "-q", "--noproxy", "*", "-sS", "--max-time", "60",
                "--cacert", pki.ca_crt, "-o", "/dev/null", url], check=False)
    assert r.returncode == 60, r.stdout


# --------------------------------------------------------------------------
# the edge never dials out on inbound traffic

def _strace(path):
    return ["strace", "-f", "--seccomp-bpf", "-e", "trace=connect",
            "-o", str(path)]


def test_edge_never_connects(tmp_path, pki, sshd):
    etrace, atrace = tmp_path / "edge.strace", tmp_path / "agent.strace"
    edge = sp.start_edge(tmp_path, pki, wrapper=_strace(etrace))
    port = sp.free_port()
    agent = sp.start_agent(tmp_path, pki, edge, {"sftp": (port, [sshd.port])},
                           wrapper=_strace(atrace))
    rd = remote_dir(sshd, tmp_path)
    src, back = tmp_path / "f.bin", tmp_path / "f.back"
    h = sp.random_file(src, 2 * MiB)
    sshd.sftp(port, [f"put {src} {rd}/f.bin", f"get {rd}/f.bin {back}"],
              tmp_path)
    assert sp.sha256_file(back) == h
    assert agent.proc.stop() == 0
    assert edge.proc.stop() == 0
    et, at = etrace.read_text(), atrace.read_text()
    edge_connects = [ln for ln in et.splitlines() if "connect(" in ln]
    agent_connects = [ln for ln in at.splitlines() if "connect(" in ln]
    assert not edge_connects, "edge called connect():\n" + "\n".join(edge_connects)
    # positive control: the same tracing sees the agent dial edge and sshd
    assert any(f"htons({edge.control_port})" in ln for ln in agent_connects), at
    assert any(f"htons({sshd.port})" in ln for ln in agent_connects), at

    # The edge binary does contain connect() now, for outbound sessions
    # only (tests/integration/test_outbound.py checks where it may go);
    # this traffic used none, so the trace above must be empty.


# --------------------------------------------------------------------------
# shutdown

def _live_session(port):
    """A raw client that got sshd's banner through the edge (session joined)."""
    c = sp.tcp_connect(port)
    c.settimeout(10)
    assert c.recv(7) == b"SSH-2.0"
    return c


def _term(proc, what):
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    rc = proc.wait(5)
    assert rc is not None, f"{what} still running 5 s after SIGTERM"
    assert rc == 0, f"{what} exited with {rc} on SIGTERM"
    return time.monotonic() - t0


def test_sigterm_clean_exit(sftp_gw, tmp_path, pki):
    g = sftp_gw
    sftp_ls(g, tmp_path)
    # agent first, with a session running; then the edge
    c = _live_session(g.port)
    _term(g.agent.proc, "agent (live session)")
    _term(g.edge.proc, "edge (agent gone)")
    c.close()

    # edge first, with an agent and a session; then the reconnecting agent
    edge = sp.start_edge(tmp_path, pki, tag="edge2")
    port = sp.free_port()
    agent = sp.start_agent(tmp_path, pki, edge, {"sftp": (port, [g.sshd.port])},
                           tag="agent2")
    c = _live_session(port)
    amark = agent.proc.mark()
    _term(edge.proc, "edge (agent + live session)")
    agent.proc.wait_log(f"edge {edge.addr} lost", since=amark, timeout=10)
    _term(agent.proc, "agent (edge gone)")
    c.close()
