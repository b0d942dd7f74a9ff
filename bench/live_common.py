"""Shared by the live benchmarks: start `hybridserve run` with a config on free ports, wait until
it is ready, stop it with SIGTERM. Not a benchmark itself."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Digits only: cheap real models, so the figures measure serving, not the 2 shared cores' mxnet.
BENCH_CONFIG = """
apps:
  - name: image-classify
    slo_ms: 300
    min_accuracy: 0.70
policy:
  control_interval_s: 5
serving:
  head_instance_type: local.small
  serve_config_apps: false
  apps:
    - name: digits
      slo_ms: 200
      min_accuracy: 0.85
      variants: [digits-small, digits-medium, digits-large]
  variants:
    digits-small: {min_replicas: 1, num_cpus: 0.25, max_batch_size: 16}
    digits-medium: {min_replicas: 1, num_cpus: 0.25}
    digits-large: {min_replicas: 1, num_cpus: 0.25}
  max_body_mb: 16
  max_samples_per_request: 32768
  functions: {enabled: true, concurrency_limit: 2, keep_alive_s: 60}
  control: {enabled: %(control)s, instance_types: [local.small], max_vms: 1, prewarm_functions: false}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, control: bool = False, config_text: str | None = None):
        self.control = control
        self.http_port, self.grpc_port = free_port(), free_port()
        self.cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        self.cfg.write(config_text or BENCH_CONFIG % {"control": str(control).lower()})
        self.cfg.close()
        self.log = tempfile.NamedTemporaryFile(prefix="hybridserve-bench-", suffix=".log", delete=False)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.proc = None

    def __enter__(self) -> "Daemon":
        env = dict(os.environ)
        env.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
        self.proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "run", "--config", self.cfg.name,
                                      "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hybridserve run exited with {self.proc.returncode}; log {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=2) as r:
                    if r.status == 200 and (not self.control or self._loop_ticked()):
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"hybridserve run not ready in 300 s; log {self.log.name}")

    def _loop_ticked(self) -> bool:
        """The control loop has ticked: the daemon has finished starting (it answers ready while
        it still measures the catalog, whose requests and function would skew a benchmark)."""
        with urllib.request.urlopen(self.url + "/status", timeout=5) as r:
            return "tick" in (json.loads(r.read()).get("control") or {})

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        os.unlink(self.cfg.name)


def add_slice_args(ap) -> None:
    """The trace slice both live benchmarks replay (the same defaults, so their figures match)."""
    ap.add_argument("--speedup", type=float, default=10.0)
    ap.add_argument("--rate-scale", type=float, default=0.0075)
    ap.add_argument("--start-s", type=int, default=0)
    ap.add_argument("--duration-s", type=int, default=600)
    ap.add_argument("--short", action="store_true", help="a 240-s slice (24 wall seconds at x10): a quick run")


def slice_args(ap):
    """Parse the slice arguments; --short overrides --duration-s."""
    args = ap.parse_args()
    if args.short:
        args.duration_s = 240
    return args


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return (f"The machine is shared with other engineers' jobs (2 cores; load average {one:.1f} / {five:.1f} "
            f"over 1 / 5 min when this finished): absolute figures are pessimistic and noisy.")
