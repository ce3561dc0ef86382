"""The data-link fast path (issue 3): plain data links moved with splice(),
pooled data links that join a client without the agent dialling, and TLS
data links with the kernel-TLS fallback. All traffic on 127.0.0.1.

The core relay tests (test_core.py) run with both kinds of data link too.
"""

import hashlib
import os
import re
import select
import signal
import socket
import struct
import threading

import pytest

import fakeagent as fa
import sp
from sp import LOOPBACK, MiB

LINKS = ["tls", "plain"]
CLOSED = re.compile(r"session (\d+) closed .*bytes_in=(\d+) bytes_out=(\d+) "
                    r".*reason=(\S+) link=(\S+) spliced=(\d+)")


def parked(edge, since=0):
    return edge.proc.count("parked for agent", since)


def closed(proc, since=0):
    out = {}
    for ln in proc.find(CLOSED, since):
        m = CLOSED.search(ln)
        out[int(m.group(1))] = dict(bytes=int(m.group(2)) + int(m.group(3)),
                                    reason=m.group(4), link=m.group(5),
                                    spliced=int(m.group(6)))
    return out


def ktls_available():
    try:
        with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
            return "tls" in f.read().split()
    except OSError:
        return False


# --------------------------------------------------------------------------
# pooled links with the real agent

@pytest.mark.parametrize("link", LINKS)
def test_pool_joins_without_dialling(tmp_path, pki, link):
    """Sessions are joined on links the agent opened before the client
    came (SESS_ASSIGN, no SESS_NEW), the pool refills as links are used,
    and plain links move every byte with splice()."""
    edge = sp.start_edge(tmp_path, pki, extra=["-v"])
    reply = os.urandom(300000)
    bs = sp.ByteServer(reply)
    port = sp.free_port()
    agent = sp.start_agent(tmp_path, pki, edge, {"bytes": (port, [bs.port])},
                           data_link=link, data_pool=2,
                           data_mux=0 if link == "tls" else None)
    edge.proc.wait_log("parked for agent agent1", count=2)
    emark, amark = edge.proc.mark(), agent.proc.mark()
    n = 5
    sizes = [1, 1000, 100000, 2 * MiB, 5 * MiB]
    for size in sizes:
        assert sp.byte_session(port, os.urandom(size)) == reply
    sp.wait_until(lambda: sorted(bs.received[-n:]) == sizes, 10,
                  "the backend to count what it got")
    # every session on a pooled link; none through SESS_NEW
    new = edge.proc.find(re.compile(r"session \d+ new service=bytes"), emark)
    assert len(new) == n, new
    assert all(f"link={link} pooled" in ln for ln in new), new
    assert agent.proc.count(["opened service=bytes", "pooled"], amark) == n
    # refilled: a parked link for each session used, a new one or (plain)
    # the same link back from its session
    sp.wait_until(lambda: parked(edge, emark) >= n, 20, "pool refilled")
    def reused():
        return edge.proc.count("parked for agent agent1 (reused)")
    if link == "plain":
        # every session ended cleanly, so its link came back (the pool
        # was never over four times data_pool), except the two that sent
        # over 1 MiB (their upload went raw), and every link is one that
        # can come back
        small = sum(1 for sz in sizes if sz < MiB)
        sp.wait_until(lambda: reused() >= small, 20, "links back")
        assert reused() == small
        assert edge.proc.count("(keyed) (reusable)") == \
            edge.proc.count("(keyed)")
    else:
        assert reused() == 0
    # proved by the pool key: no token round trip for any of them
    sp.wait_until(lambda: edge.proc.count("parked for agent agent1 (keyed)")
                  + reused() == parked(edge), 10, "every park keyed")
    ends = sp.wait_until(lambda: len(closed(edge.proc, emark)) >= n and
                         closed(edge.proc, emark), 20, "sessions closed")
    for s in ends.values():
        assert s["link"] == link and s["reason"] == "client-closed", s
        if link == "plain":
            assert s["spliced"] == s["bytes"], f"not spliced: {s}"
        elif not ktls_available():
            assert s["spliced"] == 0, s
    # the agent logs its side when its relay ends, which may be after the
    # edge's (a bulk relay ends in a relay thread and is reported back)
    aends = sp.wait_until(lambda: len(closed(agent.proc, amark)) >= n and
                          closed(agent.proc, amark), 20,
                          "agent sessions closed")
    assert len(aends) == n, aends
    if link == "plain":
        assert all(s["spliced"] == s["bytes"] for s in aends.values()), aends
    bs.close()


