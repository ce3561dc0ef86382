"""sallyport's wire protocol (docs/protocol.md) in Python, for the tests:
frames and their attributes, data-link proofs, mux frames and plain-link
chunks. Both directions, so that a fake agent (fakeagent.py) and a fake
edge can share it.

Encoders write exactly what they are given, so a test can build a bad
frame as easily as a good one; decoders check what the tests rely on and
raise ProtocolError otherwise. Standard library only.
"""

import hashlib
import hmac
import socket
import struct
import time

VERSION = 1
FRAME_HDR = struct.Struct(">HHI")       # type, flags, length
ATTR_HDR = struct.Struct(">HH")         # tag, length
FRAME_MAX = 65536
GREETING_MAX = 512                      # payload of a connection's first frame

# --------------------------------------------------------------------------
# frame types, in the order a session happens

HELLO, HELLO_OK, ERROR = 1, 2, 3
SVC_OPEN, SVC_RESULT, SVC_CLOSE = 4, 5, 6
PING, PONG, STATS_REQ, STATS = 7, 8, 9, 10
LINK_HELLO, SESS_OPEN = 11, 12
SESS_DENIED, DENIED_SUMMARY = 13, 14
FTP_PORTS = 15
OUT_POLICY, OUT_POLICY_OK, OUT_REQ, OUT_FAIL = 16, 17, 18, 19
FTP_DIAL, FTP_DIAL_FAIL = 27, 28

TYPE_NAMES = {v: k for k, v in dict(
    HELLO=HELLO, HELLO_OK=HELLO_OK, ERROR=ERROR, SVC_OPEN=SVC_OPEN,
    SVC_RESULT=SVC_RESULT, SVC_CLOSE=SVC_CLOSE, PING=PING, PONG=PONG,
    STATS_REQ=STATS_REQ, STATS=STATS, LINK_HELLO=LINK_HELLO,
    SESS_OPEN=SESS_OPEN, SESS_DENIED=SESS_DENIED,
    DENIED_SUMMARY=DENIED_SUMMARY, FTP_PORTS=FTP_PORTS,
    OUT_POLICY=OUT_POLICY, OUT_POLICY_OK=OUT_POLICY_OK, OUT_REQ=OUT_REQ,
    OUT_FAIL=OUT_FAIL, FTP_DIAL=FTP_DIAL,
    FTP_DIAL_FAIL=FTP_DIAL_FAIL).items()}

# attributes: name -> (tag, kind); kind is u8/u16/u32/u64, str or bytes
ATTRS = {
    "VERSION": (1, "u16"), "NAME": (2, "str"), "TEXT": (3, "str"),
    "SERVICE": (4, "str"), "LISTEN": (5, "str"), "STATUS": (6, "u8"),
    "SESSION": (7, "u64"), "CLIENT_ADDR": (8, "str"),
    "CLIENT_PORT": (9, "u16"), "LOCAL_ADDR": (10, "str"),
    "LOCAL_PORT": (11, "u16"), "NONCE": (12, "u64"),
    "LINK_KEY": (13, "bytes"), "KEY_ID": (14, "u64"),
    "COUNTER": (15, "u64"), "PROOF": (16, "bytes"),
    "DATA_LINK": (17, "u8"), "SESS_KIND": (18, "u8"),
    "PRIORITY": (19, "u32"), "IDLE_TIMEOUT": (20, "u32"),
    "ALLOW": (21, "str"), "DENY": (22, "str"), "ACCEPT_PROXY": (23, "str"),
    "MAX_SESS_IP": (24, "u32"), "MAX_RATE_IP": (25, "u32"),
    "COUNT": (26, "u32"), "END": (27, "u8"), "STATS": (28, "str"),
    "PROTOCOL": (29, "str"), "PASV_MIN": (30, "u16"),
    "PASV_MAX": (31, "u16"), "FTP_CTL": (32, "u64"),
    "FTP_PORT": (33, "u16"), "OUT_ALLOW": (34, "str"),
    "REQUEST": (35, "u64"), "DEST_HOST": (36, "str"),
    "DEST_PORT": (37, "u16"), "DEST_ADDR": (38, "str"),
    "OUT_CODE": (39, "u8"), "LINKS_KEEP": (40, "u16"),
    "FTP_ACTIVE": (49, "u8"),
}
_INT_SIZE = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}

# DATA_LINK values, and the kind byte of a link proof
LINK_TLS, LINK_PLAIN = 0, 1
# SESS_KIND values
SK_CLIENT, SK_FTP_DATA, SK_OUTBOUND, SK_FTP_ACTIVE = 0, 1, 2, 3
# END values: how a session ended
END = {"client-closed": 1, "server-closed": 2, "refused": 3, "denied": 4,
       "limit": 5, "timeout": 6, "error": 7, "killed": 8, "stopping": 9}
