"""Outbound sessions: inside clients reach outside servers through the
edge (SOCKS5 and HTTP CONNECT on the agent, connect() on the edge).

All traffic stays on 127.0.0.1; the "outside" servers are nginx and sshd
on loopback, which the policy has to allow explicitly (loopback is a
special address that only a CIDR rule naming it lets through).
"""

import json
import re
import socket
import signal
import threading
from pathlib import Path

import pytest

import sp
from sp import LOOPBACK, MiB

AGENT_CLOSED = re.compile(
    r"outbound (\d+) closed outcome=(\S+) proto=(\S+) client=(\S+) dest=(\S+) "
    r"addr=(\S+) edge=(\S+) bytes_out=(\d+) bytes_in=(\d+) duration=(\S+) "
    r"code=(\d+) reason=(.*)$")


def closed(agent, since=0):
    out = []
    for ln in agent.proc.find(AGENT_CLOSED, since):
        m = AGENT_CLOSED.search(ln)
        out.append({"outcome": m.group(2), "proto": m.group(3),
                    "client": m.group(4), "dest": m.group(5),
                    "addr": m.group(6), "out": int(m.group(8)),
                    "in": int(m.group(9)), "code": int(m.group(11)),
                    "reason": m.group(12)})
    return out


def wait_closed_record(agent, pred, since=0, timeout=30):
    def look():
        return [r for r in closed(agent, since) if pred(r)]
    return sp.wait_until(look, timeout, "outbound audit line")[0]


def curl(args, timeout=120):
    return sp.run(["curl", "-q", "-sS", "--max-time", "60"] + args,
                  check=False, timeout=timeout)


# The destinations here are on loopback, which the dialler's default
# --dial-deny list refuses whatever an agent's policy says.
OUT = ["--allow-outbound", "--dial-deny", "none"]


@pytest.fixture
def edge(tmp_path, pki):
    """An edge whose operator allows outbound sessions, to any address."""
    return sp.start_edge(tmp_path, pki, extra=OUT)


@pytest.fixture
def web(tmp_path, nginx):
    size = 3 * MiB + 17
    h = sp.random_file(nginx.root / "file", size)
    nginx.size, nginx.sha = size, h
    return nginx


# --------------------------------------------------------------------------
# allowed destinations: real clients, content checked

def audit_records(path, event="outbound"):
    if not path.exists():
        return []
    return [r for r in (json.loads(ln) for ln in path.read_text().splitlines())
            if r.get("event") == event]


def test_curl_socks5_hostname(tmp_path, pki, edge, web):
    audit = tmp_path / "audit.jsonl"
    a = sp.start_outbound_agent(tmp_path, pki, edge,
                                [f"127.0.0.1/32:{web.port}"], audit_log=audit)
    out = tmp_path / "got"
    mark = a.proc.mark()
    r = curl(["--socks5-hostname", f"{LOOPBACK}:{a.socks_port}",
              "--cacert", web.cert, "-o", out, "-w", "%{http_code}",
              f"https://127.0.0.1:{web.port}/file"])
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip() == "200"
    assert sp.sha256_file(out) == web.sha
    rec = wait_closed_record(a, lambda r: r["outcome"] == "ok", mark)
    assert rec["proto"] == "socks5"
    assert rec["dest"] == f"127.0.0.1:{web.port}"
    assert rec["addr"] == f"127.0.0.1:{web.port}"
    assert rec["client"].startswith("127.0.0.1:")
    assert rec["in"] > web.size and 0 < rec["out"] < web.size
    edge.proc.wait_log(["new outbound", f"dest=127.0.0.1:{web.port}",
                        "agent=agent1"])
    # the same session in the JSON audit log, with its bytes
    js = sp.wait_until(lambda: audit_records(audit), 10, "audit record")
    assert len(js) == 1, js
    j = js[0]
    assert j["outcome"] == "ok" and j["proto"] == "socks5"
    assert j["destination"] == f"127.0.0.1:{web.port}"
    assert j["address"] == f"127.0.0.1:{web.port}"
    assert j["source"] == rec["client"]
    assert j["bytes_in"] == rec["in"] and j["bytes_out"] == rec["out"]
    assert j["start"] <= j["end"]


