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


def agent_conf(d, pki, edge, services, tag="agent", admin=None):
    """services: {name: (listen, [backend], {key: value})}; admin:
    (listen, token_file) for an [admin] section."""
    out = ["[agent]", "name = agent18", f"edge = {edge.addr}",
           f"cert = {pki.agent_crt}", f"key = {pki.agent_key}",
           f"ca = {pki.ca_crt}", ""]
    if admin:
        out += ["[admin]", f"listen = {admin[0]}", f"token_file = {admin[1]}",
                ""]
    for svc, (listen, backends, extra) in services.items():
        out += [f"[service {svc}]", f"listen = {listen}"]
        out += [f"backend = {b}" for b in backends]
        out += [f"{k} = {v}" for k, v in extra.items()] + [""]
    p = Path(d) / f"{tag}.conf"
    p.write_text("\n".join(out))
    return p


def start_agent(topo, d, pki, edge, services, wait=(), tag="agent",
                wrapper=(), admin=None):
    conf = agent_conf(d, pki, edge, services, tag, admin)
    mark = edge.proc.mark()
    proc = sp.Proc(tag, topo.prefix("a") + list(wrapper) +
                   [str(sp.AGENT_BIN), "--config", str(conf)],
                   Path(d) / f"{tag}.log")
    for svc in wait:
        sp._wait_edge_log_or_agent_death(edge, proc, f"service {svc} open on",
                                         mark)
    return proc


def start_sshd(topo, d, syslog=None):
    """sshd in the backend namespace. syslog: a file to which its lines go
    with a syslog-style prefix (date, host, sshd[pid]:), standing in for
    syslog, as fail2ban's sshd filter expects them."""
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
        "UseDNS no", "LogLevel INFO", "Subsystem sftp internal-sftp",
        "PerSourcePenalties no" if sshd_has_penalties() else "", ""]))
    argv = topo.prefix("b") + ["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)]
    if syslog:
        stamp = ("import sys, time\n"
                 "for ln in sys.stdin:\n"
                 "    sys.stdout.write(time.strftime('%Y-%m-%d %H:%M:%S') +"
                 " ' backend sshd[1]: ' + ln)\n"
                 "    sys.stdout.flush()\n")
        # A signal to sh alone would leave the pipeline running after
        # the test: sh passes SIGTERM on to its whole process group.
        argv = ["sh", "-c", "trap 'trap - TERM; kill 0' TERM; " +
                " ".join(f"'{a}'" for a in argv) +
                f" 2>&1 | /usr/bin/python3 -u -c \"{stamp}\" | tee -a "
                f"'{syslog}' & wait"]
    proc = sp.Proc("sshd18", argv, d / "sshd.log")
    sp.wait_until(lambda: topo.run("b", "ss", "-tlnH", "sport", "= :22")
                  .stdout.count("LISTEN") >= 2 or (not proc.alive() and
                                                   sp._raise(proc)),
                  20, "sshd listening")
    proc.userkey, proc.user = userkey, user
    return proc


def sshd_has_penalties():
    """OpenSSH 9.8+ penalises sources itself: off, so that only fail2ban
    and sallyport decide here."""
    r = sp.run(["/usr/sbin/sshd", "-G", "-f", "/dev/null", "-o",
                "PerSourcePenalties=no"], check=False)
    return r.returncode == 0


def ssh_from_partner(topo, sshd, host, port, extra=(), check=True,
                     user=None):
    argv = ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20",
            "-i", str(sshd.userkey), "-p", str(port), *extra,
            f"{user or sshd.user}@{host}", "echo", "sallyport-ok"]
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


# ---------------------------------------------------------------------------
# fail2ban (Debian's package) with the shipped action

F2B_FILTERS = Path("/etc/fail2ban/filter.d")
ACTION = Path(__file__).resolve().parents[2] / "dist/fail2ban/action.d/sallyport.conf"


def start_fail2ban(topo, d, logpath, url, token_file, bantime):
    """A fail2ban-server of the test's own (private configuration
    directory, socket, pid file; not the system service) in the backend
    namespace, watching sshd's log with the shipped sallyport action."""
    d = Path(d)
    conf = d / "f2b"
    (conf / "filter.d").mkdir(parents=True)
    (conf / "action.d").mkdir()
    for f in ("sshd.conf", "common.conf"):
        (conf / "filter.d" / f).write_text((F2B_FILTERS / f).read_text())
    (conf / "action.d" / "sallyport.conf").write_text(ACTION.read_text())
    sock, pid, log = d / "f2b.sock", d / "f2b.pid", d / "f2b.log"
    (conf / "fail2ban.conf").write_text(
        f"[Definition]\nloglevel = INFO\nlogtarget = {log}\n"
        f"socket = {sock}\npidfile = {pid}\ndbfile = :memory:\n")
    (conf / "jail.conf").write_text(f"""
[DEFAULT]
backend = pyinotify
# no name lookups: the namespaces have no resolver to ask
ignoreself = false
ignoreip =
usedns = no
[sshd]
enabled = true
filter = sshd
logpath = {logpath}
maxretry = 3
findtime = 120
bantime = {bantime}
action = sallyport[sallyportctl="{sp.CTL_BIN}", url="{url}", token_file="{token_file}"]
""")
    proc = sp.Proc("fail2ban", topo.prefix("b") + [
        "fail2ban-client", "-c", str(conf), "-s", str(sock), "-p", str(pid),
        "-x", "-f", "start"], d / "f2b.out")
    sp.wait_until(lambda: log.exists() and "Jail 'sshd' started" in
                  log.read_text() or (not proc.alive() and sp._raise(proc)),
                  60, "fail2ban's jail sshd")
    proc.f2b_log = log
    return proc


