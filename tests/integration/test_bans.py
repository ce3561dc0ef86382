"""Bans (issue 18): decided inside (sallyportctl ban/unban/bans, the admin
API), enforced at every edge at accept, pushed to an edge that connects
later, expiring by themselves, kept across an agent restart only with
ban_file. All traffic stays on 127/8: partners are 127.0.0.x source
addresses.
"""

import subprocess
import time

import pytest

import sp
from sp import LOOPBACK


def ctl(agent, *args, check=True):
    argv = [sp.CTL_BIN, *args, "--url", agent.url,
            "--token-file", agent.token_file]
    r = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    if check:
        assert r.returncode == 0, (argv, r.returncode, r.stdout, r.stderr)
    return r


def served(src, port):
    """True if a client from src reaches the backend (its greeting)."""
    s = sp.greeted_from(src, port, timeout=10)
    if s is None:
        return False
    s.close()
    return True


def edge_stat(agent, name):
    """An edge counter as the agent's /metrics publishes it, or None."""
    m = sp.parse_metrics(agent.metrics())
    for (n, labels), v in m.items():
        if n == f"sallyport_edge_{name}":
            return v
    return None


@pytest.fixture
def gw(tmp_path, pki):
    backend = sp.CountServer()
    edge = sp.start_edge(tmp_path, pki)
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"svc": (port, [backend.port])})
    yield edge, agent, port, backend
    backend.close()


def test_ban_unban_with_ctl(gw):
    edge, agent, port, backend = gw
    assert served("127.0.0.2", port)
    mark = edge.proc.mark()
    r = ctl(agent, "ban", "127.0.0.2", "--for", "1h", "--reason",
            "ssh brute force")
    assert "127.0.0.2 banned for 1h" in r.stdout
    edge.proc.wait_log("agent agent1: ban 127.0.0.2", since=mark)
    before = backend.accepted
    assert not served("127.0.0.2", port)
    assert served("127.0.0.3", port), "another partner must still pass"
    edge.proc.wait_log("limit banned hit", since=mark)
    # The refused client never reached the backend.
    assert backend.accepted == before + 1
    sp.wait_until(lambda: (edge_stat(agent, "limit_banned_total") or 0) >= 1,
                  20, "limit_banned_total in the agent's metrics")
    assert edge_stat(agent, "bans") == 1
    m = sp.parse_metrics(agent.metrics())
    assert sp.metric(m, "sallyport_bans") == 1

    r = ctl(agent, "bans")
    line = [ln for ln in r.stdout.splitlines() if "127.0.0.2" in ln]
    assert line and "ssh brute force" in line[0], r.stdout
    left = int(line[0].split()[1].rstrip("s"))
    assert 3500 < left <= 3600

    mark = edge.proc.mark()
    r = ctl(agent, "unban", "127.0.0.2")
    assert "ban of 127.0.0.2 lifted" in r.stdout
    edge.proc.wait_log("ban lifted: 127.0.0.2", since=mark)
    assert served("127.0.0.2", port)
    assert "127.0.0.2" not in ctl(agent, "bans").stdout


