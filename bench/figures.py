"""The benchmark's figures, each a function of a Run (the stack, where logs go, what was found).

1  max sustainable calls per second (< 0.1 % failed): python / native / direct (no proxy)
2  delay the proxy adds, INVITE in -> INVITE out per branch, at 25 % and 75 % of 1 (python)
3  handoff: pending (see HANDOFF_PENDING)
4  memory per concurrent twinned call: Kamailio shm, rtpengine RSS, at 0 and N calls
5  database round trips per twinned INVITE, cold and warm cache
6  after every run: rtpengine list empty, no dialogs, shm growth bounded (Run.check_after)
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from twinctl import rpc

from . import capture, cpu, dbstats, load
from . import testbed as tb

HANDOFF_RESULTS = Path(__file__).resolve().parent / "results" / "handoff.json"
HANDOFF_PENDING = ("not measured in this run: `.venv/bin/python -m bench.handoff_bench` measures "
                   "the handoff (it needs the test stack's addresses, so it runs on its own) "
                   "and this report includes its latest results/handoff.json.")


def handoff_figures() -> dict | str:
    """The handoff benchmark's latest results (bench/handoff_bench.py), if it has run."""
    try:
        import json
        return json.loads(HANDOFF_RESULTS.read_text())
    except (OSError, ValueError):
        return HANDOFF_PENDING

# A run leaves no more shared memory in use than this above the level measured before it
# (tm keeps ended transactions 5 s, the dialog module deleted dialogs until their timer runs;
# wait_clean waits for those, so what is left is allocator slack, not calls).
SHM_GROWTH_BOUND = 1 << 20


@dataclass
class Run:
    cfg: object
    logroot: Path
    step_seconds: float = 8.0
    hold_ms: int = 1000
    ring_ms: int = 100
    log: object = print
    checks: list = field(default_factory=list)       # figure 6, one entry per run
    shm_baseline: dict = field(default_factory=dict)  # routing -> bytes at its start

    def routing_up(self, routing: str) -> None:
        tb.up(self.cfg, routing, log=self.log)
        tb.register_desks(self.cfg)
        left = tb.wait_clean(self.cfg, 3)
        if not left.clean:
            tb.force_clean(self.cfg, routing, self.log)
        self.shm_baseline[routing] = tb.shm_used(self.cfg)

    def step(self, routing: str, rate: float, name: str, duration: float | None = None,
             **kw) -> load.StepResult:
        target = "direct" if routing == "direct" else "twin"
        kw.setdefault("hold_ms", self.hold_ms)
        kw.setdefault("ring_ms", self.ring_ms)
        before = cpu.snapshot(self.cfg)
        load_avg = os.getloadavg()[0]
        others = cpu.foreign_activity()
        res = load.run_step(self.cfg, target, rate, duration or self.step_seconds,
                            self.logroot / name, **kw)
        res.target = routing
        res.note = (res.note + f" load average before: {load_avg:.2f}"
                    + (f"; also running: {', '.join(others)}" if others else "")).strip()
        res.cpu = cpu.delta(before, cpu.snapshot(self.cfg), res.created)
        if routing != "direct":
            self.check_after(routing, name, res)
        self.log(f"  {name}: {rate:g} cps asked, {res.achieved_cps:g} placed, "
                 f"{res.successful}/{res.created} ok, {res.failed} failed, "
                 f"180 p50/p99 {res.ring_ms.get('p50')}/{res.ring_ms.get('p99')} ms"
                 f"{'' if res.sustained() else '  (not sustained)'}")
        return res

    def check_after(self, routing: str, name: str, res: load.StepResult) -> None:
        """Figure 6: what the run left. A sustained run must leave nothing; an overloaded one
        (calls the caller gave up on) is recorded, then cleared for the next run."""
        # A sustained run gets 12 s to empty (tm and dialog keep an ended call ~5 s); an
        # overloaded one 6 s: what it left then is recorded and cleared.
        left = tb.wait_clean(self.cfg, 12 if res.sustained() else 6)
        growth = left.shm_bytes - self.shm_baseline.get(routing, left.shm_bytes)
        entry = {"run": name, "routing": routing, "rate": res.rate,
                 "sustained": res.sustained(), "rtpengine_sessions": left.sessions,
                 "dialogs": left.dialogs, "waited_s": left.waited_s,
                 "shm_growth_bytes": growth,
                 "ok": left.clean and growth <= SHM_GROWTH_BOUND}
        if not left.clean:
            cleared = tb.force_clean(self.cfg, routing, self.log)
            entry["cleared"] = cleared.clean
            self.shm_baseline[routing] = tb.shm_used(self.cfg)
        res.leftovers = entry
        self.checks.append(entry)


# ---- figure 1 -------------------------------------------------------------------------------

def max_rate(run: Run, routing: str, start: float, cap: float,
             resolution: float = 0.10) -> dict:
    """Double the rate while it is sustained, then bisect between the last sustained and the
    first failed rate until they are within `resolution` of each other."""
    steps: list[load.StepResult] = []

    def trial(rate: float) -> bool:
        rate = float(round(rate))
        res = run.step(routing, rate, f"max-{routing}-{int(rate)}")
        steps.append(res)
        return res.sustained()

    lo, hi = 0.0, None
    rate = start
    while True:
        if trial(rate):
            lo = rate
            if rate >= cap:
                break
            rate = min(cap, rate * 2)
        else:
            hi = rate
            break
    if hi is not None and lo == 0.0:                    # even the start rate failed
        rate = start / 2
        while rate >= 5 and not trial(rate):
            hi, rate = rate, rate / 2
        lo = rate if rate >= 5 else 0.0
    while hi is not None and lo > 0 and hi / lo > 1 + resolution:
        mid = round((lo + hi) / 2)
        if trial(mid):
            lo = mid
        else:
            hi = mid
    best = max((s for s in steps if s.sustained() and s.rate == lo), key=lambda s: s.rate,
               default=None)
    return {"routing": routing, "max_cps": lo, "first_failed_cps": hi, "capped": hi is None,
            "at_max": best.as_dict() | {"cpu": best.cpu} if best else None,
            "steps": [s.as_dict() | {"cpu": s.cpu} for s in steps]}


