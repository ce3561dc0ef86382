"""A compromised edge cannot hurt the inside (issue 19).

The agent is the one piece of inside software that talks to the edge and
parses what it sends, so this suite attacks the real agent with a fake
edge (fakeedge.py: a real TLS 1.3 server with a certificate of the test
PKI, which speaks the protocol where it must and breaks it everywhere
else), while the agent also serves a real sallyport-edge (the bystander)
whose sessions must carry on. What the agent guarantees, each shown here:

- it dials only backends of its own configuration, and only for its own
  services (test_dials_only_its_own_backends traces every connect());
- it never sends a backend's bytes to a stream of another session
  (test_stream_ids, test_no_crossed_streams);
- it never crashes or hangs, and its other edge and that edge's sessions
  carry on (every test ends with the bystander's session and a new one);
- its memory stays under the bound docs/security.md states, measured as
  VmRSS under each flood (test_floods_*);
- each violation is counted (sallyport_edge_violations_total) and logged,
  one line a second at most, and the control connection or link is
  dropped where going on is unsafe;
- the edge's certificate is checked against `edge =` on every connection
  (test_edge_name_checked_on_every_connection).
"""

import hashlib
import os
import re
import selectors
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import pytest

import fakeedge as fe_mod
import sp
import spproto as p
from sp import LOOPBACK, MiB

ASAN = sp.BUILD.name.endswith("-asan")
# docs/security.md, "What a compromised edge can and cannot do": per
# session ~2.5 KiB of state; bytes buffered per stream at most its window
# (256 KiB) plus a 1 KiB PROXY header. The bounds below are those figures
# with a generous margin; ASan's shadow and quarantine are not ours, so
# a sanitizer build gets twice the room.
KIB_PER_SESSION = 8
WINDOW_KIB = 257
SLACK_KIB = 24 * 1024
SAN_FACTOR = 2 if ASAN else 1


# --------------------------------------------------------------------------
# backends

class TagServer(sp.ThreadedServer):
    """A backend on a free loopback port: every connection gets a tag of
    its own, sent first ("TAG n\\n"), then what it reads is echoed, until
    the client half-closes."""

    def __init__(self):
        self.lock = threading.Lock()
        self.n = 0
        super().__init__()

    def _serve(self, c):
        with self.lock:
            self.n += 1
            tag = self.n
        try:
            c.settimeout(60)
            c.sendall(b"TAG %d\n" % tag)
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    def accepted(self):
        with self.lock:
            return self.n


class HoldServer:
    """A backend that accepts and holds every connection, reading
    nothing: what the agent sends it stays in the agent or the kernel.
    backlog_only: never accept either, with a backlog of 1, so that
    connects beyond it hang (a backend that does not answer)."""

    def __init__(self, backlog_only=False):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((LOOPBACK, 0))
        self.lsock.listen(1 if backlog_only else 4096)
        self.port = self.lsock.getsockname()[1]
        self.held = []
        self.stop = threading.Event()
        if not backlog_only:
            threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        self.lsock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.held.append(c)

    def close(self):
        self.stop.set()
        self.lsock.close()
        for c in self.held:
            c.close()


class PushServer(sp.ThreadedServer):
    """A backend that sends `size` bytes of a fixed pattern to each
    connection, then closes."""

    def __init__(self, size):
        self.data = (hashlib.sha256(b"push").digest() *
                     (size // 32 + 1))[:size]
        super().__init__()

    def _serve(self, c):
        try:
            c.settimeout(120)
            c.sendall(self.data)
            c.shutdown(socket.SHUT_WR)
            c.recv(1)
        except OSError:
            pass
        finally:
            c.close()


# --------------------------------------------------------------------------
# the agent under attack, with a fake edge and a real one

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def agent_env(wrapper=()):
    """The agent's environment: under ASan, a small quarantine, since
    freed memory ASan holds back (256 MiB by default) counts in VmRSS and
    is not the agent's; under strace, no leak check (sp._traced_env)."""
    env = sp._traced_env() if wrapper else dict(os.environ)
    if ASAN:
        opts = env.get("ASAN_OPTIONS", "")
        env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + \
            "quarantine_size_mb=16"
    return env


class Rig:
    """An agent (admin API on) serving two edges: fe, the fake one under
    the test's control, and real, a sallyport-edge with the bystander's
    sessions. Services: {name: (listen port, backend port, [extra
    lines])}; every service is offered at both edges."""

    def __init__(self, tmp, pki, services, data_link="tls", data_links=None,
                 real=True, extra=(), outbound=(), wrapper=(), nofile=None,
                 fe_kw=None):
        self.tmp = Path(tmp)
        self.pki = pki
        self.services = services
        self.fe = fe_mod.FakeEdge(pki.edge_crt, pki.edge_key, pki.ca_crt,
                                  **(fe_kw or {}))
        self.real = sp.start_edge(tmp, pki, tag="real") if real else None
        self.admin_port = sp.free_port()
        self.token_file = self.tmp / "agent.token"
        self.token = sp.write_token(self.token_file)
        self.audit = self.tmp / "audit.log"
        out = ["[agent]", "name = agent1", f"edge = {self.fe.addr}"]
        if self.real:
            out.append(f"edge = {self.real.addr}")
        out += [f"data_link = {data_link}", f"cert = {pki.agent_crt}",
                f"key = {pki.agent_key}", f"ca = {pki.ca_crt}",
                f"audit_log = {self.audit}"]
        if data_links is not None:
            out.append(f"data_links = {data_links}")
        out += list(extra)
        out += ["", "[admin]", f"listen = {LOOPBACK}:{self.admin_port}",
                f"token_file = {self.token_file}", ""]
        for name, (listen, backend, more) in services.items():
            out += [f"[service {name}]", f"listen = {LOOPBACK}:{listen}",
                    f"backend = {LOOPBACK}:{backend}"] + list(more) + [""]
        if outbound:
            out += ["[outbound]"] + list(outbound) + [""]
        self.conf = self.tmp / "agent.conf"
        self.conf.write_text("\n".join(out))
        mark = self.real.proc.mark() if self.real else 0
        argv = list(wrapper)
        if nofile is not None:
            argv += ["prlimit", f"--nofile={nofile}:{nofile}"]
        argv += [sp.AGENT_BIN, "--config", self.conf]
        self.proc = sp.Proc("agent", argv, self.tmp / "agent.log",
                            wrapped=bool(wrapper), env=agent_env(wrapper))
        self.ctl = self.fe.control()
        self.ctl.wait_services(list(services))
        if self.real:
            for name, (listen, _, _) in services.items():
                self.real.proc.wait_log(
                    f"service {name} open on {LOOPBACK}:{listen}",
                    since=mark)
        self.proc.wait_log(f"admin API listening on {LOOPBACK}:"
                           f"{self.admin_port}")
        self.pid = self.proc.target_pid()
        self.held = []
        self.link = data_link
        self.ml = None

    # ---- what the agent says about itself

    def metrics(self):
        st, _, body = sp.api_request(self.admin_port, "GET", "/metrics",
                                     self.token, timeout=30)
        assert st == 200, (st, body)
        return sp.parse_metrics(body)

    def violations(self, addr=None):
        v = sp.metric(self.metrics(), "sallyport_edge_violations_total",
                      edge=addr or self.fe.addr)
        assert v is not None, "no sallyport_edge_violations_total"
        return int(v)

    def wait_violations(self, n, timeout=20):
        return sp.wait_until(lambda: self.violations() >= n or None,
                             timeout, f"{n} violations counted")

    def rss(self):
        return rss_kib(self.pid)

    def fds(self):
        return fd_count(self.pid)

    def log(self, since=0):
        return "\n".join(self.proc.lines(since))

    # ---- the bystander: sessions through the real edge

    def session(self, service="echo", payload=None, keep=False):
        """A session through the real edge: the backend's tag, then the
        payload echoed. keep: return the open socket (a long-lived
        session, checked again by check_held)."""
        listen = self.services[service][0]
        c = socket.create_connection((LOOPBACK, listen), timeout=30)
        c.settimeout(30)
        tag = sp.recv_line(c, timeout=30)
        assert tag.startswith(b"TAG "), tag
        payload = payload or os.urandom(100000)
        c.sendall(payload)
        got = b""
        while len(got) < len(payload):
            b = c.recv(65536)
            assert b, f"session cut after {len(got)} bytes"
            got += b
        assert got == payload, "echo corrupted"
        if keep:
            self.held.append(c)
            return c
        c.shutdown(socket.SHUT_WR)
        assert c.recv(1) == b""
        c.close()
        return tag

    def check_held(self):
        """Every held session still relays, and a new one starts."""
        for c in self.held:
            data = os.urandom(50000)
            c.sendall(data)
            got = b""
            while len(got) < len(data):
                b = c.recv(65536)
                assert b, "a session of the other edge was cut"
                got += b
            assert got == data
        self.session()

    def bystander_ok(self):
        assert self.proc.alive(), self.proc.tail()
        if self.real:
            self.check_held()

    def close(self):
        for c in self.held:
            c.close()
        self.fe.close()


def sess_open(sid, service="echo", client="192.0.2.10", port=40000,
              kind=p.SK_CLIENT, **more):
    return p.sess_open(sid, kind, SERVICE=service, CLIENT_ADDR=client,
                       CLIENT_PORT=port, **more)


def echo_through(stream_or_link, data):
    """Send data on a fake-edge stream (or plain link) and read the tag
    and the echo: returns the tag line."""
    s = stream_or_link
    s.send(data)
    first = s.recv_exact(4)
    assert first == b"TAG ", first
    rest = b""
    while not rest.endswith(b"\n"):
        rest += s.recv_exact(1)
    assert s.recv_exact(len(data), timeout=30) == data
    return first + rest


@pytest.fixture
def tag():
    t = TagServer()
    yield t
    t.close()


@pytest.fixture
def rig(tmp_path, pki, tag):
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, [])})
    r.session(keep=True)
    yield r
    r.close()


