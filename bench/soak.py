"""Repeated use: a long soak of twin-ring calls and handoffs, then nothing may be left behind.

    .venv/bin/python -m bench.soak --minutes 30 [--rate R]     # the soak (on demand, not CI)
    .venv/bin/python -m bench.soak --find-rate                 # what the stack sustains
    .venv/bin/python -m bench.soak --calls 102 --rate 20 --out F   # the suite's short version

Runs against the stack of $TWIN_CONFIG (bring it up first: `twinctl stack up`). Long-running
SIPp agents, never one process per call:

  caller   one UAC on the trunk's address, at a steady rate, dialling the DIDs of an injection
           file in turn; the line says how the far end behaves (bench/scenarios/soak/caller.xml)
  desks    one registered UAS per kind of call, each on its own desk address/port, answering
           for that kind's subscribers (one desk each)
  mobile   one UAS at the trunk's address:5060 for every twin number: it rings until CANCELled
           for a twin ring (the desk answers first) and answers or declines the proxy's handoff
           INVITE (Call-ID "twho-...") by the number rung (bench/scenarios/soak/mobile.xml)

The kind of a call is decided by the subscriber dialled (KINDS): which desk scenario answers
it, how the far end and the mobile behave, so every hang-up order comes round. Counted: calls
attempted / completed / failed per kind (the caller logs "start" and "done" per call),
handoffs attempted / completed / declined (the call log's handoff rows and the mobile's log),
and before / after (and sampled during the load): Kamailio shared memory, rtpengine RSS and
sessions, dialogs, the twin_legs profile, htable `call` entries, PostgreSQL `htable` rows and
live `call` rows. After the load: lab.residue.assert_no_residue (waits up to 60 s), then one
fresh twin-ring call, which must ring the mobile.

Writes bench/results/soak.json (or --out) and prints markdown tables. --find-rate runs short
steps at rising rates (doubling while sustained, then bisecting) and writes
bench/results/soak-rate.json; the soak's default rate is half of the highest rate sustained.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from lab import residue, sipp
from rtpctl import Client
from twinctl import rpc
from twinctl import stack as stack_mod
from twinctl.commands import status as status_cmd
from twinctl.commands import subscriber as subscriber_cmd
from twinctl.commands import twin as twin_cmd
from twinctl.errors import TwinctlError
from twinning import config as site_config

from . import cpu, load
from . import testbed as tb

BENCH = Path(__file__).resolve().parent
SCENARIOS = BENCH / "scenarios" / "soak"
RESULTS = BENCH / "results"
LOGS = Path("/tmp/twinning-soak-logs")
PASSWORD = "soak-secret-1"
CALLER_PORT = 5075              # the trunk's address; the mobile is on 5060
FRESH_CALLER_PORT = 5076
RESIDUE_TIMEOUT = 60.0
SPACING_S = 12.0                # a subscriber is dialled again no sooner than this


@dataclass(frozen=True)
class Kind:
    """One kind of call, and the subscribers it is played with."""
    name: str
    what: str
    desk: str                   # desk scenario (bench/scenarios/soak/ or tests' uas/)
    desk_host: int              # last octet of the desk's address
    desk_port: int
    desk_ms: int                # the desk's -d: how long it talks (0: answer.xml, which rings -d)
    far: str                    # caller mode: far | wait | held
    far_ms: int                 # how long the far end talks before it hangs up
    handoff: str = ""           # planned handoff outcome: completed | declined | ""


# The digit the kind has in the subscribers' numbers is its index (the mobile scenario reads
# kinds 3 and 4 from the number it is rung on: keep them there).
KINDS = (
    Kind("plain_far_hangs_up", "answered on the desk; the far end hangs up",
         "uas/answer.xml", 3, 5081, 0, "far", 1500),
    Kind("plain_desk_hangs_up", "answered on the desk; the desk hangs up",
         str(SCENARIOS / "desk_hang_up.xml"), 5, 5081, 1500, "wait", 0),
    Kind("handoff_far_hangs_up", "desk answers, REFER to *55, the mobile answers; "
         "the far end hangs up", str(SCENARIOS / "desk_handoff.xml"), 6, 5081, 1000, "far",
         5000, "completed"),
    Kind("handoff_mobile_hangs_up", "desk answers, REFER to *55, the mobile answers and "
         "hangs up", str(SCENARIOS / "desk_handoff.xml"), 7, 5081, 1000, "wait", 0,
         "completed"),
    Kind("handoff_declined", "desk answers, REFER to *55, the mobile declines (603); the "
         "far end hangs up, the desk gets its BYE", str(SCENARIOS / "desk_declined.xml"), 3,
         5082, 1000, "far", 3000, "declined"),
    Kind("hold_then_handoff", "desk answers, holds (re-INVITE sendonly), REFER to *55, the "
         "mobile answers (the far end is resumed); the far end hangs up",
         str(SCENARIOS / "desk_hold_handoff.xml"), 5, 5082, 1000, "held", 1500, "completed"),
)
MOBILE_TALK_MS = 1500           # kind 3: the mobile hangs up after this
# How long a desk rings before it is answered: at most this, drawn per call uniformly from
# 0 (issue 23: the timings people answer at, not one chosen one; a desk answering at once
# beats the mobile's first reply, see "Findings" in bench/README.md).
DESK_RING_MS = 3000


def ext(kind: int, i: int) -> str:
    return f"{3 + kind}{i:03d}"


def did(kind: int, i: int) -> str:
    return f"+1212556{kind}{i:03d}"


def twin(kind: int, i: int) -> str:
    return f"+1917556{kind}{i:03d}"


def net(cfg) -> str:
    return cfg.proxy_address.rsplit(".", 1)[0]


def desk_ip(cfg, kind: Kind) -> str:
    return f"{net(cfg)}.{kind.desk_host}"


def trunk_ip(cfg) -> str:
    return f"{net(cfg)}.2"


def log(msg: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {msg}", flush=True)


# ---- subscribers and desks ------------------------------------------------------------------

def connect(cfg) -> psycopg.Connection:
    return psycopg.connect(cfg.dsn(), row_factory=dict_row, autocommit=True)


def seed(cfg, per_kind: int) -> None:
    """per_kind subscribers of every kind, ringing desk and mobile (idempotent)."""
    with connect(cfg) as conn:
        have = {r["extension"] for r in conn.execute("SELECT extension FROM subscriber")}
        missing = [(k, i) for k in range(len(KINDS)) for i in range(per_kind)
                   if ext(k, i) not in have]
        if missing:
            log(f"adding {len(missing)} soak subscribers")
        with conn.transaction():
            for k, i in missing:
                subscriber_cmd.add_subscriber(conn, cfg, ext(k, i), did(k, i),
                                              f"Soak {ext(k, i)}", PASSWORD)
                # The product's defaults (answer too soon 1500 ms): the mobiles answer a
                # handoff after 1.7 s, and the desks answer while the twin leg rings.
                twin_cmd.set_twin(conn, ext(k, i), twin(k, i), None)
                status_cmd.edit_status(conn, ext(k, i), "In Office", "ring-group",
                                       "desk,mobile")


def register_desks(cfg, per_kind: int) -> None:
    """Each subscriber's desk registered at its kind's desk agent (usrloc `ul.add` over RPC,
    as bench/testbed.py does: digest auth is not what the soak exercises). Idempotent."""
    wanted = {ext(k, i): f"sip:{ext(k, i)}@{desk_ip(cfg, kind)}:{kind.desk_port}"
              for k, kind in enumerate(KINDS) for i in range(per_kind)}
    with connect(cfg) as conn:
        have: dict[str, list[str]] = {}
        for r in conn.execute("SELECT username, contact FROM location"):
            have.setdefault(r["username"], []).append(r["contact"])
    for user, contact in wanted.items():
        if have.get(user) == [contact]:
            continue
        if user in have:
            rpc.call(cfg, "ul.rm", "location", user)
        rpc.call(cfg, "ul.add", "location", user, contact, 86400, 1.0, "", 0, 0, 0xFFFFFFFF)


# ---- what is measured -----------------------------------------------------------------------

def htable_entries(cfg, name: str = "call") -> int:
    for table in rpc.call(cfg, "htable.stats") or []:
        if table.get("name") == name:
            return int(table.get("all", 0))
    return 0


def snapshot(cfg, full: bool = True) -> dict:
    """The figures before and after (full) or while the load runs (cheaper reads)."""
    shm = rpc.call(cfg, "core.shmmem")
    out = {"at": round(time.time(), 1),
           "kamailio_shm_bytes": int(shm["real_used"]),
           "kamailio_shm_used_bytes": int(shm["used"]),      # without allocator overhead
           # Kamailio's rtpengine module keeps (Call-ID, via-branch) -> rtpengine node until
           # a delete through the module or its hash_table_tout (3600 s) removes it
           "rtpengine_module_hash_entries": int(rpc.call(cfg, "rtpengine.get_hash_total")),
           "rtpengine_rss_kb": tb.rtpengine_rss_kb(cfg),
           "rtpengine_sessions": len(tb.rtpengine_sessions(cfg)),
           "twin_legs": int(rpc.call(cfg, "dlg.profile_get_size", "twin_legs") or 0),
           "htable_call_entries": htable_entries(cfg),
           # the routing's subscriber cache (shared memory, entries expire after 300 s)
           "htable_subs_entries": htable_entries(cfg, "subs"),
           "tm_current": int((rpc.call(cfg, "tm.stats") or {}).get("current", 0)),
           "load_average": round(os.getloadavg()[0], 2)}
    if full:
        out["dialogs"] = tb.dialogs(cfg)
    else:
        out["dialogs"] = tb.dialog_stats(cfg).get("active_dialogs", 0)
    with connect(cfg) as conn:
        out["pg_htable_rows"] = conn.execute("SELECT count(*) AS n FROM htable").fetchone()["n"]
        out["live_call_rows"] = conn.execute(
            "SELECT count(*) AS n FROM call WHERE ended_at IS NULL").fetchone()["n"]
    return out


class Sampler(threading.Thread):
    """Samples the figures every `every` seconds while the load runs."""

    def __init__(self, cfg, every: float):
        super().__init__(daemon=True)
        self.cfg, self.every = cfg, every
        self.samples: list[dict] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            try:
                self.samples.append(snapshot(self.cfg, full=False))
            except (TwinctlError, OSError, psycopg.Error) as exc:
                self.samples.append({"at": round(time.time(), 1), "error": str(exc)})


# ---- one load run ---------------------------------------------------------------------------

@dataclass
class Plan:
    rate: float
    calls: int
    per_kind: int               # subscribers per kind

    @classmethod
    def make(cls, rate: float, calls: int, spacing_s: float = SPACING_S) -> "Plan":
        """Enough subscribers that none is dialled again within spacing_s (a subscriber has
        one call at a time, as a person does), never more than get called."""
        per_kind = max(1, math.ceil(rate * spacing_s / len(KINDS)))
        per_kind = min(per_kind, math.ceil(calls / len(KINDS)), 999)
        return cls(rate, calls, per_kind)

    def kind_of_call(self, n: int) -> int:
        return n % len(KINDS)

    def planned(self) -> dict[str, int]:
        counts = {k.name: 0 for k in KINDS}
        for n in range(self.calls):
            counts[KINDS[self.kind_of_call(n)].name] += 1
        return counts


def injection_file(path: Path, plan: Plan) -> Path:
    """Kinds interleaved, each kind's subscribers in turn: line n is kind n % 6."""
    lines = ["SEQUENTIAL"]
    for i in range(plan.per_kind):
        for k, kind in enumerate(KINDS):
            lines.append(f"{did(k, i)};{kind.far};{kind.far_ms};{kind.name};")
    path.write_text("\n".join(lines) + "\n")
    return path


