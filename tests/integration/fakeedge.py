"""A fake edge: the edge's side of docs/protocol.md in Python, so that a
test can act as an edge, well-behaved or not, against the real agent.
It is the mirror image of fakeagent.py (a fake agent against the real
edge).

    fe = FakeEdge(pki.edge_crt, pki.edge_key, pki.ca_crt)
    # an agent configured with "edge = 127.0.0.1:<fe.port>" connects:
    ctl = fe.control()                   # its control connection, after
                                         # HELLO -> HELLO_OK
    ctl.services                         # {name: its SVC_OPEN}
    ml = fe.mux_link()                   # a multiplexed data link
    st = ml.open(p.sess_open(1, SERVICE="echo", CLIENT_ADDR=...))
    st.send(b"..."); st.recv_exact(n); st.wait_fin()
    pl = fe.plain_link()                 # a parked plain link
    pl.start(p.sess_open(...)); pl.send(b"..."); pl.recv_until_end()

It is a real TLS 1.3 server with a certificate of the test PKI, so the
agent takes it for its edge; it checks the agent's client certificate,
hands out a link key with HELLO_OK and checks every LINK_HELLO's proof,
counter and kind, as the real edge does. Everything past that is the
test's to break: every object has a raw send(), and the behaviours that
a correct edge has (answering PING, SVC_OPEN, STATS_REQ and OUT_POLICY,
crediting what it reads, pinging links) can each be turned off.

The control connection and each multiplexed link run in a thread of their
own (the one that touches the TLS socket); plain links are used from the
test's thread. Standard library only (plus ctypes, for TLS post-handshake
messages that Python's ssl module does not expose); listens on 127.0.0.1.
"""

import ctypes
import ctypes.util
import os
import queue
import socket
import ssl
import struct
import threading
import time

import fakeagent as fa
import spproto as p
from spproto import ProtocolError  # noqa: F401 - for the tests

LOOPBACK = "127.0.0.1"