class ResetServer(sp.ThreadedServer):
    """Echoes what it reads until the client half-closes; a request that
    starts with RST gets b"part" and then a reset instead."""

    def _serve(self, c):
        try:
            c.settimeout(30)
            first = c.recv(65536)
            if first.startswith(b"RST"):
                c.sendall(b"part")
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
                return
            data = first
            while True:
                b = c.recv(65536)
                if not b:
                    break
                data += b
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()


def test_plain_links_reused(tmp_path, pki):
    """A plain pooled link carries one session after another: it comes
    back to the pool when a session ends cleanly (no new link, no
    greeting), not when it ends with an error, and a link that came back
    carries the next session's bytes unchanged."""
    edge = sp.start_edge(tmp_path, pki, extra=["-v"])
    be = ResetServer()
    port = sp.free_port()
    agent = sp.start_agent(tmp_path, pki, edge, {"echo": (port, [be.port])},
                           data_link="plain", data_pool=1)
    edge.proc.wait_log("(keyed) (reusable)")
    mark = edge.proc.mark()
    reused = "parked for agent agent1 (reused)"
    payloads = [os.urandom(n) for n in (1, 70000, 900000)]
    for i, data in enumerate(payloads):
        assert sp.byte_session(port, data) == data
        edge.proc.wait_log(reused, since=mark, count=i + 1)
    # at most one new link besides (the refill when the first was taken,
    # before it came back): three sessions on one or two links
    assert parked(edge, mark) - edge.proc.count(reused, mark) <= 1
    # a bulk upload (over 1 MiB) goes raw on its link, which is not kept
    bulk = os.urandom(3 * MiB)
    assert sp.byte_session(port, bulk) == bulk
    sp.wait_until(lambda: len(closed(edge.proc, mark)) >= 4, 20, "4 ends")
    assert edge.proc.count(reused, mark) == len(payloads)
    payloads.append(bulk)
    ends = sp.wait_until(lambda: len(closed(edge.proc, mark)) >= 4 and
                         closed(edge.proc, mark), 20, "sessions closed")
    assert all(e["reason"] == "client-closed" and e["spliced"] == e["bytes"]
               for e in ends.values()), ends
    # a backend reset: the client sees the bytes before it, then the cut;
    # the link is not kept, and the next client still gets through
    s = socket.create_connection((sp.LOOPBACK, port), timeout=20)
    s.sendall(b"RST please")
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        cut = False
    except ConnectionResetError:
        cut = True
    s.close()
    assert out == b"part" and cut, (out, cut)
    line = edge.proc.wait_log(["closed service=echo", "reason=error("],
                              since=mark)
    assert "link=plain" in line
    assert edge.proc.count(reused, mark) == 3
    agent.proc.wait_log(["closed service=echo", "reason=error"])
    assert sp.byte_session(port, b"after") == b"after"
    edge.proc.wait_log(reused, since=mark, count=4)
    be.close()


def test_pool_off(tmp_path, pki):
    """data_pool = 0: no pooled links; each session is asked for with
    SESS_NEW and gets a data link of its own (the control for the test
    above: the same logs without 'pooled')."""
    edge = sp.start_edge(tmp_path, pki, extra=["-v"])
    bs = sp.ByteServer(b"ok")
    port = sp.free_port()
    agent = sp.start_agent(tmp_path, pki, edge, {"bytes": (port, [bs.port])},
                           data_link="tls", data_pool=0, data_mux=0)
    for _ in range(3):
        assert sp.byte_session(port, b"x" * 1000) == b"ok"
    new = edge.proc.find(re.compile(r"session \d+ new service=bytes"))
    assert len(new) == 3 and not any("pooled" in ln for ln in new), new
    assert edge.proc.count("joined link=tls") == 3
    assert parked(edge) == 0
    assert agent.proc.count("pooled") == 0
    bs.close()


