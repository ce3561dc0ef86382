"""source = client (issue 18): unmodified backends see the partner's own
address. Four network namespaces the test makes and always removes:

    partner 198.51.100.2        edge 198.51.100.1 | 203.0.113.1
    2001:db8:1::2                    2001:db8:1::1 | 2001:db8:2::1
                                                   |
    backend 192.0.2.2  <------  agent 192.0.2.1  | 203.0.113.2
    2001:db8:3::2               2001:db8:3::1    | 2001:db8:2::2

The backend's default route goes through the agent; in the agent's
namespace, `ip rule add from BACKEND ipproto tcp lookup 100` and a local
default route in table 100 deliver the backend's replies to the agent's
transparent sockets (docs/deployment.md). Real OpenSSH sshd, vsftpd and
nginx, unmodified, log the partner's address; with the routing or the
capability missing, the agent refuses the service with what is missing.
"""

import os
import random
import subprocess
import time
from pathlib import Path

import pytest

import sp

P4, P6 = "198.51.100.2", "2001:db8:1::2"
E4, E6 = "198.51.100.1", "2001:db8:1::1"
B4, B6 = "192.0.2.2", "2001:db8:3::2"
CTL4 = "203.0.113.1"


def ip(*args, check=True):
    return sp.run(["ip", *args], check=check, timeout=30)


class Topo:
    """partner, edge, agent and backend namespaces joined by veth pairs."""

    LINKS = (("p", "e", [(P4 + "/24", P6 + "/64")], [(E4 + "/24", E6 + "/64")]),
             ("e", "a", [(CTL4 + "/24", "2001:db8:2::1/64")],
              [("203.0.113.2/24", "2001:db8:2::2/64")]),
             ("a", "b", [("192.0.2.1/24", "2001:db8:3::1/64")],
              [(B4 + "/24", B6 + "/64")]))

    def __init__(self):
        tag = f"{os.getpid() % 10000}{random.randrange(1 << 12):03x}"
        self.ns = {k: f"sp18{k}{tag}" for k in "peab"}
        self.made = []
        try:
            for k in "peab":
                ip("netns", "add", self.ns[k])
                self.made.append(self.ns[k])
                self.run(k, "ip", "link", "set", "lo", "up")
            for x, y, ax, ay in self.LINKS:
                vx, vy = f"v{x}{y}{tag}"[:15], f"v{y}{x}{tag}"[:15]
                ip("link", "add", vx, "netns", self.ns[x], "type", "veth",
                   "peer", "name", vy, "netns", self.ns[y])
                for k, v, addrs in ((x, vx, ax), (y, vy, ay)):
                    for a4, a6 in addrs:
                        self.run(k, "ip", "addr", "add", a4, "dev", v)
                        self.run(k, "ip", "addr", "add", a6, "dev", v, "nodad")
                    self.run(k, "ip", "link", "set", v, "up")
            self.run("p", "ip", "route", "add", "default", "via", E4)
            self.run("p", "ip", "-6", "route", "add", "default", "via", E6)
            # The backend's way back to every partner is the agent.
            self.run("b", "ip", "route", "add", "default", "via", "192.0.2.1")
            self.run("b", "ip", "-6", "route", "add", "default", "via",
                     "2001:db8:3::1")
        except Exception:
            self.close()
            raise

    def run(self, k, *argv, check=True, timeout=60):
        return sp.run(["ip", "netns", "exec", self.ns[k], *argv], check=check,
                      timeout=timeout)

    def prefix(self, k):
        return ["ip", "netns", "exec", self.ns[k]]

    def reply_routing(self):
        """The agent's side: the backend's replies are delivered locally."""
        for fam, b, lo in (("-4", B4, "0.0.0.0/0"), ("-6", B6, "::/0")):
            self.run("a", "ip", fam, "rule", "add", "from", b, "ipproto",
                     "tcp", "lookup", "100")
            self.run("a", "ip", fam, "route", "add", "local", lo, "dev", "lo",
                     "table", "100")

    def close(self):
        for n in self.made:
            ip("netns", "del", n, check=False)
        self.made = []


@pytest.fixture
def topo():
    t = Topo()
    yield t
    # the fixture of _procs (conftest) stops the daemons first: they
    # were started in the test, after this fixture
    t.close()


@pytest.fixture(scope="module")
def pki18(tmp_path_factory):
    return sp.make_pki(tmp_path_factory.mktemp("pki18"), names=[CTL4])


def start_edge(topo, d, pki):
    return sp.start_edge_at(d, pki, CTL4, "edge", prefix=topo.prefix("e"))