@pytest.fixture(params=["tls", "plain"])
def rig_link(request, tmp_path, pki, tag):
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, [])},
            data_link=request.param)
    r.session(keep=True)
    yield r
    r.close()


def open_session(r, frame):
    """Start a session on r's fake edge with SESS_OPEN bytes frame: on
    its current mux link (a stream) or on the next plain link. Returns
    the stream or the link."""
    if r.link == "tls":
        if r.ml is None or r.ml.closed.is_set():
            r.ml = r.fe.mux_link()
        return r.ml.open(frame)
    pl = r.fe.plain_link()
    pl.start(frame)
    return pl


def refused(s, timeout=10):
    """The agent's refusal of a session (a stream's RST or a plain
    link's refusal): (END name, text)."""
    if isinstance(s, fe_mod.EdgeStream):
        return s.wait_rst(timeout)
    got, how = s.recv_until_end(timeout)
    assert got == b"" and isinstance(how, tuple) and how[0] == "refused", \
        (got, how)
    return how[1]


# --------------------------------------------------------------------------
# a correct edge first: the fake is taken as one, and nothing is counted

def test_fake_edge_is_an_edge(rig_link, tag):
    r = rig_link
    s = open_session(r, sess_open(1))
    line = echo_through(s, os.urandom(300000))
    assert line.startswith(b"TAG ")
    if r.link == "tls":
        s.send_fin()
        got, how = s.recv_until_end()
        assert how == "fin" and got == b""
    else:
        s.send_end()
        got, how = s.recv_until_end()
        assert how == "end" and got == b""
    r.proc.wait_log("session 1 closed service=echo client=192.0.2.10:40000")
    assert r.violations() == 0
    assert r.violations(r.real.addr) == 0
    r.bystander_ok()


# --------------------------------------------------------------------------
# multiplexed links: stream ids, flow control, malformed frames

def _viol_lines(r, since=0):
    return [ln for ln in r.proc.lines(since) if "protocol violation" in ln]


def _wait_link_dropped(r, ml, before, what, since):
    """ml was closed by the agent, counted once, with what in the line."""
    err = ml.wait_closed(timeout=20)
    assert err is not None, "the fake closed the link, not the agent"
    r.wait_violations(before + 1)
    lines = _viol_lines(r, since)
    assert any(what in ln for ln in lines), (what, lines)


def _first_stream(r, ml, sid_session=101):
    s = ml.open(sess_open(sid_session))
    echo_through(s, b"first stream")
    return s


STREAM_ID_CASES = {
    # the review's finding: OPEN 1, OPEN 0xFFFFFFFF, OPEN 1
    "wrap": (lambda ml: [p.mux_frame(0xFFFFFFFF, p.MUX_OPEN, sess_open(102)),
                         p.mux_frame(1, p.MUX_OPEN, sess_open(103))],
             "mux OPEN out of order"),
    "zero": (lambda ml: [p.mux_frame(0, p.MUX_OPEN, sess_open(102))],
             "mux frame for stream 0"),
    "skip": (lambda ml: [p.mux_frame(3, p.MUX_OPEN, sess_open(102))],
             "mux OPEN out of order"),
    "reuse": (lambda ml: [p.mux_frame(1, p.MUX_OPEN, sess_open(102))],
              "mux OPEN out of order"),
    "never_opened": (lambda ml: [p.mux_data(7, b"stray")],
                     "mux frame for a stream never opened"),
    "fin_twice": (lambda ml: [p.mux_frame(1, p.MUX_FIN) * 2],
                  "mux FIN after the stream's end"),
    "data_after_fin": (lambda ml: [p.mux_frame(1, p.MUX_FIN) +
                                   p.mux_data(1, b"late")],
                       "mux DATA after the stream's end"),
}


@pytest.mark.parametrize("case", sorted(STREAM_ID_CASES))
def test_stream_ids(rig, tag, case):
    """Stream ids reused, wrapped, zero or never opened: the link is
    dropped at the first bad frame, counted once, no session starts for
    it, and the session that was on the link ends; the agent opens a new
    link and serves on."""
    r = rig
    frames, what = STREAM_ID_CASES[case]
    ml = r.fe.mux_link()
    s = _first_stream(r, ml)
    before, mark = r.violations(), r.proc.mark()
    for f in frames(ml):
        ml.send(f)
    _wait_link_dropped(r, ml, before, what, mark)
    log = r.log(mark)
    assert "session 102 opened" not in log and \
        "session 103 opened" not in log, log
    r.proc.wait_log("session 101 closed", since=0)
    assert s.rst is None or s.rst[0] in ("error", "client-closed")
    # a new link, a new session, and the bystander
    s2 = r.fe.mux_link().open(sess_open(104))
    echo_through(s2, b"after")
    r.bystander_ok()