def server_context(cert, key, ca, tls12=False):
    """The edge's TLS: 1.3 only (1.2 only with tls12, to try a
    downgrade), a client certificate from ca required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if tls12:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca))
    return ctx


# --------------------------------------------------------------------------
# TLS post-handshake messages

_libssl = None


def _ssl_lib():
    global _libssl
    if _libssl is None:
        _libssl = ctypes.CDLL(ctypes.util.find_library("ssl") or "libssl.so.3")
        _libssl.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _libssl.SSL_get_fd.argtypes = [ctypes.c_void_p]
        _libssl.SSL_version.argtypes = [ctypes.c_void_p]
    return _libssl


def ssl_pointer(sock):
    """The OpenSSL SSL* under a Python SSLSocket. CPython's _ssl object
    starts with the object header (two pointers), a weak reference to the
    socket, then the SSL*; the pointer is checked against the socket's
    descriptor before use, so a different layout fails loudly."""
    obj = sock._sslobj
    ptr = ctypes.c_void_p.from_address(id(obj) + 3 * ctypes.sizeof(
        ctypes.c_void_p)).value
    lib = _ssl_lib()
    if not ptr or lib.SSL_get_fd(ptr) != sock.fileno():
        raise AssertionError("cannot find the SSL object of a Python "
                             "socket: CPython's layout changed")
    return ptr


def post_handshake_auth(sock):
    """Ask the peer for a certificate after the handshake (TLS 1.3
    post-handshake authentication): True if OpenSSL could queue the
    request, False if the peer never offered it (OpenSSL refuses)."""
    lib = _ssl_lib()
    lib.SSL_verify_client_post_handshake.argtypes = [ctypes.c_void_p]
    ok = lib.SSL_verify_client_post_handshake(ssl_pointer(sock)) == 1
    lib.ERR_clear_error()
    return ok


def key_update(sock, request_peer=True):
    """Queue a TLS 1.3 KeyUpdate (asking the peer to update its keys too
    when request_peer); it goes out with the next write."""
    lib = _ssl_lib()
    if lib.SSL_key_update(ssl_pointer(sock), 1 if request_peer else 0) != 1:
        raise AssertionError("SSL_key_update failed")


# --------------------------------------------------------------------------
# the edge

class FakeEdge:
    """A TLS 1.3 server that agents take for their edge.

    controls: queue of EdgeControl, one per agent control connection
    that sent HELLO; links: queue of EdgeMuxLink / EdgePlainLink, once
    their LINK_HELLO passed. events: what happened that a test may look
    for: ("tls", error) for a handshake that failed, ("link", why) for
    a greeting refused."""

    def __init__(self, cert, key, ca, port=0, host=LOOPBACK, name="fake-edge",
                 tls12=False, plain_ok=True, slow=False, tickets=None):
        """slow: HELLO_OK one byte per TLS record; tickets: session
        tickets sent after each handshake (Python's default is 2)."""
        self.ctx = server_context(cert, key, ca, tls12=tls12)
        if tickets is not None:
            self.ctx.num_tickets = tickets
        self.slow = slow
        self.name = name
        self.plain_ok = plain_ok
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(1024)
        self.host = host
        self.port = self.lsock.getsockname()[1]
        self.addr = f"{host}:{self.port}"
        self.controls = queue.Queue()
        self.links = queue.Queue()
        self.events = []
        self.lock = threading.Lock()
        self.keys = {}              # KEY_ID -> EdgeControl
        self.conns = []             # everything to close
        self.accepted = 0
        # what HELLO_OK carries; a test may replace it: f(hello) -> bytes
        self.hello_reply = None
        self.last_control = None
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def event(self, kind, detail):
        with self.lock:
            self.events.append((kind, detail))

    def events_of(self, kind):
        with self.lock:
            return [d for k, d in self.events if k == kind]

    def _accept_loop(self):
        while not self._closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._greet, args=(c,),
                             daemon=True).start()

    def _greet(self, raw):
        """First byte 0x16: TLS, a control connection or a mux link; else
        a plain link."""
        with self.lock:
            self.conns.append(raw)
        try:
            raw.settimeout(10)
            first = raw.recv(1, socket.MSG_PEEK)
            if not first:
                raw.close()
                return
            if first[0] == 0x16:
                try:
                    sock = self.ctx.wrap_socket(raw, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.event("tls", str(e))
                    raw.close()
                    return
                with self.lock:
                    self.conns.append(sock)
                plain = False
            else:
                sock, plain = raw, True
            sock.settimeout(10)
            reader = p.Reader(sock)
            f = reader.frame()
        except (OSError, EOFError, ProtocolError) as e:
            self.event("greeting", str(e))
            raw.close()
            return
        if f.type == p.HELLO and not plain:
            c = EdgeControl(self, sock, reader, f)
            c.begin()
            return
        if f.type == p.LINK_HELLO:
            why = self._check_proof(f, plain)
            if why is not None:
                self.event("link", why)
                sock.close()
                return
            if plain:
                link = EdgePlainLink(self, sock, reader, f)
            else:
                link = EdgeMuxLink(self, sock, reader, f)
                link.start()
            with self.lock:
                link.control = self.keys.get(f["KEY_ID"])
            self.links.put(link)
            return
        self.event("greeting", f"first frame {f.name}")
        sock.close()

    def _check_proof(self, f, plain):
        with self.lock:
            ctl = self.keys.get(f["KEY_ID"])
        if ctl is None:
            return "unknown key id"
        kind = p.LINK_PLAIN if plain else p.LINK_TLS
        if f["PROOF"] != p.link_proof(ctl.key, ctl.kid, f["COUNTER"], kind):
            return "bad proof"
        with ctl.lock:
            if f["COUNTER"] in ctl.counters:
                return "counter used already"
            ctl.counters.add(f["COUNTER"])
        if plain and not self.plain_ok:
            return "plain link"
        return None

    # ---- for the tests

    def control(self, timeout=20):
        """The next control connection that sent HELLO (HELLO_OK sent)."""
        try:
            return self.controls.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no agent connected to the fake edge "
                                 f"within {timeout}s (events: "
                                 f"{self.events[-5:]})") from None

    def _link(self, cls, timeout):
        """The next link of kind cls proved with the key of the latest
        control connection (links of earlier ones are dropped: the agent
        closes them)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {cls.__name__} within {timeout}s")
            try:
                link = self.links.get(timeout=left)
            except queue.Empty:
                continue
            if link.control is not self.last_control or (
                    isinstance(link, _Pumped) and link.closed.is_set()):
                continue
            if isinstance(link, cls):
                return link
            self.links.put(link)
            time.sleep(0.01)

    def mux_link(self, timeout=20):
        return self._link(EdgeMuxLink, timeout)

    def plain_link(self, timeout=20):
        return self._link(EdgePlainLink, timeout)

    def close(self):
        """Stop listening and close every connection (the agent sees its
        edge go away)."""
        self._closed = True
        try:
            # shutdown wakes the accept() of the other thread, and the
            # port is free at once for a restart on it
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            if isinstance(c, _Pumped):
                c.close()
            else:
                try:
                    c.close()
                except OSError:
                    pass


# --------------------------------------------------------------------------
# a thread per TLS connection

class _Pumped(fa._Pumped):
    """fakeagent's pumped socket, plus what an edge does to it: pause
    reading (a peer that stops reading), and write data one byte per TLS
    record."""

    def __init__(self, edge, sock, reader):
        super().__init__(sock, reader)
        self.edge = edge
        self.paused = threading.Event()
        with edge.lock:
            edge.conns.append(self)

    def send_slowly(self, data):
        """data one byte per write, so one byte per TLS record."""
        self.outq.put(("slow", data))

    def send_key_update(self, request_peer=True):
        self.outq.put(("keyupdate", request_peer))

    def flood(self, data, stop):
        """Send data again and again, as fast as the peer takes it, until
        the event stop is set (nothing is read meanwhile)."""
        self.outq.put(("flood", data, stop))

    def _loop(self):
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while not self._stop.is_set():
                while True:
                    try:
                        data = self.outq.get_nowait()
                    except queue.Empty:
                        break
                    self.sock.settimeout(10)
                    if isinstance(data, tuple) and data[0] == "slow":
                        for i in range(len(data[1])):
                            self.sock.sendall(data[1][i:i + 1])
                    elif isinstance(data, tuple) and data[0] == "flood":
                        while not data[2].is_set():
                            self.sock.sendall(data[1])
                    elif isinstance(data, tuple) and data[0] == "keyupdate":
                        # SSL_do_handshake sends a queued KeyUpdate.
                        key_update(self.sock, data[1])
                        self.sock.do_handshake()
                    else:
                        self.sock.sendall(data)
                self.tick()
                if self.paused.is_set():
                    time.sleep(self.STEP)
                    continue
                self.sock.settimeout(self.STEP)
                try:
                    self.read_one()
                except socket.timeout:
                    continue
        except Exception as e:      # EOF, reset, TLS or protocol error
            if not self._stop.is_set():
                self.error = e
        finally:
            self.closed.set()
            self.lost()


# --------------------------------------------------------------------------
# the control connection

class EdgeControl(_Pumped):
    """An agent's control connection. services: {name: SVC_OPEN};
    frames: queue of every other frame the agent sent (PING, PONG-less
    STATS_REQ and SVC_OPEN answered are not queued unless the answer is
    turned off). Switches: answer_ping, answer_svc (SVC_RESULT status,
    or None for no answer), answer_stats, answer_policy."""

    def __init__(self, edge, sock, reader, hello):
        super().__init__(edge, sock, reader)
        self.hello = hello
        self.agent_name = hello["NAME"]
        self.plain = hello.get("DATA_LINK", 0) == p.LINK_PLAIN
        self.key = os.urandom(32)
        self.kid = int.from_bytes(os.urandom(8), "big") or 1
        self.counters = set()
        self.lock = threading.Lock()
        self.services = {}
        self.frames = queue.Queue()
        self.answer_ping = True
        self.answer_svc = 0
        self.answer_stats = True
        self.answer_policy = 0
        self.pings = 0
        self.last_nonce = None

    def begin(self):
        with self.edge.lock:
            self.edge.keys[self.kid] = self
            self.edge.last_control = self
        if self.edge.hello_reply is not None:
            out = self.edge.hello_reply(self)
        else:
            out = self.hello_ok()
        if out and self.edge.slow:
            for i in range(len(out)):
                self.sock.sendall(out[i:i + 1])
        elif out:
            self.sock.sendall(out)
        self.start()
        self.edge.controls.put(self)

    def hello_ok(self, **extra):
        return p.frame(p.HELLO_OK, VERSION=p.VERSION, NAME=self.edge.name,
                       LINK_KEY=self.key, KEY_ID=self.kid, **extra)

    def read_one(self):
        f = self.reader.frame()
        if f.type == p.PING:
            self.pings += 1
            self.last_nonce = f["NONCE"]
            if self.answer_ping:
                self.sock.settimeout(10)
                self.sock.sendall(p.frame(p.PONG, NONCE=f["NONCE"]))
            return
        if f.type == p.STATS_REQ:
            if self.answer_stats:
                self.sock.settimeout(10)
                self.sock.sendall(p.frame(
                    p.STATS, STATS="sessions_accepted_total=0"))
            return
        if f.type == p.SVC_OPEN:
            with self.lock:
                self.services[f["SERVICE"]] = f
            if self.answer_svc is not None:
                self.sock.settimeout(10)
                self.sock.sendall(p.frame(p.SVC_RESULT, SERVICE=f["SERVICE"],
                                          STATUS=self.answer_svc))
            self.frames.put(f)
            return
        if f.type == p.OUT_POLICY and self.answer_policy is not None:
            self.sock.settimeout(10)
            self.sock.sendall(p.frame(p.OUT_POLICY_OK,
                                      STATUS=self.answer_policy))
        self.frames.put(f)

    def lost(self):
        with self.edge.lock:
            self.edge.keys.pop(self.kid, None)
        if self.error is not None:
            self.frames.put(self.error)

    def recv(self, want=None, timeout=10):
        """The next frame of type want (others dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {p.TYPE_NAMES.get(want, want)} "
                                     f"from the agent in {timeout}s")
            try:
                f = self.frames.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(f, Exception):
                raise f
            if want is None or f.type == want:
                return f

    def wait_services(self, names, timeout=20):
        fa_deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if all(n in self.services for n in names):
                    return dict(self.services)
            if time.monotonic() > fa_deadline:
                raise AssertionError(f"services {names} not pushed; got "
                                     f"{list(self.services)}")
            time.sleep(0.02)

    def send_frame(self, ftype, **attrs):
        self.send(p.frame(ftype, **attrs))


