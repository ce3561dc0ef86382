"""Active-mode FTP through the edge (issue 21; docs/ftp.md).

Real vsftpd backends (port_enable=YES, connect_from_port_20=NO, on other
loopback addresses), real curl (--ftp-port: EPRT, then PORT) and lftp
(PORT) clients that listen for their data connections, all on loopback.
The edge's dialler connects to the clients, so these edges run with
--dial-deny none, except where the default list is what is tested.
"""

import ftplib
import concurrent.futures
import os
import re
import signal
import socket
import subprocess
import threading

import pytest

import fakeagent as fa
import sp
import spproto as p
from sp import LOOPBACK, MiB

BIG = 50 * MiB
ANY = ["--dial-deny", "none"]


class Gw:
    """edge + agent + one vsftpd for an FTP service with active = yes."""

    def __init__(self, tmp_path, pki, edge, link=None, active="yes",
                 tls=None):
        self.edge = edge
        base = sp.free_port_range(40)
        self.passive = (base, base + 39)
        cert = sp.make_cert(tmp_path) if tls else None
        self.backend = sp.start_vsftpd(tmp_path / "ftp0", host="127.0.0.2",
                                       tls=tls, cert=cert,
                                       pasv=self.passive if tls else None,
                                       pasv_address=LOOPBACK if tls else None)
        self.port = sp.free_port()
        self.agent = sp.start_ftp_agent(
            tmp_path, pki, edge, "ftp", self.port, [self.backend.addr],
            "ftp", self.passive, data_link=link,
            svc_extra=[f"active = {active}"])
        edge.proc.wait_log("ftp service ftp: passive ports")

    def url(self, path=""):
        return f"ftp://{LOOPBACK}:{self.port}/{path}"

    def curl(self, args, source=LOOPBACK, **kw):
        """curl in active mode from source (its data listener too)."""
        return sp.curl_ftp(["-u", "anonymous:x", "--interface", source,
                            "--ftp-port", source] + args, **kw)

    def lftp(self, commands, **kw):
        return sp.lftp(self.port, commands, passive=False, **kw)

    def ftp(self, source=LOOPBACK):
        """An ftplib session from source, logged in."""
        f = ftplib.FTP()
        f.connect(LOOPBACK, self.port, timeout=30,
                  source_address=(source, 0))
        f.login("anonymous", "x")
        return f


@pytest.fixture
def edge(tmp_path, pki):
    return sp.start_edge(tmp_path, pki, extra=ANY)


@pytest.mark.parametrize("link", ["tls", "plain"])
def test_active_transfer_listing_resume(tmp_path, pki, edge, link):
    """50 MiB up and down with curl (EPRT) and lftp (PORT), listings and
    resumed downloads, all in active mode: every data connection is one
    the edge dialled to the client, a session of its own tied to its
    control session, on the agent's data link."""
    gw = Gw(tmp_path, pki, edge, link=link)
    src, digest = sp.ftp_transfers(gw, tmp_path, gw.backend.up, BIG)
    # lftp uploads too (PORT), and what it put is whole.
    gw.lftp([f"put {src} -o up/l.bin"])
    assert sp.sha256_file(gw.backend.up / "l.bin") == digest

    log = gw.backend.log()
    assert "REST 20971520" in log and "REST 7340032" in log
    # The backend saw only PORTs naming the agent, never the client's.
    ports = re.findall(r'"(PORT|EPRT) ([^"]*)"', log)
    assert len(ports) >= 7, ports
    assert all(v == "PORT" and a.startswith("127,0,0,1,") for v, a in ports)
    # Every data connection: an active session at the edge and the agent.
    n = gw.edge.proc.count(["ftp-active control=", f"link={link}"])
    assert n >= 7, gw.edge.proc.tail()
    assert gw.agent.proc.count(["joined", "active data (control session"]) \
        == n
    closed = gw.agent.proc.find(re.compile(
        r"closed service=ftp .*active data \(control session \d+\).* "
        r"reason=(client|server)-closed"))
    assert len(closed) == n, gw.agent.proc.tail()
    assert not gw.edge.proc.find("ftp active request")   # none failed