def test_no_crossed_streams(rig, tag):
    """Two sessions on one link, each to a backend connection that tags
    its bytes: each stream gets its own backend's bytes only, and when
    the edge then reuses an id the link goes before any byte crosses."""
    r = rig
    ml = r.fe.mux_link()
    a, b = ml.open(sess_open(201)), ml.open(sess_open(202))
    ta = echo_through(a, b"A" * 70000)
    tb = echo_through(b, b"B" * 70000)
    assert ta != tb
    for _ in range(3):
        echo_through_only = b"a" * 20000
        a.send(echo_through_only)
        b.send(b"b" * 20000)
        assert a.recv_exact(20000) == echo_through_only
        assert b.recv_exact(20000) == b"b" * 20000
    before, mark = r.violations(), r.proc.mark()
    # reuse: a second OPEN for stream 1, then bytes for it
    ml.send(p.mux_frame(1, p.MUX_OPEN, sess_open(203)) + p.mux_data(1, b"X"))
    _wait_link_dropped(r, ml, before, "mux OPEN out of order", mark)
    with ml.cond:
        assert b"B" not in a.data and b"b" not in a.data
        assert b"A" not in b.data and b"a" not in b.data
        assert b"X" not in a.data and b"X" not in b.data
    assert "session 203 opened" not in r.log(mark)
    r.bystander_ok()


@pytest.fixture
def stuck_rig(tmp_path, pki, tag):
    """rig with a second service whose backend never answers (its
    listen backlog is full), so sessions of it stay in set-up and their
    bytes wait in the agent."""
    stuck = HoldServer(backlog_only=True)
    fill = [socket.socket() for _ in range(4)]
    for s in fill:
        s.setblocking(False)
        s.connect_ex((LOOPBACK, stuck.port))
    time.sleep(0.2)
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, []),
                            "stuck": (sp.free_port(), stuck.port, [])},
            extra=["connect_timeout = 60"])
    r.session(keep=True)
    yield r
    r.close()
    for s in fill:
        s.close()
    stuck.close()


FLOW_CASES = {
    "credit_overflow": (lambda: p.mux_credit(1, 2 * MiB),
                        "mux CREDIT beyond the window"),
    "credit_zero": (lambda: p.mux_credit(1, 0),
                    "mux CREDIT beyond the window"),
    "beyond_window": (lambda: p.mux_data(1, b"w" * (p.MUX_WINDOW + 1)),
                      "mux peer sent beyond its credit"),
    "blocked_on_credit": (lambda: p.mux_frame(1, p.MUX_CREDIT,
                                              struct.pack(">I", 10), flags=1),
                          "mux frame flags unknown"),
    "unknown_type": (lambda: p.mux_frame(1, 9, b"x"),
                     "unknown mux frame type"),
    "oversize_data": (lambda: p.mux_frame(1, p.MUX_DATA, b"d" * 16385),
                      "mux DATA of a bad length"),
    "empty_data": (lambda: p.mux_frame(1, p.MUX_DATA, b""),
                   "mux DATA of a bad length"),
    "oversize_open": (lambda: p.mux_frame(2, p.MUX_OPEN, b"o" * 1025),
                      "mux frame too long"),
    "ping_on_stream": (lambda: p.mux_frame(5, p.MUX_PING, b"12345678"),
                       "mux PING/PONG malformed"),
    "rst_empty": (lambda: p.mux_frame(1, p.MUX_RST, b""),
                  "mux RST of a bad length"),
    "fin_payload": (lambda: p.mux_frame(1, p.MUX_FIN, b"x"),
                    "mux FIN with a payload"),
}


@pytest.mark.parametrize("case", sorted(FLOW_CASES))
def test_mux_frames_and_credit(stuck_rig, case):
    """Credit and window overflow, oversized, empty and unknown mux
    frames: the link is dropped, counted once; the agent serves on."""
    r = stuck_rig
    make, what = FLOW_CASES[case]
    ml = r.fe.mux_link()
    s = ml.open(sess_open(301, service="stuck"))
    r.proc.wait_log("session 301 opened")
    before, mark = r.violations(), r.proc.mark()
    ml.send(make())
    _wait_link_dropped(r, ml, before, what, mark)
    assert s.rst is None
    r.proc.wait_log("session 301 closed")
    s2 = r.fe.mux_link().open(sess_open(302))
    echo_through(s2, b"after")
    r.bystander_ok()


def test_frames_for_refused_and_ended_streams(rig, tag):
    """Data, FIN and CREDIT on a stream the agent refused, or that ended,
    are dropped (a correct edge may not know yet): the link stays, no
    violation beyond the refusal itself, nothing reaches a backend."""
    r = rig
    ml = r.fe.mux_link()
    before = r.violations()
    bad = ml.open(sess_open(401, service="nosuch"))
    assert refused(bad) == ("refused", "SESS_OPEN for a service this agent "
                            "does not offer")
    r.wait_violations(before + 1)
    n = tag.accepted()
    ml.send(p.mux_data(1, b"z" * 30000) + p.mux_credit(1, 1000) +
            p.mux_frame(1, p.MUX_FIN))
    good = ml.open(sess_open(402))
    echo_through(good, b"still here")
    good.send_fin()
    assert good.recv_until_end()[1] == "fin"
    r.proc.wait_log("session 402 closed")
    ml.send(p.mux_data(2, b"after the end") + p.mux_frame(2, p.MUX_FIN))
    third = ml.open(sess_open(403))
    echo_through(third, b"and on")
    assert not ml.closed.is_set()
    assert r.violations() == before + 1
    assert tag.accepted() == n + 2       # sessions 402 and 403 only
    r.bystander_ok()


def test_truncated_mux_frame(rig):
    """Half a frame, then the link closes: a lost link (as a network cut
    is), not a violation; the session on it ends as an error."""
    r = rig
    ml = r.fe.mux_link()
    s = _first_stream(r, ml)
    before, mark = r.violations(), r.proc.mark()
    ml.send(p.mux_frame(1, p.MUX_DATA, b"x" * 10, length=100))
    time.sleep(0.3)
    ml.close()
    r.proc.wait_log(["session 101 closed", "reason=error"], since=mark)
    assert r.violations() == before
    assert s.rst is None
    r.bystander_ok()


# --------------------------------------------------------------------------
# the control connection: malformed frames, frames out of place, replays

def _pong_frame(payload):
    return p.raw_frame(p.PONG, payload)


CONTROL_DROP_CASES = {
    "oversize": (p.raw_frame(p.PONG, b"", length=65537), "frame too large"),
    "unknown_type": (p.raw_frame(99, b""), "unknown frame type"),
    "flags": (p.raw_frame(p.PONG, p.attr("NONCE", 1), flags=1),
              "frame flags not zero"),
    "runs_past": (_pong_frame(struct.pack(">HH", 12, 100) + b"abcd"),
                  "attribute runs past the frame"),
    "repeated": (_pong_frame(p.attr("NONCE", 1) + p.attr("NONCE", 1)),
                 "repeated attribute"),
    "wrong_length": (_pong_frame(struct.pack(">HH", 12, 4) + b"abcd"),
                     "attribute has the wrong length"),
    "control_byte": (p.frame(p.SVC_RESULT, SERVICE="echo", STATUS=0,
                             TEXT=b"a\x1b[2Jb"),
                     "string attribute has a control byte"),
    "missing": (p.raw_frame(p.SVC_RESULT, p.attr("STATUS", 0)),
                "required attribute missing"),
    "session_zero": (p.frame(p.SESS_DENIED, SESSION=0, SERVICE="echo",
                             CLIENT_ADDR="192.0.2.1", CLIENT_PORT=1, END=4,
                             TEXT="x"), "an id of 0"),
    "hello_ok_replay": (None, "HELLO_OK again"),
    "sess_open_here": (sess_open(9), "a frame the edge never sends"),
    "link_hello_here": (p.link_hello(1, 1, b"p" * 32),
                        "a frame the edge never sends"),
    "svc_open_back": (p.frame(p.SVC_OPEN, SERVICE="echo",
                              LISTEN="127.0.0.1:1"),
                      "a frame the edge never sends"),
}


