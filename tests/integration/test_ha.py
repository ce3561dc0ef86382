"""High availability (issue 7): several agents per edge, several edges per
agent, several backends per service.

Everything runs on 127.0.0.1, except the two-edge test, which puts each
edge in a network namespace of its own joined to this one by a veth pair
(the same service address must be open on both edges at once), and the
tests of names looked up off the agent's loop, whose agent runs in such a
namespace with a DNS server of the test's own.
"""

import errno
import re
import signal
import socket
import threading
import subprocess
import time

import pytest

import fakeagent as fa
import sp
from sp import LOOPBACK, MiB

A_PRIORITY = 12
SESS_NEW_LINE = re.compile(r"session (\d+) new service=(\S+) client=\S+ "
                           r"agent=(\S+)")
JOINED_LINE = re.compile(r"session (\d+) joined service=(\S+) client=\S+ "
                         r"backend=(\S+)")


def svc(listen_port, backends, **keys):
    return {"listen": f"{LOOPBACK}:{listen_port}",
            "backends": [f"{LOOPBACK}:{b}" for b in backends], "keys": keys}


def agents_of_new_sessions(edge, since):
    """Agent names of the sessions the edge handed out since a mark."""
    return [SESS_NEW_LINE.search(ln).group(3)
            for ln in edge.proc.find(SESS_NEW_LINE, since)]


def backends_of_joined(agent, since):
    return [JOINED_LINE.search(ln).group(3)
            for ln in agent.proc.find(JOINED_LINE, since)]


def run_sessions(ssh, port, tmp_path, n, tag, host=LOOPBACK):
    """n sftp round trips one after the other; all must succeed."""
    for i in range(n):
        ok, detail = sp.sftp_roundtrip(ssh, port, tmp_path, f"{tag}-{i}",
                                       host=host)
        assert ok, f"session {tag}-{i} via {host}:{port} failed: {detail}"


def start_slow_get(ssh, port, tmp_path, size, kbit, tag, host=LOOPBACK):
    """A download paced by sftp -l (Kbit/s), so that it is still running
    while the test breaks something. Returns (popen, local path, sha)."""
    remote = ssh.root / f"{tag}.bin"
    h = sp.random_file(remote, size)
    local = tmp_path / f"{tag}.back"
    bf = tmp_path / f"{tag}.batch"
    bf.write_text(f"get {remote} {local}\n")
    out = open(tmp_path / f"{tag}.out", "wb")
    p = subprocess.Popen(["sftp"] + ssh.ssh_opts(port) +
                         ["-l", str(kbit), "-b", str(bf),
                          f"{ssh.user}@{host}"],
                         stdin=subprocess.DEVNULL, stdout=out,
                         stderr=subprocess.STDOUT)
    out.close()
    p.out_path = tmp_path / f"{tag}.out"
    p.remote = remote
    return p, local, h


def finish_slow_get(p, local, h, timeout=180):
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = "timeout"
    assert rc == 0, f"slow transfer failed ({rc}): {p.out_path.read_text()}"
    assert sp.sha256_file(local) == h, "slow transfer arrived corrupted"
    p.remote.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# two agents, one edge