def test_several_partners_at_once(tmp_path, pki, edge):
    """Eight partners, each from an address of its own, in active mode at
    the same time: each data connection goes to its own partner."""
    gw = Gw(tmp_path, pki, edge)
    files = {}
    for i in range(8):
        src = tmp_path / f"p{i}.bin"
        files[i] = (src, sp.random_file(src, 2 * MiB + i))

    def one(i):
        source = f"127.0.0.{20 + i}"
        src, _ = files[i]
        back = tmp_path / f"back{i}.bin"
        opts = ["-u", "anonymous:x", "--interface", source, "--ftp-port",
                source]
        argv = (opts + ["-T", src, gw.url(f"up/p{i}.bin"), "--next"] +
                opts + ["-l", gw.url("up/"), "--next"] +
                opts + ["-o", back, gw.url(f"up/p{i}.bin")])
        return i, sp.curl_ftp(argv, check=False), back

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(8)))
    for i, r, back in results:
        assert r.returncode == 0, f"partner {i}: {r.stdout}"
        assert f"p{i}.bin" in r.stdout.split()
        assert sp.sha256_file(back) == files[i][1]
        assert sp.sha256_file(gw.backend.up / f"p{i}.bin") == files[i][1]
        # three data connections, each to this partner's own address
        assert gw.edge.proc.count([f"client=127.0.0.{20 + i}:",
                                   "ftp-active control="]) == 3


def test_pasv_and_port_alternately(tmp_path, pki, edge):
    """One session that switches between passive and active mode for
    every transfer and listing."""
    gw = Gw(tmp_path, pki, edge)
    ftp = gw.ftp()
    blobs = {}
    for i in range(6):
        ftp.set_pasv(i % 2 == 0)
        data = bytes([i]) * (300 * 1024 + i)
        blobs[f"alt{i}.bin"] = data
        ftp.storbinary(f"STOR up/alt{i}.bin", _reader(data))
        ftp.set_pasv(i % 2 == 1)
        got = bytearray()
        ftp.retrbinary(f"RETR up/alt{i}.bin", got.extend)
        assert bytes(got) == data
        assert f"up/alt{i}.bin" in ftp.nlst("up")
    ftp.quit()
    for name, data in blobs.items():
        assert (gw.backend.up / name).read_bytes() == data
    log = gw.backend.log()
    assert log.count('"PASV"') >= 9 and log.count('"PORT 127,0,0,1,') >= 9
    assert gw.edge.proc.count("ftp-active control=") >= 9
    assert gw.edge.proc.count("ftp-data control=") >= 9


def test_replies_wait_for_the_data_connection(tmp_path, pki, edge):
    """A server connects before it replies 150 and 226; through the
    gateway its connection reaches the agent at once, the client's only
    after a round trip to the edge. The agent holds the server's replies
    until the edge has connected to the client, so a client that reads
    226 already has its data connection (here: waiting in its listener's
    queue, taken without blocking), as with a server of its own."""
    gw = Gw(tmp_path, pki, edge)
    for i in range(20):
        (gw.backend.up / f"f{i}").write_text("x")
    ftp = gw.ftp()
    for _ in range(10):
        ls = socket.create_server((LOOPBACK, 0))
        lport = ls.getsockname()[1]
        ftp.sendcmd(f"PORT 127,0,0,1,{lport >> 8},{lport & 0xff}")
        ftp.putcmd("NLST up")
        assert ftp.getresp().startswith("150")
        assert ftp.getresp().startswith("226")
        ls.setblocking(False)
        c, _ = ls.accept()          # BlockingIOError if it were not there
        c.setblocking(True)
        c.settimeout(20)
        got = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += b
        assert sorted(got.decode().split()) == \
            sorted(f"up/f{i}" for i in range(20)), got
        c.close()
        ls.close()
    ftp.quit()


class ReplyFirstServer(threading.Thread):
    """A backend that replies 150 to STOR and only then connects to the
    PORT it was given (RFC 959 allows either order), while the agent is
    stopped: woken, the agent reads the 150 and finds the connection in
    the same turn. It reads the upload to its end, then replies 226."""

    def __init__(self):
        super().__init__(daemon=True)
        self.ls = socket.create_server(("127.0.0.2", 0))
        self.addr = f"127.0.0.2:{self.ls.getsockname()[1]}"
        self.agent_pid = None
        self.got = None
        self.start()

    def run(self):
        c, _ = self.ls.accept()
        c.settimeout(60)
        rf = c.makefile("rb")
        c.sendall(b"220 reply-first\r\n")
        port = None
        for line in rf:
            verb, _, arg = line.decode().strip().partition(" ")
            if verb == "PORT":
                n = arg.split(",")
                port = (".".join(n[:4]), int(n[4]) * 256 + int(n[5]))
                c.sendall(b"200 ok\r\n")
            elif verb == "STOR":
                os.kill(self.agent_pid, signal.SIGSTOP)
                try:
                    c.sendall(b"150 go ahead\r\n")
                    d = socket.create_connection(port, timeout=60,
                                                 source_address=(
                                                     "127.0.0.2", 0))
                finally:
                    os.kill(self.agent_pid, signal.SIGCONT)
                got = b""
                while b := d.recv(65536):
                    got += b
                d.close()
                self.got = got
                c.sendall(b"226 done\r\n")
            elif verb == "QUIT":
                c.sendall(b"221 bye\r\n")
                break
            else:
                c.sendall(b"230 ok\r\n" if verb == "USER" else
                          b"200 ok\r\n")
        c.close()


