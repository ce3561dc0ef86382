"""The benchmark (bench/run) in its quick mode, with only direct and the two
sallyport setups: it must produce its JSON, markdown and PNG with sane
numbers, and its content check must pass; and the content check itself must
catch a relay that changes one byte."""

import importlib.machinery
import importlib.util
import json
import os
import signal
import socket
import subprocess
import threading

import sp

BENCH = sp.ROOT / "bench" / "run"
SPBENCH = sp.BUILD / "spbench"


def _load_bench():
    loader = importlib.machinery.SourceFileLoader("bench_run", str(BENCH))
    spec = importlib.util.spec_from_loader("bench_run", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_bench_quick_smoke(tmp_path):
    assert SPBENCH.exists(), f"{SPBENCH} missing: make {SPBENCH}"
    out, work = tmp_path / "results", tmp_path / "work"
    argv = ["/usr/bin/python3", str(BENCH), "--quick",
            "--setups", "direct,sallyport-tls,sallyport-plain",
            "--build", str(sp.BUILD), "--out", str(out), "--work", str(work)]
    env = dict(os.environ, BENCH_IDLE="200")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace", env=env,
                         cwd=str(sp.ROOT), start_new_session=True)
    try:
        text, _ = p.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)       # bench/run stops its daemons
        text, _ = p.communicate(timeout=30)
        raise AssertionError("bench/run --quick took over 150 s:\n" + text)
    assert p.returncode == 0, f"bench/run exited {p.returncode}:\n{text}"

    res = json.loads((out / "latest.json").read_text())
    assert res["params"]["quick"] is True
    assert res["content_ok"] is True
    assert set(res["setups"]) == {"direct", "sallyport-tls", "sallyport-plain"}
    n_idle = res["params"]["idle_sessions"]
    assert n_idle == 200

    for name in ("direct", "sallyport-tls"):
        s = res["setups"][name]
        assert s["available"], (name, s.get("why"))
        assert s["content"]["ok"], s["content"]
        assert s["content"]["bytes"] == 16 * 1024 * 1024
        tp = s["throughput"]
        assert tp["gbit_1"] and 0.05 < tp["gbit_1"] < 1000, tp
        assert tp["gbit_8"] and 0.05 < tp["gbit_8"] < 1000, tp
        t = s["setup_time"]
        assert t["sessions"] >= 200 and t["errors"] == 0 and \
            t["mismatch"] == 0, t
        assert 1 < t["p50_us"] <= t["p99_us"] < 5e6, t
        r = s["rate"]
        assert r["per_second"] > 10, r
        assert all(x["mismatch"] == 0 for x in r["runs"]), r

    # sallyport: the gateway held every idle session, and both daemons'
    # memory was measured (any sane number: the targets are for make bench)
    m = res["setups"]["sallyport-tls"]["memory"]
    assert m["held"] == n_idle and m["mismatch"] == 0, m
    assert set(m["parts"]) == {"edge", "agent"}
    for part in m["parts"].values():
        assert part["per_session_kib"] is not None
        assert -64 < part["per_session_kib"] < 1024, part
        assert part["baseline_pss_kib"] > 100, part
    # set-up through a gateway costs something over direct
    assert res["setups"]["sallyport-tls"]["setup_time"]["added_p50_us"] > 0

    plain = res["setups"]["sallyport-plain"]
    if plain["available"]:
        assert plain["content"]["ok"]
        assert plain["memory"]["held"] == n_idle
        assert plain["throughput"]["gbit_1"] > 0.05
    else:
        assert "not available" in plain["why"], plain

    names = [t["target"] for t in res["targets"]]
    assert any("every byte checked" in n for n in names)
    byte_t = [t for t in res["targets"] if "every byte" in t["target"]][0]
    assert byte_t["pass"] is True
    md = (out / "latest.md").read_text()
    assert "| setup | 1-stream Gbit/s" in md and "## Targets" in md
    assert "sallyport, TLS data links" in md
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # nothing left running: every process bench/run started has gone
    for log in work.glob("*.log"):
        text = log.read_text(errors="replace")
        for mark in ("ERROR: AddressSanitizer", "runtime error:"):
            assert mark not in text, f"{log}: {text[:3000]}"
    ps = subprocess.run(["ps", "-eo", "args"], stdout=subprocess.PIPE,
                        text=True).stdout
    assert str(work) not in ps, "bench/run left a process running:\n" + ps


class _Corrupter:
    """A relay that flips one byte at offset `at` of the client's stream."""

    def __init__(self, target, at):
        self.target, self.at = target, at
        self.lsock = socket.socket()
        self.lsock.bind((sp.LOOPBACK, 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        c, _ = self.lsock.accept()
        u = socket.create_connection((sp.LOOPBACK, self.target))

        def up():
            seen = 0
            while True:
                b = c.recv(65536)
                if not b:
                    u.shutdown(socket.SHUT_WR)
                    return
                if seen <= self.at < seen + len(b):
                    b = bytearray(b)
                    b[self.at - seen] ^= 0x01
                    b = bytes(b)
                seen += len(b)
                u.sendall(b)

        def down():
            while True:
                b = u.recv(65536)
                if not b:
                    c.shutdown(socket.SHUT_WR)
                    return
                c.sendall(b)
        t = threading.Thread(target=up, daemon=True)
        t.start()
        down()
        t.join()
        c.close()
        u.close()


def test_bench_content_check_catches_one_changed_byte(tmp_path):
    """The check the benchmark relies on for "every byte checked" fails
    when a relay changes a single byte, and passes through an honest path."""
    bench = _load_bench()
    port = sp.free_port()
    echo = sp.Proc("spbench-echo", [SPBENCH, "echo", sp.LOOPBACK, port],
                   tmp_path / "echo.log")
    sp.wait_until(lambda: sp.connect_errno(port) == 0, 20, "echo backend")
    data = os.urandom(4 * 1024 * 1024)
    ok, detail = bench.content_check(port, data, timeout=30)
    assert ok, detail
    bad = _Corrupter(port, at=3 * 1024 * 1024 + 17)
    ok, detail = bench.content_check(bad.port, data, timeout=30)
    assert not ok and "DIFFERS" in detail, detail
    echo.stop()