def test_two_agents_kill9_mid_stream(tmp_path, pki, edge, sshd):
    port = sp.free_port()
    services = {"sftp": svc(port, [sshd.port])}
    a = sp.start_agent_ha(tmp_path, pki, [edge], services, "agent-a",
                          wait_on=[edge])
    b = sp.start_agent_ha(tmp_path, pki, [edge], services, "agent-b",
                          wait_on=[edge])

    # A long download: the agent that carries it survives, the other dies.
    mark = edge.proc.mark()
    slow, local, h = start_slow_get(sshd, port, tmp_path, 4 * MiB, 4000,
                                    "slow")
    line = edge.proc.wait_log(SESS_NEW_LINE, since=mark, timeout=30)
    survivor_name = SESS_NEW_LINE.search(line).group(3)
    sid = SESS_NEW_LINE.search(line).group(1)
    survivor, victim = (a, b) if survivor_name == "agent-a" else (b, a)
    # its backend answered: the transfer runs through the survivor
    survivor.proc.wait_log(f"session {sid} joined", timeout=30)

    stream = sp.SessionStream(sshd, port, tmp_path, workers=3)
    try:
        stream.wait_count(6)
        # both agents were sharing the load before the kill
        used = set(agents_of_new_sessions(edge, mark))
        assert used == {"agent-a", "agent-b"}, used
        kill_mark = edge.proc.mark()
        victim.proc.kill()                              # SIGKILL
        edge.proc.wait_log(f"agent {victim.proc.name} lost",
                           since=kill_mark, timeout=10)
        noticed = time.monotonic()
        after = edge.proc.mark()
        stream.wait_count(12, since=noticed, timeout=180)
    finally:
        results = stream.stop()

    late = [r for r in results if r[0] >= noticed]
    failed = [r[3] for r in late if not r[2]]
    assert len(late) >= 12
    assert not failed, (f"{len(failed)} of {len(late)} sessions started "
                        f"after the loss was noticed failed:\n" +
                        "\n".join(failed[:5]))
    assert set(agents_of_new_sessions(edge, after)) == {survivor.proc.name}
    # the transfer running through the survivor was not touched
    assert slow.poll() is None or slow.returncode == 0
    finish_slow_get(slow, local, h)
    assert survivor.proc.alive()


def _fake_agent(edge, pki, name, listen, priority):
    f = fa.FakeAgent(edge.control_port, pki.ca_crt, pki.agent_crt,
                     pki.agent_key, name=name)
    f.connect()
    status, text = f.svc_open("echo", listen, PRIORITY=priority)
    assert status == 0, text
    return f


def test_waiting_session_goes_to_another_agent_when_its_agent_is_lost(
        tmp_path, pki):
    """A client waits for a data link of the agent its service chose (the
    one of highest priority, which has none free); that agent is lost:
    the session goes to another agent of the service, with the client's
    first bytes, and the client never notices."""
    edge = sp.start_edge(tmp_path, pki, extra=["-v"])
    port = sp.free_port()
    listen = f"{LOOPBACK}:{port}"
    lo = _fake_agent(edge, pki, "fake-lo", listen, 0)
    hi = _fake_agent(edge, pki, "fake-hi", listen, 7)  # gets every session
    dl = lo.mux_link()
    edge.proc.wait_log("multiplexed data link of agent fake-lo")
    mark = edge.proc.mark()
    c = sp.tcp_connect(port)
    try:
        c.sendall(b"ping\n")
        # waiting: hi was chosen and has no link, lo's link stays idle
        edge.proc.wait_log(["waits for a data link of agent fake-hi"],
                           since=mark)
        assert dl.opened.empty()
        hi.close()                              # ... then that agent goes
        edge.proc.wait_log("agent fake-hi lost", since=mark)
        _, st = fa.next_session([dl], timeout=10)
        assert st.open["CLIENT_PORT"] == c.getsockname()[1]
        edge.proc.wait_log(["new service=echo", "agent=fake-lo"], since=mark)
        assert st.recv_exact(5) == b"ping\n"
        st.send(b"pong\n")
        c.settimeout(10)
        assert c.recv(5) == b"pong\n"
    finally:
        c.close()
        lo.close()