def test_reply_read_with_the_connect(tmp_path, pki, edge):
    """The agent reads a 150 in the same turn as it takes the backend's
    data connection: the 150 waits for the edge's connection to the
    client, then goes on by itself, with no other byte from the backend
    to push it (in CI it waited for vsftpd's 421, two minutes later)."""
    server = ReplyFirstServer()
    port = sp.free_port()
    base = sp.free_port_range(4)
    agent = sp.start_ftp_agent(tmp_path, pki, edge, "ftp", port,
                               [server.addr], "ftp", (base, base + 3),
                               svc_extra=["active = yes"])
    server.agent_pid = agent.proc.target_pid()
    data = os.urandom(3 * MiB)
    f = ftplib.FTP()
    f.connect(LOOPBACK, port, timeout=30)
    f.login("anonymous", "x")
    f.set_pasv(False)
    assert f.storbinary("STOR x", _reader(data)).startswith("226")
    f.quit()
    assert server.got == data
    agent.proc.wait_log(["joined", "active data (control session"])


def _reader(data):
    import io
    return io.BytesIO(data)


def test_bounce_refused(tmp_path, pki, edge):
    """PORT and EPRT naming another address, or a port below 1024, are
    refused with a clear reply and a log line; the backend never sees
    them and the edge dials nothing. The session goes on, and a good PORT
    still works."""
    gw = Gw(tmp_path, pki, edge)
    victim = socket.create_server(("127.0.0.9", 0))
    victim.setblocking(False)
    vport = victim.getsockname()[1]
    hi, lo = vport >> 8, vport & 0xff
    ftp = gw.ftp()
    emark, amark = edge.proc.mark(), gw.agent.proc.mark()
    cases = [
        (f"PORT 127,0,0,9,{hi},{lo}", "504"),        # someone else
        (f"EPRT |1|127.0.0.9|{vport}|", "504"),
        (f"EPRT |2|::1|{vport}|", "504"),            # another family
        ("PORT 127,0,0,1,0,25", "504"),              # a service's port
        ("EPRT |1|127.0.0.1|1023|", "504"),
        ("PORT 127,0,0,1,0,0", "504"),
        ("PORT 127,0,0,1,4", "501"),                 # not the syntax
        ("PORT 127,0,0,1,4,1 ;x", "501"),
        ("EPRT |1|127.0.0.1|4000", "501"),
        ("EPRT |3|127.0.0.1|4000|", "522"),          # no such protocol
        ("LPRT 4,4,127,0,0,1,2,15,160", "502"),      # not supported
    ]
    for cmd, code in cases:
        with pytest.raises(ftplib.error_perm) as ei:
            ftp.sendcmd(cmd)
        assert str(ei.value).startswith(code), (cmd, ei.value)
    assert ftp.sendcmd("NOOP").startswith("200")
    gw.agent.proc.wait_log(["active mode to 127.0.0.9 port", "refused: not "
                            "the client's address"], since=amark)
    gw.agent.proc.wait_log(["active mode to 127.0.0.1 port 25 refused",
                            "below 1024"], since=amark)
    # A good one, after all that: the session is whole.
    ftp.set_pasv(False)
    assert ftp.nlst("up") == []
    ftp.quit()
    log = gw.backend.log()
    assert "127,0,0,9" not in log and "EPRT" not in log and "LPRT" not in log
    assert log.count('"PORT ') == 1, log
    with pytest.raises(BlockingIOError):
        victim.accept()
    victim.close()
    # Refused at the agent: the edge was never asked to dial.
    assert not edge.proc.find("ftp active request", since=emark)
    assert edge.proc.count("ftp-active control=", since=emark) == 1


