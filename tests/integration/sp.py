"""Helpers for the sallyport integration tests (standard library only).

Everything here talks to 127.0.0.1 only.
"""

import atexit
import errno
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("SALLYPORT_BUILD", "build")
EDGE_BIN = BUILD / "sallyport-edge"
AGENT_BIN = BUILD / "sallyport-agent"
CTL_BIN = BUILD / "sallyportctl"

LOOPBACK = "127.0.0.1"
POLL = 0.05          # polling step, seconds
MiB = 1024 * 1024


# --------------------------------------------------------------------------
# ports

_handed_out = set()
_port_lock = threading.Lock()


def free_port():
    """A currently free TCP port on 127.0.0.1, never the same one twice in a
    test run (bind port 0, close, return)."""
    with _port_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((LOOPBACK, 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free port found")


# --------------------------------------------------------------------------
# waiting

def wait_until(pred, timeout, what="condition", step=POLL):
    """Poll pred() every `step` seconds until it returns a truthy value;
    return that value, or raise AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def tcp_connect(port, host=LOOPBACK, timeout=5.0):
    s = socket.create_connection((host, port), timeout=timeout)
    return s


def connect_errno(port, host=LOOPBACK, timeout=2.0):
    """Try one TCP connect. Return 0 if it succeeded (and close the socket),
    else the errno (e.g. errno.ECONNREFUSED)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        return s.connect_ex((host, port))
    except socket.timeout:
        return errno.ETIMEDOUT
    finally:
        s.close()


def read_banner(port, timeout=5.0, prefix=b"SSH-2.0"):
    """Connect to port and read until a full line arrives; return True if it
    starts with `prefix`. Any error or time-out returns False."""
    deadline = time.monotonic() + timeout
    try:
        s = socket.create_connection((LOOPBACK, port), timeout=timeout)
    except OSError:
        return False
    try:
        buf = b""
        while b"\n" not in buf and len(buf) < 1024:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            s.settimeout(left)
            chunk = s.recv(1024)
            if not chunk:
                break
            buf += chunk
        return buf.startswith(prefix)
    except OSError:
        return False
    finally:
        s.close()


def wait_closed(sock, timeout):
    """Read from sock until the peer closes it (EOF, reset, TLS error).
    Return the seconds it took; raise AssertionError if still open after
    timeout. Data received meanwhile is discarded."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout}s")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionError, OSError):
            # includes ssl.SSLError (a subclass of OSError)
            return time.monotonic() - t0
        if not data:
            return time.monotonic() - t0


def closed_by_gateway(port, timeout=30):
    """Connect to port, write a few bytes and wait for the gateway to
    close the connection (a reset before or during the write counts);
    fail if it is still open after `timeout` seconds. Callers check the
    edge's logged reason, which says whether the refusal closed it or a
    time-out did: no bound on the time is needed for that."""
    try:
        c = socket.create_connection((LOOPBACK, port), timeout=timeout)
        c.sendall(b"nobody will read this")
        wait_closed(c, timeout=timeout)
        c.close()
    except ConnectionError:
        pass


# --------------------------------------------------------------------------
# files

def random_file(path, size, chunk=MiB):
    """Write `size` random bytes to path; return the hex SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            b = os.urandom(min(chunk, left))
            h.update(b)
            f.write(b)
            left -= len(b)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(MiB)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def tail(path, n=50):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# processes

ALL_PROCS = []   # every Proc started in this pytest run, in start order


def _children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces/parens
        rest = st[st.rfind(")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == pid:
            out.append(int(d))
    return out


class Proc:
    """A child process whose stdout+stderr go to a log file.

    wrapped=True means argv starts with a wrapper (strace) whose child is the
    real program: signals are then delivered to that child."""

    def __init__(self, name, argv, log_path, wrapped=False, env=None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.wrapped = wrapped
        self._logf = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._logf,
            stderr=subprocess.STDOUT, cwd=str(cwd or ROOT), env=env,
            start_new_session=True)
        self.pid = self.popen.pid
        ALL_PROCS.append(self)

    # -- state
    def alive(self):
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.poll()

    def target_pid(self, timeout=10):
        """PID of the real program (the wrapper's child when wrapped)."""
        if not self.wrapped:
            return self.pid
        kids = wait_until(lambda: _children_of(self.pid) or
                          (self.popen.poll() is not None and [None]),
                          timeout, f"{self.name}: wrapped child")
        if kids == [None]:
            raise AssertionError(f"{self.name}: wrapper exited early\n"
                                 + self.tail())
        return kids[0]

    # -- log
    def log(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def mark(self):
        """Current log size: pass as since= to wait for lines written later."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def lines(self, since=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                data = f.read()
        except OSError:
            return []
        text = data.decode("utf-8", "replace")
        lines = text.split("\n")
        if not text.endswith("\n"):
            lines = lines[:-1]      # incomplete last line: not yet
        return lines

    def find(self, match, since=0):
        """All complete log lines (from byte offset since) that match:
        match is a substring, a list of substrings (all in one line), a
        compiled regex, or a callable(line) -> bool."""
        return [ln for ln in self.lines(since) if _matches(match, ln)]

    def count(self, match, since=0):
        return len(self.find(match, since))

    def wait_log(self, match, timeout=20, since=0, count=1):
        """Poll the log until `count` lines (after byte offset since) match;
        return the last matching line. Fails early if the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(match, since)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.name}: no log line matching {match!r} "
                    f"(x{count}) within {timeout}s; last lines:\n{self.tail()}")
            if not self.alive():
                # one last look: the line may have been written just before exit
                found = self.find(match, since)
                if len(found) >= count:
                    return found[count - 1]
                raise AssertionError(
                    f"{self.name} exited with {self.returncode} while waiting "
                    f"for {match!r}; last lines:\n{self.tail()}")
            time.sleep(POLL)

    def tail(self, n=50):
        return tail(self.log_path, n)

    # -- signals / stopping
    def signal(self, sig):
        pid = self.target_pid()
        os.kill(pid, sig)

    def wait(self, timeout):
        """Wait for exit; return the exit status or None on time-out."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """SIGKILL the program (and the wrapper) and reap it."""
        if self.alive():
            try:
                if self.wrapped:
                    for k in _children_of(self.pid):
                        os.kill(k, signal.SIGKILL)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(timeout=10)

    def stop(self, timeout=5):
        """SIGTERM, then SIGKILL after timeout seconds. Return exit status."""
        if self.alive():
            try:
                self.signal(signal.SIGTERM)
            except (ProcessLookupError, AssertionError):
                pass
            rc = self.wait(timeout)
            if rc is None:
                try:
                    if self.wrapped:
                        for k in _children_of(self.pid):
                            os.kill(k, signal.SIGKILL)
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=10)
        if not self._logf.closed:
            self._logf.close()
        return self.popen.returncode

    def __repr__(self):
        return f"<Proc {self.name} pid={self.pid} rc={self.popen.poll()}>"


def _matches(match, line):
    if callable(match):
        return match(line)
    if isinstance(match, re.Pattern):
        return match.search(line) is not None
    if isinstance(match, (list, tuple)):
        return all(m in line for m in match)
    return match in line


@atexit.register
def _kill_leftovers():
    for p in ALL_PROCS:
        try:
            if p.alive():
                os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass


def run(argv, timeout=120, check=True, **kw):
    """subprocess.run with captured text output; on check failure the
    assertion message carries the output."""
    argv = [str(a) for a in argv]
    r = subprocess.run(argv, stdin=kw.pop("stdin", subprocess.DEVNULL),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout, text=True, errors="replace", **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"command failed ({r.returncode}): "
                             f"{' '.join(argv)}\n{r.stdout}")
    return r


# --------------------------------------------------------------------------
# PKI

class Pki:
    def __init__(self, d):
        self.dir = Path(d)
        for n in ("ca.crt", "ca.key", "edge.crt", "edge.key",
                  "agent.crt", "agent.key"):
            setattr(self, n.replace(".", "_"), self.dir / n)


def make_pki(d, names=()):
    argv = [CTL_BIN, "pki", "init", d]
    for n in names:
        argv += ["--edge-name", n]
    run(argv, timeout=60)
    pki = Pki(d)
    for f in ("ca_crt", "edge_crt", "edge_key", "agent_crt", "agent_key"):
        assert getattr(pki, f).is_file(), f"pki init did not write {f}"
    return pki


# --------------------------------------------------------------------------
# ssh / sftp / scp clients

class SshBackend:
    """A running sshd (module scoped) plus the client key that logs in."""

    def __init__(self, proc, port, key, user, root):
        self.proc = proc
        self.port = port
        self.key = key
        self.user = user
        self.root = Path(root)        # a directory for remote files

    def ssh_opts(self, port):
        return ["-F", "/dev/null",
                "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes",
                "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=30",
                "-o", "ServerAliveInterval=0",
                "-i", str(self.key), "-P", str(port)]

    def sftp_batch(self, port, batch_file, extra=(), timeout=300):
        """Run sftp -b batch_file against 127.0.0.1:port; return CompletedProcess."""
        argv = (["sftp"] + self.ssh_opts(port) + list(extra)
                + ["-b", str(batch_file), f"{self.user}@{LOOPBACK}"])
        return run(argv, timeout=timeout, check=False)

    def sftp(self, port, commands, tmpdir, extra=(), timeout=300, check=True):
        bf = Path(tmpdir) / f"batch-{time.monotonic_ns()}.txt"
        bf.write_text("".join(c + "\n" for c in commands))
        r = self.sftp_batch(port, bf, extra, timeout)
        if check:
            assert r.returncode == 0, (f"sftp {commands} via port {port} "
                                       f"failed ({r.returncode}):\n{r.stdout}")
        return r

    def sftp_popen(self, port, commands, tmpdir, extra=(), name="sftp"):
        bf = Path(tmpdir) / f"batch-{name}.txt"
        bf.write_text("".join(c + "\n" for c in commands))
        out = Path(tmpdir) / f"{name}.out"
        argv = (["sftp"] + self.ssh_opts(port) + list(extra)
                + ["-b", str(bf), f"{self.user}@{LOOPBACK}"])
        f = open(out, "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT)
        f.close()
        p.out_path = out
        return p

    def scp(self, port, src, dst, legacy=False, timeout=300):
        argv = ["scp"] + (["-O"] if legacy else []) + self.ssh_opts(port) \
            + ["-q", str(src), str(dst)]
        r = run(argv, timeout=timeout, check=False)
        assert r.returncode == 0, (f"scp{' -O' if legacy else ''} {src} {dst} "
                                   f"via port {port} failed:\n{r.stdout}")
        return r

    def remote(self, path):
        return f"{self.user}@{LOOPBACK}:{path}"


def start_sshd(d):
    """Start /usr/sbin/sshd -D -e on a free loopback port in directory d."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    try:
        os.makedirs("/run/sshd", exist_ok=True)   # privilege separation dir
    except OSError:
        pass                                       # not root: sshd will say
    hostkey = d / "ssh_host_ed25519_key"
    userkey = d / "id_ed25519"
    for k in (hostkey, userkey):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sallyport-test",
             "-f", k], timeout=30)
    os.chmod(hostkey, 0o600)
    os.chmod(userkey, 0o600)
    ak = d / "authorized_keys"
    ak.write_text((d / "id_ed25519.pub").read_text())
    os.chmod(ak, 0o600)
    files = d / "files"
    files.mkdir(exist_ok=True)
    port = free_port()
    user = _username()
    cfg = d / "sshd_config"
    lines = [
        f"ListenAddress {LOOPBACK}:{port}",
        f"HostKey {hostkey}",
        f"AuthorizedKeysFile {ak}",
        "StrictModes no",
        "UsePAM no",
        "PidFile none",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UseDNS no",
        "Subsystem sftp internal-sftp",
        "MaxStartups 100:30:200",
        "MaxSessions 100",
        "LogLevel INFO",
        f"AllowUsers {user}",
    ]
    cfg.write_text("\n".join(lines) + "\n")
    # newer OpenSSH (9.8+) penalises sources; the tests make many probes
    if _sshd_accepts(cfg, "PerSourcePenalties no"):
        cfg.write_text("\n".join(lines + ["PerSourcePenalties no"]) + "\n")
    run(["/usr/sbin/sshd", "-t", "-f", cfg], timeout=30)
    proc = Proc("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", cfg], d / "sshd.log")
    try:
        wait_until(lambda: read_banner(port, timeout=2) or
                   (not proc.alive() and _raise(proc)),
                   20, f"sshd banner on port {port}")
    except Exception:
        proc.stop()
        raise
    return SshBackend(proc, port, userkey, user, files)


