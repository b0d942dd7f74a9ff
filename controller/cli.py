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

    r = sub.add_parser("run", help="serve the Open Inference Protocol live on Ray Serve (Ctrl-C to stop)")
    r.add_argument("--config", default="configs/default.yaml")
    r.add_argument("--http-port", type=int, help="HTTP port (default: serving.http_port, 8000)")
    r.add_argument("--http-host", help="HTTP address (default: serving.http_host, 127.0.0.1)")
    r.add_argument("--grpc-port", type=int, help="KServe v2 gRPC port (default: serving.grpc_port, 9000; 0: off)")
    r.add_argument("--endpoint-url", help="AWS API endpoint for an aws provider, e.g. a moto server "
                   "(default: provider.endpoint_url, else AWS itself)")

    g = sub.add_parser("loadgen", help="replay a trace against a running `hybridserve run`")
    g.add_argument("--url", default="http://127.0.0.1:8000")
    g.add_argument("--trace", default="wits", help="berkeley, wits, or a path to a second,requests CSV")
    g.add_argument("--app", default="digits", help="app (or model variant) to query")
    g.add_argument("--speedup", type=float, default=60.0, help="trace seconds per wall second")
    g.add_argument("--rate-scale", type=float, default=0.05, help="multiply the request rate")
    g.add_argument("--start-s", type=int, default=0, help="slice start, in trace seconds")
    g.add_argument("--duration-s", type=int, default=600, help="slice length, in trace seconds")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--payload", choices=["pixels", "png", "imagenet"], default="pixels",
                   help="pixels: FP32 tensor, binary extension (default); png: base64 PNG in JSON; imagenet: 3x224x224 FP32 tensors (no labels)")
    g.add_argument("--slo-ms", type=float, help="send parameters.slo_ms (default: the app's SLO)")
    g.add_argument("--no-feedback", action="store_true", help="do not send the true labels")
    g.add_argument("--max-in-flight", type=int, default=256)
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--grpc", action="store_true", help="send over KServe v2 gRPC (ModelInfer) instead of REST; "
                   "feedback still goes to --url")
    g.add_argument("--grpc-target", help="gRPC host:port (default 127.0.0.1:9000; implies --grpc)")
    from controller.profiler import command as profile_command  # issue 7: profile and tune
    from controller.tuning import command as tune_command
    profile_command.add_parser(sub)
    tune_command.add_parser(sub)
    from controller import aws_command  # issue 21: aws deploy / destroy
    aws_command.add_parser(sub)
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
    from controller.policies.registry import policy_names
    print("policies: " + ", ".join(policy_names()))
    try:
        import selector
        from procurement.hybrid import FIXED_SELECTORS
        print("selectors: " + ", ".join([*getattr(selector, "SELECTORS", []), *FIXED_SELECTORS]))
    except ImportError:
        pass
    return 0


def _run(args) -> int:
    from controller.config import load_config
    from serving.settings import serving_config
    from controller.live.vm_fleet import fleet_settings, with_endpoint_url

    cfg = with_endpoint_url(load_config(args.config), args.endpoint_url)
    overrides = {k: v for k, v in {"http_port": args.http_port, "http_host": args.http_host,
                                   "grpc_port": args.grpc_port}.items() if v is not None}
    settings = fleet_settings(cfg, serving_config(cfg, overrides))  # validates an aws `provider:` too
    from controller.live.daemon import prepare, run
    from serving.runtimes import UnknownVariant
    try:
        prepare(cfg, settings)  # validates apps, variants and the selector before Ray starts
    except UnknownVariant as e:
        raise ValueError(str(e)) from None
    return run(cfg, settings)


def _loadgen(args) -> int:
    from controller.live.loadgen import LoadgenError, loadgen_from_args
    try:
        return loadgen_from_args(args)
    except LoadgenError as e:
        raise ValueError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    from controller.catalog import CatalogError
    from controller.config import ConfigError
    from controller.core import PolicyError
    from controller.trace import TraceError
    from selector import NoFeasibleModel

    args = build_parser().parse_args(argv)
    handlers = {"simulate": _simulate, "policies": _policies, "run": _run, "loadgen": _loadgen}
    from controller.profiler import command as profile_command
    from controller.tuning import command as tune_command
    handlers.update({"profile": profile_command.run, "tune": tune_command.run})
    from controller import aws_command
    handlers["aws"] = aws_command.run
    try:
        return handlers[args.command](args)
    except (ConfigError, TraceError, PolicyError, CatalogError, NoFeasibleModel, ValueError) as e:
        print(f"hybridserve: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hybridserve: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