def test_curl_http_connect(tmp_path, pki, edge, web):
    a = sp.start_outbound_agent(tmp_path, pki, edge,
                                [f"127.0.0.1/32:{web.port}"])
    out = tmp_path / "got"
    mark = a.proc.mark()
    r = curl(["--proxy", f"http://{LOOPBACK}:{a.http_port}",
              "--cacert", web.cert, "-o", out,
              "-w", "%{http_connect} %{http_code}",
              f"https://127.0.0.1:{web.port}/file"])
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip() == "200 200"
    assert sp.sha256_file(out) == web.sha
    rec = wait_closed_record(a, lambda r: r["outcome"] == "ok", mark)
    assert rec["proto"] == "http-connect"
    assert rec["in"] > web.size


def test_sftp_through_socks_20m(tmp_path, pki, edge, sshd):
    a = sp.start_outbound_agent(tmp_path, pki, edge,
                                [f"127.0.0.1/32:{sshd.port}"])
    rd = sshd.root / tmp_path.name
    rd.mkdir(parents=True, exist_ok=True)
    src, back = tmp_path / "up.bin", tmp_path / "down.bin"
    h = sp.random_file(src, 20 * MiB)
    proxy = f"ProxyCommand=nc -X 5 -x {LOOPBACK}:{a.socks_port} %h %p"
    mark = a.proc.mark()
    sshd.sftp(sshd.port, [f"put {src} {rd}/up.bin",
                          f"get {rd}/up.bin {back}"], tmp_path,
              extra=["-o", proxy])
    assert sp.sha256_file(rd / "up.bin") == h
    assert sp.sha256_file(back) == h
    rec = wait_closed_record(a, lambda r: r["outcome"] == "ok", mark)
    assert rec["dest"] == f"127.0.0.1:{sshd.port}"
    assert rec["out"] > 20 * MiB and rec["in"] > 20 * MiB


def echo_destination():
    """A destination on loopback that echoes one connection: (listening
    socket, port, an Event set once that connection has ended)."""
    ls = socket.socket()
    ls.bind((LOOPBACK, 0))
    ls.listen(4)
    ended = threading.Event()

    def echo():
        c, _ = ls.accept()
        with c:
            try:
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
            except OSError:
                pass        # a test may reset its side once it has its echo
        ended.set()
    threading.Thread(target=echo, daemon=True).start()
    return ls, ls.getsockname()[1], ended


def recv_n(s, n):
    got = b""
    while len(got) < n:
        d = s.recv(100)
        assert d, got
        got += d
    return got


def test_pipelined_bytes_after_request_are_relayed(tmp_path, pki, edge):
    """A client that sends greeting, request and payload in one write:
    the payload must reach the destination (nothing after the request is
    eaten by the request reader)."""
    ls, port, _ = echo_destination()
    a = sp.start_outbound_agent(tmp_path, pki, edge, [f"127.0.0.1/32:{port}"])
    try:
        s, code = sp.socks5_connect(a.socks_port, "127.0.0.1", port,
                                    extra=b"hello, pipelined")
        assert code == 0
        assert recv_n(s, 16) == b"hello, pipelined"
        s.close()
    finally:
        ls.close()