@pytest.mark.parametrize("case", sorted(CONTROL_DROP_CASES))
def test_control_frames_dropped(rig, case):
    """Oversized, unknown, truncated-inside, repeated and out-of-place
    frames, and a replayed HELLO_OK, on the control connection: the
    agent drops it, counts one violation, connects again and pushes its
    services; the other edge's sessions carry on."""
    r = rig
    data, what = CONTROL_DROP_CASES[case]
    if data is None:
        data = r.ctl.hello_ok()
    before, mark = r.violations(), r.proc.mark()
    r.ctl.send(data)
    err = r.ctl.wait_closed(timeout=20)
    assert err is not None, "the fake closed it, not the agent"
    r.wait_violations(before + 1)
    assert any(what in ln for ln in _viol_lines(r, mark)), \
        (what, _viol_lines(r, mark))
    r.proc.wait_log(f"edge {r.fe.addr} lost", since=mark)
    ctl = r.fe.control()
    ctl.wait_services(["echo"])
    assert r.violations() == before + 1
    s = r.fe.mux_link().open(sess_open(501))
    echo_through(s, b"reconnected")
    r.bystander_ok()


def test_control_unknown_attribute_skipped(rig):
    """An attribute this version does not know is skipped, as the
    protocol says: not a violation, the connection stays."""
    r = rig
    before = r.violations()
    r.ctl.answer_ping = False
    r.ctl.last_nonce = None
    nonce = sp.wait_until(lambda: r.ctl.last_nonce, 10, "a PING")
    r.ctl.send(_pong_frame(p.attr(60, b"future") + p.attr("NONCE", nonce)))
    r.ctl.answer_ping = True
    time.sleep(2.5)
    assert not r.ctl.closed.is_set()
    assert r.violations() == before
    r.bystander_ok()


def test_truncated_control_frame(rig):
    """Half a frame, then the connection closes: lost (as a network cut
    is), not a violation; the agent connects again."""
    r = rig
    before, mark = r.violations(), r.proc.mark()
    r.ctl.send(p.raw_frame(p.PONG, b"\0\x0c\0\x08", length=12))
    time.sleep(0.3)
    r.ctl.close()
    r.proc.wait_log(f"edge {r.fe.addr} lost", since=mark)
    r.fe.control().wait_services(["echo"])
    assert r.violations() == before
    r.bystander_ok()


def _ignored(r, data, what, n=1):
    """data breaks no framing but answers nothing the agent asked: n
    violations, ignored, the connection stays. (A second after the last
    violation, so that its line is not one of those held back.)"""
    time.sleep(1.05)
    before, mark = r.violations(), r.proc.mark()
    r.ctl.send(data)
    r.wait_violations(before + n)
    assert any(what in ln for ln in _viol_lines(r, mark)), \
        (what, _viol_lines(r, mark))
    return before


def test_replies_nobody_asked_for(rig):
    """PONGs for no PING (a replay among them), SVC_RESULT for a service
    the agent does not have or never asked about, STATS nobody asked
    for or that does not parse, an OUT_POLICY_OK for a policy never sent
    (this agent has no [outbound]), OUT_FAIL for no request: each one
    violation, ignored; the control connection stays up and the
    heartbeat, services and counters go on."""
    r = rig
    # a replayed PONG: answer the next PING ourselves, twice
    r.ctl.answer_ping = False
    r.ctl.last_nonce = None
    nonce = sp.wait_until(lambda: r.ctl.last_nonce, 10, "a PING")
    r.ctl.send(p.frame(p.PONG, NONCE=nonce))
    _ignored(r, p.frame(p.PONG, NONCE=nonce), "PONG for no PING of ours")
    r.ctl.answer_ping = True
    _ignored(r, p.frame(p.PONG, NONCE=12345), "PONG for no PING of ours")
    _ignored(r, p.frame(p.SVC_RESULT, SERVICE="nosuch", STATUS=0),
             "SVC_RESULT for no SVC_OPEN of ours")
    _ignored(r, p.frame(p.SVC_RESULT, SERVICE="echo", STATUS=1,
                        TEXT="evicted"),
             "SVC_RESULT for no SVC_OPEN of ours")
    assert "service echo refused: evicted" not in r.proc.log()
    # STATS: stop answering, then answer one request with garbage
    r.ctl.answer_stats = False
    time.sleep(2.5)
    r.ctl.send(p.frame(p.STATS, STATS="sessions_active=1  bad=-1"))
    r.wait_violations(r.violations())
    r.ctl.answer_stats = True
    before = r.violations()
    r.ctl.send(b"".join(p.frame(p.STATS, STATS=f"forged_total={i}")
                        for i in range(50)))
    r.wait_violations(before + 40)
    _ignored(r, p.frame(p.OUT_POLICY_OK, STATUS=0),
             "OUT_POLICY_OK for no OUT_POLICY of ours")
    _ignored(r, p.frame(p.OUT_FAIL, REQUEST=77, OUT_CODE=2),
             "OUT_FAIL for request 77, which was not asked there")
    assert not r.ctl.closed.is_set()
    m = r.metrics()
    assert sp.metric(m, "sallyport_edge_up", edge=r.fe.addr) == 1
    assert not [k for k in m if k[0].startswith("sallyport_edge_forged")]
    assert "outbound open" not in r.proc.log()
    r.bystander_ok()


def test_refusals_nobody_made(rig):
    """SESS_DENIED and DENIED_SUMMARY are written to the audit log: for a
    service the agent does not offer, a reason the edge does not refuse
    for, a client address that is not one, a summary of nothing, or
    faster than the edge reports, they are violations and not audited;
    a correct one is (the positive control)."""
    r = rig

    def denied(**kw):
        a = dict(SESSION=1, SERVICE="echo", CLIENT_ADDR="198.51.100.7",
                 CLIENT_PORT=5555, END=4, TEXT="policy")
        a.update(kw)
        return p.frame(p.SESS_DENIED, **a)

    r.ctl.send(denied(SESSION=900))
    sp.wait_audit(r.audit, lambda a: a.get("session") == 900)
    _ignored(r, denied(SESSION=901, SERVICE="nosuch"),
             "refusal reported for a service this agent does not offer")
    _ignored(r, denied(SESSION=902, END=1),
             "SESS_DENIED with a reason the edge does not refuse for")
    _ignored(r, denied(SESSION=903, CLIENT_ADDR="evil.example"),
             "SESS_DENIED with a client address that is not one")
    _ignored(r, denied(SESSION=904, CLIENT_ADDR="0.0.0.0"),
             "SESS_DENIED with a client address that is not one")
    _ignored(r, p.frame(p.DENIED_SUMMARY, SERVICE="echo", COUNT=0),
             "DENIED_SUMMARY of no refusal")
    # a flood: 1000 refusals at once, at most twice what the edge
    # reports in a second are taken (two seconds at worst)
    before = r.violations()
    r.ctl.send(b"".join(denied(SESSION=10000 + i) for i in range(1000)))
    r.wait_violations(before + 1000 - 2 * 100)
    time.sleep(2.1)                     # the counts are per second
    r.ctl.send(denied(SESSION=999))     # in order after the flood
    sp.wait_audit(r.audit, lambda a: a.get("session") == 999)
    recs = sp.read_audit(r.audit)
    sessions = {a.get("session") for a in recs}
    assert not sessions & {901, 902, 903, 904}, sessions
    flood = [a for a in recs if 10000 <= (a.get("session") or 0) < 11000]
    assert 0 < len(flood) <= 2 * 100, len(flood)
    assert not r.ctl.closed.is_set()
    r.bystander_ok()