def agents_for(cfg, plan: Plan, logdir: Path, ring_ms: int = DESK_RING_MS
               ) -> tuple[load.BenchAgent, list[load.BenchAgent], load.BenchAgent]:
    planned = plan.planned()
    common = ["-buff_size", "1048576", "-recv_timeout", "10000"]
    desks = []
    for k, kind in enumerate(KINDS):
        ip = desk_ip(cfg, kind)
        desks.append(load.BenchAgent(
            f"desk-{kind.name}", kind.desk, ip, kind.desk_port, calls=planned[kind.name],
            listens=True, keys={"rtp_ip": ip, "rtp_port": "6000", "code": cfg.handoff_code,
                                "ring_ms": str(ring_ms)},
            extra=["-d", str(kind.desk_ms or ring_ms)] + common))
    handoffs = sum(n for name, n in planned.items()
                   if next(k for k in KINDS if k.name == name).handoff)
    mobile = load.BenchAgent(
        "mobile", str(SCENARIOS / "mobile.xml"), trunk_ip(cfg), 5060,
        calls=plan.calls + handoffs, listens=True,
        keys={"rtp_ip": trunk_ip(cfg), "rtp_port": "6002"},
        extra=["-d", str(MOBILE_TALK_MS), "-trace_logs", "-log_file",
               str(logdir / "mobile_logs.log")] + common)
    longest = max(k.far_ms + k.desk_ms for k in KINDS) + 3000
    limit = max(50, int(plan.rate * longest / 1000 * 3))
    caller = load.BenchAgent(
        "caller", str(SCENARIOS / "caller.xml"), trunk_ip(cfg), CALLER_PORT,
        remote=f"{cfg.proxy_address}:{cfg.proxy_port}", calls=plan.calls, rate=plan.rate,
        keys={"rtp_ip": trunk_ip(cfg), "rtp_port": "6004"},
        extra=["-l", str(limit), "-inf", str(injection_file(logdir / "dids.csv", plan)),
               "-trace_stat", "-stf", str(logdir / "caller_stats.csv"), "-fd", "5",
               "-trace_rtt", "-rtt_freq", "1", "-trace_logs",
               "-log_file", str(logdir / "caller_logs.log")] + common)
    return caller, desks, mobile


