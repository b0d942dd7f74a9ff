"""`hybridserve tune`: the subcommand's arguments and handler (controller/cli.py wires it in).

Reads profiles (the catalog, or `--profile-dir` written by `hybridserve profile`), runs the pure
analyzer, writes the report, optionally a config patch, and optionally applies it to a running
daemon. Bad input and a daemon that is down or refuses the token -> one line, exit code 2.
"""
from __future__ import annotations

import os

from controller.tuning.analyzer import STRATEGIES

PATCH_FILE = "config-patch.yaml"


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="per model meeting an app's floor: cost and latency per function memory and "
                       "batch size, recommended memory (cost|speed|balanced), instance types; report and patch")
    p.add_argument("--app", required=True, help="app (query class) from the config")
    p.add_argument("--config", default="configs/default.yaml")
    p.add_argument("--strategy", choices=list(STRATEGIES), default="cost")
    p.add_argument("--weight", type=float, default=0.5, help="balanced: weight of cost vs speed, in [0, 1]")
    p.add_argument("--profile-dir", help="catalog folder to read (default: the config's catalog), "
                   "e.g. configs/catalog/local from `hybridserve profile`")
    p.add_argument("--out", help="report folder (default: out/tune-<app>)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the headline recommendation")
    p.add_argument("--rate-per-s", type=float, default=10.0, help="steady load for the instance-type advice")
    p.add_argument("--instance-types", help="comma-separated types to consider (default: all with a profile)")
    p.add_argument("--note", default="", help="text added at the top of the report (e.g. measurement caveats)")
    p.add_argument("--patch", action="store_true", help=f"write {PATCH_FILE} (recommended memory per model)")
    p.add_argument("--apply", action="store_true", help="POST the patch to a running daemon's admin endpoint")
    p.add_argument("--admin-url", help="daemon admin base URL, e.g. http://127.0.0.1:8001")
    p.add_argument("--token-file", help="file holding the admin bearer token")


def _profile_note(directory: str) -> str:
    """A caveat for reports read from a local profile: how CPU was limited and that it is noisy."""
    from controller.profiler.executor import CELLS_FILE, read_cells

    rows = read_cells(os.path.join(directory, CELLS_FILE))
    if not rows:
        return ""
    hosts = ", ".join(sorted({r["host"] for r in rows}))
    methods = ", ".join(sorted({r["method"] for r in rows}))
    return (f"Measured on {hosts} ({len(rows)} cells, CPU share by {methods}, p50 of few repeats). The machine's "
            "cores were shared with other jobs while profiling, so latencies are noisy and inflated by contention, "
            "more so at small shares and under mxnet; compare sizes within this report, not with AWS figures.")


def run(args) -> int:
    from controller.catalog import Catalog
    from controller.config import load_config
    from controller.tuning.analyzer import tune_app
    from controller.tuning.patch import ApplyError, apply_patch, build_patch, patch_yaml, read_token
    from controller.tuning.report import write_report

    if args.apply and not (args.admin_url and args.token_file):
        raise ValueError("--apply needs --admin-url and --token-file")
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    cfg = load_config(args.config)
    directory = args.profile_dir or cfg.catalog.dir
    if not os.path.isdir(directory):
        raise ValueError(f"--profile-dir {directory}: no such folder")
    catalog = Catalog(os.path.abspath(directory))
    types = [t.strip() for t in args.instance_types.split(",") if t.strip()] if args.instance_types else None
    for t in types or []:
        catalog.instance_type(t)  # CatalogError (exit 2) names the known types
    result = tune_app(catalog, cfg, args.app, strategy=args.strategy, weight=args.weight,
                      rate_per_s=args.rate_per_s, batch=args.batch, instance_types=types)
    out = args.out or os.path.join("out", f"tune-{args.app}")
    notes = "\n\n".join(x for x in (args.note, _profile_note(directory)) if x)
    path = write_report(result, out, os.path.relpath(directory), notes)
    for mt in result.models:
        rec = result.chosen(mt)
        if rec is None:
            print(f"{mt.model}: no profile at batch {result.batch}")
            continue
        vm = mt.instances[0] if mt.instances else None
        print(f"{mt.model}: {args.strategy} -> {rec.memory_mb} MB, {rec.latency_ms:.0f} ms, "
              f"{rec.cost_per_request_usd * 1e6:.3f} µ$ per request"
              + ("" if rec.meets_slo else " (no size meets the SLO)")
              + (f"; {result.rate_per_s:g} req/s on {vm.count} x {vm.instance_type} ${vm.usd_per_h:.3f}/h" if vm else ""))
    print(f"report: {path}")
    patch = build_patch(result, cfg)
    if args.patch or args.apply:
        ppath = os.path.join(out, PATCH_FILE)
        with open(ppath, "w") as fh:
            fh.write(patch_yaml(patch, f"hybridserve tune --app {args.app} --strategy {args.strategy} "
                                       f"--weight {args.weight:g}; profiles: {os.path.relpath(directory)}"))
        print(f"patch: {ppath}")
    if args.apply:
        try:
            answer = apply_patch(args.admin_url, read_token(args.token_file), patch)
        except ApplyError as e:
            raise ValueError(str(e)) from None
        print(f"applied to {args.admin_url}: {answer.get('status', 'ok')}")
    return 0