def test_violation_log_is_rate_limited(rig):
    """A flood of violations: every one counted, at most one log line a
    second, each line saying how many it stands for."""
    r = rig
    before, mark = r.violations(), r.proc.mark()
    t0 = time.monotonic()
    stop = threading.Event()
    r.ctl.flood(p.frame(p.PONG, NONCE=1) * 1000, stop)
    sp.wait_until(lambda: r.violations() >= before + 100000 and
                  time.monotonic() - t0 > 3, 60,
                  "100,000 violations counted, over 3 s")
    stop.set()
    secs = time.monotonic() - t0
    lines = _viol_lines(r, mark)
    assert 2 <= len(lines) <= secs + 2, (len(lines), secs)
    assert "more since the last line" in lines[-1], lines[-1]
    last = int(re.search(r"(\d+) in all", lines[-1]).group(1))
    assert last > before + 1000 * len(lines)
    r.bystander_ok()


# --------------------------------------------------------------------------
# SESS_OPEN: services, kinds, addresses the agent never offered

BAD_OPENS = {
    "unknown_service": (dict(service="nosuch"),
                        "for a service this agent does not offer"),
    "no_client": (None, "without what its kind needs"),
    "client_name": (dict(client="evil.example"),
                    "a client address that is not one"),
    "client_with_port": (dict(client="198.51.100.1:80"),
                         "a client address that is not one"),
    "client_injection": (dict(client="198.51.100.1 PROXY TCP4 10.0.0.1"),
                         "a client address that is not one"),
    "client_zone": (dict(client="fe80::1%lo"),
                    "a client address that is not one"),
    "client_unspecified": (dict(client="0.0.0.0"),
                           "a client address that is not one"),
    "client_v6_unspecified": (dict(client="::"),
                              "a client address that is not one"),
    "client_multicast": (dict(client="224.0.0.1"),
                         "a client address that is not one"),
    "client_broadcast": (dict(client="255.255.255.255"),
                         "a client address that is not one"),
    "client_port_zero": (dict(port=0), "a client address that is not one"),
    "local_without_port": (dict(LOCAL_ADDR="198.51.100.2"),
                           "a bad local address"),
    "local_name": (dict(LOCAL_ADDR="localhost", LOCAL_PORT=22),
                   "a bad local address"),
    "ftp_data_not_ftp": (dict(kind=p.SK_FTP_DATA, FTP_CTL=1, FTP_PORT=2121),
                         "FTP data for a service that is not FTP"),
    "ftp_active_not_active": (dict(kind=p.SK_FTP_ACTIVE, FTP_CTL=1,
                                   REQUEST=1),
                              "FTP active data for a service without active "
                              "mode"),
    "outbound_not_asked": (dict(kind=p.SK_OUTBOUND),
                           "this agent has no [outbound]"),
}


def _bad_open(sid, case):
    kw, _ = BAD_OPENS[case]
    if kw is None:
        return p.sess_open(sid, p.SK_CLIENT, SERVICE="echo")
    kw = dict(kw)
    if kw.get("kind") == p.SK_OUTBOUND:
        return p.sess_open(sid, p.SK_OUTBOUND, REQUEST=1,
                           DEST_ADDR="198.51.100.9:443")
    return sess_open(sid, **kw)


@pytest.mark.parametrize("case", sorted(BAD_OPENS))
def test_sess_open_refused(rig_link, tag, case):
    """What SESS_OPEN names that the agent never offered, or says in a
    form that is not what it must be: refused on its link, counted as one
    violation, no backend dialled, nothing audited; the link (a stream's
    RST, a plain link's refusal) and the agent carry on."""
    r = rig_link
    n, before, mark = tag.accepted(), r.violations(), r.proc.mark()
    s = open_session(r, _bad_open(601, case))
    code, text = refused(s)
    assert code == "refused", (code, text)
    assert BAD_OPENS[case][1] in text, text
    r.wait_violations(before + 1)
    assert BAD_OPENS[case][1] in "".join(_viol_lines(r, mark))
    if r.link == "plain":
        # bytes on the refused link: read and dropped until it closes
        s.send_raw(os.urandom(200000) + _bad_open(603, case))
        s.close()
    assert tag.accepted() == n, "a backend was dialled"
    assert "session 601 opened" not in r.log(mark)
    assert not [a for a in sp.read_audit(r.audit) if a.get("session") == 601]
    s2 = open_session(r, sess_open(602))
    echo_through(s2, b"next session")
    assert r.violations() == before + 1
    assert tag.accepted() == n + 1
    r.bystander_ok()


def test_sess_open_not_a_frame(rig_link):
    """A SESS_OPEN that does not decode (a control byte in an address, a
    truncated attribute): on a stream, refused and counted; on a plain
    link, the link is dropped and counted (its framing is gone)."""
    r = rig_link
    before, mark = r.violations(), r.proc.mark()
    bad = sess_open(701, client=b"198.51.100.1\r\nPROXY TCP4 10.0.0.1")
    s = open_session(r, bad)
    if r.link == "tls":
        assert s.wait_rst() == ("error", "bad SESS_OPEN")
    else:
        s.wait_closed(timeout=20)
    r.wait_violations(before + 1)
    s2 = open_session(r, sess_open(702))
    echo_through(s2, b"next")
    r.bystander_ok()


@pytest.fixture(params=["tls", "plain"])
def pp_rig(request, tmp_path, pki, tag):
    """A service "web" behind nginx that takes a PROXY header (v1), with
    inside ranges in its deny list."""
    nginx = sp.start_nginx_proxy_protocol(tmp_path / "nginx")
    (nginx.root / "index.html").write_text("inside\n")
    r = Rig(tmp_path, pki, {
        "echo": (sp.free_port(), tag.port, []),
        "web": (sp.free_port(), nginx.port,
                ["proxy_protocol = v1",
                 "deny = 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "
                 "fc00::/7"])}, data_link=request.param)
    r.nginx = nginx
    r.session(keep=True)
    yield r
    r.close()
    nginx.proc.stop()


def _http_get(s, link):
    req = b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n"
    s.send(req)
    if link == "tls":
        s.send_fin()
    else:
        s.send_end()
    got, how = s.recv_until_end(timeout=20)
    return got


def test_client_addresses_inside(pp_rig):
    """The client address is the edge's word and becomes the PROXY header
    a backend trusts: a client the service's own policy keeps out (an
    inside address, also as IPv4-mapped IPv6) is refused and counted,
    and nginx never sees it; an outside one reaches nginx as the header
    says (the positive control)."""
    r = pp_rig
    got = _http_get(open_session(r, sess_open(801, service="web",
                                             client="198.51.100.20",
                                             port=5555)), r.link)
    assert b"200 OK" in got and got.endswith(b"inside\n"), got
    sp.wait_until(lambda: any(ln.startswith("198.51.100.20:5555 ")
                              for ln in r.nginx.access_lines()), 10,
                  "nginx logs the client of the PROXY header")
    for i, client in enumerate(["10.1.2.3", "::ffff:10.1.2.3", "192.168.7.7",
                                "172.16.0.1", "fd00::5"]):
        before = r.violations()
        s = open_session(r, sess_open(810 + i, service="web", client=client))
        code, text = refused(s)
        assert (code, text) == ("refused", "SESS_OPEN for a client the "
                                "service's policy refuses"), (client, text)
        r.wait_violations(before + 1)
    lines = r.nginx.access_lines()
    assert len(lines) == 1, lines
    r.bystander_ok()


# --------------------------------------------------------------------------
# outbound: replies and sessions for requests the agent never made

def _socks_request(port, host, dport):
    c = socket.create_connection((LOOPBACK, port), timeout=20)
    c.sendall(b"\x05\x01\x00")
    assert c.recv(2) == b"\x05\x00"
    hb = host.encode()
    c.sendall(b"\x05\x01\x00\x03" + bytes([len(hb)]) + hb +
              struct.pack(">H", dport))
    return c