def screen_counts(agent: sipp.Agent) -> dict:
    """Successful / failed calls from an agent's final screen (-trace_screen)."""
    path = agent.logdir / f"{agent.name}.screen" if agent.logdir else None
    out = {}
    if not path or not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split("|")
        if len(parts) >= 3 and parts[0].strip() in ("Successful call", "Failed call"):
            key = "successful" if parts[0].strip().startswith("Successful") else "failed"
            try:
                out[key] = int(parts[2].strip())
            except ValueError:
                pass
    return out


def err_tail(agent: sipp.Agent, lines: int = 6) -> list[str]:
    path = agent.logdir / f"{agent.name}.err" if agent.logdir else None
    if not path or not path.exists():
        return []
    text = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return text[-lines:]


def read_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [ln.split() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]


def handoff_rows(cfg, since: datetime) -> dict[str, int]:
    with connect(cfg) as conn:
        rows = conn.execute("SELECT h.outcome, count(*) AS n FROM handoff h JOIN call c"
                            " USING (call_id) WHERE c.started_at >= %s GROUP BY h.outcome",
                            (since,)).fetchall()
    return {r["outcome"]: r["n"] for r in rows}


def call_rows(cfg, since: datetime) -> dict:
    with connect(cfg) as conn:
        row = conn.execute(
            "SELECT count(*) AS n, count(*) FILTER (WHERE ended_at IS NULL) AS live,"
            " count(*) FILTER (WHERE answered_by = 'desk') AS desk FROM call"
            " WHERE started_at >= %s", (since,)).fetchone()
    return dict(row)