@pytest.mark.parametrize("link", LINKS)
def test_pool_backend_refused(tmp_path, pki, link):
    """A pooled session tries the next backend when one refuses; when none
    answers, the client's connection is closed at once and the edge logs
    the agent's reason."""
    edge = sp.start_edge(tmp_path, pki, extra=["-v"])
    bs = sp.ByteServer(b"second")
    good, dead = sp.free_port(), sp.free_port()
    agent = sp.start_agent(tmp_path, pki, edge, {
        "two": (good, [sp.free_port(), bs.port]),
        "dead": (dead, [sp.free_port()])}, data_link=link, data_pool=2,
        data_mux=0 if link == "tls" else None)
    edge.proc.wait_log("parked for agent agent1", count=2)
    emark = edge.proc.mark()
    # round-robin starts at the refusing backend for one of two sessions
    for _ in range(2):
        assert sp.byte_session(good, b"hello") == b"second"
    assert agent.proc.count("Connection refused") >= 1
    # The two links used are replaced before the next client comes (a
    # slow build may not have refilled yet: that client would be asked
    # for with SESS_NEW, not pooled).
    sp.wait_until(lambda: parked(edge, emark) >= 2, 15, "the pool refilled")
    sp.closed_by_gateway(dead)
    line = edge.proc.wait_log(["closed service=dead",
                               "reason=refused-by-agent(no backend"],
                              since=emark)
    assert f"link={link}" in line
    new = edge.proc.find("new service=", emark)
    assert len(new) == 3 and all("pooled" in ln for ln in new), new
    agent.proc.wait_log(["closed service=dead", "reason=error"])
    bs.close()


def test_pool_survives_handshake_timeout(tmp_path, pki):
    """Parked links are identified: the edge's handshake time-out does not
    close them, they are counted in their own limit (--max-pool), and a
    link over it is closed (the agent backs off before the next)."""
    edge = sp.start_edge(tmp_path, pki, extra=["-v", "--handshake-timeout",
                                               "1", "--max-pool", "2"])
    bs = sp.ByteServer(b"ok")
    port = sp.free_port()
    agent = sp.start_agent(tmp_path, pki, edge, {"bytes": (port, [bs.port])},
                           data_link="plain", data_pool=3)
    edge.proc.wait_log("parked for agent agent1", count=2)
    edge.proc.wait_log("limit pool hit")
    edge.proc.wait_log("refused: pool limit reached")
    agent.proc.wait_log("pooled data link closed before use")
    # Give the handshake time-out its chance at the parked links, with no
    # blind sleep: a control connection that says nothing, opened after
    # they were parked, is closed by that time-out, so by then it would
    # have closed any of them too (theirs started earlier).
    silent = socket.create_connection((sp.LOOPBACK, edge.control_port),
                                      source_address=("127.0.0.77", 0))
    sp.wait_closed(silent, timeout=30)
    silent.close()
    edge.proc.wait_log("no greeting within", timeout=30)
    assert all("127.0.0.77" in ln
               for ln in edge.proc.find("no greeting within")), \
        edge.proc.find("no greeting within")
    assert parked(edge) == 2
    mark = edge.proc.mark()
    for _ in range(2):
        assert sp.byte_session(port, b"x") == b"ok"
    new = edge.proc.find("new service=bytes", mark)
    assert all("pooled" in ln for ln in new) and len(new) == 2, new
    bs.close()


# --------------------------------------------------------------------------
# the edge's rules for plain links, with fake agents

@pytest.fixture
def echo_svc(tmp_path, pki):
    edge = sp.start_edge(tmp_path, pki, extra=["-v"])
    return edge


def _agent(edge, pki, name, plain):
    a = fa.FakeAgent(edge.control_port, pki.ca_crt, pki.agent_crt,
                     pki.agent_key, name=name, plain=plain)
    ok = a.connect()
    a.hello_ok = ok
    a.svc_port = sp.free_port()
    status, text = a.svc_open(f"svc-{name}", f"{LOOPBACK}:{a.svc_port}")
    assert status == 0, text
    edge.proc.wait_log(f"service svc-{name} open")
    return a