def test_outbound_answer_after_the_agent_gave_up(tmp_path, pki, tag):
    """The agent waits twice connect_timeout for the edge's answer to an
    outbound request; the edge's dialler may take longer. Its late answer
    (OUT_FAIL, or a session) is refused quietly, counted as no protocol
    violation; a replay of a request that was answered still is one
    (test_outbound_not_asked)."""
    socks = sp.free_port()
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, [])},
            extra=["connect_timeout = 1"],
            outbound=[f"socks_listen = {LOOPBACK}:{socks}",
                      "allow_destination = *:443"])
    try:
        r.proc.wait_log(f"edge {r.fe.addr}: outbound open")
        r.session(keep=True)
        ml = None
        for late in ("OUT_FAIL", "SESS_OPEN"):
            client = _socks_request(socks, "files.example.net", 443)
            rid = r.ctl.recv(want=p.OUT_REQ, timeout=20)["REQUEST"]
            # The agent gives up (2 s): the client hears TTL expired.
            client.settimeout(20)
            assert client.recv(10)[:2] == b"\x05\x06"
            client.close()
            r.proc.wait_log(f"outbound {rid} failed", timeout=20)
            before, mark = r.violations(), r.proc.mark()
            if late == "OUT_FAIL":
                r.ctl.send(p.frame(p.OUT_FAIL, REQUEST=rid, OUT_CODE=4))
                r.proc.wait_log(f"outbound {rid}: the edge's answer came "
                                "after we gave up", since=mark)
            else:
                ml = ml or r.fe.mux_link()
                assert refused(ml.open(p.sess_open(
                    910, p.SK_OUTBOUND, REQUEST=rid,
                    DEST_ADDR="198.51.100.9:443")))[0] == "refused"
                r.proc.wait_log(f"outbound request {rid} was given up",
                                since=mark)
            assert r.violations() == before, late
        r.bystander_ok()
    finally:
        r.close()


def test_outbound_not_asked(tmp_path, pki, tag):
    """Outbound sessions and failures for requests the agent did not
    send to that edge, a replayed one, and one whose destination is not
    an address: each refused (or ignored) and counted; the real request
    still gets its session, and its inside client its bytes."""
    socks = sp.free_port()
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, [])},
            outbound=[f"socks_listen = {LOOPBACK}:{socks}",
                      "allow_destination = *:443"])
    try:
        r.proc.wait_log(f"edge {r.fe.addr}: outbound open")
        r.session(keep=True)
        client = _socks_request(socks, "files.example.net", 443)
        req = r.ctl.recv(want=p.OUT_REQ, timeout=20)
        rid = req["REQUEST"]
        assert req["DEST_HOST"] == "files.example.net"
        ml = r.fe.mux_link()
        for i, (frame, what) in enumerate([
                (p.sess_open(901, p.SK_OUTBOUND, REQUEST=rid + 1000,
                             DEST_ADDR="198.51.100.9:443"),
                 "was not asked there"),
                (p.sess_open(902, p.SK_OUTBOUND, REQUEST=rid,
                             DEST_ADDR="files.example.net:443"),
                 "not a numeric address and port"),
                (p.sess_open(903, p.SK_OUTBOUND, REQUEST=rid,
                             DEST_ADDR="198.51.100.9:0"),
                 "not a numeric address and port")]):
            time.sleep(1.05)    # each its own line (one a second)
            before, mark = r.violations(), r.proc.mark()
            assert refused(ml.open(frame))[0] == "refused"
            r.wait_violations(before + 1)
            assert what in "".join(_viol_lines(r, mark)), what
        before = r.violations()
        r.ctl.send(p.frame(p.OUT_FAIL, REQUEST=rid + 7, OUT_CODE=2))
        r.wait_violations(before + 1)
        # the real one, now: the client hears "connected", bytes flow
        st = ml.open(p.sess_open(904, p.SK_OUTBOUND, REQUEST=rid,
                                 DEST_ADDR="198.51.100.9:443"))
        rep = client.recv(10)
        assert rep[:2] == b"\x05\x00", rep
        client.sendall(b"to the partner")
        assert st.recv_exact(14) == b"to the partner"
        st.send(b"from the partner")
        got = b""
        while len(got) < 16:
            b = client.recv(16 - len(got))
            assert b, got
            got += b
        assert got == b"from the partner"
        # replayed: the request is used up
        before = r.violations()
        assert refused(ml.open(p.sess_open(905, p.SK_OUTBOUND, REQUEST=rid,
                                           DEST_ADDR="198.51.100.9:443")))[0] \
            == "refused"
        r.wait_violations(before + 1)
        client.close()
        r.bystander_ok()
    finally:
        r.close()


# --------------------------------------------------------------------------
# FTP: data connections for ports and control sessions never offered

def test_ftp_data_not_offered(tmp_path, pki, tag):
    """FTP data for a port outside the service's passive range is a
    violation; for a port inside it but no control session of this edge,
    a refusal (the edge cannot know every port the filter handed out),
    logged at most once a second; neither dials anything."""
    lo = sp.free_port_range(10)
    r = Rig(tmp_path, pki, {
        "echo": (sp.free_port(), tag.port, []),
        "ftp": (sp.free_port(), tag.port, [
            "protocol = ftp", f"passive_ports = {lo}-{lo + 9}",
            "public_address = 127.0.0.1"])}, real=False)
    try:
        ml = r.fe.mux_link()
        n = tag.accepted()
        before = r.violations()
        s = ml.open(sess_open(1001, service="ftp", kind=p.SK_FTP_DATA,
                              FTP_CTL=5, FTP_PORT=lo + 10))
        assert refused(s) == ("refused", "SESS_OPEN of FTP data on a port "
                              "outside the service's passive range")
        r.wait_violations(before + 1)
        mark = r.proc.mark()
        for i in range(200):
            s = ml.open(sess_open(1100 + i, service="ftp",
                                  kind=p.SK_FTP_DATA, FTP_CTL=5,
                                  FTP_PORT=lo + i % 10))
        assert refused(s)[0] == "refused"
        assert r.violations() == before + 1
        assert len([ln for ln in r.proc.lines(mark)
                    if "ftp data" in ln]) <= 3
        assert tag.accepted() == n
        s = ml.open(sess_open(1300))
        echo_through(s, b"still serving")
    finally:
        r.close()


# --------------------------------------------------------------------------
# floods, and memory under them

def _bound_kib(rss0, kib):
    return rss0 + (kib + SLACK_KIB) * SAN_FACTOR


@pytest.mark.parametrize("link", ["tls", "plain"])
def test_floods_opens_never_a_byte(tmp_path, pki, tag, link):
    """Sessions opened as fast as the edge can, none sending a byte, to a
    backend that holds them: the agent (3,072 descriptors: 1,024
    sessions, 512 an edge) takes this edge's share and refuses the rest
    as a limit, not a violation; the other edge still opens sessions;
    memory grows by the sessions' state only; and the agent cuts the
    idle ones 5 s after the service's idle_timeout, since this edge does
    not."""
    hold = HoldServer()
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, []),
                            "hold": (sp.free_port(), hold.port,
                                     ["idle_timeout = 2"])},
            data_link=link, nofile=3072)
    try:
        rss0, mark = r.rss(), r.proc.mark()
        opened = []
        if link == "tls":
            ml = r.fe.mux_link()
            for burst in range(3):
                for i in range(500):
                    opened.append(ml.open(sess_open(2000 + burst * 500 + i,
                                                    service="hold")))
                sp.wait_until(lambda: all(s.rst is not None or
                                          s.sid in _joined_sids(r, mark)
                                          for s in opened[-500:]) or None,
                              60, "the burst joined or refused")
            refusals = [s for s in opened if s.rst is not None]
        else:
            # once refused, the agent waits longer before each new link
            refusals = []
            for i in range(700):
                try:
                    pl = r.fe.plain_link(timeout=5)
                except AssertionError:
                    break
                pl.start(sess_open(2000 + i, service="hold"))
                opened.append(pl)
        joined = sp.wait_until(
            lambda: r.log(mark).count("joined service=hold") >= 400 and
            r.log(mark).count("joined service=hold"), 60, "sessions joined")
        assert joined <= 512, joined
        assert "holds its share of sessions" in r.log(mark)
        if link == "tls":
            assert refusals and all(s.rst[0] == "limit" for s in refusals)
        assert r.violations() == 0
        grown = r.rss() - rss0
        print(f"{link}: {joined} idle sessions, RSS +{grown} KiB")
        assert r.rss() < _bound_kib(rss0, joined * KIB_PER_SESSION), grown
        assert r.fds() < 3072
        # the other edge: its share is its own
        for _ in range(5):
            r.session()
        # idle: cut by the agent at idle_timeout + 5 s
        r.proc.wait_log("idle beyond the service's idle_timeout", timeout=30,
                        since=mark)
        sp.wait_until(lambda: r.log(mark).count("reason=timeout") >= joined,
                      60, "every idle session cut")
        r.session()
    finally:
        r.close()
        hold.close()