def test_ban_range_and_api(gw):
    edge, agent, port, backend = gw
    mark = edge.proc.mark()
    st, _, body = agent.api("POST", "/api/v1/bans?addr=127.0.0.4/30&"
                            "reason=range&for=10m")
    assert st == 200, body
    assert body["banned"] == "127.0.0.4/30" and body["for"] == 600
    assert body["saved"] is None            # no ban_file
    edge.proc.wait_log("agent agent1: ban 127.0.0.4/30", since=mark)
    for a in ("127.0.0.4", "127.0.0.5", "127.0.0.7"):
        assert not served(a, port), a
    assert served("127.0.0.8", port)
    assert served("127.0.0.3", port)

    st, _, body = agent.api("GET", "/api/v1/bans")
    assert st == 200
    (b,) = body["bans"]
    assert b["addr"] == "127.0.0.4/30" and b["reason"] == "range"
    assert 590 <= b["left"] <= 600 and b["expires"] > time.time()

    # Errors: a clear answer, nothing changed.
    for q, want in (("addr=127.0.0.5/30", 400), ("addr=nonsense", 400),
                    ("addr=127.0.0.9&for=5x", 400), ("addr=127.0.0.9&for=0", 400),
                    ("addr=127.0.0.9&cut=2", 400), ("", 400)):
        st, _, body = agent.api("POST", f"/api/v1/bans?{q}")
        assert st == want, (q, st, body)
        assert "error" in body
    st, _, body = agent.api("DELETE", "/api/v1/bans?addr=127.0.0.9")
    assert st == 404, body
    st, _, _ = agent.api("PUT", "/api/v1/bans?addr=127.0.0.9")
    assert st == 405
    st, _, _ = agent.api("GET", "/api/v1/bans", auth=False)
    assert st == 401

    st, _, body = agent.api("DELETE", "/api/v1/bans?addr=127.0.0.4/30")
    assert st == 200 and body["lifted"] == "127.0.0.4/30"
    sp.wait_until(lambda: served("127.0.0.5", port), 10, "the range lifted")


def test_ctl_usage_errors(gw):
    _, agent, _, _ = gw
    for args in (("ban",), ("ban", "300.1.2.3"), ("ban", "10.0.0.1/8"),
                 ("ban", "10.0.0.1", "--for", "1w"),
                 ("ban", "10.0.0.1", "--for", "-5"),
                 ("ban", "10.0.0.1", "--reason", "x" * 201),
                 ("unban", "10.0.0.1", "--for", "5"),
                 ("ban", "10.0.0.1", "10.0.0.2")):
        r = ctl(agent, *args, check=False)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
    st, _, body = agent.api("GET", "/api/v1/bans")
    assert body["bans"] == []


def test_ban_expires_by_itself(gw):
    """The time is the point: a 2 s ban must lift without anyone asking
    (the bound is generous)."""
    edge, agent, port, _ = gw
    mark = edge.proc.mark()
    ctl(agent, "ban", "127.0.0.2", "--for", "2s")
    edge.proc.wait_log("agent agent1: ban 127.0.0.2", since=mark)
    assert not served("127.0.0.2", port)
    sp.wait_until(lambda: served("127.0.0.2", port), 20, "the ban to expire")
    agent.proc.wait_log("ban 127.0.0.2 expired")
    assert ctl(agent, "bans").stdout.count("127.0.0.2") == 0


def test_ban_cut_ends_running_sessions(gw):
    edge, agent, port, _ = gw
    s = sp.greeted_from("127.0.0.2", port)
    other = sp.greeted_from("127.0.0.3", port)
    assert s is not None and other is not None
    mark, amark = edge.proc.mark(), agent.proc.mark()
    ctl(agent, "ban", "127.0.0.2", "--cut")
    edge.proc.wait_log("reason=killed", since=mark)
    # The agent cuts its own side too (an edge process that handed over
    # is not told), and only the banned partner's.
    agent.proc.wait_log(["killed: client banned"], since=amark)
    assert agent.proc.count("killed: client banned", since=amark) == 1
    assert sp.wait_closed(s, 10), "the banned partner's session goes on"
    # The other partner's session is untouched: it still relays.
    other.sendall(b"x" * 1000)
    other.shutdown(1)
    sp.wait_until(lambda: any(t == 1000 for _, t in sp_conns(gw)), 10,
                  "the other session's bytes at the backend")
    other.close()
    s.close()


def sp_conns(gw):
    return gw[3].conns()