def test_idle_session_cut_after_idle_timeout(tmp_path, pki, edge):
    """[outbound] idle_timeout: a session that moves no byte for that long
    is cut by the agent (END timeout, in its log and audit log), and both
    the inside client and the destination see their connection end."""
    ls, port, dest_ended = echo_destination()
    audit = tmp_path / "audit.jsonl"
    a = sp.start_outbound_agent(tmp_path, pki, edge, [f"127.0.0.1/32:{port}"],
                                audit_log=audit, out_extra=["idle_timeout = 2"])
    try:
        s, code = sp.socks5_connect(a.socks_port, "127.0.0.1", port,
                                    extra=b"ping")
        assert code == 0
        assert recv_n(s, 4) == b"ping"
        # Now silent: the gateway must end it, not the test.
        s.settimeout(60)
        try:
            rest = s.recv(100)
        except ConnectionResetError:
            rest = b""
        assert rest == b""
        s.close()
        assert dest_ended.wait(60), "the destination's connection stayed open"
        r = wait_closed_record(a, lambda r: True)
        assert (r["outcome"], r["reason"]) == ("cut", "timeout"), r
        assert (r["out"], r["in"]) == (4, 4), r
        rec = sp.wait_until(lambda: audit_records(audit), 30, "audit record")
        assert rec[0]["reason"] == "timeout", rec[0]
        assert rec[0]["duration_ms"] >= 2000, rec[0]
    finally:
        ls.close()


def test_proxy_authentication(tmp_path, pki, edge, web):
    a = sp.start_outbound_agent(tmp_path, pki, edge,
                                [f"127.0.0.1/32:{web.port}"],
                                user="inside", password="s3cret pass")
    url = f"https://127.0.0.1:{web.port}/file"
    # SOCKS5 with RFC 1929 username/password
    r = curl(["--proxy", f"socks5h://inside:s3cret%20pass@{LOOPBACK}:"
              f"{a.socks_port}", "--cacert", web.cert, "-o", tmp_path / "s",
              url])
    assert r.returncode == 0, r.stdout
    assert sp.sha256_file(tmp_path / "s") == web.sha
    s, code = sp.socks5_connect(a.socks_port, "127.0.0.1", web.port,
                                user="inside", password="wrong")
    assert s is None and code == -1
    # HTTP CONNECT with Proxy-Authorization: Basic
    r = curl(["--proxy", f"http://{LOOPBACK}:{a.http_port}",
              "--proxy-user", "inside:s3cret pass", "--cacert", web.cert,
              "-o", tmp_path / "h", url])
    assert r.returncode == 0, r.stdout
    assert sp.sha256_file(tmp_path / "h") == web.sha
    r = curl(["--proxy", f"http://{LOOPBACK}:{a.http_port}",
              "--proxy-user", "inside:nope", "--cacert", web.cert,
              "-o", "/dev/null", "-w", "%{http_connect}", url])
    assert r.returncode != 0
    assert r.stdout.strip().endswith("407"), r.stdout
    a.proc.wait_log(["outcome=refused", "reason=SOCKS5 authentication failed"])
    a.proc.wait_log(["outcome=refused", "reason=proxy authentication failed"])


def test_edge_without_allow_outbound_refuses(tmp_path, pki, web):
    """Outbound is the DMZ operator's choice: an edge started without
    --allow-outbound refuses the policy, and a request finds no edge."""
    plain = sp.start_edge(tmp_path, pki, tag="plainedge",
                          extra=["--dial-deny", "none"])
    conf = sp.write_agent_conf(tmp_path / "a.conf", pki, [plain.addr], {})
    socks = sp.free_port()
    with open(conf, "a") as f:
        f.write(f"[outbound]\nsocks_listen = {LOOPBACK}:{socks}\n"
                f"allow_destination = 127.0.0.1/32:{web.port}\n")
    a = sp.Proc("agent", [sp.AGENT_BIN, "--config", conf], tmp_path / "a.log")
    a.wait_log("outbound policy refused: outbound sessions are not enabled")
    plain.proc.wait_log("outbound sessions are not enabled on this edge")
    s, code = sp.socks5_connect(socks, "127.0.0.1", web.port)
    assert s is None and code == 1
    a.wait_log(["outcome=failed", "no edge ready for outbound sessions"])


# --------------------------------------------------------------------------
# refused destinations: the right error, and an audit line

