#!/usr/bin/python3
"""Memory per idle session of sallyport-edge and sallyport-agent.

Starts an edge and an agent on 127.0.0.1 (build/ of this tree), a backend
that accepts and holds connections, opens N client sessions that stay
idle, and reports the growth of each daemon's VmRSS per session.

    scripts/idle_sessions.py [--sessions N] [--data-link tls|plain]
                             [--links N] [--json]

The backend runs as a child process, so this one needs only N client
descriptors; each daemon needs about 2 N (the edge sizes --max-sessions
to its descriptor limit). Loopback only.
"""

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
import sp  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise RuntimeError("no VmRSS")


def hold(port):
    """The backend (child process): accept on port and keep every
    connection open, reading and dropping whatever arrives; print the
    number held on each line of stdin."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((sp.LOOPBACK, port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    held = 0
    print("ready", flush=True)
    while True:
        for key, _ in sel.select(1.0):
            if key.fileobj is lsock:
                while True:
                    try:
                        c, _ = lsock.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    held += 1
                    sel.register(c, selectors.EVENT_READ)
            elif key.fileobj is sys.stdin:
                if not sys.stdin.readline():
                    return
                print(held, flush=True)
            else:
                try:
                    if not key.fileobj.recv(65536):
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                        held -= 1
                except OSError:
                    sel.unregister(key.fileobj)
                    held -= 1


class Holder:
    def __init__(self):
        self.port = sp.free_port()
        self.p = subprocess.Popen([sys.executable, __file__, "--hold",
                                   str(self.port)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def held(self):
        self.p.stdin.write("\n")
        self.p.stdin.flush()
        return int(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--data-link", default="tls", choices=("tls", "plain"))
    ap.add_argument("--links", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--hold", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.hold:
        hold(a.hold)
        return
    n = a.sessions
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, n + 1000),) * 2)
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < 2 * n + 200:
        sys.exit(f"descriptor limit {hard}: too low for {n} sessions "
                 f"(the daemons need about {2 * n + 200}); use --sessions")

    d = Path(tempfile.mkdtemp(prefix="sp-idle-"))
    pki = sp.make_pki(d / "pki")
    lim = str(n + 1000)
    edge = sp.start_edge(d, pki, extra=["--max-sessions", lim, "--max-per-ip",
                                        lim, "--max-pending", lim,
                                        "--max-handshakes", "4096"])
    holder = Holder()
    port = sp.free_port()
    agent = sp.start_agent(d, pki, edge, {"idle": (port, [holder.port])},
                           data_link=a.data_link, data_links=a.links)
    # warm up: allocators, pools, TLS session cache
    for _ in range(20):
        c = socket.create_connection((sp.LOOPBACK, port))
        c.sendall(b"x" * 100000)
        c.close()
    sp.wait_until(lambda: holder.held() == 0, 30, "warm-up sessions to end")
    time.sleep(1.0)
    e0, a0 = rss_kib(edge.proc.pid), rss_kib(agent.proc.pid)
    clients = []
    t0 = time.monotonic()
    for i in range(n):
        clients.append(socket.create_connection((sp.LOOPBACK, port),
                                                timeout=30))
        if i % 200 == 199:   # let the daemons keep up
            sp.wait_until(lambda: holder.held() >= i + 1 - 100,
                          120, "backend connections")
    sp.wait_until(lambda: holder.held() >= n, 300,
                  f"{n} backend connections")
    took = time.monotonic() - t0
    time.sleep(2.0)
    e1, a1 = rss_kib(edge.proc.pid), rss_kib(agent.proc.pid)
    res = {
        "sessions": n, "data_link": a.data_link, "links": a.links,
        "setup_seconds": round(took, 2),
        "edge_rss_kib": [e0, e1], "agent_rss_kib": [a0, a1],
        "edge_bytes_per_session": round((e1 - e0) * 1024 / n),
        "agent_bytes_per_session": round((a1 - a0) * 1024 / n),
    }
    for c in clients:
        c.close()
    holder.close()
    agent.proc.stop()
    edge.proc.stop()
    if a.json:
        print(json.dumps(res))
    else:
        print(f"{n} idle sessions, data_link={a.data_link}, links={a.links}: "
              f"opened in {took:.1f}s")
        print(f"  edge : {e0} -> {e1} KiB VmRSS, "
              f"{res['edge_bytes_per_session']} bytes per session")
        print(f"  agent: {a0} -> {a1} KiB VmRSS, "
              f"{res['agent_bytes_per_session']} bytes per session")


if __name__ == "__main__":
    main()