def test_ban_reaches_an_edge_that_connects_later(tmp_path, pki):
    backend = sp.CountServer()
    edge = sp.start_edge(tmp_path, pki)
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"svc": (port, [backend.port])})
    ctl(agent, "ban", "127.0.0.2", "--for", "1h")
    ctl(agent, "ban", "127.0.0.64/26")
    # The edge restarts (a new process with nothing in memory); the agent
    # connects again and pushes its list before its services.
    edge.proc.stop()
    mark = edge.proc.mark()
    edge.proc = sp.restart_proc(edge.proc, "control listening")
    edge.proc.wait_log("agent agent1: bans in sync", since=mark, timeout=40)
    edge.proc.wait_log(f"service svc open on {LOOPBACK}:{port}", since=mark)
    assert edge.proc.find("agent agent1: ban 2 ranges", since=mark)
    assert not served("127.0.0.2", port)
    assert not served("127.0.0.100", port)
    assert served("127.0.0.3", port)
    backend.close()


def with_ban_file(tmp_path, pki, lines):
    """An edge and an agent whose ban_file holds lines when it starts:
    (edge, agent, service port, backend)."""
    bans = tmp_path / "bans"
    bans.write_text("".join(ln + "\n" for ln in lines))
    backend = sp.CountServer()
    edge = sp.start_edge(tmp_path, pki)
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"svc": (port, [backend.port])},
                                 agent_extra=[f"ban_file = {bans}"])
    agent.proc.wait_log(f"{len(lines)} bans in force")
    return edge, agent, port, backend


def test_many_bans_reach_a_new_edge(tmp_path, pki):
    """A long list goes out in frames of 1024 as the control connection
    drains: 5000 bans (from a ban_file) all arrive, the last one too."""
    now = int(time.time())
    lines = [f"127.1.{i // 250}.{i % 250 + 1} 0 {now} bulk" for i in range(5000)]
    edge, agent, port, backend = with_ban_file(tmp_path, pki, lines)
    edge.proc.wait_log("agent agent1: bans in sync (0 lifted meanwhile; "
                       "5000 bans held)")
    assert not served("127.1.19.250", port)
    assert not served("127.1.0.1", port)
    assert served("127.1.20.1", port)
    backend.close()


def test_ban_file_keeps_bans_across_a_restart(tmp_path, pki):
    bans = tmp_path / "bans"
    backend = sp.CountServer()
    edge = sp.start_edge(tmp_path, pki)
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"svc": (port, [backend.port])},
                                 agent_extra=[f"ban_file = {bans}"])
    st, _, body = agent.api("POST", "/api/v1/bans?addr=127.0.0.2&for=1h&"
                            "reason=kept")
    assert st == 200 and body["saved"] is True
    st, _, body = agent.api("POST", "/api/v1/bans?addr=127.0.0.3")
    assert body["saved"] is True
    text = bans.read_text()
    assert "127.0.0.2 " in text and " kept" in text and "127.0.0.3 0 " in text
    assert oct(bans.stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.glob("bans.tmp"))

    agent.proc.stop()
    mark = edge.proc.mark()
    agent.proc = sp.restart_proc(agent.proc, "2 bans in force")
    edge.proc.wait_log("agent agent1: bans in sync (0 lifted", since=mark)
    assert not served("127.0.0.2", port)
    assert not served("127.0.0.3", port)
    st, _, body = agent.api("GET", "/api/v1/bans")
    assert sorted(b["addr"] for b in body["bans"]) == ["127.0.0.2", "127.0.0.3"]
    assert [b["reason"] for b in body["bans"] if b["addr"] == "127.0.0.2"] == ["kept"]
    backend.close()


def test_ban_file_until_far_off_is_held_to_the_longest_ban(tmp_path, pki):
    """A hand-edited UNTIL more than 2^32 seconds away would wrap in the
    edges' 32-bit seconds (here to about a minute): the agent holds it
    to the longest ban a DURATION may give (10 years)."""
    now = int(time.time())
    edge, agent, port, backend = with_ban_file(
        tmp_path, pki, [f"127.0.0.2 {now + 2**32 + 60} {now} far"])
    edge.proc.wait_log("agent agent1: bans in sync")
    st, _, body = agent.api("GET", "/api/v1/bans")
    assert st == 200 and len(body["bans"]) == 1, body
    ten_years = 10 * 366 * 86400
    assert now + ten_years - 5 <= body["bans"][0]["expires"], body
    assert body["bans"][0]["expires"] <= int(time.time()) + ten_years, body
    assert not served("127.0.0.2", port)
    assert served("127.0.0.3", port)
    backend.close()


