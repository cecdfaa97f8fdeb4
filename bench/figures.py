"""The benchmark's figures, each a function of a Run (the stack, where logs go, what was found).

1  max sustainable calls per second: python / native / direct (no proxy); in the full method
   each rate is run three times after a warm-up, and it is sustained when all three had
   < 0.1 % calls not served and a p99 post-dial delay under 200 ms (the spread is kept)
1b CPU per call per component, python and native at the same rate (the efficiency ratio)
7  goodput against offered load (1x, 2x, 4x max) with the overload control's ceiling at max
8  cold start: Kamailio restarted under 50 % of max, the time until failures stop
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
from twinning.config import KAMAILIO

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
    # The config Kamailio runs with now, when not `cfg` (goodput's ceiling): what a clean-up
    # restart must start it with again.
    running_cfg: object = None

    def routing_up(self, routing: str) -> None:
        tb.up(self.cfg, routing, log=self.log)
        tb.register_desks(self.cfg)
        left = tb.wait_clean(self.cfg, 3)
        if not left.clean:
            tb.force_clean(self.cfg, routing, self.log)
        self.shm_baseline[routing] = tb.shm_used(self.cfg)

    def step(self, routing: str, rate: float, name: str, duration: float | None = None,
             settle_s: float | None = None, **kw) -> load.StepResult:
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
            self.check_after(routing, name, res, settle_s)
        self.log(f"  {name}: {rate:g} cps asked, {res.achieved_cps:g} placed, "
                 f"{res.successful}/{res.created} ok, {res.failed} failed, "
                 f"180 p50/p99 {res.ring_ms.get('p50')}/{res.ring_ms.get('p99')} ms"
                 f"{'' if res.sustained() else '  (not sustained)'}")
        return res

    def check_after(self, routing: str, name: str, res: load.StepResult,
                    settle_s: float | None = None) -> None:
        """Figure 6: what the run left. A sustained run must leave nothing; an overloaded one
        (calls the caller gave up on) is recorded, then cleared for the next run."""
        # A sustained run gets 12 s to empty (tm and dialog keep an ended call ~5 s); an
        # overloaded one 6 s: what it left then is recorded and cleared.
        left = tb.wait_clean(self.cfg, settle_s or (12 if res.sustained() else 6))
        growth = left.shm_bytes - self.shm_baseline.get(routing, left.shm_bytes)
        entry = {"run": name, "routing": routing, "rate": res.rate,
                 "sustained": res.sustained(), "rtpengine_sessions": left.sessions,
                 "dialogs": left.dialogs, "waited_s": left.waited_s,
                 "shm_growth_bytes": growth,
                 "ok": left.clean and growth <= SHM_GROWTH_BOUND}
        if not left.clean:
            cleared = tb.force_clean(self.running_cfg or self.cfg, routing, self.log)
            entry["cleared"] = cleared.clean
            self.shm_baseline[routing] = tb.shm_used(self.cfg)
        res.leftovers = entry
        self.checks.append(entry)


# ---- figure 1 -------------------------------------------------------------------------------

P99_LIMIT_MS = 200.0            # the full method's bound on the post-dial delay (INVITE -> 180)


def spread(values: list[float]) -> dict:
    """min / median / max of the three runs (and the values): what a figure is worth."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return {}
    return {"min": vals[0], "median": vals[len(vals) // 2], "max": vals[-1],
            "values": [round(v, 3) for v in values if v is not None]}


def cpu_ms_per_call(res: load.StepResult) -> dict:
    return {k: v["ms_per_call"] for k, v in (res.cpu or {}).items()
            if isinstance(v, dict) and v.get("ms_per_call") is not None}


def runs_summary(runs: list[load.StepResult]) -> dict:
    cpu = [cpu_ms_per_call(r) for r in runs]
    components = sorted({k for c in cpu for k in c})
    return {"runs": len(runs),
            "failure_ratio": spread([r.failure_ratio for r in runs]),
            "achieved_cps": spread([r.achieved_cps for r in runs]),
            "ring_p99_ms": spread([r.ring_ms.get("p99") for r in runs]),
            "ring_p50_ms": spread([r.ring_ms.get("p50") for r in runs]),
            "cpu_ms_per_call": {k: spread([c.get(k) for c in cpu]) for k in components}}


def max_rate(run: Run, routing: str, start: float, cap: float,
             resolution: float = 0.10, repeats: int = 1, warmup_s: float = 0.0,
             p99_ms: float | None = None) -> dict:
    """Double the rate while it is sustained, then bisect between the last sustained and the
    first failed rate until they are within `resolution` of each other. A rate is tried
    `repeats` times after a `warmup_s` step at the same rate (not counted), and is sustained
    only if every one of those runs is (p99_ms: also the post-dial delay bound)."""
    steps: list[load.StepResult] = []
    trials: dict[float, list[load.StepResult]] = {}

    def trial(rate: float) -> bool:
        rate = float(round(rate))
        if warmup_s:
            run.step(routing, rate, f"max-{routing}-{int(rate)}-warmup", duration=warmup_s)
        runs = []
        for i in range(repeats):
            res = run.step(routing, rate, f"max-{routing}-{int(rate)}" +
                           (f"-{i + 1}" if repeats > 1 else ""))
            runs.append(res)
            if not res.sustained(max_p99_ms=p99_ms):
                break                   # one failed run decides: no need for the others
        steps.extend(runs)
        trials[rate] = runs
        return len(runs) == repeats and all(r.sustained(max_p99_ms=p99_ms) for r in runs)

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
    at_max = trials.get(float(lo), [])
    best = at_max[-1] if at_max else None
    return {"routing": routing, "max_cps": lo, "first_failed_cps": hi, "capped": hi is None,
            "method": {"repeats": repeats, "warmup_s": warmup_s, "p99_ms": p99_ms,
                       "step_s": run.step_seconds},
            "at_max": best.as_dict() | {"cpu": best.cpu} if best else None,
            "spread_at_max": runs_summary(at_max) if at_max else None,
            "steps": [s.as_dict() | {"cpu": s.cpu} for s in steps]}


def efficiency(run: Run, rate: float, repeats: int) -> dict:
    """CPU milliseconds per call per component, python and native at the same rate: the
    ratio is python's over native's (Kamailio's share is where the routing language is)."""
    out: dict = {"rate": rate}
    for routing in ("python", "native"):
        run.routing_up(routing)
        runs = [run.step(routing, rate, f"cpu-{routing}-{int(rate)}-{i + 1}")
                for i in range(repeats)]
        out[routing] = runs_summary(runs)
    py = out["python"]["cpu_ms_per_call"].get("kamailio", {}).get("median")
    nat = out["native"]["cpu_ms_per_call"].get("kamailio", {}).get("median")
    out["kamailio_ratio"] = round(py / nat, 3) if py and nat else None
    return out


# ---- figure 7 -------------------------------------------------------------------------------

def goodput(run: Run, routing: str, max_cps: float, multiples=(1, 2, 4), repeats: int = 3,
            settle_s: float = 60.0) -> dict:
    """Offer 1x, 2x, 4x the sustainable rate with the overload control's ceiling at it:
    completed calls per second, the refused (503 + Retry-After), the failed, and what is left
    `settle_s` after the load stops (without restarting anything)."""
    ceiling = tb.with_ceiling(run.cfg, max_cps)
    tb.restart_kamailio(ceiling, routing, run.log)
    run.running_cfg = ceiling
    points = []
    try:
        for m in multiples:
            runs = [run.step(routing, m * max_cps, f"goodput-{routing}-{m}x-{i + 1}",
                             settle_s=settle_s) for i in range(repeats)]
            points.append({"multiple": m, "offered_cps": m * max_cps,
                           "goodput_cps": spread([r.goodput_cps for r in runs]),
                           "goodput_share_of_max": spread([round(r.goodput_cps / max_cps, 3)
                                                           for r in runs]),
                           "refused": spread([r.refused for r in runs]),
                           "failed": spread([r.failed for r in runs]),
                           "left_after": [r.leftovers for r in runs]})
    finally:
        run.running_cfg = None
        tb.restart_kamailio(run.cfg, routing, run.log)
    return {"routing": routing, "max_cps": max_cps, "points": points}


# ---- figure 8 -------------------------------------------------------------------------------

def cold_start(run: Run, routing: str, rate: float, duration: float = 40.0,
               restart_at: float = 10.0) -> dict:
    """Kamailio restarted while `rate` is offered: seconds from the restart to the last
    second with a failed call, and the database's transactions per second right after the
    restart against before it (a stampede of look-ups would show there)."""
    import threading
    cfg = run.cfg
    logdir = run.logroot / f"coldstart-{routing}"
    box: dict = {}
    worker = threading.Thread(target=lambda: box.setdefault("res", load.run_step(
        cfg, "twin", rate, duration, logdir, hold_ms=run.hold_ms, ring_ms=run.ring_ms)))
    worker.start()
    time.sleep(restart_at - 5)
    x_before0 = dbstats.xact_commits(cfg)
    time.sleep(5)
    x_before1 = dbstats.xact_commits(cfg)
    restarted = time.time()
    tb.restart_kamailio(cfg, routing, run.log)
    up_at = time.time()
    time.sleep(5)
    x_after = dbstats.xact_commits(cfg)
    worker.join()
    res = box["res"]
    failed_at = failure_times(logdir / "caller_stats.csv")
    late = [t for t in failed_at if t >= restarted]
    recovery_s = round(max(late) - restarted, 1) if late else 0.0
    started = caller_start(logdir / "caller_stats.csv")
    rings = [started + ms / 1000 for ms in load.read_rtt(logdir).get("ring@", [])] \
        if started else []
    res.target = routing
    run.check_after(routing, f"coldstart-{routing}", res, 60)
    return {"routing": routing, "rate": rate, "restart_s": round(up_at - restarted, 2),
            "service_back_after_s": service_back_after(rings, restarted, rate),
            "failures_stop_after_s": recovery_s, "failed": res.failed,
            "db_xact_per_s_before": round((x_before1 - x_before0) / 5, 1),
            "db_xact_per_s_first_5s_after": round((x_after - x_before1) / 5, 1),
            "step": res.as_dict()}


def service_back_after(rings: list[float], restarted: float, rate: float,
                       share: float = 0.9) -> float | None:
    """Seconds from the restart to the start of the first second after it in which calls
    rang (their 180 reached the caller) at `share` of the offered rate: when new calls are
    served again. (The last failure is declared by SIPp only when its 8 s reply timeout runs
    out, so "the last second with a failure" is the outage plus that timeout.)"""
    after = sorted(t for t in rings if t >= restarted)
    if not after:
        return None
    per_second: dict[int, int] = {}
    for t in after:
        per_second[int(t - restarted)] = per_second.get(int(t - restarted), 0) + 1
    for second in range(int(after[-1] - restarted) + 1):
        if per_second.get(second, 0) >= share * rate:
            return float(second)
    return None


def caller_start(stats_csv: Path) -> float | None:
    """Epoch seconds at which the caller started (the StartTime of SIPp's stats file)."""
    if not stats_csv.exists():
        return None
    lines = [ln for ln in stats_csv.read_text(errors="replace").splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    row = dict(zip(lines[0].rstrip(";").split(";"), lines[1].rstrip(";").split(";")))
    try:
        return float(row["StartTime"].split()[-1])
    except (KeyError, ValueError, IndexError):
        return None


def failure_times(stats_csv: Path) -> list[float]:
    """Epoch seconds of the periodic rows (-fd 1) of SIPp's stats file that counted failed
    calls."""
    if not stats_csv.exists():
        return []
    lines = [ln for ln in stats_csv.read_text(errors="replace").splitlines() if ln.strip()]
    if len(lines) < 2:
        return []
    head = lines[0].rstrip(";").split(";")
    out = []
    for line in lines[1:]:
        row = dict(zip(head, line.rstrip(";").split(";")))
        try:
            if int(row.get("FailedCall(P)", "0") or 0) > 0:
                out.append(float(row["CurrentTime"].split()[-1]))
        except (ValueError, KeyError, IndexError):
            continue
    return out


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
            # Kamailio's modules and the routing inside it log in as the kamailio role (not
            # the admin role the bench's own set-up uses).
            kinds = dbstats.statements(cfg, cfg.db_role(KAMAILIO))
            entry["per_invite"] = {k: round(v["calls"] / calls, 3) for k, v in kinds.items()}
            entry["hot_path_per_invite"] = round(sum(
                v["calls"] for k, v in kinds.items() if "(routing)" in k) / calls, 3)
            entry["statements"] = {k: v["queries"][:4] for k, v in kinds.items()}
        out[phase] = entry
    return out