def test_banned_client_gets_no_data_connection(tmp_path, pki, edge):
    """A ban without --cut leaves a control session running, but the
    edge opens no new connection toward the banned client: the transfer
    after a PORT gets the agent's 425 (not the server's 150 and 226) and
    the edge logs why; the client's data listener is never reached."""
    base = sp.free_port_range(40)
    backend = sp.start_vsftpd(tmp_path / "ftp0", host="127.0.0.2")
    port, admin = sp.free_port(), sp.free_port()
    token_file = tmp_path / "agent.token"
    sp.write_token(token_file, None)
    conf = sp.write_ftp_agent_conf(tmp_path / "agent.conf", pki, edge, "ftp",
                                   port, [backend.addr], "ftp",
                                   (base, base + 39),
                                   svc_extra=["active = yes"])
    with open(conf, "a") as f:
        f.write(f"\n[admin]\nlisten = {LOOPBACK}:{admin}\n"
                f"token_file = {token_file}\n")
    mark = edge.proc.mark()
    agent = sp.AdminAgent(sp.Proc("agent", [sp.AGENT_BIN, "--config", conf],
                                  tmp_path / "agent.log"),
                          conf, {}, admin, token_file.read_text().strip(),
                          token_file)
    edge.proc.wait_log(f"service ftp open on {LOOPBACK}:{port}", since=mark)
    ftp = ftplib.FTP()
    ftp.connect(LOOPBACK, port, timeout=30, source_address=("127.0.0.5", 0))
    ftp.login("anonymous", "x")
    ftp.set_pasv(False)
    assert ftp.nlst("up") == []                 # active mode works
    emark = edge.proc.mark()
    st, _, body = agent.api("POST", "/api/v1/bans?addr=127.0.0.5")
    assert st == 200, body
    edge.proc.wait_log("ban 127.0.0.5", since=emark)
    data = socket.create_server(("127.0.0.5", 0))
    data.setblocking(False)
    dport = data.getsockname()[1]
    assert ftp.sendcmd(f"PORT 127,0,0,5,{dport >> 8},{dport & 0xff}")\
        .startswith("200")
    ftp.putcmd("NLST up")
    codes = [ftp.getmultiline()]
    while codes[-1].startswith("1"):
        codes.append(ftp.getmultiline())
    # the agent's word for the transfer, whatever the server said (an
    # empty listing is 150 and 226 to vsftpd): no 150, a 425
    assert len(codes) == 1 and codes[0].startswith("425 The gateway could "
                                                   "not connect"), codes
    edge.proc.wait_log(["ftp active request", "refused", "the client is "
                        "banned"], since=emark)
    assert not edge.proc.find("ftp-active control=", since=emark)
    with pytest.raises(BlockingIOError):
        data.accept()
    data.close()
    ftp.close()


def test_active_off_by_default(tmp_path, pki, edge):
    """Without active = yes: 502, as before, and the edge says so."""
    gw = Gw(tmp_path, pki, edge, active="no")
    assert not edge.proc.find("active mode on")
    ftp = gw.ftp()
    for cmd in ("PORT 127,0,0,1,15,160", "EPRT |1|127.0.0.1|4000|"):
        with pytest.raises(ftplib.error_perm) as ei:
            ftp.sendcmd(cmd)
        assert str(ei.value).startswith("502 Active mode is not supported")
    ftp.quit()


def test_default_dial_deny_refuses_loopback_partner(tmp_path, pki):
    """The edge's default --dial-deny holds loopback: the dialler refuses
    to connect to a partner there, the agent resets the backend's data
    connection, and the client hears it from the server, at once."""
    edge = sp.start_edge(tmp_path, pki, tag="denyedge")
    gw = Gw(tmp_path, pki, edge)
    r = gw.curl(["-l", gw.url("up/")], check=False)
    assert r.returncode != 0
    edge.proc.wait_log(["ftp active request 1 refused agent=agent1",
                        f"127.0.0.1:", "in --dial-deny"])
    gw.agent.proc.wait_log(["no data connection to the client's port",
                            "the edge could not connect", "in --dial-deny"])
    assert not edge.proc.find("ftp-active control=")