def db_now(cfg) -> datetime:
    with connect(cfg) as conn:
        return conn.execute("SELECT now() AS t").fetchone()["t"]


def run_load(cfg, plan: Plan, logdir: Path, sample_every: float = 10.0,
             trace: bool = False, ring_ms: int = DESK_RING_MS) -> dict:
    """Seed, register, run the agents at plan.rate until plan.calls calls are over; count."""
    logdir.mkdir(parents=True, exist_ok=True)
    for old in logdir.glob("*"):
        if old.is_file():
            old.unlink()
    seed(cfg, plan.per_kind)
    register_desks(cfg, plan.per_kind)
    caller, desks, mobile = agents_for(cfg, plan, logdir, ring_ms)
    agents = desks + [mobile, caller]
    for agent in agents:
        agent.trace_messages = trace
    since = db_now(cfg)
    before = snapshot(cfg)
    cpu_before = cpu.snapshot(cfg)
    others = cpu.foreign_activity()
    sampler = Sampler(cfg, sample_every)
    duration = plan.calls / plan.rate
    longest = max(k.far_ms + k.desk_ms for k in KINDS) / 1000 + 10
    deadline = time.monotonic() + duration + longest + 60
    note = ""
    log(f"load: {plan.calls} calls at {plan.rate:g} cps (~{duration:.0f} s), "
        f"{plan.per_kind} subscribers per kind, logs in {logdir}")
    started = time.monotonic()
    sipp.start(agents, logdir)
    sampler.start()
    try:
        while caller.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if caller.proc.poll() is None:
            note = "the caller did not finish in time; stopped"
        settle = time.monotonic() + 20          # the answering agents end on their own
        while time.monotonic() < settle and any(a.proc.poll() is None for a in agents):
            time.sleep(0.1)
        unfinished = [a.name for a in agents if a.proc.poll() is None]
        if unfinished:
            note = (note + "; " if note else "") + f"stopped, not finished: {unfinished}"
    finally:
        elapsed = time.monotonic() - started
        sampler.stop.set()
        sipp.stop(agents)
    cpu_after = cpu.snapshot(cfg)
    stats = load.read_stats(logdir / "caller_stats.csv")
    rtt = load.read_rtt(logdir)
    created = load._int(stats, "TotalCallCreated")
    result = {
        "rate": plan.rate, "calls": plan.calls, "subscribers_per_kind": plan.per_kind,
        "desk_ring_ms": ring_ms,
        "elapsed_s": round(elapsed, 1), "note": note, "also_running": others,
        "caller": {"created": created,
                   "successful": load._int(stats, "SuccessfulCall(C)"),
                   "failed": load._int(stats, "FailedCall(C)"),
                   "retransmissions": load._int(stats, "Retransmissions(C)"),
                   "achieved_cps": load.achieved_rate(rtt.get("ring@", []), created, duration),
                   "ring_ms": load.percentiles(rtt.get("ring", [])),
                   "ring_ms_by_window": ring_by_window(logdir),
                   "rc": caller.proc.returncode},
        "agents": {a.name: {**screen_counts(a), "rc": a.proc.returncode,
                            **({"errors": err_tail(a)} if err_tail(a) else {})}
                   for a in desks + [mobile]},
        "before": before, "samples": sampler.samples,
        "cpu": cpu.delta(cpu_before, cpu_after, created),
        "_since": since,
    }
    # Per kind, from the caller's own log: a call is attempted once it logged "start", completed
    # once it logged "done" (its last message exchanged as planned).
    starts, dones = {}, {}
    for words in read_log(logdir / "caller_logs.log"):
        if len(words) >= 3 and words[0] in ("start", "done"):
            (starts if words[0] == "start" else dones).setdefault(words[1], set()).add(words[2])
    planned = plan.planned()
    kinds = {}
    for kind in KINDS:
        s, d = starts.get(kind.name, set()), dones.get(kind.name, set())
        kinds[kind.name] = {"planned": planned[kind.name], "attempted": len(s),
                            "completed": len(s & d), "failed": len(s - d),
                            "failed_call_ids": sorted(s - d)[:10]}
    result["kinds"] = kinds
    mobile_log = [w[1] for w in read_log(logdir / "mobile_logs.log")
                  if len(w) >= 3 and w[0] == "mobile"]
    result["mobile"] = {what: mobile_log.count(what) for what in
                        ("ring-cancelled", "answered-then-bye", "answered-hung-up", "declined")}
    return result