def agent_conf(d, pki, edge, services, tag="agent"):
    """services: {name: (listen, [backend], {key: value})}."""
    out = ["[agent]", "name = agent18", f"edge = {edge.addr}",
           f"cert = {pki.agent_crt}", f"key = {pki.agent_key}",
           f"ca = {pki.ca_crt}", ""]
    for svc, (listen, backends, extra) in services.items():
        out += [f"[service {svc}]", f"listen = {listen}"]
        out += [f"backend = {b}" for b in backends]
        out += [f"{k} = {v}" for k, v in extra.items()] + [""]
    p = Path(d) / f"{tag}.conf"
    p.write_text("\n".join(out))
    return p


def start_agent(topo, d, pki, edge, services, wait=(), tag="agent",
                wrapper=()):
    conf = agent_conf(d, pki, edge, services, tag)
    mark = edge.proc.mark()
    proc = sp.Proc(tag, topo.prefix("a") + list(wrapper) +
                   [str(sp.AGENT_BIN), "--config", str(conf)],
                   Path(d) / f"{tag}.log")
    for svc in wait:
        sp._wait_edge_log_or_agent_death(edge, proc, f"service {svc} open on",
                                         mark)
    return proc


def start_sshd(topo, d):
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", exist_ok=True)
    hostkey, userkey = d / "hostkey", d / "userkey"
    for k in (hostkey, userkey):
        sp.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k])
    ak = d / "authorized_keys"
    ak.write_text((d / "userkey.pub").read_text())
    os.chmod(ak, 0o600)
    user = sp._username()
    cfg = d / "sshd_config"
    cfg.write_text("\n".join([
        f"ListenAddress {B4}:22", f"ListenAddress [{B6}]:22",
        f"HostKey {hostkey}", f"AuthorizedKeysFile {ak}", "StrictModes no",
        "UsePAM no", "PidFile none", "PermitRootLogin prohibit-password",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UseDNS no", "LogLevel INFO", f"AllowUsers {user}", ""]))
    proc = sp.Proc("sshd18", topo.prefix("b") + ["/usr/sbin/sshd", "-D", "-e",
                                                 "-f", str(cfg)],
                   d / "sshd.log")
    sp.wait_until(lambda: topo.run("b", "ss", "-tlnH", "sport", "= :22")
                  .stdout.count("LISTEN") >= 2 or (not proc.alive() and
                                                   sp._raise(proc)),
                  20, "sshd listening")
    proc.userkey, proc.user = userkey, user
    return proc


def ssh_from_partner(topo, sshd, host, port, extra=(), check=True):
    argv = ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20",
            "-i", str(sshd.userkey), "-p", str(port), *extra,
            f"{sshd.user}@{host}", "echo", "sallyport-ok"]
    r = topo.run("p", *argv, check=False, timeout=60)
    if check:
        assert r.returncode == 0 and "sallyport-ok" in r.stdout, r.stdout
    return r


# ---------------------------------------------------------------------------

def test_sshd_sees_the_partner_v4_and_v6(tmp_path, topo, pki18):
    topo.reply_routing()
    sshd = start_sshd(topo, tmp_path / "sshd")
    edge = start_edge(topo, tmp_path, pki18)
    agent = start_agent(topo, tmp_path, pki18, edge, {
        "ssh4": (f"{E4}:2222", [f"{B4}:22"], {"source": "client"}),
        "ssh6": (f"[{E6}]:2222", [f"[{B6}]:22"], {"source": "client"}),
    }, wait=("ssh4", "ssh6"))
    agent.wait_log("service ssh4: backends dialled from the partner's address")
    ssh_from_partner(topo, sshd, E4, 2222)
    sshd.wait_log(f"Accepted publickey for {sshd.user} from {P4} port")
    ssh_from_partner(topo, sshd, E6, 2222)
    sshd.wait_log(f"Accepted publickey for {sshd.user} from {P6} port")
    # Not the agent's address, ever.
    assert not sshd.find("from 192.0.2.1 port")
    assert not sshd.find("from 2001:db8:3::1 port")


def test_client_port_keeps_the_partners_port(tmp_path, topo, pki18):
    topo.reply_routing()
    sshd = start_sshd(topo, tmp_path / "sshd")
    edge = start_edge(topo, tmp_path, pki18)
    start_agent(topo, tmp_path, pki18, edge, {
        "ssh4": (f"{E4}:2222", [f"{B4}:22"], {"source": "client-port"}),
    }, wait=("ssh4",))
    ssh_from_partner(topo, sshd, E4, 2222, extra=("-b", P4, "-o",
                                                  "BindAddress=" + P4))
    line = sshd.wait_log(f"Accepted publickey for {sshd.user} from {P4} port")
    port = int(line.split(" port ")[1].split()[0])
    # The edge logged the partner's own port for that session.
    assert edge.proc.find(f"client={P4}:{port}"), (port, edge.proc.tail())


def test_vsftpd_sees_the_partner_on_control_and_data(tmp_path, topo, pki18):
    topo.reply_routing()
    d = tmp_path / "ftp"
    root = d / "root"
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    data = os.urandom(300 * 1024)
    (root / "file.bin").write_bytes(data)
    empty = d / "empty"
    empty.mkdir()
    log = d / "vsftpd.log"
    conf = d / "vsftpd.conf"
    conf.write_text("\n".join([
        "listen=YES", f"listen_address={B4}", "listen_port=21",
        "background=NO", "anonymous_enable=YES", "local_enable=NO",
        f"anon_root={root}", "no_anon_password=YES", "pasv_enable=YES",
        "pasv_min_port=30000", "pasv_max_port=30009", "seccomp_sandbox=NO",
        f"secure_chroot_dir={empty}", f"vsftpd_log_file={log}",
        "xferlog_enable=YES", "dual_log_enable=YES", "log_ftp_protocol=YES",
        # the default, said out loud: a data connection must come from the
        # control connection's address
        "pasv_promiscuous=NO", ""]))
    vs = sp.Proc("vsftpd18", topo.prefix("b") + ["/usr/sbin/vsftpd", str(conf)],
                 d / "vsftpd.out")
    sp.wait_until(lambda: "LISTEN" in topo.run(
        "b", "ss", "-tlnH", "sport", "= :21").stdout, 20, "vsftpd")
    edge = start_edge(topo, tmp_path, pki18)
    start_agent(topo, tmp_path, pki18, edge, {
        "ftp": (f"{E4}:2121", [f"{B4}:21"], {
            "source": "client", "protocol": "ftp",
            "passive_ports": "30000-30009", "public_address": E4}),
    }, wait=("ftp",))
    out = tmp_path / "got.bin"
    for mode in ("--ftp-pasv", "--disable-epsv"):
        r = topo.run("p", "curl", "-sS", "--max-time", "60", mode,
                     f"ftp://{E4}:2121/file.bin", "-o", str(out), check=False)
        assert r.returncode == 0, r.stdout
        assert out.read_bytes() == data
    text = log.read_text()
    assert f'CONNECT: Client "{P4}"' in text, text[-2000:]
    assert f'OK DOWNLOAD: Client "{P4}", "/file.bin"' in text, text[-2000:]
    assert "192.0.2.1" not in text
    vs.stop()


def test_nginx_remote_addr_is_the_partner(tmp_path, topo, pki18):
    topo.reply_routing()
    d = tmp_path / "nginx"
    for sub in ("html", "tmp"):
        (d / sub).mkdir(parents=True)
    (d / "html" / "hello").write_text("hello from behind sallyport\n")
    access = d / "access.log"
    conf = d / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr info;
events {{ worker_connections 64; }}
http {{
    log_format who '$remote_addr $request_uri';
    access_log {access} who;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen {B4}:80;
        listen [{B6}]:80;
        root {d}/html;
    }}
}}
""")
    sp.Proc("nginx18", topo.prefix("b") + ["/usr/sbin/nginx", "-e", "stderr",
                                           "-c", str(conf), "-p", str(d), "-g",
                                           "daemon off;"], d / "nginx.out")
    sp.wait_until(lambda: "LISTEN" in topo.run(
        "b", "ss", "-tlnH", "sport", "= :80").stdout, 20, "nginx")
    edge = start_edge(topo, tmp_path, pki18)
    start_agent(topo, tmp_path, pki18, edge, {
        "web": (f"{E4}:8080", [f"{B4}:80"], {"source": "client"}),
        "web6": (f"[{E6}]:8080", [f"[{B6}]:80"], {"source": "client"}),
    }, wait=("web", "web6"))
    for url in (f"http://{E4}:8080/hello?v4", f"http://[{E6}]:8080/hello?v6"):
        r = topo.run("p", "curl", "-sS", "--max-time", "30", url, check=False)
        assert r.stdout == "hello from behind sallyport\n", r.stdout
    lines = access.read_text().splitlines()
    assert f"{P4} /hello?v4" in lines, lines
    assert f"{P6} /hello?v6" in lines, lines


def test_missing_routing_refuses_the_service(tmp_path, topo, pki18):
    """No ip rule / local route in the agent's namespace: the service with
    source = client is refused at start-up, saying what is missing; the
    agent's other service runs."""
    start_sshd(topo, tmp_path / "sshd")
    edge = start_edge(topo, tmp_path, pki18)
    agent = start_agent(topo, tmp_path, pki18, edge, {
        "ssh4": (f"{E4}:2222", [f"{B4}:22"], {"source": "client"}),
        "plain": (f"{E4}:2223", [f"{B4}:22"], {}),
    }, wait=("plain",))
    line = agent.wait_log("service ssh4 refused (source = client)")
    assert "missing the local route (ip route add local 0.0.0.0/0 dev lo " \
        "table 100)" in line, line
    assert f"ip rule add from {B4} ipproto tcp sport 22 lookup 100" in line
    assert not edge.proc.find("service ssh4 open")
    # Partners are refused at once (no listener), not left hanging.
    assert topo.run("p", "nc", "-z", "-w", "5", E4, "2222",
                    check=False).returncode != 0
    assert topo.run("p", "nc", "-z", "-w", "5", E4, "2223",
                    check=False).returncode == 0

    # With the local route but no rule, the message names the rule.
    topo.run("a", "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo",
             "table", "100")
    r = topo.run("a", str(sp.AGENT_BIN), "--check", "--config",
                 str(tmp_path / "agent.conf"), check=False)
    assert "a table has the local route, but no ip rule sends its replies " \
        "there" in r.stdout, r.stdout