def _raise(proc):
    raise AssertionError(f"{proc.name} exited ({proc.returncode}):\n{proc.tail()}")


def _sshd_accepts(cfg, line):
    probe = Path(str(cfg) + ".probe")
    probe.write_text(cfg.read_text() + line + "\n")
    r = run(["/usr/sbin/sshd", "-t", "-f", probe], check=False, timeout=30)
    probe.unlink()
    return r.returncode == 0


def _username():
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


# --------------------------------------------------------------------------
# nginx (HTTPS backend)

class Nginx:
    def __init__(self, proc, port, cert, root):
        self.proc = proc
        self.port = port
        self.cert = cert
        self.root = Path(root)


def start_nginx(d):
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    for sub in ("html", "logs", "tmp"):
        (d / sub).mkdir(exist_ok=True)
    cert, key = d / "tls.crt", d / "tls.key"
    run(["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert], timeout=60)
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    server {{
        listen {LOOPBACK}:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {d}/html;
    }}
}}
""")
    argv = ["/usr/sbin/nginx", "-e", "stderr", "-c", conf, "-p", d,
            "-g", "daemon off;"]
    run(argv + ["-t"], timeout=30)
    proc = Proc("nginx", argv, d / "nginx.log")
    try:
        wait_until(lambda: connect_errno(port) == 0 or
                   (not proc.alive() and _raise(proc)),
                   20, f"nginx on port {port}")
    except Exception:
        proc.stop()
        raise
    return Nginx(proc, port, cert, d / "html")


# --------------------------------------------------------------------------
# sallyport daemons

def _traced_env():
    """Environment for a program run under strace: LeakSanitizer (SAN=asan
    builds) cannot work under ptrace and would turn exit 0 into 1."""
    env = dict(os.environ)
    opts = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "detect_leaks=0"
    return env


class Edge:
    def __init__(self, proc, control_port):
        self.proc = proc
        self.control_port = control_port
        self.addr = f"{LOOPBACK}:{control_port}"


def start_edge(d, pki, claim_timeout=None, name=None, wrapper=(), tag="edge",
               extra=()):
    assert EDGE_BIN.exists(), f"{EDGE_BIN} missing: run make first"
    port = free_port()
    argv = list(wrapper) + [EDGE_BIN, "--control", f"{LOOPBACK}:{port}",
                            "--cert", pki.edge_crt, "--key", pki.edge_key,
                            "--ca", pki.ca_crt] + [str(x) for x in extra]
    if claim_timeout is not None:
        argv += ["--claim-timeout", str(claim_timeout)]
    if name is not None:
        argv += ["--name", name]
    proc = Proc(tag, argv, Path(d) / f"{tag}.log", wrapped=bool(wrapper),
                env=_traced_env() if wrapper else None)
    proc.wait_log(f"control listening on {LOOPBACK}:{port}", timeout=20)
    return Edge(proc, port)


def write_agent_conf(path, pki, edges, services, name="agent1",
                     data_link=None, data_links=None, agent_extra=()):
    """services: {name: (listen_port, [backend_port, ...])};
    edges: list of "host:port" strings. data_link ("tls" or "plain") and
    data_links (a number) are written only when given; the default link
    comes from SALLYPORT_DATA_LINK when set (so a whole run can use plain
    links). agent_extra: more "key = value" lines for [agent]."""
    out = ["[agent]"] + list(agent_extra)
    if name:
        out.append(f"name = {name}")
    for e in edges:
        out.append(f"edge = {e}")
    data_link = data_link or os.environ.get("SALLYPORT_DATA_LINK")
    if data_link:
        out.append(f"data_link = {data_link}")
    if data_links is not None:
        out.append(f"data_links = {data_links}")
    out += [f"cert = {pki.agent_crt}", f"key = {pki.agent_key}",
            f"ca = {pki.ca_crt}", ""]
    for svc, (listen, backends) in services.items():
        out.append(f"[service {svc}]")
        out.append(f"listen = {LOOPBACK}:{listen}")
        for b in backends:
            out.append(f"backend = {LOOPBACK}:{b}")
        out.append("")
    Path(path).write_text("\n".join(out))
    return Path(path)


class Agent:
    def __init__(self, proc, conf, services):
        self.proc = proc
        self.conf = conf
        self.services = services


def start_agent(d, pki, edge, services, edges=None, name="agent1",
                wrapper=(), tag="agent", wait=True, data_link=None,
                data_links=None):
    """Start an agent for `services` ({name: (listen_port, [backends])}).
    edges defaults to [edge.addr]. With wait, return once the edge has
    logged every service open (only lines written after this call count).
    data_link / data_links: see write_agent_conf."""
    assert AGENT_BIN.exists(), f"{AGENT_BIN} missing: run make first"
    conf = write_agent_conf(Path(d) / f"{tag}.conf", pki,
                            edges or [edge.addr], services, name=name,
                            data_link=data_link, data_links=data_links)
    mark = edge.proc.mark() if edge is not None else 0
    proc = Proc(tag, list(wrapper) + [AGENT_BIN, "--config", conf],
                Path(d) / f"{tag}.log", wrapped=bool(wrapper),
                env=_traced_env() if wrapper else None)
    agent = Agent(proc, conf, services)
    if wait and edge is not None:
        for svc, (listen, _) in services.items():
            _wait_edge_log_or_agent_death(
                edge, proc, f"service {svc} open on {LOOPBACK}:{listen}", mark)
    return agent


def _wait_edge_log_or_agent_death(edge, agent_proc, match, since, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        if edge.proc.find(match, since):
            return
        if not agent_proc.alive():
            raise AssertionError(f"agent exited ({agent_proc.returncode}) "
                                 f"before edge logged {match!r}:\n"
                                 f"{agent_proc.tail()}")
        if not edge.proc.alive():
            raise AssertionError(f"edge exited ({edge.proc.returncode}):\n"
                                 f"{edge.proc.tail()}")
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"edge did not log {match!r} within {timeout}s\n"
                f"--- edge:\n{edge.proc.tail()}\n--- agent:\n{agent_proc.tail()}")
        time.sleep(POLL)


# --------------------------------------------------------------------------
# a TCP forwarder (threads) used to cut one connection on purpose

class Forwarder:
    """Accepts on a free loopback port and relays each connection to
    127.0.0.1:target. cut(i) closes both sockets of the i-th accepted
    connection (0 = first)."""

    def __init__(self, target_port):
        self.target = target_port
        self.port = free_port()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((LOOPBACK, self.port))
        self.lsock.listen(128)
        self.conns = []          # [(client_sock, upstream_sock)]
        self.lock = threading.Lock()
        self.closed = False
        self.t = threading.Thread(target=self._accept_loop, daemon=True)
        self.t.start()

    def _accept_loop(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection((LOOPBACK, self.target), timeout=10)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.append((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b),
                                 daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                dst.sendall(data)
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        except OSError:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def accepted(self):
        with self.lock:
            return len(self.conns)

    def cut(self, i):
        with self.lock:
            pair = self.conns[i]
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)   # wakes the pump threads
            except OSError:
                pass
            s.close()

    def close(self):
        self.closed = True
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        with self.lock:
            pairs = list(self.conns)
        for pair in pairs:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


# ==========================================================================
# BEGIN ops helpers (issue 8: admin API, metrics, reload, install).
# Other features: append your own block after this one.

import http.client   # noqa: E402
import json          # noqa: E402


def write_token(path, token=None):
    """Write an admin token file (mode 0600); return the token."""
    token = token or hashlib.sha256(os.urandom(32)).hexdigest()
    Path(path).write_text(token + "\n")
    os.chmod(path, 0o600)
    return token


def write_agent_conf_admin(path, pki, edges, services, admin_port, token_file,
                           name="agent1", **kw):
    """write_agent_conf (its keyword arguments too) plus an [admin]
    section."""
    p = write_agent_conf(path, pki, edges, services, name=name, **kw)
    with open(p, "a") as f:
        f.write(f"\n[admin]\nlisten = {LOOPBACK}:{admin_port}\n"
                f"token_file = {token_file}\n")
    return p


class AdminAgent(Agent):
    def __init__(self, proc, conf, services, admin_port, token, token_file):
        super().__init__(proc, conf, services)
        self.admin_port = admin_port
        self.token = token
        self.token_file = Path(token_file)
        self.url = f"http://{LOOPBACK}:{admin_port}"

    def api(self, method, path, token=None, auth=True, timeout=10):
        """One HTTP request to the admin API: (status, headers, body) where
        body is the parsed JSON when the answer is JSON, else the text."""
        return api_request(self.admin_port, method, path,
                           (token or self.token) if auth else None, timeout)

    def metrics(self):
        st, _, body = self.api("GET", "/metrics")
        assert st == 200, (st, body)
        return body


def api_request(port, method, path, token=None, timeout=10, host=LOOPBACK):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = {"Authorization": f"Bearer {token}"} if token else {}
        c.request(method, path, headers=hdrs)
        r = c.getresponse()
        data = r.read().decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in r.getheaders()}
        body = data
        if headers.get("content-type", "").startswith("application/json"):
            body = json.loads(data)
        return r.status, headers, body
    finally:
        c.close()


def start_agent_admin(d, pki, edge, services, name="agent1", tag="agent",
                      token=None, **kw):
    """Like start_agent, with the admin API on a free port. Waits for the
    edge to open every service and for the API to answer. Keyword
    arguments go to write_agent_conf (data_link, agent_extra, ...)."""
    d = Path(d)
    admin_port = free_port()
    token_file = d / f"{tag}.token"
    token = write_token(token_file, token)
    conf = write_agent_conf_admin(d / f"{tag}.conf", pki, [edge.addr],
                                  services, admin_port, token_file, name=name,
                                  **kw)
    mark = edge.proc.mark()
    proc = Proc(tag, [AGENT_BIN, "--config", conf], d / f"{tag}.log")
    agent = AdminAgent(proc, conf, services, admin_port, token, token_file)
    for svc, (listen, _) in services.items():
        _wait_edge_log_or_agent_death(
            edge, proc, f"service {svc} open on {LOOPBACK}:{listen}", mark)
    proc.wait_log(f"admin API listening on {LOOPBACK}:{admin_port}")
    return agent


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels.items())): float}."""
    out = {}
    rx = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    lrx = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = rx.match(ln)
        assert m, f"bad metrics line {ln!r}"
        labels = dict(lrx.findall(m.group(2) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def metric(parsed, name, **labels):
    return parsed.get((name, frozenset(labels.items())))


class ThreadedServer:
    """A TCP backend on a free loopback port that serves each connection
    in a thread of its own: subclasses define _serve(conn)."""

    def __init__(self, host=LOOPBACK):
        self.lsock = socket.create_server((host, 0), backlog=128)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        raise NotImplementedError

    def close(self):
        try:
            self.lsock.close()
        except OSError:
            pass


class ByteServer(ThreadedServer):
    """Reads until the client half-closes, then sends `reply` bytes and
    closes. Records bytes read per connection."""

    def __init__(self, reply, host=LOOPBACK):
        self.reply = reply
        self.received = []
        self.lock = threading.Lock()
        super().__init__(host)

    def _serve(self, c):
        n = 0
        try:
            c.settimeout(30)
            while True:
                b = c.recv(65536)
                if not b:
                    break
                n += len(b)
            c.sendall(self.reply)
            c.shutdown(socket.SHUT_WR)
            with self.lock:
                self.received.append(n)
        except OSError:
            pass
        finally:
            c.close()


def byte_session(port, payload, timeout=20):
    """Connect to port, send payload, half-close, return all bytes read."""
    s = socket.create_connection((LOOPBACK, port), timeout=timeout)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b
    finally:
        s.close()

# END ops helpers
# ==========================================================================
# helpers added by features (append your own block below this line)
# ==========================================================================

# --- outbound (issue 9): agent with an [outbound] section ------------------

class OutboundAgent:
    def __init__(self, proc, conf, socks_port, http_port):
        self.proc = proc
        self.conf = conf
        self.socks_port = socks_port
        self.http_port = http_port


def start_outbound_agent(d, pki, edge, allow, user=None, password=None,
                         services=None, wrapper=(), tag="agent",
                         name="agent1", audit_log=None, out_extra=()):
    """Start an agent with SOCKS5 and HTTP CONNECT listeners on free
    loopback ports and `allow` (a list of allow_destination values).
    Returns once the agent says the edge took its policy."""
    assert AGENT_BIN.exists(), f"{AGENT_BIN} missing: run make first"
    conf = write_agent_conf(Path(d) / f"{tag}.conf", pki, [edge.addr],
                            services or {}, name=name)
    if audit_log is not None:
        text = Path(conf).read_text().replace(
            "[agent]\n", f"[agent]\naudit_log = {audit_log}\n", 1)
        Path(conf).write_text(text)
    socks, http = free_port(), free_port()
    lines = ["", "[outbound]", f"socks_listen = {LOOPBACK}:{socks}",
             f"http_connect_listen = {LOOPBACK}:{http}"]
    lines += [f"allow_destination = {a}" for a in allow]
    if user is not None:
        lines += [f"auth_user = {user}", f"auth_password = {password}"]
    lines += list(out_extra)
    with open(conf, "a") as f:
        f.write("\n".join(lines) + "\n")
    proc = Proc(tag, list(wrapper) + [AGENT_BIN, "--config", conf],
                Path(d) / f"{tag}.log", wrapped=bool(wrapper),
                env=_traced_env() if wrapper else None)
    proc.wait_log(f"edge {edge.addr}: outbound open", timeout=20)
    return OutboundAgent(proc, conf, socks, http)


def socks5_connect(port, host, dport, user=None, password=None, extra=b"",
                   timeout=20):
    """A raw SOCKS5 CONNECT through 127.0.0.1:port to host:dport (host is
    sent as a domain name unless it is a dotted IPv4 address). Sends
    greeting, (auth,) request and `extra` in one write, as a pipelining
    client would. Returns (socket, reply code); the socket is open only
    when the code is 0."""
    import ipaddress
    s = socket.create_connection((LOOPBACK, port), timeout=timeout)
    meth = 2 if user is not None else 0
    msg = bytes([5, 1, meth])
    if user is not None:
        u, p = user.encode(), password.encode()
        msg += bytes([1, len(u)]) + u + bytes([len(p)]) + p
    try:
        a = ipaddress.IPv4Address(host)
        addr = bytes([1]) + a.packed
    except ValueError:
        addr = bytes([3, len(host)]) + host.encode()
    msg += bytes([5, 1, 0]) + addr + dport.to_bytes(2, "big") + extra
    s.sendall(msg)

    def need(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise AssertionError(f"SOCKS server closed after {b!r}")
            b += c
        return b
    assert need(2) == bytes([5, meth])
    if user is not None:
        r = need(2)
        if r[1] != 0:
            s.close()
            return None, -1
    rep = need(10)
    assert rep[0] == 5, rep
    if rep[1] != 0:
        s.close()
        return None, rep[1]
    return s, 0


# ==========================================================================
# BEGIN helpers for client policy, PROXY protocol and audit (issue 5)

def write_agent_conf_ex(path, pki, edges, services, agent_keys=(),
                        name="agent1"):
    """Like write_agent_conf, with extra keys. services:
    {name: {"listen": port, "backends": [port, ...], "keys": [(k, v)]}};
    agent_keys: [(k, v)] for [agent]."""
    out = ["[agent]", f"name = {name}"]
    out += [f"edge = {e}" for e in edges]
    out += [f"cert = {pki.agent_crt}", f"key = {pki.agent_key}",
            f"ca = {pki.ca_crt}"]
    out += [f"{k} = {v}" for k, v in agent_keys]
    out.append("")
    for svc, d in services.items():
        out.append(f"[service {svc}]")
        out.append(f"listen = {LOOPBACK}:{d['listen']}")
        out += [f"backend = {LOOPBACK}:{b}" for b in d["backends"]]
        out += [f"{k} = {v}" for k, v in d.get("keys", ())]
        out.append("")
    Path(path).write_text("\n".join(out))
    return Path(path)


# High availability helpers (issue 7, used by test_ha.py). Additive only:
# nothing above this line depends on them.

def write_agent_conf_ha(path, pki, edges, services, name):
    """A full agent configuration. edges: ["host:port", ...]; services:
    {svc: {"listen": "ADDR:PORT", "backends": ["ADDR:PORT", ...],
           "keys": {"priority": 10, "health_interval": 0.5, ...}}}."""
    out = ["[agent]", f"name = {name}"]
    out += [f"edge = {e}" for e in edges]
    out += [f"cert = {pki.agent_crt}", f"key = {pki.agent_key}",
            f"ca = {pki.ca_crt}", "connect_timeout = 10", ""]
    for svc, d in services.items():
        out.append(f"[service {svc}]")
        out.append(f"listen = {d['listen']}")
        out += [f"backend = {b}" for b in d["backends"]]
        out += [f"{k} = {v}" for k, v in d.get("keys", {}).items()]
        out.append("")
    Path(path).write_text("\n".join(out))
    return Path(path)


def start_agent_ex(d, pki, edge, services, agent_keys=(), name="agent1",
                   tag="agent", wait=True):
    """Start an agent from write_agent_conf_ex's services; with wait,
    return once the edge has opened every service."""
    conf = write_agent_conf_ex(Path(d) / f"{tag}.conf", pki, [edge.addr],
                               services, agent_keys, name=name)
    mark = edge.proc.mark()
    proc = Proc(tag, [AGENT_BIN, "--config", conf], Path(d) / f"{tag}.log")
    if wait:
        for svc, sd in services.items():
            _wait_edge_log_or_agent_death(
                edge, proc, f"service {svc} open on {LOOPBACK}:{sd['listen']}",
                mark)
    return Agent(proc, conf, services)


def connect_from(src_ip, port, timeout=10.0):
    """A TCP connection to 127.0.0.1:port whose source address is src_ip
    (any 127.x.y.z: all of 127/8 is on the loopback interface)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((src_ip, 0))
        s.connect((LOOPBACK, port))
    except OSError:
        s.close()
        raise
    return s


def recv_line(sock, timeout=10.0, limit=4096):
    """Read up to and including the first newline. Returns the bytes, or
    None if the peer closed or reset the connection first."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf and len(buf) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no line within {timeout}s (got {buf!r})")
        sock.settimeout(left)
        try:
            chunk = sock.recv(limit)
        except (ConnectionError, OSError) as e:
            if isinstance(e, socket.timeout):
                continue
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_all(sock, timeout=30.0):
    """Read until EOF; return the bytes (raises on time-out)."""
    deadline = time.monotonic() + timeout
    out = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no EOF within {timeout}s")
        sock.settimeout(left)
        chunk = sock.recv(262144)
        if not chunk:
            return b"".join(out)
        out.append(chunk)


class CountServer:
    """A TCP backend on a free loopback port. For each connection: send
    GREETING, read until EOF (keeping the first 512 bytes and the total),
    then send `reply` bytes and close. conns() lists what each connection
    sent: (head, total)."""

    GREETING = b"HELLO sallyport\n"

    def __init__(self, reply=0):
        self.reply = reply
        self.port = free_port()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((LOOPBACK, self.port))
        self.lsock.listen(256)
        self.lock = threading.Lock()
        self._conns = []
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        head, total = b"", 0
        try:
            c.sendall(self.GREETING)
            while True:
                b = c.recv(262144)
                if not b:
                    break
                if len(head) < 512:
                    head += b[:512 - len(head)]
                total += len(b)
            left = self.reply
            chunk = b"r" * 65536
            while left > 0:
                n = min(left, len(chunk))
                c.sendall(chunk[:n])
                left -= n
        except OSError:
            pass
        finally:
            with self.lock:
                self._conns.append((head, total))
            c.close()

    def conns(self):
        with self.lock:
            return list(self._conns)

    def close(self):
        self.closed = True
        try:
            self.lsock.close()
        except OSError:
            pass


def greeted_from(src_ip, port, timeout=10.0):
    """Connect from src_ip; return the open socket if the backend's
    greeting arrives, or None if the connection is refused, reset or
    closed first (a client the edge dropped)."""
    try:
        s = connect_from(src_ip, port, timeout)
    except OSError:
        return None
    line = recv_line(s, timeout)
    if line is None:
        s.close()
        return None
    assert line == CountServer.GREETING, f"unexpected greeting {line!r}"
    return s


def listening(port):
    """True if some socket listens on TCP port `port` (any address)."""
    want = f":{port:04X}"
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for ln in fh:
                    parts = ln.split()
                    if parts[1].endswith(want) and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


class Haproxy:
    def __init__(self, proc, port):
        self.proc = proc
        self.port = port


def start_haproxy(d, target_port, send="send-proxy-v2"):
    """HAProxy (Debian's) in TCP mode on a free loopback port, forwarding
    to 127.0.0.1:target_port from source 127.0.0.1, with `send` (a server
    option such as send-proxy-v2)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = d / "haproxy.cfg"
    conf.write_text(f"""
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 10s
    timeout client 120s
    timeout server 120s
frontend fe
    bind {LOOPBACK}:{port}
    default_backend be
backend be
    server s1 {LOOPBACK}:{target_port} {send} source {LOOPBACK}
""")
    run(["/usr/sbin/haproxy", "-c", "-f", conf], timeout=30)
    proc = Proc("haproxy", ["/usr/sbin/haproxy", "-db", "-f", conf],
                d / "haproxy.log")
    try:
        # not a probe connection: it would go through to the edge
        wait_until(lambda: listening(port) or
                   (not proc.alive() and _raise(proc)),
                   20, f"haproxy on port {port}")
    except Exception:
        proc.stop()
        raise
    return Haproxy(proc, port)


class NginxPP:
    def __init__(self, proc, port, root, access_log):
        self.proc = proc
        self.port = port
        self.root = Path(root)
        self.access_log = Path(access_log)

    def access_lines(self):
        try:
            return self.access_log.read_text().splitlines()
        except OSError:
            return []


def start_nginx_proxy_protocol(d):
    """Plain-HTTP nginx whose listener requires a PROXY header (v1 or v2)
    and logs "$proxy_protocol_addr:$proxy_protocol_port $remote_addr
    "$request" $status $body_bytes_sent"."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    for sub in ("html", "logs", "tmp"):
        (d / sub).mkdir(exist_ok=True)
    port = free_port()
    log = d / "logs" / "access.log"
    conf = d / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr info;
events {{ worker_connections 256; }}
http {{
    log_format pp '$proxy_protocol_addr:$proxy_protocol_port $remote_addr '
                  '"$request" $status $body_bytes_sent';
    access_log {log} pp;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen {LOOPBACK}:{port} proxy_protocol;
        server_name localhost;
        root {d}/html;
    }}
}}
""")
    argv = ["/usr/sbin/nginx", "-e", "stderr", "-c", conf, "-p", d,
            "-g", "daemon off;"]
    run(argv + ["-t"], timeout=30)
    proc = Proc("nginx-pp", argv, d / "nginx.log")
    try:
        wait_until(lambda: listening(port) or
                   (not proc.alive() and _raise(proc)),
                   20, f"nginx on port {port}")
    except Exception:
        proc.stop()
        raise
    return NginxPP(proc, port, d / "html", log)


def read_audit(path):
    """The audit log's records (complete lines only), as dicts."""
    import json
    try:
        data = Path(path).read_bytes().decode("utf-8")
    except OSError:
        return []
    lines = data.split("\n")
    if not data.endswith("\n"):
        lines = lines[:-1]
    return [json.loads(ln) for ln in lines if ln]