def ring_by_window(logdir: Path, windows: int = 6) -> list[dict]:
    """INVITE -> first 180 (p50 / p99 ms) in consecutive windows of the run: does the proxy
    get slower as the soak goes on?"""
    rtt = load.read_rtt(logdir)
    pairs = sorted(zip(rtt.get("ring@", []), rtt.get("ring", [])))
    if len(pairs) < windows * 10:
        return []
    start, end = pairs[0][0], pairs[-1][0]
    width = (end - start) / windows or 1
    out = []
    for w in range(windows):
        values = [v for at, v in pairs if start + w * width <= at < start + (w + 1) * width
                  or (w == windows - 1 and at == end)]
        stats = load.percentiles(values)
        out.append({"from_s": round(w * width / 1000), "to_s": round((w + 1) * width / 1000),
                    "n": stats.get("n", 0), "p50": stats.get("p50"), "p99": stats.get("p99")})
    return out


def handoff_summary(result: dict, db_outcomes: dict[str, int]) -> dict:
    kinds = {k.name: k for k in KINDS}
    want = {"completed": 0, "declined": 0}
    attempted = 0
    for name, counts in result["kinds"].items():
        if kinds[name].handoff:
            attempted += counts["attempted"]
            want[kinds[name].handoff] += counts["attempted"]
    return {"attempted": attempted, "planned_completed": want["completed"],
            "planned_declined": want["declined"],
            "completed": db_outcomes.get("completed", 0),
            "declined": db_outcomes.get("declined", 0),
            "other_outcomes": {k: v for k, v in db_outcomes.items()
                               if k not in ("completed", "declined")},
            "share_of_calls_pct": round(100 * attempted / max(1, sum(
                c["attempted"] for c in result["kinds"].values())), 1)}


def judge(result: dict) -> list[str]:
    """What went wrong in a load run (empty: every call and handoff as planned)."""
    problems = []
    c = result["caller"]
    for name, k in result["kinds"].items():
        if k["attempted"] != k["planned"] or k["failed"]:
            problems.append(f"{name}: {k['completed']}/{k['planned']} completed, "
                            f"{k['failed']} failed")
    if c["failed"] or c["created"] != result["calls"]:
        problems.append(f"caller: {c['created']} created, {c['failed']} failed")
    if c["achieved_cps"] < 0.95 * result["rate"]:
        problems.append(f"caller placed {c['achieved_cps']} cps of {result['rate']} asked")
    for name, a in result["agents"].items():
        if a.get("failed"):
            problems.append(f"{name}: {a['failed']} failed calls")
    h = result["handoffs"]
    if h["completed"] != h["planned_completed"] or h["declined"] != h["planned_declined"] \
            or h["other_outcomes"]:
        problems.append(f"handoffs: {h['completed']} completed of {h['planned_completed']}, "
                        f"{h['declined']} declined of {h['planned_declined']}, "
                        f"other: {h['other_outcomes']}")
    if result["note"]:
        problems.append(result["note"])
    return problems


# ---- after the load -------------------------------------------------------------------------

def check_residue(cfg, timeout: float) -> dict:
    started = time.monotonic()
    try:
        residue.assert_no_residue(cfg, timeout=timeout)
        return {"clean": True, "waited_s": round(time.monotonic() - started, 1)}
    except AssertionError as exc:
        return {"clean": False, "waited_s": round(time.monotonic() - started, 1),
                "left": str(exc)}