def test_active_passive(tmp_path, pki, edge, sshd):
    port = sp.free_port()
    primary = sp.start_agent_ha(
        tmp_path, pki, [edge], {"sftp": svc(port, [sshd.port], priority=10)},
        "primary", wait_on=[edge])
    standby = sp.start_agent_ha(
        tmp_path, pki, [edge], {"sftp": svc(port, [sshd.port])}, "standby",
        wait_on=[edge])
    assert edge.proc.find("service sftp open on", 0)[-1].endswith("priority=0")

    # 1. everything to the primary, even with sessions running on it
    mark, pmark = edge.proc.mark(), primary.proc.mark()
    slow, local, h = start_slow_get(sshd, port, tmp_path, MiB, 4000, "busy")
    primary.proc.wait_log("joined", since=pmark, timeout=30)
    run_sessions(sshd, port, tmp_path, 5, "p1")
    finish_slow_get(slow, local, h)
    got = agents_of_new_sessions(edge, mark)
    assert got == ["primary"] * 6, got

    # 2. primary stops: the standby takes every new session at once
    mark = edge.proc.mark()
    assert primary.proc.stop() == 0
    edge.proc.wait_log("agent primary lost", since=mark, timeout=10)
    mark = edge.proc.mark()
    run_sessions(sshd, port, tmp_path, 4, "p2")
    got = agents_of_new_sessions(edge, mark)
    assert got == ["standby"] * 4, got

    # 3. primary back: new sessions return to it
    mark = edge.proc.mark()
    primary.proc = sp.restart_proc(primary.proc)
    edge.proc.wait_log("service sftp open on", since=mark, timeout=30)
    assert edge.proc.find("agent=primary priority=10", mark)
    mark = edge.proc.mark()
    run_sessions(sshd, port, tmp_path, 4, "p3")
    got = agents_of_new_sessions(edge, mark)
    assert got == ["primary"] * 4, got
    assert standby.proc.alive()


def test_conflicting_definitions(tmp_path, pki, edge, sshd):
    """Two agents push service "sftp" with different listen addresses:
    the edge keeps the first, refuses the second, and both sides say so."""
    p1, p2 = sp.free_port(), sp.free_port()
    first = sp.start_agent_ha(tmp_path, pki, [edge],
                              {"sftp": svc(p1, [sshd.port])}, "first",
                              wait_on=[edge])
    mark = edge.proc.mark()
    second = sp.start_agent_ha(tmp_path, pki, [edge],
                               {"sftp": svc(p2, [sshd.port])}, "second")
    edge.proc.wait_log(["agent second: service sftp refused: conflicting "
                        f"definition (listen {LOOPBACK}:{p2})",
                        f"keeping the one from agent first on {LOOPBACK}:{p1}"],
                       since=mark, timeout=20)
    second.proc.wait_log([f"edge {edge.addr}: service sftp refused: service "
                          f"sftp is already open on {LOOPBACK}:{p1} with "
                          "another definition (from agent first)"],
                         timeout=20)
    # nothing was mixed: the second address is not open, the first works
    # and is served by the first agent only
    assert sp.connect_errno(p2) == errno.ECONNREFUSED
    mark = edge.proc.mark()
    run_sessions(sshd, p1, tmp_path, 3, "c")
    assert agents_of_new_sessions(edge, mark) == ["first"] * 3
    assert first.proc.alive() and second.proc.alive()


# --------------------------------------------------------------------------
# two edges, one agent

@pytest.fixture
def two_netns():
    nets = []
    try:
        for t in ("ea", "eb"):
            nets.append(sp.Netns(t))
    except Exception as e:
        for n in nets:
            n.close()
        pytest.fail(f"cannot create network namespaces: {e}", pytrace=False)
    yield nets
    for n in nets:
        n.close()