def wait_audit(path, pred, timeout=20, count=1, what="audit record"):
    """Wait until `count` session records match pred; return them all."""
    def found():
        recs = [r for r in read_audit(path) if pred(r)]
        return recs if len(recs) >= count else None
    return wait_until(found, timeout, f"{count} x {what} in {path}")

# END helpers for client policy, PROXY protocol and audit (issue 5)
# ==========================================================================


def start_agent_ha(d, pki, edges, services, name, wait_on=()):
    """Start an agent (log d/NAME.log) from write_agent_conf_ha arguments.
    wait_on: Edge objects that must each log every service open for this
    agent ("service S open on LISTEN agent=NAME") before this returns."""
    conf = write_agent_conf_ha(Path(d) / f"{name}.conf", pki,
                               [e if isinstance(e, str) else e.addr
                                for e in edges], services, name)
    marks = [(e, e.proc.mark()) for e in wait_on]
    proc = Proc(name, [AGENT_BIN, "--config", conf], Path(d) / f"{name}.log")
    agent = Agent(proc, conf, services)
    for e, mark in marks:
        for svc, sd in services.items():
            _wait_edge_log_or_agent_death(
                e, proc, f"service {svc} open on {sd['listen']} agent={name} ",
                mark)
    return agent


def restart_proc(proc, wait_for=None, timeout=20):
    """Start proc's program again with the same argv, appending to the same
    log; optionally wait for a log line written after the restart."""
    assert not proc.alive(), f"{proc.name} still running"
    mark = proc.mark()
    p = Proc(proc.name, proc.argv, proc.log_path, wrapped=proc.wrapped)
    if wait_for is not None:
        p.wait_log(wait_for, timeout=timeout, since=mark)
    return p