# --------------------------------------------------------------------------
# a multiplexed link: the edge opens streams

class EdgeStream(fa.Stream):
    """One stream the fake edge opened: fakeagent's Stream (data, fin,
    rst: what the agent sent on it; credit: what the edge may still
    send), plus the total read and the end of the agent's direction."""

    def __init__(self, link, sid):
        super().__init__(link, sid, None)
        self.total = 0

    def recv_until_end(self, timeout=20):
        """Everything up to the agent's FIN or RST: (bytes, "fin" or the
        RST's (END, text))."""
        self._wait(lambda: self.fin or self.rst, timeout, "end")
        with self.link.cond:
            out = bytes(self.data)
            del self.data[:]
        return out, "fin" if self.fin else self.rst

    def wait_end(self, timeout=10):
        self._wait(lambda: self.fin or self.rst is not None, timeout, "end")
        return self.rst


class EdgeMuxLink(_Pumped):
    """A TLS data link after its LINK_HELLO: the edge's side. open()
    starts a stream with a SESS_OPEN; what the agent sends is credited
    back at once (auto_credit = False: a stalled reader); PINGs are
    answered and sent every 2 s (keepalive = False stops both)."""

    def __init__(self, edge, sock, reader, hello):
        super().__init__(edge, sock, reader)
        self.hello = hello
        self.cond = threading.Condition()
        self.streams = {}
        self.next_sid = 1
        self.auto_credit = True
        self.keepalive = True
        self.frames_seen = []       # (sid, type) from the agent, in order
        self.unknown = []           # (sid, type) for streams not opened here
        self._next_ping = time.monotonic() + 1.0

    def tick(self):
        if self.keepalive and time.monotonic() >= self._next_ping:
            self.sock.settimeout(10)
            self.sock.sendall(p.mux_frame(0, p.MUX_PING, b"keepaliv"))
            self._next_ping = time.monotonic() + 2.0

    def open(self, sess_open, sid=None):
        """A new stream with SESS_OPEN bytes as its OPEN payload; sid
        overrides the next id (hostile)."""
        with self.cond:
            if sid is None:
                sid = self.next_sid
            self.next_sid = max(self.next_sid, (sid + 1) & 0xFFFFFFFF)
            st = EdgeStream(self, sid)
            self.streams[sid] = st
        self.send(p.mux_frame(sid, p.MUX_OPEN, sess_open))
        return st

    def read_one(self):
        sid, mtype, flags, payload = p.read_mux(self.reader)
        self.frames_seen.append((sid, mtype))
        if mtype == p.MUX_PING:
            if self.keepalive:
                self.sock.settimeout(10)
                self.sock.sendall(p.mux_frame(0, p.MUX_PONG, payload))
            return
        if mtype == p.MUX_PONG:
            return
        with self.cond:
            st = self.streams.get(sid)
            if st is None:
                self.unknown.append((sid, mtype))
            elif mtype == p.MUX_DATA:
                st.data += payload
                st.total += len(payload)
                st.owed += len(payload)
                if self.auto_credit and st.owed >= p.MUX_WINDOW // 4:
                    self.outq.put(p.mux_credit(sid, st.owed))
                    st.owed = 0
            elif mtype == p.MUX_FIN:
                st.fin = True
            elif mtype == p.MUX_RST:
                st.rst = p.decode_rst(payload)
            elif mtype == p.MUX_CREDIT:
                st.credit += struct.unpack(">I", payload)[0]
            self.cond.notify_all()

    def lost(self):
        with self.cond:
            self.cond.notify_all()