def test_two_edges_one_agent(tmp_path, two_netns, sshd):
    na, nb = two_netns
    pki = sp.make_pki(tmp_path / "pki", names=[na.inner, nb.inner])
    ea = sp.start_edge_at(tmp_path, pki, na.inner, "edge-a", prefix=na.exec)
    eb = sp.start_edge_at(tmp_path, pki, nb.inner, "edge-b", prefix=nb.exec)
    port = sp.free_port()
    services = {"sftp": {"listen": f"*:{port}",
                         "backends": [f"{LOOPBACK}:{sshd.port}"]}}
    mark_a, mark_b = ea.proc.mark(), eb.proc.mark()
    agent = sp.Proc("agent", [sp.AGENT_BIN, "--config",
                              sp.write_agent_conf_ha(
                                  tmp_path / "agent.conf", pki,
                                  [ea.addr, eb.addr], services, "agent")],
                    tmp_path / "agent.log")
    for e, m in ((ea, mark_a), (eb, mark_b)):
        sp._wait_edge_log_or_agent_death(
            e, agent, f"service sftp open on *:{port} agent=agent ", m)

    # the agent serves both edges
    run_sessions(sshd, port, tmp_path, 2, "a0", host=na.inner)
    run_sessions(sshd, port, tmp_path, 2, "b0", host=nb.inner)

    # a transfer through edge B is running when edge A goes away
    mark = agent.mark()
    slow, local, h = start_slow_get(sshd, port, tmp_path, 3 * MiB, 4000,
                                    "slow-b", host=nb.inner)
    agent.wait_log(["joined", "link=tls"], since=mark, timeout=30)
    mark = agent.mark()
    assert ea.proc.stop() == 0
    agent.wait_log(f"edge {ea.addr} lost", since=mark, timeout=10)
    # the port on edge A is gone, edge B still serves, its session runs on
    assert sp.connect_errno(port, host=na.inner) == errno.ECONNREFUSED
    mark_b = eb.proc.mark()
    run_sessions(sshd, port, tmp_path, 4, "b1", host=nb.inner)
    finish_slow_get(slow, local, h)
    assert not eb.proc.find("lost", mark_b), eb.proc.tail()
    assert agent.alive() and eb.proc.alive()

    # edge A back: the agent reconnects by itself and serves it again
    mark = agent.mark()
    ea.proc = sp.restart_proc(ea.proc, wait_for="control listening")
    agent.wait_log(f"edge {ea.addr}: service sftp open", since=mark,
                   timeout=60)
    run_sessions(sshd, port, tmp_path, 2, "a2", host=na.inner)


def test_edge_name_lookup_holds_up_nothing(tmp_path):
    """An edge given by name is looked up off the agent's event loop: while
    a DNS server holds the answer, the agent still connects to its other
    edge, gives up on the first after connect_timeout ("timed out looking
    up the name"), and connects to it once the answer comes."""
    ns = sp.Netns("dns")
    dns = None
    try:
        dns = sp.HeldDns(ns.outer, "slow-edge.test", ns.outer)
        pki = sp.make_pki(tmp_path / "pki", names=["slow-edge.test",
                                                   ns.outer])
        ea = sp.start_edge_at(tmp_path, pki, ns.outer, "edge-a")
        eb = sp.start_edge_at(tmp_path, pki, ns.outer, "edge-b")
        named = f"slow-edge.test:{ea.control_port}"
        conf = sp.write_agent_conf(tmp_path / "agent.conf", pki,
                                   [named, eb.addr], {},
                                   agent_extra=["connect_timeout = 2"])
        agent = sp.Proc("agent", sp.own_resolver(ns, tmp_path) + [
            sp.AGENT_BIN, "--config", str(conf)], tmp_path / "agent.log")
        assert dns.asked.wait(30), "the agent never asked for the edge's name"
        # A lookup in the loop would hold everything for minutes here.
        agent.wait_log(f"edge {eb.addr} connected", timeout=30)
        agent.wait_log(f"edge {named}: cannot connect: timed out looking up "
                       "the name", timeout=30)
        assert not agent.find(f"edge {named} connected")
        assert eb.proc.alive() and agent.alive()
        mark = agent.mark()
        dns.release()
        agent.wait_log(f"edge {named} connected", since=mark, timeout=60)
        assert not agent.find(f"edge {eb.addr} lost"), agent.tail()
    finally:
        if dns is not None:
            dns.close()
        ns.close()