def _refused_silently(dl):
    """A refused plain link gets no answer: EOF or reset, no frame."""
    assert not isinstance(dl.result, fa.Frame), f"edge answered {dl.result}"
    assert isinstance(dl.result, (EOFError, OSError)), dl.result
    dl.close()


def test_plain_needs_a_plain_agent(echo_svc, pki):
    edge = echo_svc
    tls = _agent(edge, pki, "tlsagent", plain=False)
    try:
        assert fa.A_DATA_LINK not in tls.hello_ok.attrs
        # 1. only TLS agents: a plain greeting is dropped at the magic,
        # without one byte of plaintext in answer
        mark = edge.proc.mark()
        s = socket.create_connection((LOOPBACK, edge.control_port), timeout=10)
        s.sendall(b"SPD1" + fa.frame(fa.DATA_HELLO,
                                     fa.attr(fa.A_SESSION, fa.u64(1)),
                                     fa.attr(fa.A_SECRET, os.urandom(32))))
        s.settimeout(10)
        try:
            got = s.recv(100)
        except ConnectionError:
            got = b""
        s.close()
        assert got == b"", got
        edge.proc.wait_log("no agent uses plain data links", since=mark)

        # 2. with a plain agent present, plain greetings are read; one for
        # the TLS agent's session is refused and leaves the session alone
        plain = _agent(edge, pki, "plainagent", plain=True)
        assert plain.hello_ok.u(fa.A_DATA_LINK) == 1
        c = sp.tcp_connect(tls.svc_port)
        c.sendall(b"ping\n")
        sess = tls.wait_sess_new()
        mark = edge.proc.mark()
        _refused_silently(plain.data_link(sess["id"], sess["secret"],
                                          plain=True))
        edge.proc.wait_log("whose agent uses TLS links", since=mark)
        dl = tls.data_link(sess["id"], sess["secret"])   # positive control
        assert dl.ok, dl.result
        assert dl.recv_exact(5) == b"ping\n"
        dl.close()
        c.close()

        # 3. the TLS agent's pool token on a plain link: refused, and the
        # token is gone (one use)
        tok = tls.pool_token()
        mark = edge.proc.mark()
        _refused_silently(plain.pool_link(tok, plain=True))
        edge.proc.wait_log("plain pooled link for an agent that uses TLS",
                           since=mark)
        dl = tls.pool_link(tok)
        assert not dl.pooled and dl.result.type == fa.ERROR, dl.result
        dl.close()
        plain.close()
    finally:
        tls.close()
    assert edge.proc.alive()


def test_plain_pool_tokens(echo_svc, pki):
    """A plain agent's pooled link: parked with a one-time token, joined by
    SESS_ASSIGN when a client comes (no SESS_NEW), relays both ways with
    half-closes; a reused or unknown token is refused."""
    edge = echo_svc
    a = _agent(edge, pki, "plain1", plain=True)
    try:
        tok = a.pool_token()
        assert len(tok) == 32
        dl = a.pool_link(tok, plain=True)
        assert dl.pooled, dl.result
        mark = edge.proc.mark()
        _refused_silently(a.pool_link(tok, plain=True))          # reused
        _refused_silently(a.pool_link(os.urandom(32), plain=True))  # unknown
        assert edge.proc.count("unknown pool token", mark) == 2
        edge.proc.wait_log([f"{LOOPBACK}:", "refused: unknown pool token"],
                           since=mark)

        c = sp.tcp_connect(a.svc_port)
        c.sendall(b"ping\n")
        f = dl.reader.read()
        assert f.type == fa.SESS_ASSIGN, f
        assert f.s(fa.A_SERVICE) == "svc-plain1"
        assert f.s(fa.A_CLIENT_ADDR) == LOOPBACK
        assert f.u(fa.A_CLIENT_PORT) == c.getsockname()[1]
        with pytest.raises(TimeoutError):
            a.recv(timeout=1.0, want=fa.SESS_NEW)
        assert dl.recv_exact(5) == b"ping\n"
        dl.send(b"pong\n")
        c.settimeout(10)
        assert c.recv(5) == b"pong\n"
        # half-close both ways, in order
        c.shutdown(socket.SHUT_WR)
        dl.sock.settimeout(10)
        assert dl.sock.recv(10) == b"", "client FIN not passed on"
        dl.send(b"after-fin\n")
        assert c.recv(10) == b"after-fin\n"
        dl.sock.shutdown(socket.SHUT_WR)
        assert c.recv(10) == b""
        c.close()
        dl.close()
        line = edge.proc.wait_log(["closed service=svc-plain1",
                                   "link=plain"])
        assert "reason=client-closed" in line and "spliced=20" in line, line

        # the SESS_NEW path with a plain DATA_HELLO: DATA_OK in the clear
        c = sp.tcp_connect(a.svc_port)
        c.sendall(b"hi\n")
        s = a.wait_sess_new()
        dl = a.data_link(s["id"], s["secret"], plain=True)
        assert dl.ok, dl.result
        assert dl.recv_exact(3) == b"hi\n"
        dl.close()
        c.close()
        # and a TLS pooled link for the same agent is fine too
        dl = a.pool_link(a.pool_token())
        assert dl.pooled, dl.result
        dl.close()
    finally:
        a.close()