def _joined_sids(r, mark):
    """Mux stream ids are 1, 2, ... in the order the fake opened them;
    sessions 2000 + k joined: stream k + 1 (the fake's first link)."""
    out = set()
    for m in re.finditer(r"session (\d+) joined service=hold", r.log(mark)):
        out.add(int(m.group(1)) - 2000 + 1)
    return out


def test_floods_window_in_setup(stuck_rig):
    """Sessions whose backend never answers, each sent its whole window
    by the edge: the agent holds what the window allows, no more (256
    KiB a stream), reads nothing beyond, and frees it when set-up times
    out or the link goes."""
    r = stuck_rig
    n = 300
    ml = r.fe.mux_link()
    rss0 = r.rss()
    streams = [ml.open(sess_open(3000 + i, service="stuck"))
               for i in range(n)]
    chunk = b"w" * p.MUX_WINDOW
    for s in streams:
        s.send(chunk)
    sp.wait_until(lambda: ml.outq.empty() or None, 120, "windows sent")
    time.sleep(1)
    grown = r.rss() - rss0
    print(f"{n} streams in set-up, a window each: RSS +{grown} KiB")
    assert r.rss() < _bound_kib(rss0, n * WINDOW_KIB), grown
    assert not ml.closed.is_set()
    assert all(s.credit == 0 for s in streams)
    # one byte more on any of them breaks the window
    before = r.violations()
    ml.send(p.mux_data(streams[0].sid, b"+"))
    ml.wait_closed(timeout=20)
    r.wait_violations(before + 1)
    r.bystander_ok()


def test_link_that_stops_reading(tmp_path, pki, tag):
    """The edge stops reading a link while backends push 32 MiB on each
    of 8 streams: the agent holds what the windows and its link queue
    allow, the other edge carries on; when the edge reads again every
    byte arrives intact. A control connection that stops reading is
    dropped by the heartbeat."""
    push = PushServer(32 * MiB)
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, []),
                            "push": (sp.free_port(), push.port, [])})
    try:
        r.session(keep=True)
        ml = r.fe.mux_link()
        ml.paused.set()
        rss0 = r.rss()
        streams = [ml.open(sess_open(4000 + i, service="push"))
                   for i in range(8)]
        sp.wait_until(lambda: r.log().count("joined service=push") == 8, 30,
                      "pushers joined")
        time.sleep(3)
        grown = r.rss() - rss0
        print(f"8 streams toward an edge that reads nothing: RSS +{grown} KiB")
        assert r.rss() < _bound_kib(rss0, 8 * WINDOW_KIB + 4 * 1024), grown
        r.bystander_ok()
        ml.paused.clear()
        for s in streams:
            got, how = s.recv_until_end(timeout=120)
            assert how == "fin", how
            assert hashlib.sha256(got).digest() == \
                hashlib.sha256(push.data).digest()
        # the control connection
        mark = r.proc.mark()
        r.ctl.paused.set()
        r.proc.wait_log(f"edge {r.fe.addr} lost: heartbeat timed out",
                        since=mark, timeout=30)
        r.fe.control().wait_services(["echo", "push"])
        r.bystander_ok()
    finally:
        r.close()
        push.close()


def test_frame_floods_do_not_stall_the_agent(rig):
    """Frames as fast as the edge can write them, on the control
    connection (PONGs for nothing) and on a data link (frames for a
    refused stream, which are dropped): the agent handles them a batch
    per turn, so its other edge's sessions, its admin API and its memory
    are as they were."""
    r = rig
    ml = r.fe.mux_link()
    bad = ml.open(sess_open(5001, service="nosuch"))
    refused(bad)
    rss0 = r.rss()
    stop = threading.Event()
    r.ctl.flood(p.frame(p.PONG, NONCE=1) * 500, stop)
    ml.flood((p.mux_credit(1, 100) + p.mux_data(1, b"x" * 100)) * 400, stop)
    try:
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 5:
            r.bystander_ok()
            assert r.violations() > 0
            n += 1
        assert n >= 3, f"only {n} bystander rounds in 5 s"
        assert r.rss() < _bound_kib(rss0, 0)
    finally:
        stop.set()
    assert not ml.closed.is_set()


def test_refused_plain_links_bounded(tmp_path, pki, tag):
    """Plain links taken with SESS_OPENs to be refused, as fast as the
    agent opens them: a refused link lingers for the edge to close it,
    at most 64 of an edge, and the agent waits longer before each new
    link; its descriptors stay bounded and the other edge carries on."""
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, [])},
            data_link="plain")
    try:
        r.session(keep=True)
        fds0 = r.fds()
        stop = threading.Event()
        taken = []

        def take():
            while not stop.is_set():
                try:
                    pl = r.fe.plain_link(timeout=1)
                except AssertionError:
                    continue
                try:
                    pl.start(sess_open(6000 + len(taken), service="nosuch"))
                except OSError:
                    pass
                taken.append(pl)

        t = threading.Thread(target=take, daemon=True)
        t.start()
        peak = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8:
            peak = max(peak, r.fds())
            time.sleep(0.1)
        stop.set()
        t.join()
        print(f"{len(taken)} links taken, descriptors {fds0} -> peak {peak}")
        assert peak <= fds0 + 64 + 8, (fds0, peak)
        # without the back-off it took thousands in this time
        assert len(taken) < 100, len(taken)
        sp.wait_until(lambda: r.violations() == len(taken), 20,
                      "every refusal counted")
        r.bystander_ok()
    finally:
        r.close()


# --------------------------------------------------------------------------
# TLS: slow records, downgrade, post-handshake messages

def test_one_byte_records(tmp_path, pki, tag):
    """An edge that writes one byte per TLS record, from HELLO_OK on:
    slow but correct, so the agent serves it."""
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, [])},
            fe_kw={"slow": True})
    try:
        r.session(keep=True)
        r.proc.wait_log(f"edge {r.fe.addr} connected")
        ml = r.fe.mux_link()
        s = ml.open(sess_open(7001))
        data = os.urandom(3000)
        ml.send_slowly(p.mux_data(s.sid, data))
        assert s.recv_exact(4) == b"TAG "
        line = b""
        while not line.endswith(b"\n"):
            line += s.recv_exact(1)
        assert s.recv_exact(len(data), timeout=60) == data
        r.ctl.send_slowly(p.frame(p.SESS_DENIED, SESSION=7002,
                                  SERVICE="echo", CLIENT_ADDR="192.0.2.5",
                                  CLIENT_PORT=9, END=4, TEXT="slow"))
        sp.wait_audit(r.audit, lambda a: a.get("session") == 7002)
        assert r.violations() == 0
        r.bystander_ok()
    finally:
        r.close()