class ReloadRig:
    """An edge, two byte backends (X and Y) and an agent with an admin API,
    the agent in a network namespace whose DNS server (a HeldDns) holds
    every query for backend.test. write() gives the agent's file a
    backend; start() starts an agent on it."""

    def __init__(self, tmp_path, agent_extra=()):
        self.tmp = tmp_path
        self.extra = list(agent_extra)
        self.ns = sp.Netns("reload")
        self.dns = self.bx = self.by = None
        try:
            ns = self.ns
            self.dns = sp.HeldDns(ns.outer, "backend.test", ns.outer)
            self.pki = sp.make_pki(tmp_path / "pki", names=[ns.outer])
            self.edge = sp.start_edge_at(tmp_path, self.pki, ns.outer, "edge")
            self.bx = sp.ByteServer(b"X" * 10, host=ns.outer)
            self.by = sp.ByteServer(b"Y" * 10, host=ns.outer)
            self.port, self.admin = sp.free_port(), sp.free_port()
            self.token_file = tmp_path / "agent.token"
            self.token = sp.write_token(self.token_file)
        except Exception:
            self.close()
            raise

    def write(self, backend, conf=None):
        ns, pki = self.ns, self.pki
        conf = conf or self.tmp / "agent.conf"
        conf.write_text("\n".join([
            "[agent]", "name = agent1", *self.extra,
            f"edge = {ns.outer}:{self.edge.control_port}",
            f"cert = {pki.agent_crt}", f"key = {pki.agent_key}",
            f"ca = {pki.ca_crt}", "", "[service s]",
            f"listen = {LOOPBACK}:{self.port}", f"backend = {backend}", "",
            "[admin]", f"listen = {ns.inner}:{self.admin}",
            f"token_file = {self.token_file}", ""]))
        return conf

    def start(self, conf, tag="agent"):
        return sp.Proc(tag, sp.own_resolver(self.ns, self.tmp) + [
            sp.AGENT_BIN, "--config", str(conf)], self.tmp / f"{tag}.log")

    def start_serving(self):
        """The agent on backend X (by address), its service open on the
        edge and its API up."""
        mark = self.edge.proc.mark()
        agent = self.start(self.write(f"{self.ns.outer}:{self.bx.port}"))
        self.edge.proc.wait_log(f"service s open on {LOOPBACK}:{self.port}",
                                since=mark)
        agent.wait_log(f"admin API listening on {self.ns.inner}:{self.admin}")
        return agent

    def api(self, method, path, timeout=10, tok=None):
        return sp.api_request(self.admin, method, path, tok or self.token,
                              timeout, host=self.ns.inner)

    def post_reload(self):
        """POST /reload in a thread: (thread, dict that gets "r", the
        answer, or "err")."""
        out = {}

        def go():
            try:
                out["r"] = self.api("POST", "/api/v1/reload", timeout=120)
            except OSError as e:
                out["err"] = e
        t = threading.Thread(target=go, daemon=True)
        t.start()
        return t, out

    def close(self):
        for x in (self.dns, self.bx, self.by):
            if x is not None:
                x.close()
        self.ns.close()


