"""Reconcile the fleet with a planned VM mix: which VMs to launch and which to terminate.

Rules (docs/procurement.md, properties P3-P5):
- Capacity in flight counts. A VM we asked for but the provider does not list yet (pending
  request) and a booting VM count as present, so one burst is never bought twice. A pending
  request is forgotten when its VM appears, when the shell reports it failed, or after
  `launch_timeout_s`.
- Scale down with hysteresis in seconds: the level a pool may shrink to is the largest count
  the plan asked for over the last `scale_down_delay_s` (a stabilization window, as Kubernetes'
  HPA), and only once the window is fully observed. So a VM is terminated only after it has
  been surplus for the whole delay.
- Billing minimum: a VM younger than `billing_minimum_s` is never terminated (its first minute
  is paid anyway; it may be needed again before then). It becomes a candidate at
  launched_s + billing_minimum_s, and `next_check_s` says when that is.
- Make before break (`make_before_break=True`): while a model has VMs pending or booting (a
  replacement of another type, say), none of its ready VMs is terminated, so a swap of types
  never leaves the model without ready capacity for a boot time.
- Request ids are deterministic: `<prefix>-<now in ms>-<counter>`, counter carried in state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from controller.core import LaunchVm, TerminateVm
from procurement.planner_types import VmKey, VmMix, key_from_str, key_str

_LIVE = ("booting", "ready")


@dataclass(frozen=True)
class PendingLaunch:
    request_id: str
    key: VmKey
    issued_s: float


@dataclass(frozen=True)
class ReconcileState:
    """Everything reconcile carries between ticks; JSON-serializable via to_dict/from_dict."""

    counter: int = 0
    pending: tuple[PendingLaunch, ...] = ()
    # key -> ((t_s, wanted count), ...) oldest first, covering the stabilization window
    wants: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"counter": self.counter,
                "pending": [[p.request_id, key_str(p.key), p.issued_s] for p in self.pending],
                "wants": {key_str(k): [list(tw) for tw in v] for k, v in sorted(self.wants.items())}}

    @classmethod
    def from_dict(cls, d: dict) -> "ReconcileState":
        return cls(int(d["counter"]),
                   tuple(PendingLaunch(r, key_from_str(k), float(t)) for r, k, t in d["pending"]),
                   {key_from_str(k): tuple((float(t), int(w)) for t, w in v) for k, v in d["wants"].items()})


@dataclass(frozen=True)
class Reconciliation:
    launches: tuple[LaunchVm, ...]
    terminations: tuple[TerminateVm, ...]
    in_flight: dict  # key -> VMs pending or booting (after this tick's launches)
    next_check_s: float | None  # earliest time a held-back termination may become due


def reconcile(current_vms: Sequence, mix: VmMix, now_s: float, state: ReconcileState | None = None,
              *, scale_down_delay_s: float = 300.0, billing_minimum_s: float = 60.0,
              launch_timeout_s: float = 600.0, failed_request_ids: Iterable[str] = (),
              request_prefix: str = "vm", make_before_break: bool = False) -> tuple[Reconciliation, ReconcileState]:
    """Launches and terminations that move `current_vms` (VmView-like: vm_id, request_id,
    instance_type, model, state, launched_s, spot) towards `mix.counts()` at `now_s`."""
    state = state or ReconcileState()
    failed = set(failed_request_ids)
    live = [v for v in current_vms if v.state in _LIVE]
    listed_requests = {v.request_id for v in current_vms}
    pending = [p for p in state.pending
               if p.request_id not in listed_requests and p.request_id not in failed
               and now_s - p.issued_s < launch_timeout_s]
    by_key: dict[VmKey, list] = {}
    for v in live:
        by_key.setdefault((v.model, v.instance_type, bool(v.spot)), []).append(v)
    pending_n: dict[VmKey, int] = {}
    for p in pending:
        pending_n[p.key] = pending_n.get(p.key, 0) + 1
    target = mix.counts()
    keys = sorted(set(target) | set(by_key) | set(pending_n), key=key_str)

    wants = _record_wants(state.wants, keys, target, now_s, scale_down_delay_s)
    # Models with capacity in flight (before this tick's launches, and those too: see below).
    arriving = {k[0] for k, n in pending_n.items() if n} | {v.model for v in live if v.state == "booting"}
    if make_before_break:  # this tick's launches are in flight as well
        arriving |= {k[0] for k in keys if target.get(k, 0) > len(by_key.get(k, [])) + pending_n.get(k, 0)}
    launches, terms = [], []
    counter = state.counter
    next_check = math.inf
    in_flight: dict[VmKey, int] = {}
    for key in keys:
        vms = by_key.get(key, [])
        have = len(vms) + pending_n.get(key, 0)
        want = target.get(key, 0)
        if want > have:
            for _ in range(want - have):
                rid = f"{request_prefix}-{int(round(now_s * 1000))}-{counter}"
                counter += 1
                launches.append(LaunchVm(rid, key[1], key[0], key[2]))
                pending.append(PendingLaunch(rid, key, now_s))
        elif have > want:
            hist = wants.get(key, ())
            if not hist or hist[0][0] > now_s - scale_down_delay_s:
                # window not yet fully observed: recheck once it is
                if hist:
                    next_check = min(next_check, hist[0][0] + scale_down_delay_s)
                continue
            floor = max(w for _, w in hist)
            surplus = have - floor
            # Terminable: listed VMs past their billing minimum. Booting ones first (they serve
            # nobody yet), then the youngest; ties by id so the choice is deterministic.
            ready_by = [v for v in vms if now_s - v.launched_s >= billing_minimum_s]
            held = [v.launched_s + billing_minimum_s for v in vms if v not in ready_by]
            ready_by.sort(key=lambda v: (v.state != "booting", -v.launched_s, v.vm_id))
            if make_before_break and key[0] in arriving:
                ready_by = [v for v in ready_by if v.state == "booting"]
            for v in ready_by[:max(0, surplus)]:
                terms.append(TerminateVm(v.vm_id))
            if surplus > len(ready_by) and held:
                next_check = min(next_check, min(held))
        n_booting = sum(1 for v in vms if v.state == "booting")
        in_flight[key] = n_booting + sum(1 for p in pending if p.key == key)
    new_state = ReconcileState(counter, tuple(pending), wants)
    return (Reconciliation(tuple(launches), tuple(terms), in_flight,
                           None if next_check == math.inf else next_check), new_state)


def _record_wants(old: dict, keys, target, now_s: float, window_s: float) -> dict:
    """Append this tick's wanted count per key; drop history older than the window but keep
    the newest entry at or before the window start (the value in force then)."""
    out = {}
    for key in keys:
        hist = list(old.get(key, ())) + [(now_s, target.get(key, 0))]
        start = now_s - window_s
        cut = 0
        for i, (t, _) in enumerate(hist):
            if t <= start:
                cut = i
        out[key] = tuple(hist[cut:])
    return out