def test_tls12_edge_is_refused(tmp_path, pki, tag):
    """An edge that offers only TLS 1.2 (where renegotiation lives): the
    agent does not connect to it at all, and keeps trying."""
    r_fe = fe_mod.FakeEdge(pki.edge_crt, pki.edge_key, pki.ca_crt,
                           tls12=True)
    conf = sp.write_agent_conf(tmp_path / "agent.conf", pki, [r_fe.addr],
                               {"echo": (sp.free_port(), [tag.port])})
    proc = sp.Proc("agent", [sp.AGENT_BIN, "--config", conf],
                   tmp_path / "agent.log")
    try:
        proc.wait_log(f"edge {r_fe.addr}: cannot connect", count=2,
                      timeout=30)
        assert r_fe.events_of("tls"), r_fe.events
        assert r_fe.controls.empty()
        assert proc.alive()
    finally:
        r_fe.close()


def test_post_handshake_messages(rig):
    """TLS 1.3 after the handshake: a hundred KeyUpdates (each asking the
    agent to update too) on the control connection and on a data link
    leave both working; post-handshake client authentication cannot even
    be asked for (the agent does not offer it); a thousand session
    tickets cost nothing."""
    r = rig
    ml = r.fe.mux_link()
    s = ml.open(sess_open(8001))
    echo_through(s, b"before")
    for _ in range(100):
        r.ctl.send_key_update(True)
        ml.send_key_update(True)
    sp.wait_until(lambda: (ml.outq.empty() and r.ctl.outq.empty()) or None,
                  20, "key updates sent")
    data = os.urandom(200000)
    s.send(data)
    assert s.recv_exact(len(data), timeout=30) == data
    assert fe_mod.post_handshake_auth(r.ctl.sock) is False
    mark = r.proc.mark()
    time.sleep(2.5)     # a heartbeat through the new keys
    assert f"edge {r.fe.addr} lost" not in r.log(mark)
    assert r.violations() == 0
    r.bystander_ok()


def test_many_session_tickets(tmp_path, pki, tag):
    """An edge that sends a thousand session tickets with every
    handshake: the agent keeps the latest, its memory does not grow
    with them."""
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, [])},
            fe_kw={"tickets": 1000})
    try:
        r.session(keep=True)
        rss0 = r.rss()
        for i in range(6):      # each link a new handshake
            ml = r.fe.mux_link()
            echo_through(ml.open(sess_open(8100 + i)), b"x")
            ml.close()
        assert r.rss() < _bound_kib(rss0, 0)
        r.bystander_ok()
    finally:
        r.close()


# --------------------------------------------------------------------------
# the edge's name, on every connection

def test_edge_name_checked_on_every_connection(tmp_path, pki, tag):
    """After a clean start, the fake edge restarts on the same address
    with another certificate of the same CA, for another name: the agent
    refuses it on every attempt (its `edge =` names 127.0.0.1), sends it
    nothing, and takes the edge back as soon as a certificate for its
    name is shown again (the positive control: made the same way)."""
    r = Rig(tmp_path, pki, {"echo": (sp.free_port(), tag.port, [])})
    try:
        r.session(keep=True)
        port = r.fe.port
        evil_crt, evil_key = fe_mod.issue_edge_cert(
            pki, tmp_path / "evil", ["evil.example", "127.0.0.2"], "evil")
        good_crt, good_key = fe_mod.issue_edge_cert(
            pki, tmp_path / "good", ["127.0.0.1"], "good")
        mark = r.proc.mark()
        r.fe.close()
        r.proc.wait_log(f"edge {r.fe.addr} lost", since=mark)
        evil = fe_mod.FakeEdge(evil_crt, evil_key, pki.ca_crt, port=port)
        try:
            r.proc.wait_log(f"edge {r.fe.addr}: cannot connect", count=3,
                            since=mark, timeout=60)
            assert evil.controls.empty() and evil.links.empty()
            assert evil.accepted >= 3
            assert any("certificate" in e.lower() or "alert" in e.lower()
                       for e in evil.events_of("tls")), evil.events
            assert "certificate verify failed" in r.log(mark), r.log(mark)
        finally:
            evil.close()
        r.fe = fe_mod.FakeEdge(good_crt, good_key, pki.ca_crt, port=port)
        r.ctl = r.fe.control(timeout=60)
        r.ctl.wait_services(["echo"])
        s = r.fe.mux_link().open(sess_open(9001))
        echo_through(s, b"the right edge again")
        r.bystander_ok()
    finally:
        r.close()


# --------------------------------------------------------------------------
# what the agent dials

def test_dials_only_its_own_backends(tmp_path, pki, tag):
    """Every connect() the agent makes while the edge names services,
    clients, local addresses, FTP ports and outbound requests it never
    offered goes to an edge or to a backend of its configuration: a
    decoy server the edge points at is never reached."""
    decoy = TagServer()
    trace = tmp_path / "agent.strace"
    wrapper = ["strace", "-f", "--seccomp-bpf", "-e", "trace=connect",
               "-o", str(trace)]
    lo = sp.free_port_range(10)
    r = Rig(tmp_path, pki, {
        "echo": (sp.free_port(), tag.port, []),
        "ftp": (sp.free_port(), tag.port, [
            "protocol = ftp", f"passive_ports = {lo}-{lo + 9}",
            "public_address = 127.0.0.1"])}, wrapper=wrapper)
    try:
        r.session(keep=True)
        ml = r.fe.mux_link()
        d = decoy.port
        frames = [
            sess_open(1, service=f"127.0.0.1:{d}"),
            sess_open(2, client="127.0.0.1", port=d),
            sess_open(3, LOCAL_ADDR="127.0.0.1", LOCAL_PORT=d),
            sess_open(4, service="ftp", kind=p.SK_FTP_DATA, FTP_CTL=1,
                      FTP_PORT=d),
            sess_open(5, service="ftp", kind=p.SK_FTP_DATA, FTP_CTL=1,
                      FTP_PORT=lo),
            p.sess_open(6, p.SK_OUTBOUND, REQUEST=1,
                        DEST_ADDR=f"127.0.0.1:{d}"),
            p.frame(p.SESS_OPEN, SESSION=7, SESS_KIND=p.SK_CLIENT,
                    SERVICE="echo", CLIENT_ADDR="127.0.0.1", CLIENT_PORT=d,
                    DEST_ADDR=f"127.0.0.1:{d}", DEST_HOST="127.0.0.1",
                    DEST_PORT=d, LISTEN=f"127.0.0.1:{d}"),
        ]
        streams = [ml.open(f) for f in frames]
        # refused: a bad service name, FTP ports outside the range or of
        # no control session, outbound without [outbound]
        for i in (0, 3, 4, 5):
            assert streams[i].wait_rst()[0] in ("refused", "error"), i
        # served, by the service's own backend: addresses and ports in
        # SESS_OPEN are only words in a PROXY header and the logs
        for i in (1, 2, 6):
            echo_through(streams[i], b"a session of ours")
        r.bystander_ok()
        assert decoy.accepted() == 0
    finally:
        r.close()
        r.proc.stop()
        decoy.close()
    allowed = {r.fe.port, r.real.control_port, tag.port,
               r.admin_port}
    ports = [int(m) for m in re.findall(r"htons\((\d+)\)",
                                        trace.read_text())]
    assert tag.port in ports and r.fe.port in ports, "trace saw nothing"
    assert set(ports) <= allowed, (set(ports) - allowed, trace.read_text())