def _closed_unanswered(dl):
    """The edge closed a keyed link without sending a byte."""
    dl.sock.settimeout(10)
    try:
        got = dl.sock.recv(100)
    except ConnectionError:
        got = b""
    assert got == b"", f"edge answered {got!r}"
    dl.close()


def test_keyed_pool_links(echo_svc, pki):
    """Pooled links proved by the pool key from HELLO_OK (no POOL_REQ, no
    POOL_OK): parked at once; a replayed counter, a wrong proof, another
    key id, counter 0, and a TLS agent's key on a plain link are closed
    unanswered, each with its reason logged; a parked keyed link is then
    joined by SESS_ASSIGN and relays."""
    edge = echo_svc
    a = _agent(edge, pki, "plain3", plain=True)
    tls = _agent(edge, pki, "tls3", plain=False)
    try:
        key, kid = a.pool_key()
        assert len(key) == 32 and tls.pool_key()[0] != key
        dl1 = a.keyed_link(1, plain=True)
        edge.proc.wait_log("parked for agent plain3 (keyed)")
        hostile = [
            (dict(ctr=1), "pool counter used already"),            # replay
            (dict(ctr=2, proof=os.urandom(32)), "wrong pool proof"),
            (dict(ctr=2, kid=kid ^ 1), "unknown pool key"),
            (dict(ctr=0), "pool counter 0"),
        ]
        for kw, why in hostile:
            mark = edge.proc.mark()
            _closed_unanswered(a.keyed_link(plain=True, **kw))
            edge.proc.wait_log(["refused:", why], since=mark)
        # counter 2 was not used up by the wrong proof
        dl2 = a.keyed_link(2, plain=True)
        edge.proc.wait_log("parked for agent plain3 (keyed)", count=2)
        # the TLS agent's key: not on a plain link; over TLS, parked
        mark = edge.proc.mark()
        _closed_unanswered(tls.keyed_link(1, plain=True))
        edge.proc.wait_log("plain pooled link for an agent that uses TLS",
                           since=mark)
        tdl = tls.keyed_link(2)
        edge.proc.wait_log("parked for agent tls3 (keyed)")
        tdl.close()

        c = sp.tcp_connect(a.svc_port)
        c.sendall(b"ping\n")
        ready, _, _ = select.select([dl1.sock, dl2.sock], [], [], 10)
        assert len(ready) == 1, ready
        dl = dl1 if ready[0] is dl1.sock else dl2
        f = dl.reader.read()
        assert f.type == fa.SESS_ASSIGN, f
        assert f.s(fa.A_SERVICE) == "svc-plain3"
        assert dl.recv_exact(5) == b"ping\n"
        dl.send(b"pong\n")
        c.settimeout(10)
        assert c.recv(5) == b"pong\n"
        c.close()
        # the client's end reaches the link before the link ends
        assert dl.recv_exact(1) == b""
        dl.close()
        line = edge.proc.wait_log(["closed service=svc-plain3", "link=plain"])
        assert "reason=client-closed" in line, line
        assert edge.proc.count("(keyed)") == 3
    finally:
        a.close()
        tls.close()
    assert edge.proc.alive()