def start_edge_at(d, pki, host, tag, prefix=()):
    """An edge whose control port is on host (e.g. an address inside a
    network namespace; prefix is then ["ip", "netns", "exec", NS])."""
    assert EDGE_BIN.exists(), f"{EDGE_BIN} missing: run make first"
    port = free_port()
    argv = list(prefix) + [EDGE_BIN, "--control", f"{host}:{port}",
                           "--cert", pki.edge_crt, "--key", pki.edge_key,
                           "--ca", pki.ca_crt, "--name", tag]
    proc = Proc(tag, argv, Path(d) / f"{tag}.log")
    proc.wait_log(f"control listening on {host}:{port}", timeout=20)
    e = Edge(proc, port)
    e.host = host
    e.addr = f"{host}:{port}"
    return e


def _free_slash30():
    """The first /30 of 203.0.113.0/24 (a documentation range) that no
    interface of this namespace uses: distinct for every Netns alive at
    once, and clear of any left behind by a killed run."""
    used = run(["ip", "-o", "-4", "addr", "show"]).stdout
    for base in range(0, 256, 4):
        if f" 203.0.113.{base + 1}/" not in used:
            return base
    raise RuntimeError("no free /30 left in 203.0.113.0/24")


class Netns:
    """A network namespace of the test's own, joined to the root namespace
    by a veth pair on a /30 of 203.0.113.0/24: the root side is .1
    (self.outer), the namespace side .2 (self.inner). Remove with
    close()."""

    def __init__(self, tag):
        import random
        self.name = f"sp-{tag}-{os.getpid()}-{random.randrange(1 << 20):05x}"
        self.veth = f"sp{os.getpid() % 100000}{random.randrange(1 << 16):04x}"[:13]
        self.peer = self.veth[:12] + "p"
        self.exec = ["ip", "netns", "exec", self.name]
        run(["ip", "netns", "add", self.name])
        try:
            run(["ip", "link", "add", self.veth, "type", "veth",
                 "peer", "name", self.peer])
            run(["ip", "link", "set", self.peer, "netns", self.name])
            # Claimed only now, by the address itself: the next Netns
            # sees it taken.
            base = _free_slash30()
            self.net = f"203.0.113.{base}"
            self.outer = f"203.0.113.{base + 1}"
            self.inner = f"203.0.113.{base + 2}"
            run(["ip", "addr", "add", f"{self.outer}/30", "dev", self.veth])
            run(["ip", "link", "set", self.veth, "up"])
            run(self.exec + ["ip", "link", "set", "lo", "up"])
            run(self.exec + ["ip", "addr", "add", f"{self.inner}/30",
                             "dev", self.peer])
            run(self.exec + ["ip", "link", "set", self.peer, "up"])
        except Exception:
            self.close()
            raise

    def close(self):
        run(["ip", "link", "del", self.veth], check=False)
        run(["ip", "netns", "del", self.name], check=False)


