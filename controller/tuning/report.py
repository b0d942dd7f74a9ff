"""Write `hybridserve tune`'s report: Markdown tables and PNG plots in one folder.

The figures read only the TuneResult (the analyzer's output), so a report can be regenerated from
the same profile byte for byte apart from the PNG encoder.
"""
from __future__ import annotations

import os

from controller.tuning.analyzer import STRATEGIES, TuneResult

REPORT_FILE = "README.md"


def _usd_u(x: float) -> str:
    return f"{x * 1e6:.3f}"  # micro-dollars per request: readable at Lambda's prices


def _plots(result: TuneResult, out_dir: str) -> dict[str, str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = result.batch
    files = {}
    specs = [("latency_vs_memory.png", "latency_ms", "latency per call (ms)", True),
             ("cost_vs_memory.png", "cost_per_request_usd", "cost per request (µ$)", False),
             ("normalised_cost_vs_memory.png", "normalised_cost", "(M / 2 GB) x L(M) / L(2 GB)", False)]
    for fname, attr, ylabel, slo_line in specs:
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        for mt in result.models:
            ps = sorted((p for p in mt.points if p.batch == b), key=lambda p: p.memory_mb)
            if not ps:
                continue
            ys = [getattr(p, attr) * (1e6 if attr == "cost_per_request_usd" else 1.0) for p in ps]
            line, = ax.plot([p.memory_mb for p in ps], ys, marker="o", label=mt.model)
            rec = result.chosen(mt)
            if rec is not None:
                r = next(p for p in ps if p.memory_mb == rec.memory_mb)
                ax.plot([r.memory_mb], [getattr(r, attr) * (1e6 if attr == "cost_per_request_usd" else 1.0)],
                        marker="*", markersize=16, color=line.get_color(), linestyle="none")
        if slo_line:
            ax.axhline(result.slo_ms, color="grey", linestyle="--", linewidth=1, label=f"SLO {result.slo_ms:g} ms")
        if attr == "normalised_cost":
            ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("function memory (MB); CPU = memory / 1769 MB")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{result.app}: batch {b}; star = {result.strategy} choice")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, fname))
        plt.close(fig)
        files[attr] = fname
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for mt in result.models:
        recs = sorted(mt.recommendations.items())
        ax.plot([bb for bb, _ in recs], [r["cost"].cost_per_request_usd * 1e6 for _, r in recs], marker="o",
                label=mt.model)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("cheapest cost per request (µ$)")
    ax.set_title(f"{result.app}: batching amortises the per-call fee and overheads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "cost_vs_batch.png"))
    plt.close(fig)
    files["batch"] = "cost_vs_batch.png"
    return files


def render_markdown(result: TuneResult, images: dict, source: str, notes: str = "") -> str:
    r = result
    out = [f"# Tuning report: app `{r.app}`", "",
           f"SLO {r.slo_ms:g} ms, accuracy floor {r.min_accuracy:g}; strategy **{r.strategy}**"
           + (f" (weight {r.weight:g} on cost)" if r.strategy == "balanced" else "")
           + f"; profiles from `{source}`.", ""]
    if notes:
        out += [notes.strip(), ""]
    out += [f"## Recommended function memory (batch {r.batch})", "",
            "Power Tuning's definitions: cost = cheapest per request, speed = fastest, balanced = min of "
            f"w x cost/max + (1-w) x latency/max (w = {r.weight:g}); only sizes whose latency + invoke overhead "
            "fits the SLO are candidates (✗ = none fits; best of the rest).", "",
            "| model | top-1 | " + " | ".join(f"{s}: MB / ms / µ$ per req" for s in STRATEGIES) + " |",
            "|---|---|" + "---|" * len(STRATEGIES)]
    for mt in r.models:
        recs = mt.recommendations.get(r.batch, {})
        cells = []
        for s in STRATEGIES:
            x = recs.get(s)
            cells.append("—" if x is None else f"{x.memory_mb} / {x.latency_ms:.0f} / {_usd_u(x.cost_per_request_usd)}"
                         + ("" if x.meets_slo else " ✗"))
        out.append(f"| {mt.model} | {mt.top1_accuracy:.3f} | " + " | ".join(cells) + " |")
    out += ["", f"![latency]({images['latency_ms']}) ![cost]({images['cost_per_request_usd']})", ""]
    out += ["## Cost-performance normalised to 2 GB (All-You-Can-Inference)", "",
            "(M / 2 GB) x Latency(M) / Latency(2 GB): the cost of size M relative to a 2 GB function "
            "(1.0 at 2 GB, interpolated log-log when 2 GB was not measured); below 1 is the better buy.", "",
            f"![normalised]({images['normalised_cost']})", ""]
    for mt in r.models:
        batches = sorted(mt.recommendations)
        mems = sorted({p.memory_mb for p in mt.points})
        by = {(p.memory_mb, p.batch): p for p in mt.points}
        out += [f"### {mt.model}", "",
                "| memory MB | " + " | ".join(f"b={b}: ms / µ$" for b in batches) + f" | normalised (b={r.batch}) |",
                "|---|" + "---|" * (len(batches) + 1)]
        for m in mems:
            cells = []
            for b in batches:
                p = by.get((m, b))
                cells.append("" if p is None else f"{p.latency_ms:.0f} / {_usd_u(p.cost_per_request_usd)}"
                             + ("" if p.meets_slo else " ✗"))
            p1 = by.get((m, r.batch))
            norm = "" if p1 is None or p1.normalised_cost != p1.normalised_cost else f"{p1.normalised_cost:.2f}"
            out.append(f"| {m} | " + " | ".join(cells) + f" | {norm} |")
        out += ["", "Recommended memory per batch size: " + "; ".join(
            f"b={b}: " + ", ".join(f"{s} {mt.recommendations[b][s].memory_mb}" for s in STRATEGIES) for b in batches),
            ""]
    out += [f"![cost vs batch]({images['batch']})", "",
            f"## Instance types for a steady {r.rate_per_s:g} req/s", "",
            "Cheapest $/h covering the rate at the target utilization, with the batch size whose latency fits "
            "the SLO at least cost per request; compared with serving the same rate on functions at the "
            f"{r.strategy} choice.", "",
            "| model | instance type | batch | req/s per instance | instances | $/h | functions $/h |",
            "|---|---|---|---|---|---|---|"]
    for mt in r.models:
        rec = r.chosen(mt)
        fn = f"{rec.cost_per_request_usd * r.rate_per_s * 3600:.3f}" if rec is not None else "—"
        if not mt.instances:
            out.append(f"| {mt.model} | none within the SLO | | | | | {fn} |")
        for c in mt.instances[:3]:
            out.append(f"| {mt.model} | {c.instance_type} | {c.batch} | {c.capacity_per_s:.1f} | {c.count} | "
                       f"{c.usd_per_h:.3f} | {fn} |")
    return "\n".join(out) + "\n"


def write_report(result: TuneResult, out_dir: str, source: str, notes: str = "") -> str:
    """Write README.md and the PNGs into out_dir; return the Markdown path."""
    os.makedirs(out_dir, exist_ok=True)
    images = _plots(result, out_dir)
    path = os.path.join(out_dir, REPORT_FILE)
    with open(path, "w") as fh:
        fh.write(render_markdown(result, images, source, notes))
    return path
