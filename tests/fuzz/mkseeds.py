#!/usr/bin/env python3
"""mkseeds.py - write the seed corpora of the harnesses whose input is
the wire protocol (docs/protocol.md): frame, mux, sess, ctl, plink, and a
data_links config for cfg. Run from the repository's top directory when the wire
changes; the seeds are committed. Other corpora are hand-written or were
kept from fuzzing runs.

    python3 tests/fuzz/mkseeds.py
"""
import os
import struct

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

# docs/protocol.md, "Frame types" and "Attributes"
FT = dict(HELLO=1, HELLO_OK=2, ERROR=3, SVC_OPEN=4, SVC_RESULT=5,
          SVC_CLOSE=6, PING=7, PONG=8, STATS_REQ=9, STATS=10,
          LINK_HELLO=11, SESS_OPEN=12, SESS_DENIED=13, DENIED_SUMMARY=14,
          FTP_PORTS=15, OUT_POLICY=16, OUT_POLICY_OK=17, OUT_REQ=18,
          OUT_FAIL=19, BAN=20, UNBAN=21, BAN_SYNC=22, DRAINING=23,
          HANDOVER=24, FTP_DIAL=27, FTP_DIAL_FAIL=28)
FA = dict(VERSION=1, NAME=2, TEXT=3, SERVICE=4, LISTEN=5, STATUS=6,
          SESSION=7, CLIENT_ADDR=8, CLIENT_PORT=9, LOCAL_ADDR=10,
          LOCAL_PORT=11, NONCE=12, LINK_KEY=13, KEY_ID=14, COUNTER=15,
          PROOF=16, DATA_LINK=17, SESS_KIND=18, PRIORITY=19,
          IDLE_TIMEOUT=20, ALLOW=21, DENY=22, ACCEPT_PROXY=23,
          MAX_SESS_IP=24, MAX_RATE_IP=25, COUNT=26, END=27, STATS=28,
          PROTOCOL=29, PASV_MIN=30, PASV_MAX=31, FTP_CTL=32, FTP_PORT=33,
          OUT_ALLOW=34, REQUEST=35, DEST_HOST=36, DEST_PORT=37,
          DEST_ADDR=38, OUT_CODE=39, LINKS_KEEP=40, BANS=41, BAN_CUT=42,
          HO_STEP=45, INSTANCE=46, PROCESSES=47, FTP_ACTIVE=49)
BAN4 = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 7, 128]) + \
    struct.pack(">I", 600)
BAN6 = bytes([0x20, 1, 0xd, 0xb8]) + bytes(12) + bytes([32]) + \
    struct.pack(">I", 0)
U8, U16, U32, U64 = (lambda v: struct.pack(">B", v),
                     lambda v: struct.pack(">H", v),
                     lambda v: struct.pack(">I", v),
                     lambda v: struct.pack(">Q", v))


def attr(tag, value):
    if isinstance(value, str):
        value = value.encode()
    return struct.pack(">HH", FA[tag], len(value)) + value


def frame(ftype, *attrs):
    payload = b"".join(attr(t, v) for t, v in attrs)
    return struct.pack(">HHI", FT[ftype], 0, len(payload)) + payload