def test_plain_greeting_garbage(echo_svc, pki):
    """Hostile plain greetings are closed without an answer: a wrong
    magic, a frame other than DATA_HELLO/POOL_HELLO, an oversized length
    (refused from the header, before its payload arrives)."""
    edge = echo_svc
    a = _agent(edge, pki, "plain2", plain=True)
    try:
        cases = {
            "magic": b"SPD2" + b"x" * 20,
            "hello": b"SPD1" + fa.frame(fa.HELLO, fa.attr(fa.A_VERSION,
                                                         fa.u16(1)),
                                        fa.attr(fa.A_NAME, "x")),
            "oversize": b"SPD1" + fa.HDR.pack(fa.DATA_HELLO, 0, 60000),
            "truncated": b"SPD1" + fa.HDR.pack(fa.DATA_HELLO, 0, 48)[:5],
        }
        for name, payload in cases.items():
            mark = edge.proc.mark()
            s = socket.create_connection((LOOPBACK, edge.control_port),
                                         timeout=10)
            lport = s.getsockname()[1]
            s.sendall(payload)
            if name == "truncated":
                s.shutdown(socket.SHUT_WR)
            sp.wait_closed(s, 10)
            s.close()
            edge.proc.wait_log([f"{LOOPBACK}:{lport}", "refused"], since=mark)
        assert edge.proc.alive() and not a.closed.is_set()
    finally:
        a.close()


# --------------------------------------------------------------------------
# kernel TLS: used where the kernel has it, a clean fallback where not

def test_tls_relay_without_ktls(tmp_path, pki, sshd):
    """The machines here have no tls ULP: TLS data links must fall back to
    OpenSSL in user space (and say so), and relay every byte intact."""
    edge = sp.start_edge(tmp_path, pki)
    port = sp.free_port()
    agent = sp.start_agent(tmp_path, pki, edge, {"sftp": (port, [sshd.port])},
                           data_link="tls", data_mux=0)
    rd = sshd.root / tmp_path.name
    rd.mkdir(parents=True, exist_ok=True)
    src, back = tmp_path / "f.bin", tmp_path / "f.back"
    h = sp.random_file(src, 16 * MiB)
    mark = edge.proc.mark()
    sshd.sftp(port, [f"put {src} {rd}/f.bin", f"get {rd}/f.bin {back}"],
              tmp_path)
    assert sp.sha256_file(back) == h and sp.sha256_file(rd / "f.bin") == h
    line = agent.proc.wait_log("TLS data links ")
    ends = sp.wait_until(lambda: closed(edge.proc, mark), 20, "session end")
    [s] = ends.values()
    assert s["bytes"] >= 32 * MiB
    if ktls_available():
        assert "kernel TLS: bytes are spliced" in line, line
        assert s["link"] == "ktls" and s["spliced"] > 0, s
    else:
        assert "kernel TLS not available" in line, line
        assert s["link"] == "tls" and s["spliced"] == 0, s
        assert edge.proc.count("link=ktls") == 0


# --------------------------------------------------------------------------
# relay threads: bulk sessions on plain links leave the main loop

class EndlessServer(sp.ThreadedServer):
    """Backend: sends random 64 KiB chunks until the peer goes."""

    def _serve(self, c):
        chunk = os.urandom(65536)
        try:
            c.settimeout(60)
            while True:
                c.sendall(chunk)
        except OSError:
            pass
        finally:
            c.close()


def _handoffs(agent, edge):
    """(agent's, edge's) relay thread hand-overs, from the agent's
    /metrics; the edge's count rides on its heartbeat (None until then)."""
    m = sp.parse_metrics(agent.metrics())
    return (sp.metric(m, "sallyport_relay_thread_handoffs_total"),
            sp.metric(m, "sallyport_edge_relay_thread_handoffs_total",
                      edge=edge.addr))