class HeldDns:
    """A DNS server on addr, port 53/udp, that holds every query until
    release(); then it answers `name` with an A record of `answer` (AAAA:
    no record) and any other name with NXDOMAIN."""

    def __init__(self, addr, name, answer):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 53))
        self.sock.settimeout(0.2)
        self.name = name
        self.answer = socket.inet_aton(answer)
        self.asked = threading.Event()
        self.released = False
        self.held = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.done:
            try:
                q, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(q) < 17:
                continue
            with self.lock:
                self.asked.set()
                if not self.released:
                    self.held.append((q, peer))
                    continue
            self.reply(q, peer)

    def release(self):
        with self.lock:
            self.released = True
            held, self.held = self.held, []
        for q, peer in held:
            self.reply(q, peer)

    def reply(self, q, peer):
        i, labels = 12, []
        while i < len(q) and q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        flags, an = 0x8180, b""         # response, recursion, no error
        if ".".join(labels).lower() != self.name:
            flags |= 3                  # NXDOMAIN
        elif qtype == 1:
            an = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + self.answer
        hdr = q[:2] + struct.pack("!HHHHH", flags, 1, 1 if an else 0, 0, 0)
        try:
            self.sock.sendto(hdr + question + an, peer)
        except OSError:
            pass

    def close(self):
        self.done = True
        self.thread.join(5)
        self.sock.close()