FRAMES = {
    "hello": frame("HELLO", ("VERSION", U16(1)), ("NAME", "in-1")),
    "hello_plain": frame("HELLO", ("VERSION", U16(1)), ("NAME", "in-1"),
                         ("DATA_LINK", U8(1))),
    "hello_ok": frame("HELLO_OK", ("VERSION", U16(1)), ("NAME", "dmz-1"),
                      ("LINK_KEY", bytes(range(32))),
                      ("KEY_ID", U64(0x1122334455667788))),
    "error": frame("ERROR", ("TEXT", "version 2 not spoken")),
    "svc_open": frame("SVC_OPEN", ("SERVICE", "sftp"), ("LISTEN", "*:22"),
                      ("PRIORITY", U32(10)), ("IDLE_TIMEOUT", U32(300)),
                      ("ALLOW", "10.0.0.0/8, 2001:db8::/32"),
                      ("DENY", "10.9.0.0/16"), ("ACCEPT_PROXY", "::1"),
                      ("MAX_SESS_IP", U32(5)), ("MAX_RATE_IP", U32(60))),
    "svc_open_ftp": frame("SVC_OPEN", ("SERVICE", "ftp"),
                          ("LISTEN", "0.0.0.0:21"), ("PROTOCOL", "ftps"),
                          ("PASV_MIN", U16(50000)), ("PASV_MAX", U16(50999))),
    "svc_result": frame("SVC_RESULT", ("SERVICE", "sftp"), ("STATUS", U8(1)),
                        ("TEXT", "address in use")),
    "svc_close": frame("SVC_CLOSE", ("SERVICE", "sftp")),
    "ping": frame("PING", ("NONCE", U64(7))),
    "pong": frame("PONG", ("NONCE", U64(7))),
    "stats_req": frame("STATS_REQ"),
    "stats": frame("STATS", ("STATS", "sessions_accepted_total=12 "
                             "agents_connected=1")),
    "link_hello": frame("LINK_HELLO", ("KEY_ID", U64(0x1122334455667788)),
                        ("COUNTER", U64(1)), ("PROOF", bytes([0x5a] * 32))),
    "sess_open_client": frame("SESS_OPEN", ("SESSION", U64(42)),
                              ("SESS_KIND", U8(0)), ("SERVICE", "sftp"),
                              ("CLIENT_ADDR", "192.0.2.7"),
                              ("CLIENT_PORT", U16(50123)),
                              ("LOCAL_ADDR", "198.51.100.1"),
                              ("LOCAL_PORT", U16(22))),
    "sess_open_ftp_data": frame("SESS_OPEN", ("SESSION", U64(43)),
                                ("SESS_KIND", U8(1)), ("FTP_CTL", U64(41)),
                                ("FTP_PORT", U16(50001)),
                                ("CLIENT_ADDR", "192.0.2.7"),
                                ("CLIENT_PORT", U16(50124))),
    "sess_open_outbound": frame("SESS_OPEN", ("SESSION", U64(44)),
                                ("SESS_KIND", U8(2)), ("REQUEST", U64(9)),
                                ("DEST_ADDR", "[2001:db8::1]:22")),
    "sess_denied": frame("SESS_DENIED", ("SESSION", U64(45)),
                         ("SERVICE", "sftp"), ("CLIENT_ADDR", "192.0.2.9"),
                         ("CLIENT_PORT", U16(1)), ("END", U8(4)),
                         ("TEXT", "not in allow")),
    "denied_summary": frame("DENIED_SUMMARY", ("SERVICE", "sftp"),
                            ("COUNT", U32(120))),
    "ftp_ports": frame("FTP_PORTS", ("SESSION", U64(41)),
                       ("PASV_MIN", U16(50000)), ("PASV_MAX", U16(50099))),
    "out_policy": frame("OUT_POLICY",
                        ("OUT_ALLOW", "*.example.com:443 10.0.0.0/8:22")),
    "out_policy_ok": frame("OUT_POLICY_OK", ("STATUS", U8(0))),
    "out_req": frame("OUT_REQ", ("REQUEST", U64(9)),
                     ("DEST_HOST", "files.example.com"),
                     ("DEST_PORT", U16(443))),
    "out_fail": frame("OUT_FAIL", ("REQUEST", U64(9)), ("OUT_CODE", U8(2)),
                      ("TEXT", "not allowed")),
    "svc_open_ftp_active": frame("SVC_OPEN", ("SERVICE", "ftp"),
                                 ("LISTEN", "0.0.0.0:21"),
                                 ("PROTOCOL", "ftp"),
                                 ("PASV_MIN", U16(50000)),
                                 ("PASV_MAX", U16(50999)),
                                 ("FTP_ACTIVE", U8(1))),
    "ftp_dial": frame("FTP_DIAL", ("REQUEST", U64(3)), ("FTP_CTL", U64(41)),
                      ("DEST_PORT", U16(40000))),
    "ftp_dial_fail": frame("FTP_DIAL_FAIL", ("REQUEST", U64(3)),
                           ("OUT_CODE", U8(2)), ("TEXT", "in --dial-deny")),
    "sess_open_ftp_active": frame("SESS_OPEN", ("SESSION", U64(46)),
                                  ("SESS_KIND", U8(3)), ("SERVICE", "ftp"),
                                  ("CLIENT_ADDR", "192.0.2.7"),
                                  ("CLIENT_PORT", U16(40000)),
                                  ("FTP_CTL", U64(41)), ("REQUEST", U64(3)),
                                  ("LOCAL_ADDR", "198.51.100.1"),
                                  ("LOCAL_PORT", U16(20))),
    # bans: records of the range's 16-byte form, its prefix, seconds left
    "ban": frame("BAN", ("BANS", BAN4 + BAN6), ("BAN_CUT", U8(1))),
    "unban": frame("UNBAN", ("BANS", BAN4)),
    "ban_sync": frame("BAN_SYNC"),
}
# Hand-over (docs/protocol.md, "Hand-over"): HO_STEP values.
HO = dict(HELLO=1, LISTENERS=2, OFFERED=3, TAKEN=4, RELEASE=5, WITHDRAWN=6,
          FTP=7, FTP_END=8, STATUS=9, REFUSED=10)