def test_reload_looks_names_up_off_the_loop(tmp_path):
    """A reload reads the file, and looks its backends' names up, off the
    agent's event loop: while a DNS server holds the answer, sessions go
    on, the admin API answers (a second reload: 409), a SIGHUP waits for
    the reload under way; the waiting POST /reload answers once the name
    has come (though the reload changed the token it came in with), and
    the SIGHUP's reload follows."""
    rig = ReloadRig(tmp_path)
    try:
        port = rig.port
        agent = rig.start_serving()
        assert sp.byte_session(port, b"q") == b"X" * 10

        rig.write(f"backend.test:{rig.by.port}")
        new_token = sp.write_token(rig.token_file)
        t, first = rig.post_reload()
        assert rig.dns.asked.wait(30), "the reload never asked for the name"
        # A lookup in the loop would hold all of this for minutes.
        assert sp.byte_session(port, b"q") == b"X" * 10
        st, _, body = rig.api("GET", "/api/v1/status")
        assert st == 200, body
        st, _, body = rig.api("POST", "/api/v1/reload")
        assert st == 409 and "under way" in body["error"], (st, body)
        mark = agent.mark()
        agent.signal(signal.SIGHUP)
        agent.wait_log("SIGHUP: a reload is under way", since=mark)
        assert t.is_alive() and not first

        rig.dns.release()
        t.join(60)
        assert not t.is_alive(), "POST /reload never answered"
        st, _, body = first["r"]
        assert st == 200 and body["backends_changed"] == ["s"], (st, body)
        assert sp.byte_session(port, b"q") == b"Y" * 10
        assert rig.api("GET", "/api/v1/status")[0] == 401
        assert rig.api("GET", "/api/v1/status", tok=new_token)[0] == 200
        # the SIGHUP kept for after it: read again, and reloaded
        agent.wait_log("SIGHUP: reloading", since=mark)
        sp.wait_until(lambda: agent.count("configuration reloaded") == 2, 30,
                      "the SIGHUP's reload")
        assert agent.alive() and rig.edge.proc.alive()
    finally:
        rig.close()


def test_reload_read_while_handing_over_is_dropped(tmp_path):
    """A new agent process takes over while a reload's lookup is held: the
    old process, draining, does not apply what it read once the name
    comes (the new one serves the services), and says why."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    rig = ReloadRig(tmp_path, [f"handover_socket = {run / 'agent.sock'}"])
    client = new = None
    try:
        port = rig.port
        old = rig.start_serving()
        # A session of the old process's keeps it draining, not gone.
        client = socket.create_connection((LOOPBACK, port), timeout=20)
        client.sendall(b"q")
        sp.wait_until(lambda: rig.api("GET", "/api/v1/sessions")[2]
                      ["sessions"], 20, "the old process's session")

        rig.write(f"backend.test:{rig.by.port}")
        t, first = rig.post_reload()
        assert rig.dns.asked.wait(30), "the reload never asked for the name"
        new = rig.start(rig.write(f"{rig.ns.outer}:{rig.bx.port}",
                                  tmp_path / "new.conf"), "new")
        old.wait_log("services withdrawn; draining")
        t.join(30)
        assert "err" in first, first   # its API went to the new process
        mark = old.mark()
        rig.dns.release()
        old.wait_log(["reload refused, configuration unchanged: the agent "
                      "hands over to a new process"], since=mark)
        assert not old.find("configuration reloaded")
        client.shutdown(socket.SHUT_WR)
        assert client.recv(100) == b"X" * 10
        assert old.wait(30) == 0, old.tail()
        assert sp.byte_session(port, b"q") == b"X" * 10
        assert new.alive()
    finally:
        if client is not None:
            client.close()
        if new is not None:
            new.stop()
        rig.close()


# --------------------------------------------------------------------------
# two backends, one agent

def two_sshds(tmp_path):
    """Two sshd backends that both accept the first one's client key."""
    s1 = sp.start_sshd(tmp_path / "sshd1")
    s2 = sp.start_sshd(tmp_path / "sshd2")
    auth = tmp_path / "sshd2" / "authorized_keys"
    auth.write_text(auth.read_text() +
                    (tmp_path / "sshd1" / "id_ed25519.pub").read_text())
    s2.key = s1.key
    s2.root = s1.root
    return s1, s2


