"""One live hybridserve per test session: `hybridserve run` as a real subprocess (Ray head, Ray
Serve, router, digits replicas), stopped with SIGTERM at the end, which must leave no process
of it behind.

Trained digits models are cached in HYBRIDSERVE_CACHE, else in a fixed directory under the
system temp dir (not the user's ~/.cache), so only the first session pays for training.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from live_env import daemon_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "live.yaml")
START_TIMEOUT_S = 240
STOP_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc), so the teardown can check none survives."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, stack = set(), [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            if c not in out:
                out.add(c)
                stack.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Live:
    def __init__(self, url: str, proc: subprocess.Popen, log_path: str, grpc_port: int = 0):
        self.url = url
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.proc = proc
        self.log_path = log_path

    def log_tail(self, n: int = 40) -> str:
        with open(self.log_path, errors="replace") as fh:
            return "".join(fh.readlines()[-n:])

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout_s: float = 60) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get_json(self, path: str) -> tuple[int, dict]:
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def post_json(self, path: str, doc) -> tuple[int, dict]:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        status, _, out = self.request("POST", path, body, {"Content-Type": "application/json"})
        return status, json.loads(out)


def config_without_standing_head(directory, head_in_process: bool = True) -> str:
    """The suite's config with no standing head VM (so that a burst makes the policy buy a
    local VM rather than count on the head's replicas); returns its path under `directory`.
    head_in_process False: the head's replicas as ModelServer deployments behind handles."""
    path = os.path.join(str(directory), "live-no-head.yaml")
    with open(CONFIG) as fh:
        text = fh.read()
    assert "head_instance_type: local.small" in text
    replacement = "head_instance_type: null" + ("" if head_in_process else "\n  head_in_process: false")
    with open(path, "w") as fh:
        fh.write(text.replace("head_instance_type: local.small", replacement, 1))
    return path


def _start(env, config: str | None = None):
    """Start `hybridserve run` on free ports; return (server, proc, log) once it is ready, or
    (None, proc, log) if it exited during start-up."""
    port, grpc_port = _free_port(), _free_port()
    log = tempfile.NamedTemporaryFile(prefix="hybridserve-live-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "controller.cli", "run", "--config", config or CONFIG, "--http-port", str(port),
           "--grpc-port", str(grpc_port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Live(f"http://127.0.0.1:{port}", proc, log.name, grpc_port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            return None, server, log
        if time.monotonic() > deadline:
            return None, server, log
        try:
            if server.request("GET", "/v2/health/ready", timeout_s=2)[0] == 200:
                return server, server, log
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)


def _reap(proc) -> list[int]:
    """SIGTERM the daemon, wait, then kill whatever of its tree is left; returns what was left."""
    tree = _descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    # Ray's own processes may take a moment after ray.shutdown() returns.
    end = time.monotonic() + 20
    while time.monotonic() < end and any(_alive(p) for p in tree):
        time.sleep(0.5)
    left = sorted(p for p in tree if _alive(p))
    for p in left:  # do not leak them into the next session, then report
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return left


def serve_without_head(directory, head_in_process: bool = True, **environ):
    """A generator for a module fixture: a second daemon whose head is not a standing VM (so a
    burst buys VMs), with `environ` added to its environment; yields it, then stops it."""
    env = daemon_env(os.environ)
    env.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    env.update(environ)
    server, started, log = _start(env, config_without_standing_head(directory, head_in_process))
    try:
        if server is None:
            pytest.fail(f"hybridserve run did not become ready:\n{started.log_tail()}")
        yield server
    finally:
        _reap(started.proc)
        log.close()


@pytest.fixture(scope="module")
def live_without_head(tmp_path_factory):
    # The head not a standing VM (so a burst buys one) and behind handles (ModelServer deployments,
    # the pre-issue-20 way the burst test exercised a VM serving; the plan's routing table sends a
    # variant's VM requests to the procured VMs only, the head not being planned).
    yield from serve_without_head(tmp_path_factory.mktemp("no-head"), head_in_process=False)


@pytest.fixture(scope="session")
def live():
    env = daemon_env(os.environ)
    env.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    # Ray Serve's proxy can be cancelled when a loaded 2-core machine starts it too slowly: one
    # more attempt on fresh ports before failing.
    for attempt in range(2):
        server, started, log = _start(env)
        if server is not None:
            break
        tail = started.log_tail()
        _reap(started.proc)
        log.close()
        if attempt == 1:
            pytest.fail(f"hybridserve run did not become ready (exit {started.proc.returncode}):\n{tail}")
    proc = server.proc
    try:
        yield server
    finally:
        left = _reap(proc)
        server.exit_code = proc.returncode
        log.close()
        assert proc.returncode == 0, f"hybridserve run exited with {proc.returncode}:\n{server.log_tail()}"
        assert not left, f"processes left behind after SIGTERM: {left}"