def test_destination_outside_rules_refused(tmp_path, pki, edge, web, sshd):
    audit = tmp_path / "audit.jsonl"
    a = sp.start_outbound_agent(tmp_path, pki, edge,
                                [f"127.0.0.1/32:{web.port}"], audit_log=audit)
    mark = a.proc.mark()
    # SOCKS: 0x02 "connection not allowed by ruleset"
    s, code = sp.socks5_connect(a.socks_port, "127.0.0.1", sshd.port)
    assert s is None and code == 2
    # HTTP CONNECT: 403
    r = curl(["--proxy", f"http://{LOOPBACK}:{a.http_port}",
              "-o", "/dev/null", "-w", "%{http_connect}",
              f"https://127.0.0.1:{sshd.port}/"])
    assert r.returncode != 0
    assert r.stdout.strip().endswith("403"), r.stdout
    recs = sp.wait_until(
        lambda: [x for x in closed(a, mark) if x["outcome"] == "refused"
                 and x["dest"] == f"127.0.0.1:{sshd.port}"] if
        len([x for x in closed(a, mark) if x["outcome"] == "refused"]) >= 2
        else None, 20, "two refusals logged")
    assert {x["proto"] for x in recs} == {"socks5", "http-connect"}
    assert all(x["code"] == 2 for x in recs)
    assert all(x["out"] == 0 and x["in"] == 0 for x in recs)
    assert edge.proc.count(["refused agent=agent1",
                            f"dest=127.0.0.1:{sshd.port}"]) == 2
    js = [j for j in audit_records(audit)
          if j["destination"] == f"127.0.0.1:{sshd.port}"]
    assert len(js) == 2 and all(j["outcome"] == "refused" and j["code"] == 2
                                for j in js), js
    # a public-looking name nobody allowed: refused before any lookup
    s, code = sp.socks5_connect(a.socks_port, "files.example.com", 443)
    assert s is None and code == 2
    edge.proc.wait_log(["refused", "dest=files.example.com:443",
                        "no destination rule allows it"])


def test_name_resolving_to_forbidden_address(tmp_path, pki, edge, web, sshd):
    """`localhost` matches a host-name rule, but resolves to loopback:
    the resolved address is checked, and a name rule never lifts the
    special-address ban. The same name to a port allowed by a CIDR rule
    that names loopback goes through (so the refusal is not a DNS
    failure)."""
    a = sp.start_outbound_agent(tmp_path, pki, edge,
                                [f"localhost:{sshd.port}",
                                 f"127.0.0.0/8:{web.port}"])
    mark = a.proc.mark()
    s, code = sp.socks5_connect(a.socks_port, "localhost", sshd.port)
    assert s is None and code == 2
    r = curl(["--proxy", f"http://{LOOPBACK}:{a.http_port}",
              "-o", "/dev/null", "-w", "%{http_connect}",
              f"https://localhost:{sshd.port}/"])
    assert r.returncode != 0
    assert r.stdout.strip().endswith("403"), r.stdout
    rec = wait_closed_record(a, lambda x: x["outcome"] == "refused", mark)
    assert rec["dest"] == f"localhost:{sshd.port}" and rec["code"] == 2
    assert "loopback" in rec["reason"], rec
    edge.proc.wait_log(["refused", f"dest=localhost:{sshd.port}",
                        "resolves to", "loopback"])
    # positive control: same name, a port a loopback CIDR rule allows
    r = curl(["--socks5-hostname", f"{LOOPBACK}:{a.socks_port}",
              "--cacert", web.cert, "-o", tmp_path / "got",
              f"https://localhost:{web.port}/file"])
    assert r.returncode == 0, r.stdout
    assert sp.sha256_file(tmp_path / "got") == web.sha


# --------------------------------------------------------------------------
# the edge connects only where the policy allows

def _strace(path):
    # -yy: show each fd's protocol, so TCP connects can be told from the
    # UDP connect() glibc's resolver uses to sort addresses (no packet).
    # clone: which process forked which, to tell the dialler's workers.
    return ["strace", "-f", "-yy", "--seccomp-bpf",
            "-e", "trace=connect,clone,clone3,fork",
            "-o", str(path)]


def dialler_workers(trace, dialler):
    """The pids the dialler forked, as the trace shows them."""
    kids = set()
    for ln in trace.read_text().splitlines():
        m = re.match(r"(\d+)\s+clone3?\(.*\)\s+=\s+(\d+)", ln)
        if m and int(m.group(1)) == dialler:
            kids.add(int(m.group(2)))
    return kids