END_NAMES = {v: k for k, v in END.items()}


class ProtocolError(Exception):
    pass


# --------------------------------------------------------------------------
# frames

def attr(name, value):
    """One attribute. name: a name of ATTRS or a bare tag number; value:
    an int or str for its kind, or bytes to send as they are."""
    if isinstance(name, int):
        tag, kind = name, "bytes"
    else:
        tag, kind = ATTRS[name]
    if isinstance(value, bytes):
        raw = value
    elif kind in _INT_SIZE:
        raw = int(value).to_bytes(_INT_SIZE[kind], "big")
    else:
        raw = str(value).encode("ascii")
    return ATTR_HDR.pack(tag, len(raw)) + raw


def raw_frame(ftype, payload=b"", flags=0, length=None):
    """A frame with the payload as given; length overrides the header's
    length field (for frames that lie about it)."""
    n = len(payload) if length is None else length
    return FRAME_HDR.pack(ftype, flags, n) + payload


def frame(ftype, flags=0, **attrs):
    """A frame whose attributes come in the order given:
    frame(HELLO, VERSION=1, NAME="a")."""
    return raw_frame(ftype, b"".join(attr(k, v) for k, v in attrs.items()),
                     flags)


def decode_attrs(payload):
    """payload -> {tag: [raw value, ...]}"""
    out = {}
    off = 0
    while off < len(payload):
        if off + ATTR_HDR.size > len(payload):
            raise ProtocolError("truncated attribute header")
        tag, n = ATTR_HDR.unpack_from(payload, off)
        off += ATTR_HDR.size
        if off + n > len(payload):
            raise ProtocolError("attribute runs past the payload")
        out.setdefault(tag, []).append(payload[off:off + n])
        off += n
    return out


class Frame:
    """A decoded frame: f.type, f.flags, f.attrs ({tag: [raw]});
    f["SESSION"] is an attribute's value by its kind (KeyError if absent),
    f.get(name, default) likewise."""

    def __init__(self, ftype, flags, payload):
        self.type = ftype
        self.flags = flags
        self.payload = payload
        self.attrs = decode_attrs(payload)

    def has(self, name):
        return ATTRS[name][0] in self.attrs

    def __getitem__(self, name):
        tag, kind = ATTRS[name]
        vals = self.attrs.get(tag)
        if not vals:
            raise KeyError(f"{self} has no {name}")
        if len(vals) != 1:
            raise ProtocolError(f"{self} repeats {name}")
        v = vals[0]
        if kind in _INT_SIZE:
            if len(v) != _INT_SIZE[kind]:
                raise ProtocolError(f"{name} of {len(v)} bytes")
            return int.from_bytes(v, "big")
        if kind == "str":
            return v.decode("ascii")
        return v

    def get(self, name, default=None):
        return self[name] if self.has(name) else default

    @property
    def name(self):
        return TYPE_NAMES.get(self.type, str(self.type))

    def __repr__(self):
        return f"<Frame {self.name}>"


def decode_frame(data):
    """One whole frame (header and payload, nothing more) -> Frame."""
    if len(data) < FRAME_HDR.size:
        raise ProtocolError("short frame")
    ftype, flags, n = FRAME_HDR.unpack_from(data)
    if n != len(data) - FRAME_HDR.size:
        raise ProtocolError("frame length does not match")
    return Frame(ftype, flags, data[FRAME_HDR.size:])


