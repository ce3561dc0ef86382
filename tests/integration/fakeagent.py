"""A fake agent: the agent's side of docs/protocol.md in Python, so that a
test can act as an agent, well-behaved or not, against the real edge.

    a = FakeAgent(edge.control_port, pki.ca_crt, pki.agent_crt,
                  pki.agent_key)
    a.connect()                          # TLS, HELLO -> HELLO_OK
    a.svc_open("echo", "127.0.0.1:PORT") # -> (status, text)
    ml = a.mux_link()                    # a multiplexed TLS data link
    st = ml.accept()                     # a stream the edge opened
    pl = a.plain_link()                  # a plain link (plain=True agents)
    f = pl.sess_open()                   # the SESS_OPEN that starts one

The control connection and every multiplexed link run in a thread of
their own (which alone touches the TLS socket, so reads and writes never
overlap) and answer the edge's PINGs. Plain links are used from the
test's thread. Standard library only; talks to 127.0.0.1 only.
"""

import queue
import select
import socket
import ssl
import threading
import time

import spproto as p
from spproto import ProtocolError  # noqa: F401 - for the tests

LOOPBACK = "127.0.0.1"


def client_context(ca, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def tls_connect(ctx, port, host=LOOPBACK, timeout=10):
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise


class _Pumped:
    """A TLS socket served by one thread: frames to send wait in a queue,
    and what arrives goes to handle() (in that thread). closed is set
    once the connection is gone; error says why (None: closed by us)."""

    STEP = 0.02

    def __init__(self, sock, reader):
        self.sock = sock
        self.reader = reader
        self.outq = queue.Queue()
        self.closed = threading.Event()
        self._stop = threading.Event()
        self.error = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()

    def send(self, data):
        self.outq.put(data)

    def tick(self):
        """Called about every STEP seconds in the thread."""

    def read_one(self):
        raise NotImplementedError

    def _loop(self):
        try:
            while not self._stop.is_set():
                while True:
                    try:
                        data = self.outq.get_nowait()
                    except queue.Empty:
                        break
                    self.sock.settimeout(10)
                    self.sock.sendall(data)
                self.tick()
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

    def lost(self):
        """Called once, in the thread, when the connection is gone."""

    def wait_closed(self, timeout=10):
        """Wait until the edge closed the connection; its error."""
        if not self.closed.wait(timeout):
            raise AssertionError(f"connection still open after {timeout}s")
        return self.error

    def close(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass


# --------------------------------------------------------------------------
# the control connection

class FakeAgent(_Pumped):
    def __init__(self, port, ca, cert, key, name="fake1", plain=False,
                 host=LOOPBACK):
        """plain: declare plain data links in HELLO (DATA_LINK = 1)."""
        self.port = port
        self.host = host
        self.name = name
        self.plain = plain
        self.ctx = client_context(ca, cert, key)
        self.frames = queue.Queue()
        self.local_port = None
        self.counter = 0
        self._nonce = 0
        self._next_ping = 0.0
        self._links = []
        super().__init__(None, None)

    def connect(self, timeout=10):
        """TLS handshake, HELLO; returns HELLO_OK and keeps its link key.
        Raises on any failure (ssl.SSLError, EOFError, ProtocolError)."""
        raw = socket.create_connection((self.host, self.port),
                                       timeout=timeout)
        self.local_port = raw.getsockname()[1]
        try:
            self.sock = self.ctx.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        extra = {"DATA_LINK": p.LINK_PLAIN} if self.plain else {}
        self.sock.sendall(p.frame(p.HELLO, VERSION=p.VERSION, NAME=self.name,
                                  **extra))
        self.reader = p.Reader(self.sock)
        f = self.reader.frame()
        if f.type == p.ERROR:
            raise ProtocolError(f"edge answered ERROR: {f['TEXT']}")
        if f.type != p.HELLO_OK:
            raise ProtocolError(f"expected HELLO_OK, got {f}")
        if f["VERSION"] != p.VERSION:
            raise ProtocolError(f"edge chose version {f['VERSION']}")
        self.hello_ok = f
        self.key, self.kid = f["LINK_KEY"], f["KEY_ID"]
        self._next_ping = time.monotonic() + 2.0
        self.start()
        return f

    def tick(self):
        if time.monotonic() >= self._next_ping:
            self._nonce += 1
            self.sock.settimeout(10)
            self.sock.sendall(p.frame(p.PING, NONCE=self._nonce))
            self._next_ping = time.monotonic() + 2.0

    def read_one(self):
        f = self.reader.frame()
        if f.type != p.PONG:
            self.frames.put(f)

    def lost(self):
        if self.error is not None:
            self.frames.put(self.error)

    def send_frame(self, ftype, **attrs):
        self.send(p.frame(ftype, **attrs))

    def recv(self, timeout=10, want=None):
        """The next frame from the edge (of type want if given; others
        are dropped). Raises what ended the connection, or TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no frame {p.TYPE_NAMES.get(want, want)} "
                                   f"from the edge in {timeout}s")
            try:
                f = self.frames.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(f, Exception):
                raise f
            if want is None or f.type == want:
                return f

    def svc_open(self, service, listen, timeout=10, **attrs):
        """SVC_OPEN (more attributes as keywords); (STATUS, TEXT) of the
        SVC_RESULT."""
        self.send_frame(p.SVC_OPEN, SERVICE=service, LISTEN=listen, **attrs)
        f = self.recv(timeout, want=p.SVC_RESULT)
        if f["SERVICE"] != service:
            raise ProtocolError(f"SVC_RESULT for {f['SERVICE']}")
        return f["STATUS"], f.get("TEXT", "")

    # ---- data links

    def next_counter(self):
        self.counter += 1
        return self.counter

    def greet(self, plain=None, counter=None, kid=None, proof=None,
              kind=None, timeout=10):
        """Open a data-link connection (plain TCP, else TLS) and send
        LINK_HELLO. Each of counter, kid, proof and kind (of the
        proof) replaces the right one, for hostile cases. Returns (socket,
        local port, counter used); the edge answers nothing."""
        plain = self.plain if plain is None else plain
        counter = self.next_counter() if counter is None else counter
        kid = self.kid if kid is None else kid
        if proof is None:
            if kind is None:
                kind = p.LINK_PLAIN if plain else p.LINK_TLS
            proof = p.link_proof(self.key, kid, counter, kind)
        raw = socket.create_connection((self.host, self.port),
                                       timeout=timeout)
        lport = raw.getsockname()[1]
        try:
            sock = raw if plain else self.ctx.wrap_socket(
                raw, server_hostname=self.host)
            sock.settimeout(timeout)
            sock.sendall(p.link_hello(kid, counter, proof))
        except BaseException:
            raw.close()
            raise
        return sock, lport, counter

    def mux_link(self, **kw):
        """A multiplexed link (TLS), served by a thread of its own; the
        keywords go to greet()."""
        sock, lport, ctr = self.greet(plain=False, **kw)
        ml = MuxLink(sock, lport, ctr)
        ml.start()
        self._links.append(ml)
        return ml

    def plain_link(self, **kw):
        """A plain link, parked at the edge once it took the greeting;
        the keywords go to greet()."""
        sock, lport, ctr = self.greet(plain=True, **kw)
        pl = PlainLink(sock, lport, ctr)
        self._links.append(pl)
        return pl

    def close(self):
        for link in self._links:
            link.close()
        super().close()


# --------------------------------------------------------------------------
# a multiplexed link

class Stream:
    """One stream of a MuxLink (opened by the edge). open is its
    SESS_OPEN; data, fin and rst what the edge sent on it."""

    def __init__(self, link, sid, open_frame):
        self.link = link
        self.sid = sid
        self.open = open_frame
        self.data = bytearray()
        self.fin = False
        self.rst = None             # (END name, text)
        self.credit = p.MUX_WINDOW  # what we may send
        self.owed = 0               # received, not credited back

    def _wait(self, pred, timeout, what):
        with self.link.cond:
            if not self.link.cond.wait_for(
                    lambda: pred() or self.link.closed.is_set(), timeout):
                raise AssertionError(f"stream {self.sid}: no {what} within "
                                     f"{timeout}s")
            if not pred():
                raise AssertionError(f"stream {self.sid}: link closed "
                                     f"({self.link.error}) before {what}")

    def recv_exact(self, n, timeout=10):
        """n bytes from the edge (fewer if the stream ended first)."""
        self._wait(lambda: len(self.data) >= n or self.fin or self.rst,
                   timeout, f"{n} bytes")
        with self.link.cond:
            out = bytes(self.data[:n])
            del self.data[:n]
        return out

    def wait_fin(self, timeout=10):
        self._wait(lambda: self.fin or self.rst, timeout, "FIN")
        assert self.fin, f"stream {self.sid}: RST {self.rst}, not FIN"

    def wait_rst(self, timeout=10):
        self._wait(lambda: self.rst is not None, timeout, "RST")
        return self.rst

    def send(self, data, timeout=30):
        """data as DATA frames, within the credit the edge gives."""
        off = 0
        while off < len(data):
            self._wait(lambda: self.credit > 0, timeout, "credit")
            with self.link.cond:
                n = min(self.credit, len(data) - off)
                self.credit -= n
            self.link.send(p.mux_data(self.sid, data[off:off + n]))
            off += n

    def send_fin(self):
        self.link.send(p.mux_frame(self.sid, p.MUX_FIN))

    def send_rst(self, end="error", text="fake agent"):
        self.link.send(p.mux_rst(self.sid, end, text))


class MuxLink(_Pumped):
    """A TLS data link after LINK_HELLO: streams the edge opens are
    queued for accept(); PINGs are answered; what a stream receives is
    credited back at once (auto_credit=False stops that: a stalled
    reader). Hostile frames go out with send()."""

    def __init__(self, sock, local_port, counter):
        super().__init__(sock, p.Reader(sock))
        self.local_port = local_port
        self.counter = counter
        self.cond = threading.Condition()
        self.streams = {}
        self.opened = queue.Queue()
        self.auto_credit = True
        self.frames_seen = []       # (sid, type) of every frame, in order

    def read_one(self):
        sid, mtype, flags, payload = p.read_mux(self.reader)
        self.frames_seen.append((sid, mtype))
        if mtype == p.MUX_PING:
            self.sock.settimeout(10)
            self.sock.sendall(p.mux_frame(0, p.MUX_PONG, payload))
            return
        if mtype == p.MUX_PONG:
            return
        with self.cond:
            if mtype == p.MUX_OPEN:
                st = Stream(self, sid, p.decode_frame(payload))
                self.streams[sid] = st
                self.opened.put(st)
            elif sid not in self.streams:
                raise ProtocolError(f"mux frame {mtype} for stream {sid}")
            else:
                st = self.streams[sid]
                if mtype == p.MUX_DATA:
                    st.data += payload
                    st.owed += len(payload)
                    if self.auto_credit and st.owed >= p.MUX_WINDOW // 4:
                        self.outq.put(p.mux_credit(sid, st.owed))
                        st.owed = 0
                elif mtype == p.MUX_FIN:
                    st.fin = True
                elif mtype == p.MUX_RST:
                    st.rst = p.decode_rst(payload)
                elif mtype == p.MUX_CREDIT:
                    st.credit += int.from_bytes(payload, "big")
            self.cond.notify_all()

    def lost(self):
        with self.cond:
            self.cond.notify_all()

    def accept(self, timeout=10):
        """The next stream the edge opened (its SESS_OPEN is .open)."""
        try:
            return self.opened.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stream opened within {timeout}s "
                                 f"(link error: {self.error})") from None


# --------------------------------------------------------------------------
# a plain link

class PlainLink:
    """A plain data link, used from the test's thread: the edge writes
    SESS_OPEN on it, then the session's bytes come in chunks."""

    def __init__(self, sock, local_port, counter):
        self.sock = sock
        self.reader = p.Reader(sock)
        self.local_port = local_port
        self.counter = counter

    def sess_open(self, timeout=10):
        """The SESS_OPEN that starts a session on this link."""
        self.sock.settimeout(timeout)
        f = self.reader.frame()
        if f.type != p.SESS_OPEN:
            raise ProtocolError(f"expected SESS_OPEN, got {f}")
        return f

    def recv_chunk(self, timeout=10):
        """The next chunk: see spproto.read_chunk."""
        self.sock.settimeout(timeout)
        return p.read_chunk(self.reader)

    def recv_until_end(self, timeout=10):
        """The session's bytes from the edge up to the end of its
        direction: (bytes, how) where how is "end" (its marker) or "fin"
        (a FIN before the marker: the direction did not end, an error)."""
        out = bytearray()
        while True:
            kind, data = self.recv_chunk(timeout)
            if kind == "data":
                out += data
            elif kind in ("end", "fin"):
                return bytes(out), kind
            else:
                raise ProtocolError(f"edge sent {kind}: {data}")

    def recv_exact(self, n, timeout=10):
        """n payload bytes (chunk lengths taken apart)."""
        out = bytearray()
        while len(out) < n:
            kind, data = self.recv_chunk(timeout)
            if kind != "data":
                raise AssertionError(f"{kind} after {len(out)} of {n} bytes")
            out += data
        return bytes(out)

    def send(self, data):
        self.sock.sendall(p.chunk(data))

    def send_end(self):
        self.sock.sendall(p.END_MARKER)

    def send_fin(self):
        """A bare FIN: before send_end, the edge takes it as an error (an
        agent killed mid-transfer), never as the end of the session."""
        self.sock.shutdown(socket.SHUT_WR)

    def refuse(self, end="refused", text="refused by the fake agent"):
        """The refusal, then a FIN (unless the edge, done with the link
        once it read the refusal, has reset it already)."""
        self.sock.sendall(p.plain_refusal(end, text))
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def wait_closed(self, timeout=10):
        """Wait for the edge to close the link; the bytes it sent first."""
        return self.reader.rest() + p.closed_unanswered(self.sock, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def next_session(links, timeout=10):
    """The first of links (MuxLinks and PlainLinks) on which the edge
    starts a session: (link, Stream) for a MuxLink, (link, SESS_OPEN)
    for a PlainLink."""
    deadline = time.monotonic() + timeout
    while True:
        for link in links:
            if isinstance(link, MuxLink):
                try:
                    return link, link.opened.get_nowait()
                except queue.Empty:
                    pass
            elif link.reader.buf or select.select([link.sock], [], [], 0)[0]:
                return link, link.sess_open()
        if time.monotonic() >= deadline:
            raise AssertionError(f"no session on any of {len(links)} links "
                                 f"within {timeout}s")
        time.sleep(0.02)