def test_fail2ban_bans_at_the_edge(tmp_path, topo, pki18):
    topo.reply_routing()
    # A second partner address: the one whose transfer must carry on.
    P4b = "198.51.100.3"
    topo.run("p", "ip", "addr", "add", P4b + "/24", "dev",
             topo.run("p", "ip", "-o", "-4", "addr", "show", "to", P4)
             .stdout.split()[1])
    authlog = tmp_path / "auth.log"
    authlog.touch()
    sshd = start_sshd(topo, tmp_path / "sshd", syslog=authlog)
    token_file = tmp_path / "admin.token"
    sp.write_token(token_file)
    edge = start_edge(topo, tmp_path, pki18)
    agent = start_agent(topo, tmp_path, pki18, edge, {
        "ssh4": (f"{E4}:2222", [f"{B4}:22"], {"source": "client"}),
    }, wait=("ssh4",), admin=("192.0.2.1:7080", token_file))
    agent.wait_log("admin API listening")
    bantime = 15
    f2b = start_fail2ban(topo, tmp_path, authlog, "http://192.0.2.1:7080",
                         token_file, bantime)

    # The good partner's transfer: 24 MiB at about 2.5 MB/s, so it runs
    # through the attack and the ban.
    src = tmp_path / "big.src"
    want = sp.random_file(src, 24 * sp.MiB)
    batch = tmp_path / "batch"
    batch.write_text(f"put {src} {sshd_home(sshd)}/big.bin\n")
    sftp = subprocess.Popen(topo.prefix("p") + [
        "sftp", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes", "-o", f"BindAddress={P4b}",
        "-i", str(sshd.userkey), "-P", "2222", "-l", "20000",
        "-b", str(batch), f"{sshd.user}@{E4}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    edge.proc.wait_log(f"service=ssh4 client={P4b}:")
    sshd.wait_log(f"Accepted publickey for {sshd.user} from {P4b}")

    # The attack: logins as a user that does not exist, from P4.
    for _ in range(4):
        r = ssh_from_partner(topo, sshd, E4, 2222, user="nosuchuser18",
                             extra=("-o", "BindAddress=" + P4), check=False)
        assert r.returncode != 0
    t_attack = time.monotonic()
    f2b_line = sp.wait_until(lambda: "Ban " + P4 in f2b.f2b_log.read_text(),
                             30, "fail2ban's Ban line")
    assert f2b_line
    agent.wait_log(f"ban {P4} for {bantime} s")
    edge.proc.wait_log(f"agent agent18: ban {P4}")
    # Refused at the edge: the edge resets it; sshd never hears of it.
    mark = edge.proc.mark()
    sp.wait_until(lambda: ssh_from_partner(
        topo, sshd, E4, 2222, extra=("-o", "BindAddress=" + P4),
        check=False).returncode != 0, 10, "the partner refused")
    edge.proc.wait_log(f"client {P4}:", since=mark)
    # "Within a few seconds" is the point: a generous bound.
    assert time.monotonic() - t_attack < 30
    assert sftp.poll() is None, "the transfer ended before the ban"

    # The other partner's transfer carries on, intact.
    out, _ = sftp.communicate(timeout=120)
    assert sftp.returncode == 0, out
    assert sp.sha256_file(Path(sshd_home(sshd)) / "big.bin") == want

    # The ban lifts by itself after its time.
    sp.wait_until(lambda: ssh_from_partner(
        topo, sshd, E4, 2222, extra=("-o", "BindAddress=" + P4),
        check=False).returncode == 0, bantime + 45, "the ban to lift")
    r = topo.run("b", str(sp.CTL_BIN), "bans", "--url", "http://192.0.2.1:7080",
                 "--token-file", str(token_file))
    assert P4 not in r.stdout


def sshd_home(sshd):
    d = Path(sshd.userkey).parent / "files"
    d.mkdir(exist_ok=True)
    return str(d)