class Reader:
    """Exact reads from a socket (plain or TLS), keeping what was read
    beyond. A time-out (socket.timeout) loses nothing: what arrived stays
    buffered for the next call."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, n):
        while len(self.buf) < n:
            b = self.sock.recv(max(65536, n - len(self.buf)))
            if not b:
                raise EOFError("connection closed by peer")
            self.buf += b

    def peek(self, n):
        """The next n bytes, left in place."""
        self._fill(n)
        return bytes(self.buf[:n])

    def exact(self, n):
        self._fill(n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def frame(self):
        ftype, flags, n = FRAME_HDR.unpack(self.peek(FRAME_HDR.size))
        if n > FRAME_MAX:
            raise ProtocolError(f"frame of {n} bytes")
        return decode_frame(self.exact(FRAME_HDR.size + n))

    def rest(self):
        out = bytes(self.buf)
        self.buf = bytearray()
        return out


# --------------------------------------------------------------------------
# data links: the greeting

LINK_LABEL = b"sallyport data link"


def link_proof(key, kid, counter, kind):
    """PROOF = HMAC-SHA256(LINK_KEY, label || KEY_ID || COUNTER || kind)."""
    return hmac.new(key, LINK_LABEL + struct.pack(">QQB", kid, counter, kind),
                    hashlib.sha256).digest()


def link_hello(kid, counter, proof):
    return frame(LINK_HELLO, KEY_ID=kid, COUNTER=counter, PROOF=proof)


def sess_open(session, kind=SK_CLIENT, **attrs):
    """A SESS_OPEN frame (what the edge writes on a data link)."""
    return frame(SESS_OPEN, SESSION=session, SESS_KIND=kind, **attrs)


# --------------------------------------------------------------------------
# multiplexed links

MUX_HDR = struct.Struct(">IBBH")        # stream id, type, flags, length
MUX_OPEN, MUX_DATA, MUX_FIN, MUX_RST = 1, 2, 3, 4
MUX_CREDIT, MUX_PING, MUX_PONG = 5, 6, 7
MUX_F_BLOCKED = 0x01
MUX_DATA_MAX = 16384
MUX_CTL_MAX = 1024
MUX_WINDOW = 256 * 1024
MUX_NAMES = {MUX_OPEN: "OPEN", MUX_DATA: "DATA", MUX_FIN: "FIN",
             MUX_RST: "RST", MUX_CREDIT: "CREDIT", MUX_PING: "PING",
             MUX_PONG: "PONG"}


def mux_frame(sid, mtype, payload=b"", flags=0, length=None):
    n = len(payload) if length is None else length
    return MUX_HDR.pack(sid, mtype, flags, n) + payload


def mux_data(sid, data):
    """DATA frames for data, at most MUX_DATA_MAX bytes each."""
    return b"".join(mux_frame(sid, MUX_DATA, data[i:i + MUX_DATA_MAX])
                    for i in range(0, len(data), MUX_DATA_MAX))


def mux_rst(sid, end, text=""):
    code = END[end] if isinstance(end, str) else end
    return mux_frame(sid, MUX_RST, bytes([code]) + text.encode("ascii"))


def mux_credit(sid, n):
    return mux_frame(sid, MUX_CREDIT, struct.pack(">I", n))


def read_mux(reader):
    """The next mux frame from a Reader: (sid, type, flags, payload).
    Taken whole or not at all (a time-out loses nothing)."""
    sid, mtype, flags, n = MUX_HDR.unpack(reader.peek(MUX_HDR.size))
    return sid, mtype, flags, reader.exact(MUX_HDR.size + n)[MUX_HDR.size:]


def decode_rst(payload):
    """An RST's payload -> (END name or the code, text)."""
    if not payload:
        raise ProtocolError("empty RST")
    return (END_NAMES.get(payload[0], payload[0]),
            payload[1:].decode("ascii", "replace"))


# --------------------------------------------------------------------------
# plain links

CHUNK = struct.Struct(">I")
CHUNK_MAX = 16 * 1024 * 1024
CHUNK_REFUSE = 0xFFFFFFFE
END_MARKER = CHUNK.pack(0)


def chunk(data):
    return CHUNK.pack(len(data)) + data


def plain_refusal(end, text):
    """The agent's refusal: the REFUSE header, one chunk (END code,
    text); the caller then sends its FIN."""
    code = END[end] if isinstance(end, str) else end
    body = bytes([code]) + text.encode("ascii")
    return CHUNK.pack(CHUNK_REFUSE) + chunk(body)


def read_chunk(reader):
    """The next chunk from a Reader: ("data", bytes), ("end", b"") for a
    marker, ("refused", (END name, text)), or ("fin", b"") when the peer
    closed between chunks: before its marker, so its direction did not
    end (an error, never a clean end). Taken whole or not at all. A FIN
    inside a header, or a length over CHUNK_MAX (0xFFFFFFFF too), is a
    ProtocolError."""
    try:
        (n,) = CHUNK.unpack(reader.peek(CHUNK.size))
    except EOFError:
        if reader.buf:
            raise ProtocolError("FIN inside a chunk header") from None
        return "fin", b""
    if n == 0:
        reader.exact(CHUNK.size)
        return "end", b""
    if n == CHUNK_REFUSE:
        (m,) = CHUNK.unpack(reader.peek(2 * CHUNK.size)[CHUNK.size:])
        return "refused", decode_rst(reader.exact(2 * CHUNK.size + m)
                                     [2 * CHUNK.size:])
    if n > CHUNK_MAX:
        raise ProtocolError(f"chunk of {n} bytes")
    return "data", reader.exact(CHUNK.size + n)[CHUNK.size:]


# --------------------------------------------------------------------------
# sockets

def closed_unanswered(sock, timeout=10):
    """Wait for the peer to close sock; return the bytes it sent first
    (b"" for a close without an answer). A reset counts as a close."""
    got = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"still open after {timeout}s "
                                 f"(got {got[:64]!r})")
        sock.settimeout(left)
        try:
            b = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:             # reset, or a TLS error: closed
            return got
        if not b:
            return got
        got += b
