"""`hybridserve profile`: the subcommand's arguments and handler (controller/cli.py wires it in).

Bad input (unknown model or runtime, an empty or out-of-range grid) raises ValueError, which the
CLI prints as one line with exit code 2. Cells that failed to measure (a child killed or timed
out) are listed and the exit code is 1; a rerun measures only what is missing.
"""
from __future__ import annotations

import os

from controller.profiler.grid import DEFAULT_BATCHES, DEFAULT_CPU_SHARES, DEFAULT_MODELS, DEFAULT_RUNTIMES


def _join(xs) -> str:
    return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in xs)


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="measure latency, throughput, cold start and memory of models on this "
                       "machine per runtime, batch size and CPU share (function memory); resumable")
    p.add_argument("--models", default=_join(DEFAULT_MODELS), help="comma-separated model variants")
    p.add_argument("--runtimes", default=_join(DEFAULT_RUNTIMES), help="mxnet,onnxruntime")
    p.add_argument("--batch", default=_join(DEFAULT_BATCHES), help="batch sizes, e.g. 1,2,4,8,16,32")
    p.add_argument("--cpu-shares", default=_join(DEFAULT_CPU_SHARES),
                   help="vCPUs per measurement; memory_mb = share x 1769 (0.25,0.5,1,2)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per cell")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per cell before timing")
    p.add_argument("--out", default="configs/catalog/local", help="folder for profile_cells.csv and catalog CSVs")
    p.add_argument("--cpu-limit", choices=["auto", "cgroup", "threads"], default="auto",
                   help="auto: cgroup CPU quota when writable, else threads with times scaled by 1/share")
    p.add_argument("--catalog-runtime", help="runtime whose cells feed the catalog CSVs (default: first of --runtimes)")
    p.add_argument("--timeout-s", type=float, default=900.0, help="limit per child process")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from controller.profiler.executor import run_profile
    from controller.profiler.grid import ProfileGrid

    grid = ProfileGrid.parse(args.models, args.runtimes, args.batch, args.cpu_shares, args.repeats, args.warmup)
    if args.catalog_runtime and args.catalog_runtime not in grid.runtimes:
        raise ValueError(f"--catalog-runtime {args.catalog_runtime!r} is not among --runtimes {','.join(grid.runtimes)}")
    if args.timeout_s <= 0:
        raise ValueError(f"--timeout-s must be > 0, got {args.timeout_s:g}")
    s = run_profile(grid, args.out, cpu_limit=args.cpu_limit, progress=not args.no_progress,
                    child_timeout_s=args.timeout_s, catalog_runtime=args.catalog_runtime)
    methods = ", ".join(sorted(s.methods)) or "none needed"
    print(f"profiled {s.measured} cells ({s.skipped} already in {s.path}); CPU limit: {methods}; "
          f"catalog CSVs in {os.path.abspath(args.out)}")
    for f in s.failed:
        print(f"failed: {f}")
    return 1 if s.failed else 0