HANDOVER = {
    "ho_hello": frame("HANDOVER", ("HO_STEP", U8(HO["HELLO"])),
                      ("VERSION", U16(1))),
    "ho_listeners": frame("HANDOVER", ("HO_STEP", U8(HO["LISTENERS"])),
                          ("COUNT", U32(3))),
    "ho_offered": frame("HANDOVER", ("HO_STEP", U8(HO["OFFERED"])),
                        ("COUNT", U32(3)), ("SESSION", U64(1234))),
    "ho_taken": frame("HANDOVER", ("HO_STEP", U8(HO["TAKEN"]))),
    "ho_release": frame("HANDOVER", ("HO_STEP", U8(HO["RELEASE"])),
                        ("SESSION", U64(1240))),
    "ho_withdrawn": frame("HANDOVER", ("HO_STEP", U8(HO["WITHDRAWN"]))),
    "ho_ftp": frame("HANDOVER", ("HO_STEP", U8(HO["FTP"])),
                    ("FTP_CTL", U64(41)), ("SERVICE", "ftp"),
                    ("CLIENT_ADDR", "192.0.2.7"), ("NAME", "in-1"),
                    ("INSTANCE", U64(0x0123456789abcdef)),
                    ("PASV_MIN", U16(50000)), ("PASV_MAX", U16(50099))),
    "ho_ftp_end": frame("HANDOVER", ("HO_STEP", U8(HO["FTP_END"])),
                        ("FTP_CTL", U64(41))),
    "ho_status": frame("HANDOVER", ("HO_STEP", U8(HO["STATUS"])),
                       ("COUNT", U32(17)), ("PROCESSES", U32(2))),
    "ho_refused": frame("HANDOVER", ("HO_STEP", U8(HO["REFUSED"])),
                        ("TEXT", "process 99 runs as uid 65534")),
}
FRAMES.update(HANDOVER)
FRAMES["draining"] = frame("DRAINING")
FRAMES["hello_instance"] = frame("HELLO", ("VERSION", U16(1)),
                                 ("NAME", "in-1"),
                                 ("INSTANCE", U64(0x0123456789abcdef)))
# Hostile ones, for the fuzzer to start from: the decoder refuses them.
FRAMES["sess_open_id0"] = frame("SESS_OPEN", ("SESSION", U64(0)),
                                ("SESS_KIND", U8(0)))
FRAMES["sess_open_kind9"] = frame("SESS_OPEN", ("SESSION", U64(1)),
                                  ("SESS_KIND", U8(9)))
