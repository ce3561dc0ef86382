"""A minimal Python implementation of the agent side of docs/protocol.md,
used by the integration tests to poke at the edge's data-link handling.

Standard library only. Talks only to 127.0.0.1.
"""

import hashlib
import hmac
import os
import queue
import socket
import ssl
import struct
import threading
import time

# frame types
HELLO, HELLO_OK, ERROR, SVC_OPEN, SVC_RESULT, SVC_CLOSE = 1, 2, 3, 4, 5, 6
SESS_NEW, SESS_REFUSE, PING, PONG = 7, 8, 9, 10
DATA_HELLO, DATA_OK = 16, 17
# data-link fast path (docs/protocol.md, "Fast path")
POOL_REQ, POOL_GRANT, POOL_HELLO, POOL_OK, SESS_ASSIGN = 18, 19, 20, 21, 22
A_DATA_LINK = 54
PLAIN_MAGIC = b"SPD1"

FRAME_NAMES = {HELLO: "HELLO", HELLO_OK: "HELLO_OK", ERROR: "ERROR",
               SVC_OPEN: "SVC_OPEN", SVC_RESULT: "SVC_RESULT",
               SVC_CLOSE: "SVC_CLOSE", SESS_NEW: "SESS_NEW",
               SESS_REFUSE: "SESS_REFUSE", PING: "PING", PONG: "PONG",
               DATA_HELLO: "DATA_HELLO", DATA_OK: "DATA_OK",
               POOL_REQ: "POOL_REQ", POOL_GRANT: "POOL_GRANT",
               POOL_HELLO: "POOL_HELLO", POOL_OK: "POOL_OK",
               SESS_ASSIGN: "SESS_ASSIGN"}

# attribute tags
A_VERSION, A_NAME, A_TEXT, A_SERVICE, A_LISTEN, A_STATUS = 1, 2, 3, 4, 5, 6
A_SESSION, A_CLIENT_ADDR, A_CLIENT_PORT, A_SECRET, A_NONCE = 7, 8, 9, 10, 11

MAX_PAYLOAD = 65536
HDR = struct.Struct(">HHI")
ATTR = struct.Struct(">HH")


class ProtocolError(Exception):
    pass


# --------------------------------------------------------------------------
# encoding

def attr(tag, value):
    if isinstance(value, str):
        value = value.encode("ascii")
    return ATTR.pack(tag, len(value)) + value


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u64(v):
    return struct.pack(">Q", v)


def frame(ftype, *attrs, flags=0):
    payload = b"".join(attrs)
    return HDR.pack(ftype, flags, len(payload)) + payload


def decode_attrs(payload):
    """payload -> {tag: [value, ...]}"""
    out = {}
    off = 0
    while off < len(payload):
        if off + 4 > len(payload):
            raise ProtocolError("truncated attribute header")
        tag, n = ATTR.unpack_from(payload, off)
        off += 4
        if off + n > len(payload):
            raise ProtocolError("attribute runs past payload")
        out.setdefault(tag, []).append(payload[off:off + n])
        off += n
    return out


class Frame:
    def __init__(self, ftype, flags, attrs):
        self.type = ftype
        self.flags = flags
        self.attrs = attrs

    def get(self, tag):
        v = self.attrs.get(tag)
        if not v:
            raise ProtocolError(f"{self} lacks attribute {tag}")
        if len(v) != 1:
            raise ProtocolError(f"{self} repeats attribute {tag}")
        return v[0]

    def u(self, tag):
        return int.from_bytes(self.get(tag), "big")

    def s(self, tag):
        return self.get(tag).decode("ascii", "replace")

    def text(self):
        v = self.attrs.get(A_TEXT)
        return v[0].decode("ascii", "replace") if v else ""

    def __repr__(self):
        return f"<Frame {FRAME_NAMES.get(self.type, self.type)}>"