def test_explicit_ftps_port_fails_clearly(tmp_path, pki, edge):
    """Explicit FTPS keeps the control channel encrypted end to end: the
    agent cannot see PORT there. A client in active mode gets the
    server's refusal at once (vsftpd's port_promiscuous=NO: the address
    is not the peer's, which is the agent's), not a hang; passive mode
    works in the same set-up."""
    gw = Gw(tmp_path, pki, edge, tls="explicit")
    cafile = gw.backend.cert
    base = ["--ssl-reqd", "--cacert", cafile, "--tls-max", "1.2"]
    # The client's address as the agent is not the server's peer: a
    # source of its own, as a partner elsewhere would have.
    r = gw.curl(base + ["-l", gw.url("up/")], source="127.0.0.5",
                check=False, timeout=120)
    assert r.returncode == 30, (r.returncode, r.stdout)   # PORT failed
    assert "Illegal PORT command" in gw.backend.log()
    gw.agent.proc.wait_log("ftp: control channel is TLS from here on")
    assert not gw.agent.proc.find("active mode to")
    assert not edge.proc.find("ftp-active")
    r = sp.curl_ftp(["-u", "anonymous:x"] + base + ["-l", gw.url("up/")])
    assert r.returncode == 0


def test_port20(tmp_path, pki):
    """With --active-ftp-port20 (the edge started as root, then --user)
    the data connections the edge dials come from port 20 of the address
    the partner reached; without it, from any port."""
    for flag in (True, False):
        extra = ANY + ["--user", "nobody"] + \
            (["--active-ftp-port20"] if flag else [])
        d = tmp_path / f"p20-{flag}"
        d.mkdir()
        edge = sp.start_edge(d, pki, extra=extra, tag=f"edge{flag}")
        gw = Gw(d, pki, edge)
        ls = socket.create_server((LOOPBACK, 0))
        lport = ls.getsockname()[1]
        ftp = gw.ftp()
        assert ftp.sendcmd(f"PORT 127,0,0,1,{lport >> 8},{lport & 0xff}") \
            .startswith("200")
        ftp.putcmd("LIST up")
        ls.settimeout(20)
        c, peer = ls.accept()
        assert peer[0] == LOOPBACK
        assert (peer[1] == 20) == flag, peer
        c.close()
        ls.close()
        assert ftp.getresp().startswith("150")
        ftp.voidresp()
        ftp.quit()
        edge.proc.stop()
        gw.agent.proc.stop()


# --------------------------------------------------------------------------
# the edge checks FTP_DIAL itself (a fake agent speaks the protocol)

def _fake_ftp_agent(edge, pki, name, port, passive, active=True):
    a = fa.FakeAgent(edge.control_port, pki.ca_crt, pki.agent_crt,
                     pki.agent_key, name=name)
    a.connect()
    extra = {"FTP_ACTIVE": 1} if active else {}
    st, text = a.svc_open(name, f"{LOOPBACK}:{port}", PROTOCOL="ftp",
                          PASV_MIN=passive, PASV_MAX=passive + 1, **extra)
    assert st == 0, text
    return a


def _dial(agent, request, ctl, port):
    """FTP_DIAL; the FTP_DIAL_FAIL for it, or None if none came in 3 s."""
    agent.send_frame(p.FTP_DIAL, REQUEST=request, FTP_CTL=ctl,
                     DEST_PORT=port)
    try:
        f = agent.recv(timeout=3, want=p.FTP_DIAL_FAIL)
    except TimeoutError:
        return None
    assert f["REQUEST"] == request
    return f