FRAMES["sess_denied_end0"] = frame("SESS_DENIED", ("SESSION", U64(45)),
                                   ("SERVICE", "s"), ("CLIENT_ADDR", "::1"),
                                   ("CLIENT_PORT", U16(1)), ("END", U8(0)),
                                   ("TEXT", ""))
FRAMES["ftp_dial_port0"] = frame("FTP_DIAL", ("REQUEST", U64(3)),
                                 ("FTP_CTL", U64(41)), ("DEST_PORT", U16(0)))
FRAMES["svc_open_ftp_active2"] = frame("SVC_OPEN", ("SERVICE", "f"),
                                       ("LISTEN", "*:21"),
                                       ("FTP_ACTIVE", U8(2)))
FRAMES["truncated"] = FRAMES["link_hello"][:-5]
FRAMES["trailing"] = FRAMES["ping"] + b"\0"

# Mux frames (docs/protocol.md, "Multiplexed links").
OPEN, DATA, FIN, RST, CREDIT, PING, PONG = 1, 2, 3, 4, 5, 6, 7


def mux(sid, mtype, payload=b"", flags=0):
    return struct.pack(">IBBH", sid, mtype, flags, len(payload)) + payload


SESS = FRAMES["sess_open_client"]
# The first byte picks the side under test (fuzz_mux.c): bit 0 clear, the
# agent's acceptor reads an edge's bytes; set, the edge's opener reads an
# agent's bytes (bits 1-2: streams - 1; bits 3-4: the clients send bytes,
# half-close).
MUX = {
    "acc_open_data_fin": b"\0" + mux(1, OPEN, SESS) + mux(1, DATA, b"hello")
    + mux(1, FIN),
    "acc_three_streams": b"\0" + mux(1, OPEN, SESS) + mux(2, OPEN, SESS)
    + mux(3, OPEN, SESS) + mux(2, DATA, b"x" * 100) + mux(1, FIN)
    + mux(3, RST, b"\x07cut") + mux(2, FIN) + mux(0, PING, b"12345678"),
    "acc_credit_ping": b"\0" + mux(1, OPEN, SESS) + mux(1, CREDIT, U32(65536))
    + mux(1, DATA, b"abc", 1) + mux(0, PING, U64(1)) + mux(0, PONG, U64(1)),
    "acc_refused_then_late": b"\0" + mux(1, OPEN, SESS) + mux(2, OPEN, SESS)
    + mux(3, OPEN, SESS) + mux(3, DATA, b"late") + mux(3, FIN)
    + mux(4, OPEN, SESS),
    "acc_held_full_window": b"\0" + b"".join(
        [mux(i, OPEN, SESS) for i in range(1, 6)])
    + b"".join(mux(5, DATA, b"w" * 16384) for _ in range(4)),
    "acc_out_of_order": b"\0" + mux(2, OPEN, SESS),
    "opn_data_fin": bytes([1 | (0 << 1) | (3 << 3)]) + mux(1, CREDIT, U32(4096))
    + mux(1, DATA, b"220 ready\r\n") + mux(1, FIN),
    "opn_refused": bytes([1 | (1 << 1) | (1 << 3)])
    + mux(1, RST, b"\x03no backend for sftp") + mux(2, DATA, b"x"),
    "opn_four": bytes([1 | (3 << 1) | (1 << 3)]) + mux(3, DATA, b"abc")
    + mux(4, RST, b"\x05limit") + mux(2, CREDIT, U32(1)) + mux(1, FIN)
    + mux(0, PING, U64(9)),
    "opn_bad_credit": bytes([1]) + mux(1, CREDIT, U32(0)),
}
# Bit 7: a count and an offset follow; the bytes after the offset are sent
# count + 1 times. Stream 5 is held (no backend): 17 DATA frames of 16 KiB
# are more than its window, and the link must fail before it holds more.
_PRE = b"".join(mux(i, OPEN, b"s") for i in range(1, 6))
MUX["acc_held_flood"] = bytes([0x80, 16, len(_PRE)]) + _PRE \
    + mux(5, DATA, b"f" * 16384)
