"""Write one benchmark's section of BENCHMARKS.md, leaving the other sections alone.

Each section sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` and records the
figures, the command that made them and the machine.
"""
from __future__ import annotations

import fcntl
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# HYBRIDSERVE_BENCHMARKS_MD: write elsewhere (a trial run that must not replace a committed figure).
PATH = os.environ.get("HYBRIDSERVE_BENCHMARKS_MD") or os.path.join(ROOT, "BENCHMARKS.md")
HEADER = "# Benchmarks\n\nEvery figure below was written by a script in `bench/`; each section says the command.\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GB, Python {platform.python_version()}"


def command() -> str:
    return " ".join(["python"] + [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def write_section(name: str, title: str, body: str, cmd: str | None = None) -> None:
    """Replace (or append) the section `name` of BENCHMARKS.md."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (f"<!-- bench:{name} -->\n## {title}\n\n"
             f"Command: `{cmd or command()}`  \nMachine: {machine()}  \nWritten: {stamp}\n\n"
             f"{body.strip()}\n<!-- /bench:{name} -->\n")
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n?", re.S)
    # Benchmarks may finish at the same time: read-modify-write under an exclusive lock.
    with open(PATH + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = open(PATH).read() if os.path.exists(PATH) else HEADER
        text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
        tmp = PATH + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, PATH)


def git_rev() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except Exception:
        return "unknown"