class FrameReader:
    """Reads frames from a (TLS) socket, keeping whatever bytes follow."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by peer")
            self.buf += chunk

    def read(self):
        self._fill(HDR.size)
        ftype, flags, n = HDR.unpack_from(self.buf, 0)
        if n > MAX_PAYLOAD:
            raise ProtocolError(f"frame length {n}")
        self._fill(HDR.size + n)
        payload = self.buf[HDR.size:HDR.size + n]
        self.buf = self.buf[HDR.size + n:]
        return Frame(ftype, flags, decode_attrs(payload))

    def take_rest(self):
        b, self.buf = self.buf, b""
        return b


# --------------------------------------------------------------------------
# TLS

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


def tls_connect(ctx, port, host="127.0.0.1", timeout=10):
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise


# --------------------------------------------------------------------------
# the fake agent

class DataLink:
    """One data link: TLS connection + DATA_HELLO. .result is the first
    frame the edge sent back (DATA_OK or ERROR) or an exception
    (EOFError / OSError) when the edge closed the link instead."""

    def __init__(self, sock, reader, result):
        self.sock = sock
        self.reader = reader
        self.result = result

    @property
    def ok(self):
        return isinstance(self.result, Frame) and self.result.type == DATA_OK

    def recv_exact(self, n, timeout=10):
        """Read n relayed bytes (including any that arrived with DATA_OK)."""
        buf = self.reader.take_rest()
        self.sock.settimeout(timeout)
        while len(buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class FakeAgent:
    """Control connection in a background thread (which alone touches the
    TLS socket, so reads and writes never overlap); frames from the edge go
    to a queue, PINGs are sent every 2 s so the edge keeps us."""

    def __init__(self, port, ca, cert, key, name="fake1", host="127.0.0.1",
                 plain=False):
        """plain: declare plain data links in HELLO (DATA_LINK = 1)."""
        self.plain = plain
        self.port = port
        self.host = host
        self.name = name
        self.ctx = client_context(ca, cert, key)
        self.sock = None
        self.local_port = None
        self.frames = queue.Queue()
        self.outq = queue.Queue()
        self.closed = threading.Event()
        self.error = None
        self._thread = None

    # ---- control connection
    def connect(self, timeout=10):
        """TLS handshake + HELLO; return the HELLO_OK frame. Raises on any
        failure (ssl.SSLError, EOFError, ProtocolError, ...)."""
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        self.local_port = raw.getsockname()[1]
        try:
            self.sock = self.ctx.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        extra = [attr(A_DATA_LINK, u8(1))] if self.plain else []
        self.sock.sendall(frame(HELLO, attr(A_VERSION, u16(1)),
                                attr(A_NAME, self.name), *extra))
        self.reader = FrameReader(self.sock)
        f = self.reader.read()
        if f.type == ERROR:
            raise ProtocolError(f"edge answered ERROR: {f.text()}")
        if f.type != HELLO_OK:
            raise ProtocolError(f"expected HELLO_OK, got {f}")
        if f.u(A_VERSION) != 1:
            raise ProtocolError(f"edge chose version {f.u(A_VERSION)}")
        self.hello_ok = f
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return f

    def _loop(self):
        next_ping = time.monotonic() + 2.0
        nonce = 1
        try:
            while not self.closed.is_set():
                while True:
                    try:
                        data = self.outq.get_nowait()
                    except queue.Empty:
                        break
                    self.sock.settimeout(10)
                    self.sock.sendall(data)
                if time.monotonic() >= next_ping:
                    self.sock.settimeout(10)
                    self.sock.sendall(frame(PING, attr(A_NONCE, u64(nonce))))
                    nonce += 1
                    next_ping = time.monotonic() + 2.0
                self.sock.settimeout(0.05)
                try:
                    f = self.reader.read()
                except socket.timeout:
                    continue
                if f.type != PONG:
                    self.frames.put(f)
        except Exception as e:   # EOF, TLS error, protocol error
            if not self.closed.is_set():
                self.error = e
                self.frames.put(e)
        finally:
            self.closed.set()

    def send(self, data):
        self.outq.put(data)

    def recv(self, timeout=10, want=None):
        """Next frame from the edge (of type `want` if given; others are
        dropped). Raises the connection's exception if it died, or
        TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no frame {want} from edge in {timeout}s")
            try:
                f = self.frames.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(f, Exception):
                raise f
            if want is None or f.type == want:
                return f

    def svc_open(self, service, listen, timeout=10):
        """SVC_OPEN; return (status, text) from SVC_RESULT."""
        self.send(frame(SVC_OPEN, attr(A_SERVICE, service),
                        attr(A_LISTEN, listen)))
        f = self.recv(timeout, want=SVC_RESULT)
        if f.s(A_SERVICE) != service:
            raise ProtocolError(f"SVC_RESULT for {f.s(A_SERVICE)}")
        return f.u(A_STATUS), f.text()

    def wait_sess_new(self, timeout=10):
        """Wait for SESS_NEW; return a dict with id, service, addr, port,
        secret."""
        f = self.recv(timeout, want=SESS_NEW)
        secret = f.get(A_SECRET)
        if len(secret) != 32:
            raise ProtocolError(f"secret of {len(secret)} bytes")
        sid = f.u(A_SESSION)
        if sid == 0:
            raise ProtocolError("session id 0")
        return {"id": sid, "service": f.s(A_SERVICE),
                "addr": f.s(A_CLIENT_ADDR), "port": f.u(A_CLIENT_PORT),
                "secret": secret}

    def sess_refuse(self, sid, text="refused by fake agent"):
        self.send(frame(SESS_REFUSE, attr(A_SESSION, u64(sid)),
                        attr(A_TEXT, text)))

    # ---- data links
    def data_link(self, sid, secret, timeout=10, plain=False):
        """Open a data link, send DATA_HELLO(sid, secret), return a DataLink
        whose .result is the edge's first frame or the exception that ended
        the link (EOFError, ConnectionError, ssl.SSLError). plain: a plain
        link (magic + DATA_HELLO in the clear)."""
        return self._link(frame(DATA_HELLO, attr(A_SESSION, u64(sid)),
                                attr(A_SECRET, secret)), timeout, plain)

    def _open(self, timeout, plain):
        """A new data-link connection (TLS unless plain), the magic to
        send first (plain) and its local port."""
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        local_port = raw.getsockname()[1]
        if plain:
            sock = raw
        else:
            try:
                sock = self.ctx.wrap_socket(raw, server_hostname=self.host)
            except BaseException:
                raw.close()
                raise
        sock.settimeout(timeout)
        return sock, PLAIN_MAGIC if plain else b"", local_port

    def _link(self, greeting, timeout, plain):
        sock, magic, local_port = self._open(timeout, plain)
        reader = FrameReader(sock)
        try:
            sock.sendall(magic + greeting)
            result = reader.read()
        except (EOFError, OSError) as e:
            result = e
        dl = DataLink(sock, reader, result)
        dl.local_port = local_port
        return dl

    def pool_token(self, timeout=10):
        """POOL_REQ; return the token from POOL_GRANT, or raise
        ProtocolError with the edge's text if it refused."""
        self.send(frame(POOL_REQ))
        f = self.recv(timeout, want=POOL_GRANT)
        if f.u(A_STATUS) != 0:
            raise ProtocolError(f"POOL_GRANT refused: {f.text()}")
        return f.get(A_SECRET)

    def pool_link(self, token, timeout=10, plain=False):
        """Open a pooled link with POOL_HELLO(token): .result is POOL_OK,
        or ERROR / the exception that ended the link."""
        dl = self._link(frame(POOL_HELLO, attr(A_SECRET, token)), timeout,
                        plain)
        dl.pooled = isinstance(dl.result, Frame) and dl.result.type == POOL_OK
        return dl

    def pool_key(self):
        """(key, key id) from HELLO_OK: what proves keyed pooled links."""
        return self.hello_ok.get(A_SECRET), self.hello_ok.u(A_SESSION)

    def keyed_link(self, ctr, plain=False, proof=None, kid=None,
                   timeout=10):
        """Open a pooled link proved by the pool key: POOL_HELLO with
        SESSION = key id, NONCE = ctr, SECRET = HMAC-SHA256(key,
        "sallyport pool link" || key id || ctr), computed here on its own
        (proof / kid replace the right ones for hostile cases). The edge
        answers nothing: the link is parked, or closed."""
        key, kid0 = self.pool_key()
        kid = kid0 if kid is None else kid
        if proof is None:
            proof = hmac.new(key, b"sallyport pool link" +
                             struct.pack(">QQ", kid, ctr),
                             hashlib.sha256).digest()
        greeting = frame(POOL_HELLO, attr(A_SESSION, u64(kid)),
                         attr(A_NONCE, u64(ctr)), attr(A_SECRET, proof))
        sock, magic, local_port = self._open(timeout, plain)
        sock.sendall(magic + greeting)
        dl = DataLink(sock, FrameReader(sock), None)
        dl.local_port = local_port
        return dl

    def close(self):
        self.closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass


def random_secret():
    return os.urandom(32)