# ---- figure 2 -------------------------------------------------------------------------------

def proxy_delay(run: Run, routing: str, rate: float, label: str) -> dict:
    pcap = run.logroot / f"delay-{routing}-{label}.pcap"
    with capture.Capture(run.cfg, pcap):
        res = run.step(routing, rate, f"delay-{routing}-{label}")
    delays = capture.proxy_delays(run.cfg, pcap)
    pcap.unlink(missing_ok=True)        # tens of MB; the numbers are what we keep
    return {"routing": routing, "load": label, "rate": rate, "step": res.as_dict(),
            "delay_ms": delays}


# ---- figure 4 -------------------------------------------------------------------------------

def memory(run: Run, routing: str, calls: int = 500, rate: float = 50,
           hold_s: float = 30) -> dict:
    """Hold `calls` concurrent answered calls; read Kamailio shm and rtpengine RSS at 0 and
    with all of them up (active dialogs counted, not assumed)."""
    cfg = run.cfg
    tb.wait_clean(cfg, 12)
    shm0, rss0, sessions0 = tb.shm_used(cfg), tb.rtpengine_rss_kb(cfg), 0
    name = f"memory-{routing}"
    target = "twin"
    logdir = run.logroot / name
    import threading
    box: dict = {}

    def place():
        box["res"] = load.run_step(cfg, target, rate, calls / rate, logdir,
                                   hold_ms=int(hold_s * 1000), ring_ms=run.ring_ms,
                                   limit=calls + 10, recv_timeout_ms=int(hold_s * 1000) + 8000)

    worker = threading.Thread(target=place)
    worker.start()
    up_by = time.monotonic() + calls / rate + 8
    while time.monotonic() < up_by:
        time.sleep(0.5)
        active = tb.dialog_stats(cfg).get("active_dialogs", 0)
        if active >= calls:
            break
    time.sleep(1.0)
    stats = tb.dialog_stats(cfg)
    at = {"active_dialogs": stats.get("active_dialogs", 0),
          "early_dialogs": stats.get("early_dialogs", 0),
          "rtpengine_sessions": len(tb.rtpengine_sessions(cfg)),
          "shm_bytes": tb.shm_used(cfg), "rtpengine_rss_kb": tb.rtpengine_rss_kb(cfg)}
    worker.join()
    res = box["res"]
    res.target = routing
    run.check_after(routing, name, res)
    n = at["active_dialogs"] or 1
    return {"routing": routing, "concurrent_target": calls,
            "at_0": {"shm_bytes": shm0, "rtpengine_rss_kb": rss0,
                     "rtpengine_sessions": sessions0},
            "at_n": at,
            "kamailio_shm_per_call_bytes": round((at["shm_bytes"] - shm0) / n),
            "rtpengine_rss_per_call_kb": round((at["rtpengine_rss_kb"] - rss0) / n, 2),
            "step": res.as_dict()}


# ---- figure 5 -------------------------------------------------------------------------------

def flush_caches(run: Run, routing: str) -> None:
    """Empty the subscriber cache: Python workers on NOTIFY (as a twinctl change does), the
    native baseline's htable by RPC."""
    if routing == "python":
        with tb.connect(run.cfg) as conn:
            conn.execute("SELECT pg_notify('twinning_subscriber_changed', 'bench')")
    else:
        rpc.call(run.cfg, "htable.flush", "sub")


def db_round_trips(run: Run, routing: str, use_statements: bool, n: int = 100,
                   rate: float = 25) -> dict:
    """N calls to N distinct subscribers right after the cache is emptied (cold), then the
    same N again after three unmeasured passes have warmed every worker (warm)."""
    cfg = run.cfg
    subs = range(tb.SUBSCRIBERS - n, tb.SUBSCRIBERS)
    out = {"routing": routing, "calls_per_pass": n,
           "method": "pg_stat_statements" if use_statements else "pg_stat_database.xact_commit"}
    flush_caches(run, routing)
    time.sleep(0.3)
    for phase in ("cold", "warm"):
        if phase == "warm":
            run.step(routing, rate * 2, f"db-{routing}-warmup", duration=3 * n / (rate * 2),
                     subscribers=subs)
        if use_statements:
            dbstats.reset(cfg)
        x0 = dbstats.xact_commits(cfg)
        res = run.step(routing, rate, f"db-{routing}-{phase}", duration=n / rate,
                       subscribers=subs)
        time.sleep(6)               # the dialog module writes its changes every 5 s
        x1 = dbstats.xact_commits(cfg)
        calls = res.created or 1
        entry = {"calls": res.created, "failed": res.failed,
                 "xact_commit_per_invite": round((x1 - x0 - 2) / calls, 3)}
        if use_statements:
            kinds = dbstats.statements(cfg, cfg.db_user)
            entry["per_invite"] = {k: round(v["calls"] / calls, 3) for k, v in kinds.items()}
            entry["hot_path_per_invite"] = round(sum(
                v["calls"] for k, v in kinds.items() if "(routing)" in k) / calls, 3)
            entry["statements"] = {k: v["queries"][:4] for k, v in kinds.items()}
        out[phase] = entry
    return out
