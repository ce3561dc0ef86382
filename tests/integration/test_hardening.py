"""The edge under least privilege and under attack (issue: hardening).

- the running edge is confined: seccomp filter mode, not root, no
  capabilities, cannot write a file or exec (its own self-test, run after
  the sandbox is up), and it still relays sftp;
- the private key is only in the key process's memory, never in the
  process that talks to the internet;
- that process never has connect() (with or without --allow-outbound):
  only the dialler connects, with no capability but, with
  --active-ftp-port20, the one to bind port 20;
- hostile input against a live edge while a real sftp transfer runs: on
  service ports, on the control port, and on data links.
"""

import os
import re
import resource
import socket
import threading
import time

import fakeagent as fa
import sp
import spproto as p
from sp import LOOPBACK, MiB

EDGE_RSS_BOUND_KIB = 64 * 1024   # stated bound, see docs/security.md


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            k, _, v = ln.partition(":")
            out[k] = v.strip()
    return out


def key_scalar(key_path):
    """The EC private scalar of a PEM key, as bytes (via openssl)."""
    txt = sp.run(["openssl", "pkey", "-in", str(key_path), "-noout",
                  "-text"]).stdout
    m = re.search(r"priv:\s*((?:[0-9a-f]{2}:?\s*)+)pub:", txt, re.S)
    assert m, txt
    raw = bytes.fromhex(re.sub(r"[^0-9a-f]", "", m.group(1)))
    return raw.lstrip(b"\0")[-32:].rjust(32, b"\0")


def memory_contains(pid, needles):
    """Whether any needle occurs in the readable memory of pid."""
    with open(f"/proc/{pid}/maps") as maps, \
            open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for ln in maps:
            rng, perms = ln.split()[:2]
            if "r" not in perms or ln.rstrip().endswith("[vvar]"):
                continue
            lo, hi = (int(x, 16) for x in rng.split("-"))
            if hi - lo > 256 * MiB:       # sanitizer shadow, not data
                continue
            try:
                mem.seek(lo)
                chunk = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            if any(n in chunk for n in needles):
                return True
    return False


def confined_status(pid, what):
    """pid's /proc status once its seccomp filter is on (Seccomp: 2).

    A process confines itself on its own time: the key process reads the
    key and drops uid, capabilities and file system access after the fork,
    while its parent goes on and logs its own self-test, so reading its
    status at the parent's log line races it. The filter is the last step
    of sandbox_common(), so once it is on every other step is done; the
    caller then checks each of them. 30 s is far more than an ASan build
    on 2 busy cores takes to get there."""
    sp.wait_until(lambda: status(pid).get("Seccomp") == "2", 30,
                  f"{what} (pid {pid}) to install its seccomp filter")
    return status(pid)


def sandboxed_edge(tmp_path, pki, extra=(), tag="edge"):
    return sp.start_edge(tmp_path, pki, tag=tag,
                         extra=["--user", "nobody", "--sandbox-selftest",
                                *extra])


def helpers(pid):
    """{name: pid} of the edge's helper processes, by the name each gives
    itself: sallyport-key and sallyport-dial."""
    def look():
        out = {}
        for k in sp._children_of(pid):
            try:
                with open(f"/proc/{k}/comm") as f:
                    out[f.read().strip()] = k
            except OSError:
                pass
        return out if set(out) == {"sallyport-key", "sallyport-dial"} \
            else None
    return sp.wait_until(look, 30, f"the helper processes of {pid}")


CAP_NET_BIND_SERVICE = 1 << 10


def sftp_roundtrip(gw_port, ssh, tmp_path, size, tag, bind=None):
    src = tmp_path / f"{tag}.bin"
    back = tmp_path / f"{tag}.back"
    rd = ssh.root / tmp_path.name
    rd.mkdir(parents=True, exist_ok=True)
    h = sp.random_file(src, size)
    extra = ["-o", f"BindAddress={bind}"] if bind else []
    ssh.sftp(gw_port, [f"put {src} {rd}/{tag}.bin",
                       f"get {rd}/{tag}.bin {back}"], tmp_path, extra=extra,
             timeout=600)
    assert sp.sha256_file(rd / f"{tag}.bin") == h, "upload corrupted"
    assert sp.sha256_file(back) == h, "download corrupted"