def test_edge_checks_ftp_dial(tmp_path, pki, edge):
    """The edge does not take an agent's word: FTP_DIAL must name a
    control session of that agent, of a service that declared active
    mode, and a port from 1024; the address is the partner's as the edge
    saw it. A good one becomes a session of kind FTP active on the
    agent's data link; the others get FTP_DIAL_FAIL, code 2, and the
    dialler is never asked."""
    ports = [sp.free_port() for _ in range(2)]
    pasv = sp.free_port_range(4)
    a = _fake_ftp_agent(edge, pki, "act1", ports[0], pasv)
    b = _fake_ftp_agent(edge, pki, "noact", ports[1], pasv + 2, active=False)
    la = a.mux_link()
    lb = b.mux_link()
    partner = socket.create_server((LOOPBACK, 0))
    pport = partner.getsockname()[1]
    ctls = []
    for port, link in ((ports[0], la), (ports[1], lb)):
        c = socket.create_connection((LOOPBACK, port), timeout=10)
        st = link.accept()
        assert st.open["SESS_KIND"] == p.SK_CLIENT
        ctls.append((c, st.open["SESSION"]))
    mark = edge.proc.mark()
    try:
        cases = [
            (a, 1, ctls[0][1], 80, "port below 1024"),
            (a, 2, ctls[0][1] + 1000, pport, "not an FTP control session"),
            (a, 3, ctls[1][1], pport, "not an FTP control session"),
            (b, 4, ctls[1][1], pport, "did not declare active mode"),
        ]
        for agent, req, ctl, port, why in cases:
            f = _dial(agent, req, ctl, port)
            assert f is not None and f["OUT_CODE"] == 2, (req, f)
            assert why in f["TEXT"], (req, f["TEXT"])
            edge.proc.wait_log([f"ftp active request {req} refused", why],
                               since=mark)
        assert not edge.proc.find("dialler:", since=mark)
        partner.settimeout(0.1)
        with pytest.raises(socket.timeout):
            partner.accept()
        # The good one: dialled to the partner's address, a session.
        assert _dial(a, 5, ctls[0][1], pport) is None
        partner.settimeout(10)
        d, peer = partner.accept()
        st = la.accept()
        o = st.open
        assert o["SESS_KIND"] == p.SK_FTP_ACTIVE and o["REQUEST"] == 5
        assert o["FTP_CTL"] == ctls[0][1] and o["SERVICE"] == "act1"
        assert (o["CLIENT_ADDR"], o["CLIENT_PORT"]) == (LOOPBACK, pport)
        assert o["LOCAL_ADDR"] == LOOPBACK and o["LOCAL_PORT"] == peer[1]
        st.send(b"listing")
        d.settimeout(10)
        assert d.recv(7) == b"listing"
        d.close()
        st.wait_fin()
        st.send_fin()
        edge.proc.wait_log(re.compile(
            rf"session \d+ new service=act1 client={LOOPBACK}:{pport} "
            rf"agent=act1 link=tls ftp-active control={ctls[0][1]} "
            r"request=5"))
    finally:
        for c, _ in ctls:
            c.close()
        partner.close()
        a.close()
        b.close()


def test_dial_over_the_edges_own_limit(tmp_path, pki):
    """A connection the dialler made that the edge's own limits refuse
    (here --max-per-ip 1, which the control session takes) is closed,
    and the agent hears FTP_DIAL_FAIL with the reason at once, rather
    than waiting out its 30 s."""
    edge = sp.start_edge(tmp_path, pki, extra=ANY + ["--max-per-ip", "1"])
    port = sp.free_port()
    a = _fake_ftp_agent(edge, pki, "act1", port, sp.free_port_range(2))
    la = a.mux_link()
    partner = socket.create_server((LOOPBACK, 0))
    c = socket.create_connection((LOOPBACK, port), timeout=10)
    try:
        ctl = la.accept().open["SESSION"]
        a.send_frame(p.FTP_DIAL, REQUEST=1, FTP_CTL=ctl,
                     DEST_PORT=partner.getsockname()[1])
        f = a.recv(timeout=30, want=p.FTP_DIAL_FAIL)
        assert f["REQUEST"] == 1 and f["OUT_CODE"] != 0, f
        assert f["TEXT"] == "too many sessions from that address", f
        edge.proc.wait_log(["ftp active request 1 failed",
                            "too many sessions from that address"])
        # The dialler did connect; the edge closed what it could not keep.
        partner.settimeout(30)
        d, _ = partner.accept()
        d.settimeout(30)
        assert d.recv(1) == b""
        d.close()
    finally:
        c.close()
        partner.close()
        a.close()


def test_ftp_ports_for_a_session_gone(tmp_path, pki, edge):
    """FTP_PORTS naming a session the edge does not hold (a client that
    connected and reset before the agent's frame arrived, or an agent
    that lies) is ignored with a log line; the edge runs on and still
    serves the service."""
    port = sp.free_port()
    pasv = sp.free_port_range(2)
    a = _fake_ftp_agent(edge, pki, "ftp1", port, pasv)
    try:
        la = a.mux_link()
        a.send_frame(p.FTP_PORTS, SESSION=424242, PASV_MIN=pasv,
                     PASV_MAX=pasv + 1)
        edge.proc.wait_log("FTP_PORTS for session 424242 ignored")
        assert edge.proc.alive()
        c = socket.create_connection((LOOPBACK, port), timeout=10)
        st = la.accept()
        assert st.open["SERVICE"] == "ftp1"
        c.close()
    finally:
        a.close()