_PRE = mux(1, OPEN, SESS)
MUX["acc_flood_backend"] = bytes([0x80, 40, len(_PRE)]) + _PRE \
    + mux(1, DATA, b"g" * 16384, 1)

CFG = {
    "data_links.conf": "[agent]\nedge = 127.0.0.1:7000\ncert = a.crt\n"
    "key = a.key\nca = ca.crt\ndata_link = plain\ndata_links = 8\n\n"
    "[service sftp]\nlisten = 127.0.0.1:10022\nbackend = 127.0.0.1:2222\n",
}


# Found by the hostile-edge suite (tests/integration/test_hostile_edge.py):
# the review's stream ids (OPEN 1, OPEN 0xFFFFFFFF, OPEN 1), and frames for
# a refused stream sent as fast as a link takes them.
MUX["acc_wrap_reuse"] = b"\0" + mux(1, OPEN, SESS) \
    + mux(0xFFFFFFFF, OPEN, SESS) + mux(1, OPEN, SESS)
_PRE = mux(1, OPEN, SESS) + mux(2, OPEN, SESS) + mux(3, OPEN, SESS)
MUX["acc_refused_flood"] = bytes([0x80, 200, len(_PRE)]) + _PRE \
    + mux(3, CREDIT, U32(100)) + mux(3, DATA, b"x" * 100) + mux(3, FIN)


# SESS_OPEN as the agent checks it (fuzz_sess.c): the first byte's bit 0
# says the agent has [outbound]; services "echo" (inside ranges denied),
# "ftp" (passive 50000-50099, 192.0.2.0/24 and 2001:db8::/32 allowed),
# "web".
def sopen(kind, *attrs, sid=42):
    return frame("SESS_OPEN", ("SESSION", U64(sid)), ("SESS_KIND", U8(kind)),
                 *attrs)


def client(svc, addr, port=50123, *more):
    return sopen(0, ("SERVICE", svc), ("CLIENT_ADDR", addr),
                 ("CLIENT_PORT", U16(port)), *more)


SESS = {
    "client_ok": b"\0" + client("echo", "192.0.2.7", 50123,
                                ("LOCAL_ADDR", "198.51.100.1"),
                                ("LOCAL_PORT", U16(22))),
    "client_v6": b"\0" + client("web", "2001:db8::7"),
    "ftp_data_ok": b"\0" + sopen(1, ("SERVICE", "ftp"),
                                 ("CLIENT_ADDR", "192.0.2.7"),
                                 ("CLIENT_PORT", U16(50124)),
                                 ("FTP_CTL", U64(41)),
                                 ("FTP_PORT", U16(50001))),
    "outbound_ok": b"\1" + sopen(2, ("REQUEST", U64(9)),
                                 ("DEST_ADDR", "[2001:db8::1]:22")),
    # what the suite found an edge could pass on: inside clients into a
    # PROXY header, addresses no peer has, words where addresses go
    "inside_client": b"\0" + client("echo", "10.1.2.3"),
    "inside_mapped": b"\0" + client("echo", "::ffff:10.1.2.3"),
    "inside_v6": b"\0" + client("echo", "fd00::5"),
    "not_allowed": b"\0" + client("ftp", "198.51.100.20"),
    "unspecified": b"\0" + client("echo", "0.0.0.0"),
    "unspecified6": b"\0" + client("web", "::"),
    "multicast": b"\0" + client("web", "224.0.0.1"),
    "broadcast": b"\0" + client("web", "255.255.255.255"),
    "port0": b"\0" + client("web", "192.0.2.7", 0),
    "injection": b"\0" + client("web", "198.51.100.1 PROXY TCP4 10.0.0.1"),
    "zone": b"\0" + client("web", "fe80::1%lo"),
    "local_no_port": b"\0" + client("web", "192.0.2.7", 1,
                                    ("LOCAL_ADDR", "198.51.100.1")),
    "ftp_port_outside": b"\0" + sopen(1, ("SERVICE", "ftp"),
                                      ("CLIENT_ADDR", "192.0.2.7"),
                                      ("CLIENT_PORT", U16(50124)),
                                      ("FTP_CTL", U64(41)),
                                      ("FTP_PORT", U16(50100))),
    "ftp_data_tcp": b"\0" + sopen(1, ("SERVICE", "echo"),
                                  ("CLIENT_ADDR", "192.0.2.7"),
                                  ("CLIENT_PORT", U16(50124)),
                                  ("FTP_CTL", U64(41)),
                                  ("FTP_PORT", U16(50001))),
    "outbound_unasked": b"\0" + sopen(2, ("REQUEST", U64(9)),
                                      ("DEST_ADDR", "198.51.100.9:443")),
    "outbound_name": b"\1" + sopen(2, ("REQUEST", U64(9)),
                                   ("DEST_ADDR", "files.example.net:443")),
    "outbound_port0": b"\1" + sopen(2, ("REQUEST", U64(9)),
                                    ("DEST_ADDR", "198.51.100.9:0")),
    "unknown_service": b"\0" + client("nosuch", "192.0.2.7"),
    # the fuzzer's: a session id that wrapped the backend order (one of
    # "web"'s three backends was never tried)
    "session_id_max": b"\0" + sopen(0, ("SERVICE", "web"),
                                     ("CLIENT_ADDR", "192.0.2.7"),
                                     ("CLIENT_PORT", U16(50123)),
                                     sid=0xFFFFFFFFFFFFFFFF),
}