def own_resolver(ns, tmp_path):
    """argv prefix: run in ns with a resolver of its own (ip netns exec
    gives it a mount namespace of its own too): the DNS server on
    ns.outer (a HeldDns), asked directly (no nscd, whatever the host's
    nsswitch.conf says), patiently (no retry for 30 s)."""
    resolv = Path(tmp_path) / "resolv.conf"
    resolv.write_text(f"nameserver {ns.outer}\n"
                      "options timeout:30 attempts:5\n")
    nss = Path(tmp_path) / "nsswitch.conf"
    nss.write_text("hosts: files dns\n")
    own = ('mount --bind "$0" /etc/resolv.conf && '
           'mount --bind "$1" /etc/nsswitch.conf && '
           '{ [ ! -d /run/nscd ] || mount -t tmpfs none /run/nscd; } && '
           'shift && exec "$@"')
    return ns.exec + ["sh", "-c", own, str(resolv), str(nss)]


def sftp_roundtrip(ssh, port, tmpdir, tag, host=LOOPBACK, size=64 * 1024,
                   extra=(), timeout=120):
    """One sftp session to host:port: put a fresh random file, get it back.
    Returns (ok, detail); ok means exit status 0 and both copies (on the
    backend's disk and back here) have the right SHA-256."""
    tmpdir = Path(tmpdir)
    src, back = tmpdir / f"{tag}.src", tmpdir / f"{tag}.back"
    remote = ssh.root / f"{tag}.bin"
    h = random_file(src, size)
    bf = tmpdir / f"{tag}.batch"
    bf.write_text(f"put {src} {remote}\nget {remote} {back}\n")
    argv = (["sftp"] + ssh.ssh_opts(port) + list(extra)
            + ["-b", str(bf), f"{ssh.user}@{host}"])
    try:
        r = run(argv, timeout=timeout, check=False)
        out, rc = r.stdout, r.returncode
    except subprocess.TimeoutExpired:
        out, rc = "timed out", None
    try:
        ok = (rc == 0 and sha256_file(remote) == h and
              sha256_file(back) == h)
    except OSError as e:
        ok, out = False, f"{out}\n{e}"
    for f in (src, back, remote, bf):
        f.unlink(missing_ok=True)
    return ok, f"rc={rc}: {out[-400:]}"


