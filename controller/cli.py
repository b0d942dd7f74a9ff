"""The `hybridserve` command line.

Bad input (a missing or malformed trace, an unknown policy, a config error) prints one line
naming the problem and exits with code 2; no traceback.
"""
from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the usage too)
        print(f"hybridserve: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hybridserve", description="Serve ML inference at the lowest cost that meets each "
                "query's SLO and accuracy floor.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("simulate", help="replay a request trace through policies and report cost and SLO")
    s.add_argument("--config", default="configs/default.yaml")
    s.add_argument("--trace", default="wits", help="berkeley, wits, or a path to a second,requests CSV")
    s.add_argument("--policies", type=_csv, default=["vm-reactive", "lambda-only", "spock", "mark", "oracle"])
    s.add_argument("--slo-ms", type=float, help="set every app's SLO (ms)")
    s.add_argument("--selector", help="model selector for policies that select (see `hybridserve policies`)")
    s.add_argument("--out", help="folder for report.csv and the PNG plots")
    s.add_argument("--seed", type=int)
    s.add_argument("--rate-scale", type=float, help="multiply the request rate")
    s.add_argument("--speedup", type=float, help="trace seconds per simulated second (time compression)")
    s.add_argument("--start-s", type=int, help="slice start, in trace seconds")
    s.add_argument("--duration-s", type=int, help="slice length, in trace seconds")
    s.add_argument("--arrivals", choices=["poisson", "even"])
    s.add_argument("--jobs", type=int, help="policies simulated in parallel (default: one per core)")
    s.add_argument("--no-progress", action="store_true")

    sub.add_parser("policies", help="list the policies and selectors by name")
    return p


def _simulate(args) -> int:
    from controller.catalog import load_catalog
    from controller.config import load_config
    from controller.sim.run import print_report, simulate

    overrides = {k: v for k, v in {"seed": args.seed, "rate_scale": args.rate_scale, "speedup": args.speedup,
                                   "start_s": args.start_s, "duration_s": args.duration_s,
                                   "arrivals": args.arrivals}.items() if v is not None}
    cfg = load_config(args.config)
    if overrides:
        from controller.config import Config
        raw = cfg.model_dump()
        raw["simulator"].update(overrides)
        cfg = _validated(Config, raw, "command line")
    if args.slo_ms is not None:
        if not 0 < args.slo_ms <= 600_000:
            raise ValueError(f"--slo-ms must be in (0, 600000], got {args.slo_ms:g}")
        cfg = cfg.with_slo_ms(args.slo_ms)
    if not args.policies:
        raise ValueError("--policies is empty")
    catalog = load_catalog(cfg.catalog.dir)
    kwargs = {p: {"selector": args.selector} for p in args.policies if p == "hybrid"} if args.selector else None
    rep = simulate(cfg, catalog, args.trace, args.policies, args.out,
                   progress=not args.no_progress and sys.stderr.isatty(), policy_kwargs=kwargs, jobs=args.jobs)
    sim = cfg.simulator
    slo = ", ".join(f"{a.name} {a.slo_ms:g} ms / acc >= {a.min_accuracy:g}" for a in cfg.apps)
    header = (f"trace {args.trace}: {rep.results[0].requests:,} requests over {rep.results[0].simulated_s:,} s "
              f"(rate x{sim.rate_scale:g}, speedup x{sim.speedup:g}, seed {sim.seed}); apps: {slo}")
    print(print_report(rep, header))
    return 0


def _validated(model, raw, where):
    from pydantic import ValidationError

    from controller.config import ConfigError
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{where}: {'.'.join(map(str, err['loc']))} = {err.get('input')!r}: {err['msg']}") from None


def _policies(args) -> int:
    from controller.core import policy_names
    print("policies: " + ", ".join(policy_names()))
    try:
        import selector
        print("selectors: " + ", ".join(getattr(selector, "SELECTORS", [])))
    except ImportError:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    from controller.catalog import CatalogError
    from controller.config import ConfigError
    from controller.core import PolicyError
    from controller.sim.trace import TraceError

    args = build_parser().parse_args(argv)
    handlers = {"simulate": _simulate, "policies": _policies}
    try:
        return handlers[args.command](args)
    except (ConfigError, TraceError, PolicyError, CatalogError, ValueError) as e:
        print(f"hybridserve: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hybridserve: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
