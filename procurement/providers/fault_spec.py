"""Parse a fault-injection spec such as "error=0.2,timeout=0.1,seed=3" (the HYBRIDSERVE_*_FAULTS
environment variables) into keyword arguments for a faults dataclass."""
from __future__ import annotations


def parse_fault_spec(text: str, names: dict[str, str], kind: str) -> dict:
    """`names` maps each key of the spec to its field; `seed` is an int, the rest floats.
    A ValueError names an unknown key (`kind` says whose) or a value that is not a number."""
    kw = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = (s.strip() for s in part.partition("="))
        if key not in names:
            raise ValueError(f"unknown {kind} fault {key!r}; known: {', '.join(names)}")
        kw[names[key]] = int(value) if key == "seed" else float(value)
    return kw