def test_socket_match_mark(tmp_path, topo, pki18):
    """The other routing: fwmark rule and local route; without the
    socket match loaded the agent says that is what is missing."""
    topo.run("a", "ip", "rule", "add", "fwmark", "0x1", "lookup", "100")
    topo.run("a", "ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo",
             "table", "100")
    edge = start_edge(topo, tmp_path, pki18)
    conf = agent_conf(tmp_path, pki18, edge, {
        "ssh4": (f"{E4}:2222", [f"{B4}:22"], {"source": "client"})})
    r = topo.run("a", "iptables", "-t", "mangle", "-A", "PREROUTING", "-p",
                 "tcp", "-m", "socket", "--transparent", "-j", "MARK",
                 "--set-mark", "0x1", check=False)
    r2 = topo.run("a", str(sp.AGENT_BIN), "--check", "--config", str(conf),
                  check=False)
    if r.returncode == 0:
        assert "refused" not in r2.stdout, r2.stdout
    else:
        # No socket match in this kernel: the agent says so.
        assert "no socket match is loaded" in r2.stdout, r2.stdout


def test_missing_capability_refuses_the_service(tmp_path, topo, pki18):
    topo.reply_routing()
    edge = start_edge(topo, tmp_path, pki18)
    agent = start_agent(topo, tmp_path, pki18, edge, {
        "ssh4": (f"{E4}:2222", [f"{B4}:22"], {"source": "client"}),
        "plain": (f"{E4}:2223", [f"{B4}:22"], {}),
    }, wait=("plain",), wrapper=[
        "setpriv", "--bounding-set", "-net_admin,-net_raw",
        "--inh-caps", "-net_admin,-net_raw", "--"])
    line = agent.wait_log("service ssh4 refused (source = client)")
    assert "IP_TRANSPARENT: Operation not permitted: the agent needs the " \
        "capability CAP_NET_ADMIN" in line, line


def test_hostile_client_address_is_not_used(tmp_path, topo, pki18):
    """A client address that must never be a source (here a private one,
    in the default source_deny, as a compromised edge could claim) is
    refused, not dialled. A partner in a documentation range passes."""
    topo.reply_routing()
    # The partner gets a second address, 10.9.9.9, routed through the edge.
    topo.run("p", "ip", "addr", "add", "10.9.9.9/32", "dev", "lo")
    topo.run("e", "ip", "route", "add", "10.9.9.9/32", "via", P4)
    sshd = start_sshd(topo, tmp_path / "sshd")
    edge = start_edge(topo, tmp_path, pki18)
    agent = start_agent(topo, tmp_path, pki18, edge, {
        "ssh4": (f"{E4}:2222", [f"{B4}:22"], {"source": "client"}),
    }, wait=("ssh4",))
    r = ssh_from_partner(topo, sshd, E4, 2222, extra=("-b", "10.9.9.9"),
                         check=False)
    assert r.returncode != 0
    agent.wait_log("client address 10.9.9.9 may not be a source")
    assert not sshd.find("from 10.9.9.9")
    ssh_from_partner(topo, sshd, E4, 2222)