# --------------------------------------------------------------------------
# a plain link: parked until the edge writes SESS_OPEN on it

class EdgePlainLink:
    """A plain data link, used from the test's thread."""

    def __init__(self, edge, sock, reader, hello):
        self.edge = edge
        self.sock = sock
        self.reader = reader
        self.hello = hello
        self.pending = bytearray()  # read from chunks, not yet taken

    def start(self, sess_open):
        self.sock.settimeout(10)
        self.sock.sendall(sess_open)

    def send(self, data):
        self.sock.sendall(p.chunk(data))

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_end(self):
        self.sock.sendall(p.END_MARKER)

    def recv_chunk(self, timeout=10):
        self.sock.settimeout(timeout)
        return p.read_chunk(self.reader)

    def recv_until_end(self, timeout=10):
        """The agent's bytes up to the end of its direction: (bytes, how):
        "end" (its marker), "fin" (a FIN before it) or ("refused", (END,
        text))."""
        out, self.pending = self.pending, bytearray()
        while True:
            kind, data = self.recv_chunk(timeout)
            if kind == "data":
                out += data
            elif kind in ("end", "fin"):
                return bytes(out), kind
            else:
                return bytes(out), (kind, data)

    def recv_exact(self, n, timeout=10):
        while len(self.pending) < n:
            kind, data = self.recv_chunk(timeout)
            if kind != "data":
                raise AssertionError(f"{kind} {data} after "
                                     f"{len(self.pending)} of {n} bytes")
            self.pending += data
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out

    def wait_closed(self, timeout=10):
        return self.reader.rest() + p.closed_unanswered(self.sock, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# certificates

def issue_edge_cert(pki, d, names, tag="edge2"):
    """Another edge certificate from pki's CA, with names (DNS names or
    IP addresses) as its subject alternative names: (cert, key)."""
    import ipaddress
    import subprocess
    d.mkdir(parents=True, exist_ok=True)
    key, csr, crt = d / f"{tag}.key", d / f"{tag}.csr", d / f"{tag}.crt"
    ext = d / f"{tag}.ext"
    sans = []
    for n in names:
        try:
            ipaddress.ip_address(n)
            sans.append(f"IP:{n}")
        except ValueError:
            sans.append(f"DNS:{n}")
    ext.write_text("basicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n"
                   f"subjectAltName={','.join(sans)}\n")
    run = dict(check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
                    "-out", str(csr), "-subj", f"/CN={names[0]}"], **run)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA",
                    str(pki.ca_crt), "-CAkey", str(pki.ca_key),
                    "-CAcreateserial", "-CAserial", str(d / f"{tag}.srl"),
                    "-days", "2", "-sha256", "-extfile", str(ext),
                    "-out", str(crt)], **run)
    return crt, key