class SessionStream:
    """`workers` threads, each running sftp_roundtrip back to back until
    stop(); every session is recorded as (t_start, t_end, ok, detail)
    with monotonic times."""

    def __init__(self, ssh, port, tmpdir, workers=3, host=LOOPBACK):
        self.results = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(
            target=self._work, args=(ssh, port, Path(tmpdir), i, host),
            daemon=True) for i in range(workers)]
        for t in self.threads:
            t.start()

    def _work(self, ssh, port, tmpdir, i, host):
        n = 0
        while not self.stopping.is_set():
            t0 = time.monotonic()
            ok, detail = sftp_roundtrip(ssh, port, tmpdir, f"w{i}-{n}",
                                        host=host)
            with self.lock:
                self.results.append((t0, time.monotonic(), ok, detail))
            n += 1

    def count(self, since=None, ok=None):
        with self.lock:
            return sum(1 for r in self.results
                       if (since is None or r[0] >= since)
                       and (ok is None or r[2] == ok))

    def wait_count(self, n, since=None, timeout=120):
        wait_until(lambda: self.count(since) >= n, timeout,
                   f"{n} stream sessions")

    def stop(self, timeout=180):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout)
        with self.lock:
            return list(self.results)


# ==========================================================================
# BEGIN ftp helpers (issue 6: FTP and FTPS through the edge)