def test_two_backends_health(tmp_path, pki, edge):
    s1, s2 = two_sshds(tmp_path)
    b1, b2 = f"{LOOPBACK}:{s1.port}", f"{LOOPBACK}:{s2.port}"
    port = sp.free_port()
    agent = sp.start_agent_ha(
        tmp_path, pki, [edge],
        {"sftp": svc(port, [s1.port, s2.port], health_interval=0.5)},
        "agent", wait_on=[edge])
    agent.proc.wait_log("health checks on 2 backends")

    # 1. both backends take sessions
    mark = agent.proc.mark()
    run_sessions(s1, port, tmp_path, 6, "h1")
    used = backends_of_joined(agent, mark)
    assert set(used) == {b1, b2}, used

    # 2. backend 2 stops: its check takes it out, every session succeeds
    #    on backend 1
    mark = agent.proc.mark()
    assert s2.proc.stop() == 0
    agent.proc.wait_log(f"service sftp: backend {b2} down", since=mark,
                        timeout=10)
    mark = agent.proc.mark()
    run_sessions(s1, port, tmp_path, 6, "h2")
    used = backends_of_joined(agent, mark)
    assert used == [b1] * 6, used
    assert not agent.proc.find(f"backend {b2}: Connection refused", mark), \
        "a session still dialled the backend marked down"

    # 3. backend 2 back: the check puts it back and it gets sessions again
    mark = agent.proc.mark()
    s2.proc = sp.restart_proc(s2.proc)
    agent.proc.wait_log(f"service sftp: backend {b2} up", since=mark,
                        timeout=20)
    mark = agent.proc.mark()
    run_sessions(s1, port, tmp_path, 6, "h3")
    used = backends_of_joined(agent, mark)
    assert b2 in used and b1 in used, used
    s2.proc.stop()
    s1.proc.stop()


def test_backend_refused_tried_on_next(tmp_path, pki, edge, sshd):
    """Without health checks, a session whose backend refuses is carried
    to the next one before the client sees anything."""
    dead = sp.free_port()               # nothing listens there
    port = sp.free_port()
    agent = sp.start_agent_ha(
        tmp_path, pki, [edge],
        {"sftp": svc(port, [dead, sshd.port], health_interval=0)},
        "agent", wait_on=[edge])
    mark = agent.proc.mark()
    run_sessions(sshd, port, tmp_path, 4, "r")
    assert agent.proc.find(f"backend {LOOPBACK}:{dead}: Connection refused",
                           mark), "the dead backend was never tried"
    assert backends_of_joined(agent, mark) == [f"{LOOPBACK}:{sshd.port}"] * 4
    assert not agent.proc.find("health checks on", 0)
    assert not agent.proc.find(" down", mark)


def test_reload_keeps_health_checks_and_priority(tmp_path, pki, edge):
    """A reload (SIGHUP) moves health checks and session counts to the new
    configuration: checks go on, a running session is untouched, and a
    new priority reaches the edge without closing the service."""
    s1, s2 = two_sshds(tmp_path)
    b2 = f"{LOOPBACK}:{s2.port}"
    port = sp.free_port()
    services = {"sftp": svc(port, [s1.port, s2.port], health_interval=0.5)}
    agent = sp.start_agent_ha(tmp_path, pki, [edge], services, "agent",
                              wait_on=[edge])
    slow, local, h = start_slow_get(s1, port, tmp_path, 2 * MiB, 4000,
                                    "slow-r")
    agent.proc.wait_log("joined", timeout=30)

    services["sftp"]["keys"]["priority"] = 5
    sp.write_agent_conf_ha(agent.conf, pki, [edge.addr], services, "agent")
    mark, emark = agent.proc.mark(), edge.proc.mark()
    agent.proc.signal(signal.SIGHUP)
    agent.proc.wait_log("configuration reloaded", since=mark, timeout=10)
    agent.proc.wait_log("health checks on 2 backends", since=mark)
    edge.proc.wait_log("agent=agent priority=5", since=emark, timeout=10)
    assert not edge.proc.find("service sftp closed", emark)

    mark = agent.proc.mark()
    assert s2.proc.stop() == 0
    agent.proc.wait_log(f"service sftp: backend {b2} down", since=mark,
                        timeout=10)
    run_sessions(s1, port, tmp_path, 3, "after-reload")
    finish_slow_get(slow, local, h)
    assert agent.proc.alive()
    assert agent.proc.stop() == 0
    s1.proc.stop()