def fresh_call(cfg, logdir: Path, kind: int = 3, i: int = 0) -> dict:
    """One more twin-ring call to a subscriber the load used: the mobile must be rung (the
    twin_legs profile is not exhausted) before the desk answers."""
    desk_kind = KINDS[kind]
    ip, mob_ip = desk_ip(cfg, desk_kind), trunk_ip(cfg)
    remote = f"{cfg.proxy_address}:{cfg.proxy_port}"
    desk = sipp.Agent("fresh-desk", "uas/answer.xml", ip, desk_kind.desk_port, listens=True,
                      keys={"rtp_ip": ip, "rtp_port": "6010"}, extra=["-d", "1000"])
    mobile = sipp.Agent("fresh-mobile", "uas/ring_cancel.xml", mob_ip, 5060, listens=True,
                        keys={"rtp_ip": mob_ip, "rtp_port": "6012"})
    caller = sipp.Agent("fresh-caller", "uac/call.xml", mob_ip, FRESH_CALLER_PORT,
                        remote=remote, keys={"dial": did(kind, i), "caller": "3125550142",
                                             "caller_name": "Fresh Caller", "rtp_ip": mob_ip,
                                             "rtp_port": "6014"}, extra=["-d", "500"])
    out = {"dialled": did(kind, i), "twin": twin(kind, i)}
    try:
        sipp.run([desk, mobile, caller], logdir, timeout=30)
        out["completed"] = True
    except sipp.AgentFailed as exc:
        out["completed"] = False
        out["error"] = str(exc)[:500]
    rung = [m.split("\r\n", 1)[0] for m in mobile.received("INVITE")]
    out["mobile_rung"] = bool(rung) and rung[0].startswith(f"INVITE sip:{twin(kind, i)}@")
    out["mobile_invite"] = rung[0] if rung else None
    out["mobile_cancelled"] = bool(mobile.received("CANCEL"))
    out["ok"] = bool(out["completed"] and out["mobile_rung"] and out["mobile_cancelled"])
    return out


def finish(cfg, result: dict, logdir: Path, residue_timeout: float) -> dict:
    since = result.pop("_since")
    result["handoffs"] = handoff_summary(result, handoff_rows(cfg, since))
    result["call_rows"] = call_rows(cfg, since)
    result["residue"] = check_residue(cfg, residue_timeout)
    result["after"] = snapshot(cfg)
    result["fresh_call"] = fresh_call(cfg, logdir / "fresh")
    result["after_fresh_call"] = check_residue(cfg, 20)
    result["steady_load_trend"] = trend(result["samples"])
    result["problems"] = judge(result)
    if not result["residue"]["clean"]:
        result["problems"].append(f"residue: {result['residue']['left']}")
    if not result["fresh_call"]["ok"]:
        result["problems"].append(f"fresh call: {result['fresh_call']}")
    if not result["after_fresh_call"]["clean"]:
        result["problems"].append(f"residue after the fresh call: "
                                  f"{result['after_fresh_call']['left']}")
    result["ok"] = not result["problems"]
    return result


# ---- finding the rate -------------------------------------------------------------------------

