"""What `hybridserve profile` measures: the grid of model x runtime x batch size x CPU share.

A CPU share stands for a function memory size, because Lambda gives CPU in proportion to memory
(1 vCPU at 1769 MB): share = memory_mb / 1769, so share 0.5 is an 884 MB function and share 2 a
3538 MB one. Bad input raises ValueError with one line naming the option and the value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

MB_PER_VCPU = 1769  # Lambda: one full vCPU at 1769 MB (FunctionPlatformConfig.mb_per_vcpu)
DEFAULT_MODELS = ("squeezenet", "mobilenet", "resnet18")
DEFAULT_RUNTIMES = ("mxnet", "onnxruntime")
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32)
DEFAULT_CPU_SHARES = (0.25, 0.5, 1.0, 2.0)
MAX_BATCH = 256
# Lambda's largest size is 10,240 MB = 5.79 vCPUs; more would emulate nothing that exists.
MAX_CPU_SHARE = 10240 / MB_PER_VCPU


def memory_mb_of_share(cpu_share: float, mb_per_vcpu: int = MB_PER_VCPU) -> int:
    """The function memory size a CPU share emulates: 0.25 -> 442 MB, 1 -> 1769 MB."""
    return int(round(cpu_share * mb_per_vcpu))


@dataclass(frozen=True, order=True)
class Cell:
    """One measurement: a model on a runtime at a batch size and CPU share."""

    model: str
    runtime: str
    cpu_share: float
    batch: int

    @property
    def key(self) -> tuple[str, str, str, int]:
        # Shares are keyed by their printed form so 0.5 read back from a CSV matches 0.5 given.
        return (self.model, self.runtime, f"{self.cpu_share:g}", int(self.batch))


def _split(text: str | Iterable, option: str) -> list[str]:
    items = [x.strip() for x in text.split(",")] if isinstance(text, str) else [str(x).strip() for x in text]
    items = [x for x in items if x]
    if not items:
        raise ValueError(f"{option} is empty: nothing to profile")
    return items


def _numbers(text, option: str, kind, lo: float, hi: float) -> list:
    out = []
    for item in _split(text, option):
        try:
            v = kind(item)
        except ValueError:
            raise ValueError(f"{option}: {item!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not lo <= v <= hi:
            raise ValueError(f"{option}: {item} is outside [{lo:g}, {hi:g}]")
        out.append(v)
    return sorted(set(out))


@dataclass(frozen=True)
class ProfileGrid:
    models: tuple[str, ...] = DEFAULT_MODELS
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    batches: tuple[int, ...] = DEFAULT_BATCHES
    cpu_shares: tuple[float, ...] = DEFAULT_CPU_SHARES
    repeats: int = 5  # timed calls per cell, after `warmup` untimed ones
    warmup: int = 1

    @classmethod
    def parse(cls, models=DEFAULT_MODELS, runtimes=DEFAULT_RUNTIMES, batches=DEFAULT_BATCHES,
              cpu_shares=DEFAULT_CPU_SHARES, repeats: int = 5, warmup: int = 1) -> "ProfileGrid":
        """Validate comma-separated strings (or sequences) from the command line."""
        from serving.runtimes.registry import VARIANTS, list_variants  # no mxnet import here
        from serving.runtimes import RUNTIMES

        ms = _split(models, "--models")
        for m in ms:
            if m not in VARIANTS:
                raise ValueError(f"--models: unknown model {m!r}; known: {', '.join(list_variants())}")
        rs = _split(runtimes, "--runtimes")
        for r in rs:
            if r not in RUNTIMES:
                raise ValueError(f"--runtimes: unknown runtime {r!r}; known: {', '.join(RUNTIMES)}")
        if not 1 <= int(repeats) <= 10_000:
            raise ValueError(f"--repeats must be in [1, 10000], got {repeats}")
        if not 0 <= int(warmup) <= 100:
            raise ValueError(f"--warmup must be in [0, 100], got {warmup}")
        return cls(tuple(dict.fromkeys(ms)), tuple(dict.fromkeys(rs)),
                   tuple(_numbers(batches, "--batch", int, 1, MAX_BATCH)),
                   tuple(_numbers(cpu_shares, "--cpu-shares", float, 0.05, MAX_CPU_SHARE)),
                   int(repeats), int(warmup))

    def cells(self) -> list[Cell]:
        """Every cell, grouped so one child process (model, runtime, share) measures a run of
        batch sizes: small models first, so a short run yields whole models."""
        return [Cell(m, r, s, b) for m in self.models for r in self.runtimes
                for s in self.cpu_shares for b in self.batches]

    def __len__(self) -> int:
        return len(self.models) * len(self.runtimes) * len(self.batches) * len(self.cpu_shares)
