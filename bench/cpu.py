"""CPU time by component over a load step, from /proc (Kamailio, rtpengine, PostgreSQL) and
from our own reaped children (the SIPp agents), so a step can say what the two cores spent
per call, and so what bounds the maximum rate."""
from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from twinctl import stack as stack_mod

TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK      # utime + stime


def _children(parent: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            out.append(int(status.parent.name))
    return out


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def groups(cfg) -> dict[str, list[int]]:
    paths = stack_mod.Paths(cfg)
    out: dict[str, list[int]] = {}
    kam = _pid(paths.kamailio_pid)
    out["kamailio"] = [kam] + _children(kam) if kam else []
    rtp = _pid(paths.rtpengine_pid)
    out["rtpengine"] = [rtp] if rtp else []
    pg = _pid(paths.pgdata / "postmaster.pid")
    out["postgres"] = [pg] + _children(pg) if pg else []
    return out


@dataclass
class Snapshot:
    at: float
    by_group: dict[str, float]
    children: float


def snapshot(cfg) -> Snapshot:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Snapshot(time.monotonic(),
                    {name: sum(_proc_cpu(p) for p in pids) for name, pids in groups(cfg).items()},
                    usage.ru_utime + usage.ru_stime)


def delta(before: Snapshot, after: Snapshot, calls: int) -> dict:
    """CPU seconds, share of one core over the interval (%), and ms per call, per component.
    'sipp' is every child process of ours that ended meanwhile: the SIPp agents."""
    wall = after.at - before.at
    out = {"wall_s": round(wall, 2)}
    spent = {name: after.by_group.get(name, 0.0) - before.by_group.get(name, 0.0)
             for name in after.by_group}
    spent["sipp"] = after.children - before.children
    for name, secs in spent.items():
        out[name] = {"cpu_s": round(secs, 2), "core_pct": round(100 * secs / wall, 1) if wall else 0,
                     "ms_per_call": round(1000 * secs / calls, 3) if calls else None}
    return out


def foreign_activity() -> list[str]:
    """Other load generators or test runs on this machine (not the bench's own 127.0.3.x
    agents): they compete for the same cores, so the numbers of a step that saw them are low."""
    seen = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(args).decode(errors="replace")
        if "pytest" in text and "bench" not in text:
            seen.add("pytest")
        elif text.startswith("/usr/bin/sipp") and "127.0.3." not in text:
            seen.add("sipp (not the bench's)")
    return sorted(seen)