def helper_pids(pid):
    """{comm: pid} of the edge's helper processes (key process, dialler)."""
    out = {}
    for k in sp._children_of(pid):
        with open(f"/proc/{k}/comm") as f:
            out[f.read().strip()] = k
    return out


TCP_CONNECT = re.compile(r'connect\(\d+<TCP(?:v6)?:[^>]*>, \{sa_family=(AF_INET6?), '
                         r'sin6?_port=htons\((\d+)\)')


def test_edge_connects_only_to_allowed(tmp_path, pki, web, sshd):
    """Every TCP connect() the edge makes is the dialler's (one of its
    workers), never the relay process's or the key process's, and only to
    the allowed destination."""
    trace = tmp_path / "edge.strace"
    edge = sp.start_edge(tmp_path, pki, wrapper=_strace(trace), extra=OUT)
    relay = edge.proc.target_pid()
    # Forked first, named after: wait for the name, not the count.
    helpers = sp.wait_until(lambda: "sallyport-dial" in helper_pids(relay)
                            and helper_pids(relay), 20,
                            "the dialler process, named")
    dialler = helpers["sallyport-dial"]
    a = sp.start_outbound_agent(tmp_path, pki, edge,
                                [f"127.0.0.1/32:{web.port}",
                                 f"localhost:{sshd.port}"])
    r = curl(["--socks5-hostname", f"{LOOPBACK}:{a.socks_port}",
              "--cacert", web.cert, "-o", tmp_path / "got",
              f"https://127.0.0.1:{web.port}/file"])
    assert r.returncode == 0, r.stdout
    assert sp.sha256_file(tmp_path / "got") == web.sha
    for host, port in (("127.0.0.1", sshd.port), ("localhost", sshd.port),
                       ("127.0.0.2", web.port), ("::1", web.port)):
        s, code = sp.socks5_connect(a.socks_port, host, port)
        assert s is None and code == 2, (host, port, code)
    assert a.proc.stop() == 0
    assert edge.proc.stop() == 0
    workers = dialler_workers(trace, dialler)
    lines = [ln for ln in trace.read_text().splitlines() if "connect(" in ln]
    tcp = [ln for ln in lines if "<TCP" in ln]
    # only the dialler's workers connect at all: not the relay process,
    # not the key process (its UDP ones included)
    pids = {int(ln.split()[0]) for ln in lines}
    assert workers and pids <= workers, (pids, workers, dialler, relay)
    # positive control: the edge's one allowed connect is seen
    assert any(f"htons({web.port})" in ln for ln in tcp), "\n".join(lines)
    for ln in tcp:
        m = TCP_CONNECT.search(ln)
        assert m, f"unrecognised connect in trace: {ln}"
        assert (m.group(1), int(m.group(2))) == ("AF_INET", web.port) and \
            'inet_addr("127.0.0.1")' in ln, f"edge connected elsewhere: {ln}"
    # anything else the edge connected (a datagram socket the resolver
    # uses) carried no connection: never to the refused ports over TCP
    assert not [ln for ln in lines if f"htons({sshd.port})" in ln and
                "<TCP" in ln]


def test_edge_objects_only_the_dialler_connects():
    """Statically: among the objects linked into the edge, only
    edge_dial.o (the dialler process) references connect(),
    edge_sandbox.o, whose self-test shows that the relay process's
    connect() is denied, and hosock.o, which connects to a running edge's
    hand-over socket (AF_UNIX) at start-up, before the sandbox."""
    objs = sorted((sp.BUILD / "obj").glob("edge/*.o")) + \
        sorted((sp.BUILD / "obj").glob("common/*.o"))
    assert objs
    users = []
    for o in objs:
        r = sp.run(["nm", "--undefined-only", o])
        if any(ln.split()[-1] == "connect" for ln in r.stdout.splitlines()
               if ln.strip()):
            users.append(o.name)
    assert users == ["edge_dial.o", "edge_sandbox.o", "hosock.o"], users