def test_without_ban_file_a_restart_lifts_the_bans(tmp_path, pki):
    """Bans in memory only: an agent restart forgets them, and the edge,
    which kept them while the agent was away, drops them at BAN_SYNC."""
    backend = sp.CountServer()
    edge = sp.start_edge(tmp_path, pki)
    port = sp.free_port()
    agent = sp.start_agent_admin(tmp_path, pki, edge,
                                 {"svc": (port, [backend.port])})
    mark = edge.proc.mark()
    ctl(agent, "ban", "127.0.0.2")
    edge.proc.wait_log("agent agent1: ban 127.0.0.2 until lifted", since=mark)
    agent.proc.stop()
    edge.proc.wait_log("agent agent1 lost", since=mark)
    mark = edge.proc.mark()
    agent.proc = sp.restart_proc(agent.proc)
    edge.proc.wait_log("agent agent1: bans in sync (1 lifted meanwhile",
                       since=mark)
    sp.wait_until(lambda: served("127.0.0.2", port), 20, "the ban lifted")
    backend.close()


def test_bad_ban_file_stops_the_agent(tmp_path, pki):
    bans = tmp_path / "bans"
    bans.write_text("# comment\n127.0.0.2 0 0 ok\n127.0.0.3/8 0 0 bad\n")
    conf = sp.write_agent_conf(tmp_path / "a.conf", pki, ["127.0.0.1:9"],
                               {"s": (sp.free_port(), [9])},
                               agent_extra=[f"ban_file = {bans}"])
    r = sp.run([sp.AGENT_BIN, "--config", conf], check=False, timeout=20)
    assert r.returncode != 0
    assert f"ban_file {bans}:3: address has bits set" in r.stdout, r.stdout


def test_bans_of_several_agents(tmp_path, pki):
    """Each agent's bans are its own at the edge: an address is refused
    while any agent bans it; an agent lifts only its own; an agent's bans
    stay while it is away."""
    backend = sp.CountServer()
    edge = sp.start_edge(tmp_path, pki)
    p1, p2 = sp.free_port(), sp.free_port()
    a1 = sp.start_agent_admin(tmp_path, pki, edge, {"one": (p1, [backend.port])},
                              name="agent1", tag="agent1")
    a2 = sp.start_agent_admin(tmp_path, pki, edge, {"two": (p2, [backend.port])},
                              name="agent2", tag="agent2")
    mark = edge.proc.mark()
    ctl(a1, "ban", "127.0.0.2")
    ctl(a2, "ban", "127.0.0.2")
    ctl(a2, "ban", "127.0.0.3")
    edge.proc.wait_log("agent agent2: ban 127.0.0.3", since=mark)
    # Bans hold on every service of the edge, whoever pushed them.
    for port in (p1, p2):
        assert not served("127.0.0.2", port)
        assert not served("127.0.0.3", port)
    mark = edge.proc.mark()
    ctl(a2, "unban", "127.0.0.2")
    ctl(a2, "unban", "127.0.0.3")
    edge.proc.wait_log("agent agent2: ban lifted: 127.0.0.3", since=mark)
    assert served("127.0.0.3", p1)
    assert not served("127.0.0.2", p1), "agent1's ban must hold"
    # agent1 goes away: its ban stays, on agent2's service too.
    mark = edge.proc.mark()
    a1.proc.stop()
    edge.proc.wait_log("agent agent1 lost", since=mark)
    assert not served("127.0.0.2", p2)
    assert served("127.0.0.3", p2)
    backend.close()