# Control frames against what the agent asked (fuzz_ctl.c): a script of
# steps. 0 PING (2 bytes nonce - 1), 1 SVC_OPEN, 2 STATS_REQ, 3 OUT_POLICY,
# 4 time (1 byte, x 10 ms), 5 a frame (type, u16 length, payload).
def cstep(ftype, *attrs):
    payload = frame(ftype, *attrs)[8:]
    return bytes([5, FT[ftype]]) + U16(len(payload)) + payload


_OK = cstep("HELLO_OK", ("VERSION", U16(1)), ("NAME", "dmz-1"),
            ("LINK_KEY", bytes(range(32))), ("KEY_ID", U64(7)))


def denied(svc="sftp", end=4, addr="192.0.2.9", sid=45):
    return cstep("SESS_DENIED", ("SESSION", U64(sid)), ("SERVICE", svc),
                 ("CLIENT_ADDR", addr), ("CLIENT_PORT", U16(1)),
                 ("END", U8(end)), ("TEXT", "not in allow"))


CTL = {
    "session": _OK + b"\1\2\0\0\x06" + cstep("SVC_RESULT", ("SERVICE", "sftp"),
                                              ("STATUS", U8(0)))
    + cstep("PONG", ("NONCE", U64(7))) + cstep("STATS", ("STATS", "a_total=1"))
    + denied() + cstep("DENIED_SUMMARY", ("SERVICE", "sftp"),
                       ("COUNT", U32(120))),
    "before_hello": cstep("PONG", ("NONCE", U64(1))) + _OK,
    # found: replies nobody asked for, replays, refusals of others'
    # services, floods of them
    "pong_flood": _OK + b"\0\0\x06" + cstep("PONG", ("NONCE", U64(1))) * 40,
    "pong_replay": _OK + b"\0\0\x06" + cstep("PONG", ("NONCE", U64(7))) * 2,
    "hello_ok_again": _OK + _OK,
    "svc_result_unasked": _OK + cstep("SVC_RESULT", ("SERVICE", "sftp"),
                                      ("STATUS", U8(1)), ("TEXT", "evicted")),
    "stats_unasked_bad": _OK + b"\2" + cstep("STATS", ("STATS", "a=1  b")) +
    cstep("STATS", ("STATS", "forged_total=1")),
    "policy_unasked": _OK + cstep("OUT_POLICY_OK", ("STATUS", U8(0))),
    "denied_others": _OK + denied("nosuch") + denied(end=1) +
    denied(addr="evil.example") + denied(addr="0.0.0.0"),
    "denied_flood": _OK + denied() * 120 + b"\4\x64" + denied(),
    "summary_zero": _OK + cstep("DENIED_SUMMARY", ("SERVICE", "sftp"),
                                ("COUNT", U32(0))),
    "sess_open_here": _OK + cstep("SESS_OPEN", ("SESSION", U64(1)),
                                  ("SESS_KIND", U8(0))),
}