# --------------------------------------------------------------------------
# the edge enforces the policy itself (a fake agent speaks the protocol)

def _out_req(agent, request, host, port):
    """OUT_REQ on agent's control connection; the edge's OUT_FAIL for it,
    or None if none came within 2 s (it connected)."""
    import spproto as p
    agent.send_frame(p.OUT_REQ, REQUEST=request, DEST_HOST=host,
                     DEST_PORT=port)
    try:
        f = agent.recv(timeout=2, want=p.OUT_FAIL)
    except TimeoutError:
        return None
    assert f["REQUEST"] == request, f["REQUEST"]
    return f


def test_edge_enforces_outbound_policy(tmp_path, pki, edge):
    """Outbound requests are OUT_REQ on the control connection. The edge
    answers OUT_FAIL code 2 (not allowed) for a destination outside the
    agent's policy and to an agent that sent no policy, code 5 when an
    allowed destination refuses; an allowed destination it reached
    arrives as SESS_OPEN of kind outbound (REQUEST, DEST_ADDR) on one of
    the agent's data links, and bytes pass both ways."""
    import fakeagent as fa
    import spproto as p
    ls = socket.create_server((LOOPBACK, 0))
    port = ls.getsockname()[1]
    closed_port = sp.free_port()
    a = fa.FakeAgent(edge.control_port, pki.ca_crt, pki.agent_crt,
                     pki.agent_key, name="out1")
    none = fa.FakeAgent(edge.control_port, pki.ca_crt, pki.agent_crt,
                        pki.agent_key, name="nopolicy")
    try:
        a.connect()
        none.connect()
        none.mux_link()
        # no OUT_POLICY from this agent: not allowed
        f = _out_req(none, 1, LOOPBACK, port)
        assert f is not None and f["OUT_CODE"] == 2, f
        # a policy that does not parse is refused, with a reason
        a.send_frame(p.OUT_POLICY, OUT_ALLOW="10.1.2.3/8:22")
        f = a.recv(want=p.OUT_POLICY_OK)
        assert f["STATUS"] == 1 and "not a destination rule" in f["TEXT"]
        a.send_frame(p.OUT_POLICY, OUT_ALLOW=f"127.0.0.1/32:{port}, "
                     f"127.0.0.1:{closed_port}")
        assert a.recv(want=p.OUT_POLICY_OK)["STATUS"] == 0
        ml = a.mux_link()
        # outside the policy: another port, another (private) address
        other = port + 1 if port < 65535 else port - 1
        for rid, host, dport in ((2, LOOPBACK, other),
                                 (3, "10.0.0.1", port)):
            f = _out_req(a, rid, host, dport)
            assert f is not None and f["OUT_CODE"] == 2, (host, dport, f)
        # allowed, but nobody listens: connection refused
        f = _out_req(a, 4, LOOPBACK, closed_port)
        assert f is not None and f["OUT_CODE"] == 5, f
        # allowed: connected, then a session on the agent's data link
        assert _out_req(a, 5, LOOPBACK, port) is None
        ls.settimeout(10)
        c, _ = ls.accept()
        st = ml.accept()
        assert st.open["SESS_KIND"] == p.SK_OUTBOUND
        assert st.open["REQUEST"] == 5
        assert st.open["DEST_ADDR"] == f"{LOOPBACK}:{port}"
        assert not st.open.has("SERVICE")
        st.send(b"ping")
        c.settimeout(10)
        assert c.recv(4) == b"ping"
        c.sendall(b"pong")
        assert st.recv_exact(4) == b"pong"
        c.close()                   # the destination ends first
        st.wait_fin()
        st.send_fin()
        line = edge.proc.wait_log(re.compile(
            rf"session \d+ closed outbound dest={LOOPBACK}:{port} "))
        assert "bytes_in=4 bytes_out=4 " in line, line
        assert "reason=server-closed" in line and "link=tls" in line, line
        assert not a.closed.is_set() and not none.closed.is_set()
    finally:
        a.close()
        none.close()
        ls.close()
    edge.proc.wait_log("outbound policy refused")
    edge.proc.wait_log(["outbound request 1 refused agent=nopolicy",
                        "no outbound policy from this agent"])