def force_clean(cfg) -> None:
    """After an overloaded step, so the next starts from nothing: Kamailio restarted with its
    persisted dialog and htable state emptied, rtpengine's sessions deleted, the call log's
    abandoned rows closed. Only the rate search does this; the soak never does."""
    paths = stack_mod.Paths(cfg)
    stack_mod.Kamailio(cfg, paths).stop()
    with connect(cfg) as conn:
        for table in ("dialog_vars", "dialog", "htable"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("UPDATE call SET ended_at = now(), outcome = 'soak-step-cleanup'"
                     " WHERE ended_at IS NULL")
    stack_mod.Kamailio(cfg, paths).start()
    with Client(cfg.rtpengine_ng.host, cfg.rtpengine_ng.port) as client:
        for call_id in client.list(limit=1_000_000):
            try:
                client.delete(call_id, delete_delay=0)
            except Exception:       # noqa: BLE001 - already gone: fine
                pass


def find_rate(cfg, step_s: float, start: float, cap: float, logroot: Path) -> dict:
    """Rates double from `start` while sustained, then bisect to 10 %. A step is sustained
    when every call and handoff went as planned, the caller placed >= 95 % of the rate, and
    nothing was left 60 s after it."""
    steps: list[dict] = []

    def step(rate: float) -> bool:
        plan = Plan.make(rate, max(len(KINDS), round(rate * step_s)))
        res = run_load(cfg, plan, logroot / f"rate-{rate:g}", sample_every=5)
        since = res.pop("_since")
        res["handoffs"] = handoff_summary(res, handoff_rows(cfg, since))
        res["residue"] = check_residue(cfg, RESIDUE_TIMEOUT)
        problems = judge(res) + ([] if res["residue"]["clean"] else
                                 [f"residue: {res['residue']['left']}"])
        ok = not problems
        peak = max((s.get("dialogs", 0) for s in res["samples"]), default=0)
        steps.append({"rate": rate, "calls": plan.calls, "sustained": ok,
                      "problems": problems, "achieved_cps": res["caller"]["achieved_cps"],
                      "ring_ms": res["caller"]["ring_ms"], "peak_dialogs": peak,
                      "cpu": res["cpu"], "load_average": res["before"]["load_average"],
                      "also_running": res["also_running"]})
        log(f"  {rate:g} cps: {'sustained' if ok else 'NOT sustained'}; placed "
            f"{res['caller']['achieved_cps']} cps; 180 p50/p99 "
            f"{res['caller']['ring_ms'].get('p50')}/{res['caller']['ring_ms'].get('p99')} ms;"
            f" peak {peak} dialogs{'' if ok else '; ' + '; '.join(problems)[:600]}")
        if not res["residue"]["clean"]:
            force_clean(cfg)
        return ok

    good, bad, rate = 0.0, None, start
    while rate <= cap:
        if step(rate):
            good, rate = rate, rate * 2
        else:
            bad = rate
            break
    while bad is not None and (bad - good) > 0.1 * bad:
        mid = round((good + bad) / 2)
        if step(mid):
            good = mid
        else:
            bad = mid
    return {"max_sustained_cps": good, "first_failed_cps": bad, "step_seconds": step_s,
            "soak_rate_cps": round(good / 2) if good else None, "steps": steps}


# ---- output ---------------------------------------------------------------------------------

def machine() -> dict:
    return {"node": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def markdown(result: dict) -> str:
    out = ["| kind | what | planned | attempted | completed | failed |",
           "|---|---|---|---|---|---|"]
    whats = {k.name: k.what for k in KINDS}
    for name, k in result["kinds"].items():
        out.append(f"| {name} | {whats[name]} | {k['planned']} | {k['attempted']} | "
                   f"{k['completed']} | {k['failed']} |")
    tot = {f: sum(k[f] for k in result["kinds"].values())
           for f in ("planned", "attempted", "completed", "failed")}
    out.append(f"| **all** | | {tot['planned']} | {tot['attempted']} | {tot['completed']} | "
               f"{tot['failed']} |")
    h = result["handoffs"]
    out += ["", "| handoffs | attempted | completed (planned) | declined (planned) | other | "
                "share of calls |", "|---|---|---|---|---|---|",
            f"| desk → mobile | {h['attempted']} | {h['completed']} ({h['planned_completed']}) "
            f"| {h['declined']} ({h['planned_declined']}) | {h['other_outcomes'] or 0} | "
            f"{h['share_of_calls_pct']} % |"]
    b, a = result["before"], result["after"]
    peak = {}
    for s in result.get("samples", []):
        for key, value in s.items():
            if isinstance(value, (int, float)) and key != "at":
                peak[key] = max(peak.get(key, value), value)
    out += ["", "| figure | before | peak (sampled) | after |", "|---|---|---|---|"]
    for key, label in (("kamailio_shm_bytes", "Kamailio shm real_used (bytes)"),
                       ("kamailio_shm_used_bytes", "Kamailio shm used (bytes)"),
                       ("rtpengine_module_hash_entries", "rtpengine module hash entries"),
                       ("rtpengine_rss_kb", "rtpengine RSS (kB)"),
                       ("rtpengine_sessions", "rtpengine sessions"),
                       ("dialogs", "dialogs"), ("twin_legs", "twin_legs profile"),
                       ("htable_call_entries", "htable `call` entries"),
                       ("pg_htable_rows", "PostgreSQL `htable` rows"),
                       ("live_call_rows", "live `call` rows"),
                       ("tm_current", "tm transactions"),
                       ("htable_subs_entries", "htable `subs` entries (subscriber cache)")):
        out.append(f"| {label} | {b.get(key)} | {peak.get(key, '–')} | {a.get(key)} |")
    steady = trend(result.get("samples", []))
    if steady:
        shown = ", ".join(f"{label} {int(steady[key][0]):,} → {int(steady[key][1]):,}"
                          for key, label in (("kamailio_shm_bytes", "Kamailio shm bytes"),
                                             ("kamailio_shm_used_bytes", "shm used bytes"),
                                             ("rtpengine_module_hash_entries",
                                              "rtpengine module hash entries"),
                                             ("rtpengine_rss_kb", "rtpengine RSS kB"),
                                             ("dialogs", "dialogs")))
        out += ["", "Under steady load (samples with at least half the peak of dialogs), the "
                    f"median of the first and of the last tenth of them: {shown}."]
    windows = result["caller"].get("ring_ms_by_window") or []
    if windows:
        out += ["", "INVITE → 180 at the caller, p50 / p99 ms, by sixth of the run: " + ", ".join(
            f"{w['from_s']}-{w['to_s']} s {w['p50']:g} / {w['p99']:g}" for w in windows) + "."]
    r = result["residue"]
    f = result["fresh_call"]
    out += ["", f"Residue {r['waited_s']} s after the load: "
                f"{'none' if r['clean'] else r['left']}. Fresh call: "
                f"{'rang the mobile' if f['mobile_rung'] else 'did NOT ring the mobile'}"
                f"{'' if f['completed'] else ' (call failed)'}."]
    return "\n".join(out)


def trend(samples: list[dict]) -> dict[str, tuple[float, float]]:
    """Median of the first and the last tenth of the samples taken under steady load (at
    least half the peak of dialogs): does anything grow while the load stays the same?"""
    loaded = [s for s in samples if "error" not in s]
    peak = max((s["dialogs"] for s in loaded), default=0)
    loaded = [s for s in loaded if peak and s["dialogs"] >= peak / 2]
    if len(loaded) < 4:
        return {}
    n = max(1, len(loaded) // 10)
    out = {}
    for key in ("kamailio_shm_bytes", "kamailio_shm_used_bytes", "rtpengine_module_hash_entries",
                "rtpengine_rss_kb", "dialogs", "htable_call_entries"):
        first = sorted(s[key] for s in loaded[:n])
        last = sorted(s[key] for s in loaded[-n:])
        out[key] = (first[len(first) // 2], last[len(last) // 2])
    return out


def default_rate() -> tuple[float, str]:
    try:
        found = json.loads((RESULTS / "soak-rate.json").read_text())
        if found.get("soak_rate_cps"):
            return float(found["soak_rate_cps"]), (
                f"half of {found['max_sustained_cps']:g} cps, the highest rate of this mix "
                f"sustained in bench/results/soak-rate.json ({found.get('when', '')})")
    except (OSError, ValueError):
        pass
    return 40.0, "default (no bench/results/soak-rate.json: run --find-rate)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, help="how long the load runs")
    parser.add_argument("--calls", type=int, help="how many calls (instead of --minutes)")
    parser.add_argument("--rate", type=float, help="calls per second (default: half of the "
                        "rate --find-rate found)")
    parser.add_argument("--find-rate", action="store_true",
                        help="find the highest rate this mix sustains (short steps)")
    parser.add_argument("--step-seconds", type=float, default=40.0)
    parser.add_argument("--start-rate", type=float, default=20.0)
    parser.add_argument("--out", help="results file (default bench/results/soak.json)")
    parser.add_argument("--logdir", default=str(LOGS))
    parser.add_argument("--desk-ring-ms", type=int, default=DESK_RING_MS,
                        help="the longest a desk rings before it answers (each call draws 0..this ms)")
    parser.add_argument("--trace", action="store_true",
                        help="keep every agent's full message trace (-trace_msg)")
    parser.add_argument("--residue-timeout", type=float, default=RESIDUE_TIMEOUT)
    args = parser.parse_args(argv)
    cfg = site_config.load()
    logdir = Path(args.logdir)
    down = [h.name for h in stack_mod.health(cfg) if not h.ok]
    if down:
        parser.error(f"the stack of {cfg.path} is not up ({', '.join(down)}): twinctl stack up")
    if args.find_rate:
        found = find_rate(cfg, args.step_seconds, args.start_rate, 2000, logdir)
        found.update(when=machine()["when"], machine=machine(), config=str(cfg.path))
        out = Path(args.out or RESULTS / "soak-rate.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(found, indent=2, default=str) + "\n")
        log(f"highest rate sustained: {found['max_sustained_cps']:g} cps "
            f"(first failed: {found['first_failed_cps']}); soak rate {found['soak_rate_cps']}")
        return 0
    rate, why = (args.rate, "given (--rate)") if args.rate else default_rate()
    if args.calls:
        calls = args.calls
    elif args.minutes:
        calls = round(args.minutes * 60 * rate)
    else:
        parser.error("give --minutes or --calls")
    plan = Plan.make(rate, calls)
    result = run_load(cfg, plan, logdir, trace=args.trace, ring_ms=args.desk_ring_ms)
    result = finish(cfg, result, logdir, args.residue_timeout)
    result.update(rate_basis=why, minutes=args.minutes, machine=machine(),
                  config=str(cfg.path),
                  kinds_defined=[asdict(k) for k in KINDS], mobile_talk_ms=MOBILE_TALK_MS)
    out = Path(args.out or RESULTS / "soak.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(result))
    print(f"\n{'OK' if result['ok'] else 'PROBLEMS: ' + '; '.join(result['problems'])}")
    print(f"results: {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