# A plain link's chunks (fuzz_plink.c): the first byte's bit 0 set reads
# as the edge (a refusal may come first), bits 1-3 the read size.
def chunk(data):
    return U32(len(data)) + data


PLINK = {
    "session_next": b"\x08" + chunk(b"hello") + chunk(b"x" * 300) + U32(0)
    + frame("SESS_OPEN", ("SESSION", U64(2)), ("SESS_KIND", U8(0))),
    "fin_in_chunk": b"\x02" + chunk(b"abc") + U32(100) + b"short",
    "fin_in_header": b"\x00" + chunk(b"abc") + b"\0\0",
    "over_16m": b"\x04" + chunk(b"ok") + U32(16 * 1024 * 1024 + 1),
    "all_ones": b"\x00" + U32(0xFFFFFFFF),
    # found: an edge's 0xFFFFFFFE is a bad length, not a refusal the agent
    # would put in its audit log
    "refusal_from_edge": b"\x00" + U32(0xFFFFFFFE) + chunk(b"\x03no"),
    "refusal_from_agent": b"\x01" + U32(0xFFFFFFFE) + chunk(b"\x03no backend"),
    "refusal_bad": b"\x01" + U32(0xFFFFFFFE) + U32(2000) + b"x" * 10,
    "refusal_late": b"\x01" + chunk(b"data") + U32(0xFFFFFFFE) + chunk(b"\x03"),
}


def write(name, seeds, clear=True):
    d = os.path.join(TOP, name)
    os.makedirs(d, exist_ok=True)
    if clear:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
    for f, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, f), "wb") as fp:
            fp.write(data)


# fuzz_hosock.c: the first byte is how many descriptors came along.
HOSOCK = {k: bytes([3 if k == "ho_listeners" else 0]) + v
          for k, v in HANDOVER.items()}
HOSOCK["fds_on_hello"] = b"\x01" + HANDOVER["ho_hello"]
HOSOCK["fewer_fds"] = b"\x02" + HANDOVER["ho_listeners"]
HOSOCK["ftp_one_end"] = b"\0" + frame(
    "HANDOVER", ("HO_STEP", U8(HO["FTP"])), ("FTP_CTL", U64(41)),
    ("SERVICE", "ftp"), ("CLIENT_ADDR", "192.0.2.7"), ("NAME", "in-1"),
    ("PASV_MIN", U16(50000)))
HOSOCK["step_0"] = b"\0" + frame("HANDOVER", ("HO_STEP", U8(0)))
HOSOCK["not_handover"] = b"\0" + FRAMES["ping"]
# found by fuzz_hosock after the merges: a HANDOVER frame with a BANS
# attribute (a view into the bytes) re-encodes the same, but elsewhere
HOSOCK["bans_view"] = b"\0" + frame(
    "HANDOVER", ("HO_STEP", U8(HO["WITHDRAWN"])), ("FTP_CTL", U64(4 << 32)),
    ("BANS", b"RNf"), ("CLIENT_ADDR", "769.0.2.7"), ("NAME", "in-1"))

write("frame", FRAMES)
write("hosock", HOSOCK)
write("mux", MUX)
write("cfg", CFG, clear=False)
write("sess", SESS)
write("ctl", CTL)
write("plink", PLINK)