def test_reload_applies_policy_and_reports_listeners(tmp_path, pki, edge, web,
                                                     sshd):
    """SIGHUP with another allow_destination: every edge gets the new
    policy at once (a destination allowed before is refused, one allowed
    now passes). A changed listener cannot move while running: the reload
    says [outbound] needs a restart, and the running proxy keeps
    serving."""
    a = sp.start_outbound_agent(tmp_path, pki, edge,
                                [f"127.0.0.1/32:{web.port}"])
    s, code = sp.socks5_connect(a.socks_port, "127.0.0.1", sshd.port)
    assert s is None and code == 2
    text = Path(a.conf).read_text().replace(
        f"allow_destination = 127.0.0.1/32:{web.port}",
        f"allow_destination = 127.0.0.1/32:{sshd.port}")
    Path(a.conf).write_text(text)
    mark, amark = edge.proc.mark(), a.proc.mark()
    a.proc.signal(signal.SIGHUP)
    a.proc.wait_log("configuration reloaded", since=amark)
    edge.proc.wait_log("agent agent1: outbound policy with 1 rules",
                       since=mark)
    s, code = sp.socks5_connect(a.socks_port, "127.0.0.1", sshd.port)
    assert code == 0, code
    assert s.recv(4).startswith(b"SSH-")
    s.close()
    s, code = sp.socks5_connect(a.socks_port, "127.0.0.1", web.port)
    assert s is None and code == 2
    # a listener that moved: reported, and the old one keeps serving
    other = sp.free_port()
    Path(a.conf).write_text(Path(a.conf).read_text().replace(
        f"socks_listen = {LOOPBACK}:{a.socks_port}",
        f"socks_listen = {LOOPBACK}:{other}"))
    amark = a.proc.mark()
    a.proc.signal(signal.SIGHUP)
    line = a.proc.wait_log("configuration reloaded", since=amark)
    assert "restart needed for [outbound]" in line, line
    s, code = sp.socks5_connect(a.socks_port, "127.0.0.1", sshd.port)
    assert code == 0, code
    s.close()


def test_dial_deny_beats_the_agents_policy(tmp_path, pki):
    """The DMZ operator's --dial-deny (by default the private, loopback
    and link-local ranges) holds whatever an agent's policy allows: a
    policy that names loopback on purpose still gets "not allowed", the
    destination never sees a connection, and the dialler says why."""
    ls = socket.create_server((LOOPBACK, 0))
    ls.setblocking(False)
    port = ls.getsockname()[1]
    edge = sp.start_edge(tmp_path, pki, tag="denyedge",
                         extra=["--allow-outbound"])
    edge.proc.wait_log("dialler: --dial-deny 11 ranges (the default")
    a = sp.start_outbound_agent(tmp_path, pki, edge,
                                [f"127.0.0.1/32:{port}", f"localhost:{port}"])
    mark = a.proc.mark()
    try:
        for host in ("127.0.0.1", "localhost"):
            s, code = sp.socks5_connect(a.socks_port, host, port)
            assert s is None and code == 2, (host, code)
        r = curl(["--proxytunnel", "--proxy",
                  f"http://{LOOPBACK}:{a.http_port}", "-o", "/dev/null",
                  "-w", "%{http_connect}", f"http://127.0.0.1:{port}/"])
        assert r.returncode != 0 and r.stdout.strip().endswith("403"), \
            r.stdout
        rec = wait_closed_record(a, lambda x: x["dest"] ==
                                 f"localhost:{port}", mark)
        assert rec["code"] == 2 and "in --dial-deny" in rec["reason"], rec
        edge.proc.wait_log(["outbound request", "refused",
                            f"dest=127.0.0.1:{port}",
                            f"127.0.0.1:{port}: in --dial-deny"])
        with pytest.raises(BlockingIOError):
            ls.accept()
    finally:
        ls.close()
