"""`hybridserve profile`: the subcommand's arguments and handler (controller/cli.py wires it in).

Bad input (unknown model or runtime, an empty or out-of-range grid) raises ValueError, which the
CLI prints as one line with exit code 2. Cells that failed to measure (a child killed or timed
out) are listed and the exit code is 1; a rerun measures only what is missing.

After measuring, and alone with `--predict-only` (measuring nothing; e.g. `--out configs/catalog`
for the catalog derive_catalog.py writes), the catalog in --out gets function rows predicted from
operator profiles (COP) for each model it lists without measured ones
(controller/profiler/predicted_rows.py): the catalog reads them, it predicts nothing itself.
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
    p.add_argument("--predict-only", action="store_true",
                   help="measure nothing: write function_latency_predicted.csv in --out, COP predictions for the "
                   "models its catalog lists with no measured function rows")


def _predict(out_dir: str) -> None:
    from controller.catalog import PREDICTED_FUNCTION_FILE
    from controller.profiler.predicted_rows import write_predicted_function_rows

    n = write_predicted_function_rows(out_dir)
    path = os.path.join(os.path.abspath(out_dir), PREDICTED_FUNCTION_FILE)
    print(f"{n} function rows predicted from operator profiles in {path}"
          if n else "every model has measured function rows: none predicted")


def run(args) -> int:
    from controller.profiler.executor import run_profile
    from controller.profiler.grid import ProfileGrid

    if args.predict_only:
        if not os.path.isfile(os.path.join(args.out, "function_latency.csv")):
            raise ValueError(f"--predict-only: no catalog in {args.out} (function_latency.csv missing)")
        _predict(args.out)
        return 0

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
    if os.path.isfile(os.path.join(args.out, "function_latency.csv")):
        _predict(args.out)  # the measured rows changed: so did the scale of the predicted ones
    return 1 if s.failed else 0
