"""pytest fixtures for the sallyport integration tests.

Run from the repository root:  /usr/bin/python3 -m pytest -v tests/integration
The build directory is $SALLYPORT_BUILD (default "build").
"""

import os
import sys
import types

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sp  # noqa: E402


def _need(path):
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it first (make all)",
                    pytrace=False)


# --------------------------------------------------------------------------
# process bookkeeping: stop what a test started, dump logs when it fails

SANITIZER_REPORT = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                    "runtime error:", "WARNING: ThreadSanitizer")


@pytest.fixture(autouse=True)
def _procs(request):
    start = len(sp.ALL_PROCS)
    request.node._sp_proc_start = start
    yield
    mine = sp.ALL_PROCS[start:]
    for p in reversed(mine):
        p.stop(timeout=5)
    # Under SAN=asan a sanitizer report in any daemon this test started
    # fails the test, whatever else it checked (leaks show at exit).
    for p in mine:
        text = p.log() if p.log_path.exists() else ""
        for mark in SANITIZER_REPORT:
            if mark in text:
                pytest.fail(f"{p.name}: sanitizer report in {p.log_path}:\n"
                            + text[max(0, text.index(mark) - 200):][:3000],
                            pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when in ("setup", "call") and rep.failed:
        start = getattr(item, "_sp_proc_start", len(sp.ALL_PROCS))
        shown = [p for i, p in enumerate(sp.ALL_PROCS)
                 if i >= start or p.alive()]
        for p in shown:
            rep.sections.append(
                (f"log of {p.name} (pid {p.pid}, rc {p.returncode}, "
                 f"{p.log_path}) last 50 lines", p.tail(50)))


# --------------------------------------------------------------------------
# PKI

@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    _need(sp.CTL_BIN)
    return sp.make_pki(tmp_path_factory.mktemp("pki") / "pki")


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory):
    """A second, unrelated PKI (another CA)."""
    _need(sp.CTL_BIN)
    return sp.make_pki(tmp_path_factory.mktemp("otherpki") / "pki")


# --------------------------------------------------------------------------
# backends

@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    b = sp.start_sshd(tmp_path_factory.mktemp("sshd"))
    yield b
    b.proc.stop()


@pytest.fixture
def nginx(tmp_path):
    n = sp.start_nginx(tmp_path / "nginx")
    yield n
    n.proc.stop()


# --------------------------------------------------------------------------
# sallyport daemons

@pytest.fixture
def edge(tmp_path, pki):
    _need(sp.EDGE_BIN)
    return sp.start_edge(tmp_path, pki)


@pytest.fixture
def sftp_gw(tmp_path, pki, edge, sshd):
    """edge + agent with one service "sftp" -> sshd. Fields: edge, agent,
    port (the service port on the edge), sshd, tmp."""
    _need(sp.AGENT_BIN)
    port = sp.free_port()
    agent = sp.start_agent(tmp_path, pki, edge, {"sftp": (port, [sshd.port])})
    return types.SimpleNamespace(edge=edge, agent=agent, port=port,
                                 sshd=sshd, tmp=tmp_path)


@pytest.fixture(params=["tls", "plain"])
def sftp_gw_link(request, tmp_path, pki, edge, sshd):
    """sftp_gw with each kind of data link: every relay test that uses it
    runs with sessions as streams over shared TLS links (the default) and
    with plain links (bytes spliced in the kernel)."""
    _need(sp.AGENT_BIN)
    port = sp.free_port()
    link = request.param
    agent = sp.start_agent(tmp_path, pki, edge, {"sftp": (port, [sshd.port])},
                           data_link=link)
    return types.SimpleNamespace(edge=edge, agent=agent, port=port,
                                 sshd=sshd, tmp=tmp_path, link=request.param)