@pytest.mark.parametrize("threads", ["default", "off"])
def test_bulk_plain_sessions_use_relay_threads(tmp_path, pki, threads):
    """With plain data links, a session that has moved 1 MiB is handed
    from the main loop to a relay thread, at the edge and at the agent; a
    small session is not. Every byte arrives either way and each session
    is logged on close as before. relay_threads = 0 at the agent and
    --relay-threads 0 at the edge keep every session on the main loop."""
    off = threads == "off"
    edge = sp.start_edge(tmp_path, pki,
                         extra=["--relay-threads", "0"] if off else [])
    reply = os.urandom(3 * MiB)
    bulk_be, small_be = sp.ByteServer(reply), sp.ByteServer(b"ok")
    bulk, small = sp.free_port(), sp.free_port()
    agent = sp.start_agent_admin(
        tmp_path, pki, edge, {"bulk": (bulk, [bulk_be.port]),
                              "small": (small, [small_be.port])},
        data_link="plain", agent_extra=["relay_threads = 0"] if off else [])
    n = int(re.search(r"relay threads (\d+)", edge.proc.log()).group(1))
    assert n == 0 if off else n >= 1
    assert sp.byte_session(small, b"hello") == b"ok"
    up = [os.urandom(2 * MiB + i) for i in range(3)]
    got = [None] * 3

    def one(i):
        got[i] = sp.byte_session(bulk, up[i], timeout=60)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(90)
    for i in range(3):
        assert got[i] is not None and len(got[i]) == len(reply)
        assert hashlib.sha256(got[i]).digest() == hashlib.sha256(reply).digest()
    assert sorted(bulk_be.received) == sorted(len(u) for u in up)
    want = 0 if off else 3
    sp.wait_until(lambda: _handoffs(agent, edge) == (want, want), 15,
                  f"{want} relay thread hand-overs at agent and edge")
    for proc in (agent.proc, edge.proc):
        ends = sp.wait_until(lambda: len(closed(proc)) == 4 and closed(proc),
                             15, "4 sessions closed")
        for e in ends.values():
            assert e["link"] == "plain" and not e["reason"].startswith(
                "error"), e
            assert e["spliced"] == e["bytes"], e
    bulk_be.close()
    small_be.close()


def test_relay_thread_cut_and_agent_stop(tmp_path, pki):
    """A session running in a relay thread that the client resets ends
    with an error at the edge and at the agent, and both carry on. An
    agent stopped while another such session is in flight takes it back
    from its thread, logs it as cut and exits cleanly."""
    edge = sp.start_edge(tmp_path, pki)
    be = EndlessServer()
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"flood": (port, [be.port])},
                                 data_link="plain")

    def read_some(c, n):
        got = 0
        while got < n:
            b = c.recv(min(65536, n - got))
            assert b, "session ended early"
            got += len(b)

    # 1: the client reads 4 MiB, then resets.
    c = socket.create_connection((LOOPBACK, port), timeout=30)
    read_some(c, 4 * MiB)
    sp.wait_until(lambda: _handoffs(agent, edge) == (1, 1), 15,
                  "the session handed to relay threads at both ends")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    cut = re.compile(r"session 1 closed .* reason=error\(.*reset")
    for proc in (edge.proc, agent.proc):
        sp.wait_until(lambda: proc.find(cut), 15, "session 1 closed, reset")

    # 2: a session in flight when the agent stops.
    mark = edge.proc.mark()
    c = socket.create_connection((LOOPBACK, port), timeout=30)
    read_some(c, 4 * MiB)
    sp.wait_until(lambda: _handoffs(agent, edge)[0] == 2, 15,
                  "the second session handed to a relay thread")
    agent.proc.signal(signal.SIGTERM)
    assert agent.proc.wait(15) == 0, agent.proc.tail()
    assert agent.proc.find("reason=agent-stopping"), agent.proc.tail()
    # The edge passes on what the agent sent before it went, then the
    # end: the client reads to the end.
    try:
        while c.recv(65536):
            pass
    except ConnectionResetError:
        pass
    c.close()
    sp.wait_until(lambda: edge.proc.find(re.compile(r"session 2 closed "),
                                         mark), 15,
                  "the edge to close the session")
    assert edge.proc.alive()
    be.close()

