"""FTP and FTPS through the edge (issue 6; docs/ftp.md).

Real vsftpd backends, real curl and lftp clients, all on 127.0.0.1, with
the edge's default sandbox. Passive mode for plain FTP (the agent rewrites
227/229 replies of an unchanged backend), explicit FTPS (AUTH TLS) and
implicit FTPS (the backend announces the public address and its slice of
the passive range).
"""

import concurrent.futures
import errno
import ftplib
import os
import re
import socket
import time

import pytest

import sp

MODES = ["plain", "explicit", "implicit"]
BIG = 50 * sp.MiB


class Gw:
    """edge + agent + backends for one FTP service."""

    def __init__(self, edge, agent, port, backends, passive, mode):
        self.edge = edge
        self.agent = agent
        self.port = port
        self.backends = backends
        self.passive = passive
        self.mode = mode

    def url(self, path=""):
        scheme = "ftps" if self.mode == "implicit" else "ftp"
        return f"{scheme}://{sp.LOOPBACK}:{self.port}/{path}"

    def curl(self, args, **kw):
        extra = ["-u", "anonymous:x"]
        if self.mode != "plain":
            extra += ["--cacert", str(self.backends[0].cert)]
            if self.mode == "explicit":
                extra += ["--ssl-reqd"]
        # --ftp-pasv is curl's default; no EPSV so 227 rewriting is hit
        # for plain FTP, and EPSV is tested on its own.
        return sp.curl_ftp(extra + ["--disable-epsv"] + args, **kw)

    def lftp(self, commands, **kw):
        tls = None if self.mode == "plain" else self.mode
        return sp.lftp(self.port, commands, tls=tls,
                       cafile=self.backends[0].cert if tls else None, **kw)


def slices(base, n, k):
    """Split n ports from base evenly into k (first, last) slices, as the
    agent does."""
    each = n // k
    out = []
    for i in range(k):
        lo = base + i * each
        hi = base + n - 1 if i == k - 1 else lo + each - 1
        out.append((lo, hi))
    return out


def make_gw(tmp_path, pki, edge, mode, nbackends=1, nports=40,
            explicit_slices=False):
    base = sp.free_port_range(nports)
    passive = (base, base + nports - 1)
    sl = slices(base, nports, nbackends)
    backends = []
    for i in range(nbackends):
        d = tmp_path / f"ftp{i}"
        host = f"127.0.0.{2 + i}"
        if mode == "plain":
            # An unchanged backend: its own address and ports.
            b = sp.start_vsftpd(d, host=host)
        else:
            b = sp.start_vsftpd(d, pasv=sl[i], pasv_address=sp.LOOPBACK,
                                tls=mode, host=host)
        backends.append(b)
    port = sp.free_port()
    blist = [(b.addr, f"{lo}-{hi}") if explicit_slices else b.addr
             for b, (lo, hi) in zip(backends, sl)]
    agent = sp.start_ftp_agent(tmp_path, pki, edge, "ftp", port, blist,
                               "ftps" if mode == "implicit" else "ftp",
                               passive)
    edge.proc.wait_log(f"ftp service ftp: passive ports {passive[0]}-"
                       f"{passive[1]} open")
    return Gw(edge, agent, port, backends, passive, mode)


@pytest.mark.parametrize("mode", MODES)
def test_transfer_listing_resume(tmp_path, pki, edge, mode):
    """50 MiB up and down with SHA-256, a listing, a resumed download."""
    gw = make_gw(tmp_path, pki, edge, mode)
    src = tmp_path / "big.bin"
    digest = sp.random_file(src, BIG)

    gw.curl(["-T", src, gw.url("up/big.bin")])
    assert sp.sha256_file(gw.backends[0].up / "big.bin") == digest

    out = tmp_path / "down.bin"
    gw.curl(["-o", out, gw.url("up/big.bin")])
    assert sp.sha256_file(out) == digest

    r = gw.curl(["-l", gw.url("up/")])
    assert "big.bin" in r.stdout.split()
    r = gw.lftp(["cls -l up/"])
    assert re.search(r"\s52428800\s.*big\.bin", r.stdout), r.stdout

    # Resume: the first 20 MiB are there, REST fetches the rest.
    part = tmp_path / "part.bin"
    with open(src, "rb") as f, open(part, "wb") as g:
        g.write(f.read(20 * sp.MiB))
    gw.curl(["-C", "-", "-o", part, gw.url("up/big.bin")])
    assert sp.sha256_file(part) == digest
    assert "REST 20971520" in gw.backends[0].log()

    # lftp too, for a second real client (it resumes with REST as well).
    lpart = tmp_path / "lpart.bin"
    with open(src, "rb") as f, open(lpart, "wb") as g:
        g.write(f.read(7 * sp.MiB))
    gw.lftp([f"get -c up/big.bin -o {lpart}"])
    assert sp.sha256_file(lpart) == digest

    # Every data connection crossed the edge as an FTP data session.
    assert gw.edge.proc.count("ftp-data control=") >= 5
    if mode == "plain":
        # The backend announced its own ports; the agent rewrote them.
        assert not gw.agent.proc.find("ftp: control channel is TLS")
    else:
        gw.agent.proc.wait_log("session") and None