def test_edge_sandbox_and_key_custody(tmp_path, pki, sshd):
    edge = sandboxed_edge(tmp_path, pki)
    # logged by the edge after it has entered its sandbox (edge_main.c)
    edge.proc.wait_log("sandbox selftest: unix socket", timeout=30)
    log = edge.proc.log()
    assert "sandbox selftest: open for writing denied" in log, log
    assert "sandbox selftest: exec denied" in log, log
    assert "SUCCEEDED" not in log, log
    assert not os.path.exists("/tmp/sallyport-edge-selftest")

    pid = edge.proc.pid
    st = status(pid)
    assert st["Seccomp"] == "2", st
    assert all(int(u) != 0 for u in st["Uid"].split()), st["Uid"]
    assert all(int(g) != 0 for g in st["Gid"].split()), st["Gid"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(st[cap], 16) == 0, (cap, st[cap])
    assert st.get("NoNewPrivs") == "1", st

    kids = sp._children_of(pid)
    assert len(kids) == 2, f"expected the key process and the dialler: {kids}"
    key = helpers(pid)["sallyport-key"]
    kst = confined_status(key, "the key process")
    assert all(int(u) != 0 for u in kst["Uid"].split()), kst["Uid"]
    assert all(int(g) != 0 for g in kst["Gid"].split()), kst["Gid"]
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(kst[cap], 16) == 0, (cap, kst[cap])
    assert kst.get("NoNewPrivs") == "1", kst

    # it still does its job: an sftp session through the confined edge
    port = sp.free_port()
    sp.start_agent(tmp_path, pki, edge, {"sftp": (port, [sshd.port])})
    sftp_roundtrip(port, sshd, tmp_path, 4 * MiB, "confined")

    # the key: in the key process (positive control), not in the relay
    k = key_scalar(pki.edge_key)
    needles = [k, k[::-1]]           # big-endian, and as little-endian limbs
    assert memory_contains(key, needles), \
        "the memory scan cannot see the key even where it is"
    assert not memory_contains(pid, needles), \
        "the private key is in the memory of the internet-facing process"


def test_only_the_dialler_may_connect(tmp_path, pki):
    """In every mode the relay process's filter denies connect() (its
    self-test tries it), it has no capability, and the dialler is
    confined too: no capability, or with --active-ftp-port20 only
    CAP_NET_BIND_SERVICE (to leave from port 20), which the relay
    process then still lacks."""
    for i, extra in enumerate(([], ["--allow-outbound"],
                               ["--allow-outbound", "--dial-deny", "none",
                                "--active-ftp-port20"])):
        edge = sandboxed_edge(tmp_path, pki, extra, tag=f"edge{i}")
        edge.proc.wait_log("sandbox selftest: connect", timeout=30)
        log = edge.proc.log()
        assert "sandbox selftest: connect denied: Operation not permitted" \
            in log, log
        assert "SUCCEEDED" not in log, log
        st = status(edge.proc.pid)
        assert st["Seccomp"] == "2" and int(st["CapEff"], 16) == 0, st
        assert int(st["CapPrm"], 16) == 0 and int(st["CapBnd"], 16) == 0
        dst = confined_status(helpers(edge.proc.pid)["sallyport-dial"],
                              "the dialler")
        assert all(int(u) != 0 for u in dst["Uid"].split()), dst["Uid"]
        assert dst.get("NoNewPrivs") == "1", dst
        want = CAP_NET_BIND_SERVICE if "--active-ftp-port20" in extra else 0
        for cap in ("CapEff", "CapPrm", "CapBnd"):
            assert int(dst[cap], 16) == want, (extra, cap, dst[cap])
        assert int(dst["CapInh"], 16) == 0 and int(dst["CapAmb"], 16) == 0
        edge.proc.stop()


def test_edge_without_user_is_still_filtered(tmp_path, pki):
    edge = sp.start_edge(tmp_path, pki, extra=["--sandbox-selftest"])
    edge.proc.wait_log("sandbox selftest: unix socket", timeout=30)
    assert status(edge.proc.pid)["Seccomp"] == "2"
    assert "sandbox selftest: exec denied" in edge.proc.log()


class Chargen:
    """A backend that writes forever to whoever connects: the test's
    'peer that stops reading' never reads it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.sent = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        self.sock.settimeout(0.2)
        block = os.urandom(65536)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._push, args=(c, block),
                             daemon=True).start()

    def _push(self, c, block):
        c.settimeout(0.5)
        while not self.stop.is_set():
            try:
                self.sent += c.send(block)
            except socket.timeout:
                continue
            except OSError:
                break
        c.close()


def test_hostile_input_while_sftp_runs(tmp_path, pki, sshd):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    assert hard >= 6000, "the test needs 6000 descriptors"

    edge = sandboxed_edge(tmp_path, pki, extra=["--claim-timeout", "5",
                                                "--handshake-timeout", "3"])
    pid = edge.proc.pid
    sftp_port, trap_port, flood_port = (sp.free_port() for _ in range(3))
    chargen = Chargen()
    sp.start_agent(tmp_path, pki, edge, {"sftp": (sftp_port, [sshd.port]),
                                         "flood": (flood_port, [chargen.port])})
    # a second agent that offers "trap" and never claims a client
    fake = fa.FakeAgent(edge.control_port, pki.ca_crt, pki.agent_crt,
                        pki.agent_key, name="never-claims")
    fake.connect()
    assert fake.svc_open("trap", f"{LOOPBACK}:{trap_port}")[0] == 0
    # and one with no service, whose data links misbehave
    rogue = fa.FakeAgent(edge.control_port, pki.ca_crt, pki.agent_crt,
                         pki.agent_key, name="rogue")
    rogue.connect()

    # the legitimate transfer, from its own address, during the attack
    result = {}

    def legit():
        try:
            sftp_roundtrip(sftp_port, sshd, tmp_path, 20 * MiB, "legit",
                           bind="127.0.0.2")
            result["ok"] = True
        except BaseException as e:          # reported below
            result["err"] = e
    t = threading.Thread(target=legit)
    t.start()

    held = []
    try:
        # 1. 5,000 clients nobody claims: 400 from one address (over the
        #    per-address limit), then the rest from 20 others (over the
        #    limit of clients waiting to be claimed)
        for i in range(5000):
            s = socket.socket()
            s.setblocking(False)
            s.bind(("127.0.0.9" if i < 400 else f"127.0.0.{10 + i % 20}", 0))
            try:
                s.connect((LOOPBACK, trap_port))
            except BlockingIOError:
                pass
            held.append(s)
        # 2. a peer that stops reading while the backend floods it
        stuck = socket.create_connection((LOOPBACK, flood_port))
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        held.append(stuck)
        # 3. slowloris: half a TLS record on the control port, one byte
        #    at a time, and half a request on a service port
        slow = []
        for _ in range(50):
            c = socket.create_connection((LOOPBACK, edge.control_port))
            c.send(b"\x16")
            slow.append(c)
            s = socket.create_connection((LOOPBACK, sftp_port),
                                         source_address=("127.0.0.3", 0))
            s.send(b"SSH-2.0-")
            slow.append(s)
        held += slow
        # 4. TLS garbage, and 5. oversize and truncated frames from an
        #    authenticated peer
        for _ in range(50):
            g = socket.create_connection((LOOPBACK, edge.control_port))
            g.sendall(os.urandom(2048))
            g.close()
        ctx = fa.client_context(pki.ca_crt, pki.agent_crt, pki.agent_key)
        big = fa.tls_connect(ctx, edge.control_port)
        big.sendall(p.raw_frame(p.HELLO, length=1 << 20))
        held.append(big)
        trunc = fa.tls_connect(ctx, edge.control_port)
        trunc.sendall(p.raw_frame(p.HELLO)[:3])
        trunc.close()
        # 6. data links: forged proofs, replays, and an authenticated
        #    link that breaks the mux rules
        for i in range(50):
            s, _, _ = rogue.greet(plain=False, counter=1000 + i,
                                  proof=os.urandom(32))
            held.append(s)
        bad = rogue.mux_link()
        s, _, _ = rogue.greet(plain=False, counter=bad.counter)   # replay
        held.append(s)
        bad.send(p.mux_data(7, b"never opened"))
        for i in range(6):                # keep the slow ones dribbling
            for c in slow[::2]:
                try:
                    c.send(b"\x03")
                except OSError:
                    pass
            time.sleep(0.5)

        t.join(timeout=600)
        assert result.get("ok"), f"legitimate sftp failed: {result.get('err')}"
        sp.wait_until(lambda: "refused: protocol error: frame too large"
                      in edge.proc.log(), 10, "oversize frame refused")
        assert bad.wait_closed(10) is not None, "mux link not dropped"
        edge.proc.wait_log(["multiplexed data link of agent rogue",
                            "lost: mux frame for a stream never opened"])
        assert edge.proc.count("refused: wrong link proof") == 50
        edge.proc.wait_log("refused: link counter used already")
        assert not rogue.closed.is_set(), "the rogue's control was cut"
        sp.wait_until(lambda: "limit handshake_timeout hit" in edge.proc.log(),
                      15, "slow handshakes cut")
        sp.wait_until(lambda: "limit claim_timeout hit" in edge.proc.log(),
                      15, "unclaimed clients closed")
    finally:
        chargen.stop.set()
        for s in held:
            try:
                s.close()
            except OSError:
                pass
        fake.close()
        rogue.close()

    log = edge.proc.log()
    assert "limit pending hit" in log, "5,000 unclaimed clients: no limit"
    assert "limit per_ip hit" in log, "250 per address: no per-address limit"
    assert edge.proc.alive(), edge.proc.tail()
    peak = int(status(pid)["VmHWM"].split()[0])
    print(f"edge peak RSS under attack: {peak} KiB")
    if "sanitizer build" not in log:      # ASan's shadow memory is not ours
        assert peak < EDGE_RSS_BOUND_KIB, f"edge peak RSS {peak} KiB"
    # and it is still fully working afterwards
    sftp_roundtrip(sftp_port, sshd, tmp_path, 1 * MiB, "after",
                   bind="127.0.0.2")