class Vsftpd:
    """A vsftpd on a free loopback port, anonymous login, rooted at
    `root` with a writable `root/up`. log_path is its vsftpd_log_file
    (commands, replies and transfers, each line with [pid N])."""

    def __init__(self, proc, port, root, log_path, cert, pasv, host):
        self.proc = proc
        self.port = port
        self.host = host
        self.addr = f"{host}:{port}"
        self.root = Path(root)
        self.up = self.root / "up"
        self.log_path = Path(log_path)
        self.cert = cert
        self.pasv = pasv

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def make_cert(d, name="tls"):
    d = Path(d)
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    run(["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert], timeout=60)
    return cert, key


def start_vsftpd(d, pasv=None, pasv_address=None, tls=None,
                 host="127.0.0.2", cert=None):
    """tls: None (plain FTP), "explicit" (AUTH TLS required) or
    "implicit". pasv: (min, max) for pasv_min_port/pasv_max_port, or None
    for vsftpd's own choice of ports (an unchanged backend). The backend
    listens on host, another loopback address than the edge's: it binds
    the same passive port numbers as the edge, as a server on another
    machine would. cert: (cert, key) to share between backends."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    root = d / "root"
    (root / "up").mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    os.chown(root / "up", _ftp_uid(), -1)
    empty = d / "empty"
    empty.mkdir(exist_ok=True)
    os.chmod(empty, 0o755)
    port = free_port()
    log = d / "vsftpd.log"
    lines = [
        "listen=YES", f"listen_address={host}", f"listen_port={port}",
        "background=NO", "anonymous_enable=YES", "local_enable=NO",
        f"anon_root={root}", "no_anon_password=YES", "write_enable=YES",
        "anon_upload_enable=YES", "anon_mkdir_write_enable=YES",
        "anon_other_write_enable=YES", "anon_umask=022",
        "anon_world_readable_only=NO", "pasv_enable=YES",
        "port_enable=YES", "seccomp_sandbox=NO",
        f"secure_chroot_dir={empty}", f"vsftpd_log_file={log}",
        "xferlog_enable=YES", "dual_log_enable=YES", "log_ftp_protocol=YES",
        "max_clients=500", "max_per_ip=500", "connect_from_port_20=NO",
        "idle_session_timeout=120", "data_connection_timeout=120",
        "accept_timeout=30",
    ]
    if pasv:
        lines += [f"pasv_min_port={pasv[0]}", f"pasv_max_port={pasv[1]}"]
    if pasv_address:
        lines += [f"pasv_address={pasv_address}"]
    if tls:
        cert, key = cert or make_cert(d)
        lines += ["ssl_enable=YES", f"rsa_cert_file={cert}",
                  f"rsa_private_key_file={key}", "allow_anon_ssl=YES",
                  "force_anon_logins_ssl=YES", "force_anon_data_ssl=YES",
                  # TLS 1.3 session tickets make vsftpd 3.0.3's reuse
                  # check fail for curl and lftp, with or without a
                  # gateway in between.
                  "require_ssl_reuse=NO", "ssl_ciphers=HIGH"]
        if tls == "implicit":
            lines += ["implicit_ssl=YES"]
    conf = d / "vsftpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = Proc("vsftpd", ["/usr/sbin/vsftpd", conf], d / "vsftpd.out")
    try:
        wait_until(lambda: connect_errno(port, host=host) == 0 or
                   (not proc.alive() and _raise(proc)),
                   20, f"vsftpd on {host}:{port}")
    except Exception:
        proc.stop()
        raise
    return Vsftpd(proc, port, root, log, cert if tls else None, pasv, host)


def _ftp_uid():
    import pwd
    try:
        return pwd.getpwnam("ftp").pw_uid
    except KeyError:
        raise AssertionError("no user 'ftp' on this machine: Debian's vsftpd "
                             "package creates it (scripts/deps.sh installs "
                             "vsftpd)") from None


def write_ftp_agent_conf(path, pki, edge, svc, listen, backends, protocol,
                         passive, public=LOOPBACK, name="agent1",
                         data_link=None, svc_extra=()):
    """backends: list of "host:port" strings, or of ("host:port", "A-B")
    for explicit slices. passive: (min, max) of the service. data_link:
    see write_agent_conf; svc_extra: more "key = value" lines for the
    service (active = yes)."""
    data_link = data_link or os.environ.get("SALLYPORT_DATA_LINK")
    out = ["[agent]", f"name = {name}", f"edge = {edge.addr}",
           f"cert = {pki.agent_crt}", f"key = {pki.agent_key}",
           f"ca = {pki.ca_crt}"]
    if data_link:
        out.append(f"data_link = {data_link}")
    out += ["", f"[service {svc}]",
            f"listen = {LOOPBACK}:{listen}", f"protocol = {protocol}",
            f"passive_ports = {passive[0]}-{passive[1]}",
            f"public_address = {public}"] + list(svc_extra)
    for b in backends:
        if isinstance(b, tuple):
            out.append(f"backend = {b[0]} passive={b[1]}")
        else:
            out.append(f"backend = {b}")
    Path(path).write_text("\n".join(out) + "\n")
    return Path(path)


def start_ftp_agent(d, pki, edge, svc, listen, backends, protocol, passive,
                    tag="agent", name="agent1", data_link=None, svc_extra=()):
    conf = write_ftp_agent_conf(Path(d) / f"{tag}.conf", pki, edge, svc,
                                listen, backends, protocol, passive,
                                name=name, data_link=data_link,
                                svc_extra=svc_extra)
    mark = edge.proc.mark()
    proc = Proc(tag, [AGENT_BIN, "--config", conf], Path(d) / f"{tag}.log")
    _wait_edge_log_or_agent_death(
        edge, proc, f"service {svc} open on {LOOPBACK}:{listen}", mark)
    return Agent(proc, conf, {svc: (listen, backends)})


def free_port_range(n):
    """n consecutive free loopback ports below the kernel's ephemeral range
    (where free_port() and outgoing connections take theirs), checked by
    binding each, never handed out before in this run. Returns the first."""
    import random
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            eph_lo = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        eph_lo = 32768
    lo = 20000 if eph_lo > 21000 + n else 1024
    for _ in range(200):
        base = random.randrange(lo, max(lo + 1, eph_lo - n))
        socks = []
        ok = True
        try:
            for p in range(base, base + n):
                if p in _handed_out:
                    ok = False
                    break
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                socks.append(s)
                try:
                    s.bind((LOOPBACK, p))
                except OSError:
                    ok = False
                    break
        finally:
            for s in socks:
                s.close()
        if ok:
            with _port_lock:
                _handed_out.update(range(base, base + n))
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


def curl_ftp(args, timeout=300, check=True):
    """Run curl with -sS and the given args; return CompletedProcess."""
    argv = ["curl", "-sS", "--max-time", str(timeout - 10),
            "--connect-timeout", "30"] + [str(a) for a in args]
    r = run(argv, timeout=timeout, check=False)
    if check:
        assert r.returncode == 0, (f"curl {' '.join(argv)} failed "
                                   f"({r.returncode}):\n{r.stdout}")
    return r


def lftp(port, commands, tls=None, cafile=None, timeout=300, check=True,
         passive=True, sets=()):
    """Run lftp against 127.0.0.1:port with the given commands (a list).
    tls: None, "explicit" (ftp:ssl-force) or "implicit" (ftps://).
    passive=False: active mode (PORT/EPRT); sets: more "set" commands."""
    sets = [f"set ftp:passive-mode {'on' if passive else 'off'}",
            "set net:max-retries 1"] + list(sets) + [
            "set net:timeout 30", "set cmd:fail-exit yes",
            "set xfer:clobber on", "set ftp:prefer-epsv no"]
    if tls:
        sets += ["set ftp:ssl-force true", "set ftp:ssl-protect-data true",
                 "set ftp:ssl-protect-list true",
                 # TLS 1.2: see TLS13_NOTE in test_ftp.py
                 'set ssl:priority "NORMAL:-VERS-TLS1.3"']
        if cafile:
            sets += [f"set ssl:ca-file {cafile}",
                     "set ssl:check-hostname no"]
        else:
            sets += ["set ssl:verify-certificate no"]
    else:
        sets += ["set ftp:ssl-allow no"]
    url = (f"ftps://{LOOPBACK}:{port}" if tls == "implicit"
           else f"ftp://{LOOPBACK}:{port}")
    script = "; ".join(sets + [f"open -u anonymous,x {url}"] + commands)
    r = run(["lftp", "-c", script], timeout=timeout, check=False)
    if check:
        assert r.returncode == 0, (f"lftp {script} failed ({r.returncode}):"
                                   f"\n{r.stdout}")
    return r

def ftp_transfers(gw, tmp_path, updir, size):
    """What every FTP mode must carry, through gw (its curl(args),
    lftp(commands) and url(path)): a file of size bytes up and down, a
    listing with curl and with lftp, and a download resumed (REST) by
    each client; every file checked by SHA-256. updir: the backend's
    upload directory. Returns the file's path and digest."""
    src = Path(tmp_path) / "big.bin"
    digest = random_file(src, size)
    gw.curl(["-T", src, gw.url("up/big.bin")])
    assert sha256_file(Path(updir) / "big.bin") == digest
    out = Path(tmp_path) / "down.bin"
    gw.curl(["-o", out, gw.url("up/big.bin")])
    assert sha256_file(out) == digest
    r = gw.curl(["-l", gw.url("up/")])
    assert "big.bin" in r.stdout.split()
    r = gw.lftp(["cls -l up/"])
    assert re.search(rf"\s{size}\s.*big\.bin", r.stdout), r.stdout
    # Resumed: the first 20 MiB (curl) or 7 MiB (lftp) are there, REST
    # fetches the rest.
    for n, part, client in ((20 * MiB, "part.bin", "curl"),
                            (7 * MiB, "lpart.bin", "lftp")):
        part = Path(tmp_path) / part
        with open(src, "rb") as f, open(part, "wb") as g:
            g.write(f.read(n))
        if client == "curl":
            gw.curl(["-C", "-", "-o", part, gw.url("up/big.bin")])
        else:
            gw.lftp([f"get -c up/big.bin -o {part}"])
        assert sha256_file(part) == digest
    return src, digest

# END ftp helpers
# ==========================================================================
