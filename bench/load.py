"""One load step: a caller agent at a fixed rate for a fixed time against a target, with the
answering agents the target needs, through the project's SIPp launcher (lab/sipp.py).

Targets:
  twin    trunk caller -> proxy -> desk (answers after ring_ms) + mobile (rings until CANCEL)
  direct  the same caller -> the desk agent itself, no proxy (the load generator's ceiling)

SIPp's own counters decide the outcome: calls attempted, successful and failed (a call fails on
an unexpected message or when a reply does not come within recv_timeout_ms, when the caller
CANCELs or BYEs it). Response times come from SIPp's rtd timers (INVITE -> first 180, BYE -> 200).
"""
from __future__ import annotations

import csv
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab import sipp

from . import testbed as tb

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


@dataclass
class BenchAgent(sipp.Agent):
    """A launcher agent that leaves out the full message trace (-trace_msg): at hundreds of
    calls per second writing every message costs the load generator more than the test."""
    trace_messages: bool = False

    def command(self, logdir: Path) -> list[str]:
        cmd = super().command(logdir)
        if not self.trace_messages:
            cmd.remove("-trace_msg")
        return cmd


@dataclass(frozen=True)
class Roles:
    """Where each agent lives: the benchmark's 127.0.3.x by default; the smoke test passes the
    test stack's."""
    trunk_ip: str = tb.TRUNK_IP
    desk_ip: str = tb.DESK_IP
    desk_port: int = tb.DESK_PORT
    mobile_port: int = tb.MOBILE_PORT
    caller_port: int = tb.CALLER_PORT
    direct_port: int = tb.DIRECT_PORT


BENCH_ROLES = Roles()


@dataclass
class StepResult:
    target: str             # python | native | direct
    rate: float             # calls per second asked of the caller
    duration_s: float
    calls: int              # the caller's -m
    created: int = 0
    successful: int = 0     # SIPp's: includes the refused (their scenario ends normally)
    failed: int = 0
    refused: int = 0        # 503 from the proxy's overload control
    retransmissions: int = 0
    achieved_cps: float = 0.0
    ring_ms: dict = field(default_factory=dict)     # p50 / p99 / max of INVITE -> 180
    bye_ms: dict = field(default_factory=dict)      # p50 / p99 / max of BYE -> 200
    caller_rc: int | None = None
    note: str = ""
    leftovers: dict = field(default_factory=dict)

    @property
    def failure_ratio(self) -> float:
        """Calls not served: failed, or refused by the overload control."""
        return (self.failed + self.refused) / self.created if self.created else 1.0

    @property
    def completed(self) -> int:
        return max(0, self.successful - self.refused)

    @property
    def goodput_cps(self) -> float:
        return round(self.completed / self.duration_s, 1) if self.duration_s else 0.0

    def sustained(self, max_failure_ratio: float = 0.001,
                  max_p99_ms: float | None = None) -> bool:
        """< 0.1 % not served, every call placed, the asked rate actually generated, and
        (when given) the p99 post-dial delay (INVITE -> 180) under max_p99_ms."""
        p99 = self.ring_ms.get("p99")
        return (self.created >= self.calls and self.successful + self.failed >= self.created
                and self.failure_ratio < max_failure_ratio
                and self.achieved_cps >= 0.95 * self.rate
                and (max_p99_ms is None or (p99 is not None and p99 < max_p99_ms)))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["failure_ratio"] = round(self.failure_ratio, 5)
        d["completed"] = self.completed
        d["goodput_cps"] = self.goodput_cps
        d["sustained"] = self.sustained()
        return d


def injection_file(path: Path, subscribers: range = range(tb.SUBSCRIBERS)) -> Path:
    """One line per benchmark subscriber, dialled in turn (SIPp SEQUENTIAL)."""
    path.write_text("SEQUENTIAL\n" + "".join(f"{tb.did(i)};\n" for i in subscribers))
    return path


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    values = sorted(values)

    def pct(p: float) -> float:
        return round(values[min(len(values) - 1, max(0, math.ceil(p * len(values)) - 1))], 3)

    return {"n": len(values), "p50": pct(0.50), "p99": pct(0.99), "max": round(values[-1], 3),
            "mean": round(statistics.fmean(values), 3)}


def read_rtt(logdir: Path) -> dict[str, list[float]]:
    """SIPp -trace_rtt lines: date_ms;response_time_ms;rtd_name. Also "<name>@": the dates
    (ms since the caller started) each timer was stopped at."""
    out: dict[str, list[float]] = {}
    for path in logdir.glob("*_rtt.csv"):
        with open(path, newline="") as fh:
            for row in csv.reader(fh, delimiter=";"):
                if len(row) < 3 or not row[1].replace(".", "", 1).isdigit():
                    continue
                out.setdefault(row[2].strip(), []).append(float(row[1]))
                out.setdefault(row[2].strip() + "@", []).append(float(row[0]))
    return out


def achieved_rate(dates_ms: list[float], created: int, duration: float) -> float:
    """Calls per second the caller really placed: from the spread of the first-180 times (one
    per call, in placing order); the asked duration when there are too few."""
    if len(dates_ms) >= 10:
        span = (max(dates_ms) - min(dates_ms)) / 1000
        if span > 0:
            return round((len(dates_ms) - 1) / span, 1)
    return round(created / duration, 1) if duration else 0.0


def read_stats(path: Path) -> dict:
    """The last line of SIPp's -trace_stat file, by column name."""
    if not path.exists():
        return {}
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    if len(lines) < 2:
        return {}
    head = lines[0].rstrip(";").split(";")
    last = lines[-1].rstrip(";").split(";")
    return dict(zip(head, last))


def _int(stats: dict, key: str) -> int:
    try:
        return int(stats.get(key, "0") or 0)
    except ValueError:
        return 0


def agents_for(cfg, target: str, rate: float, calls: int, logdir: Path, hold_ms: int,
               ring_ms: int, limit: int, recv_timeout_ms: int, trace: bool = False,
               subscribers: range = range(tb.SUBSCRIBERS), roles: Roles = BENCH_ROLES
               ) -> tuple[list[BenchAgent], BenchAgent]:
    inf = injection_file(logdir / "dids.csv", subscribers)
    common = ["-buff_size", "1048576", "-recv_timeout", str(recv_timeout_ms)]
    # The media addresses in the SDP are never sent to: RTP is optional and off here.
    if target == "direct":
        desk = BenchAgent("desk", "uas/answer.xml", roles.desk_ip, roles.direct_port,
                          calls=calls, listens=True,
                          keys={"rtp_ip": roles.desk_ip, "rtp_port": "6000"},
                          extra=["-d", str(ring_ms)] + common)
        remote = f"{roles.desk_ip}:{roles.direct_port}"
        answering = [desk]
    else:
        desk = BenchAgent("desk", "uas/answer.xml", roles.desk_ip, roles.desk_port, calls=calls,
                          listens=True, keys={"rtp_ip": roles.desk_ip, "rtp_port": "6000"},
                          extra=["-d", str(ring_ms)] + common)
        mobile = BenchAgent("mobile", "uas/ring_cancel.xml", roles.trunk_ip, roles.mobile_port,
                            calls=calls, listens=True,
                            keys={"rtp_ip": roles.trunk_ip, "rtp_port": "6002"},
                            extra=["-d", str(ring_ms)] + common)
        remote = f"{cfg.proxy_address}:{cfg.proxy_port}"
        answering = [desk, mobile]
    caller = BenchAgent("caller", str(SCENARIOS / "caller.xml"), roles.trunk_ip,
                        roles.caller_port, remote=remote, calls=calls, rate=rate,
                        keys={"rtp_ip": roles.trunk_ip, "rtp_port": "6004"},
                        extra=["-d", str(hold_ms), "-l", str(limit), "-inf", str(inf),
                               "-trace_stat", "-stf", str(logdir / "caller_stats.csv"),
                               "-trace_logs", "-log_file", str(logdir / "caller_refused.log"),
                               "-fd", "1", "-trace_rtt", "-rtt_freq", "1"] + common)
    agents = answering + [caller]
    for agent in agents:
        agent.trace_messages = trace
    return agents, caller


def run_step(cfg, target: str, rate: float, duration: float, logdir: Path, *,
             hold_ms: int = 1000, ring_ms: int = 100, limit: int | None = None,
             recv_timeout_ms: int = 8000, trace: bool = False,
             subscribers: range = range(tb.SUBSCRIBERS),
             roles: Roles = BENCH_ROLES) -> StepResult:
    """Place rate x duration calls at `rate` cps; wait (bounded) for the last to end."""
    logdir.mkdir(parents=True, exist_ok=True)
    for old in logdir.glob("*"):
        old.unlink()
    calls = max(1, round(rate * duration))
    limit = limit or max(50, int(rate * (hold_ms + ring_ms + 2000) / 1000) * 2)
    agents, caller = agents_for(cfg, target, rate, calls, logdir, hold_ms, ring_ms, limit,
                                recv_timeout_ms, trace, subscribers, roles)
    result = StepResult(target, rate, duration, calls)
    started = time.monotonic()
    deadline = started + duration + (hold_ms + recv_timeout_ms) / 1000 + 15
    sipp.start(agents, logdir)
    try:
        while caller.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if caller.proc.poll() is None:
            result.note = "caller did not finish in time; stopped"
        result.caller_rc = caller.proc.poll()
        # The answering agents end on their own once every call of theirs is over.
        settle = time.monotonic() + 2
        while time.monotonic() < settle and any(a.proc.poll() is None for a in agents):
            time.sleep(0.05)
    finally:
        sipp.stop(agents)
    stats = read_stats(logdir / "caller_stats.csv")
    result.created = _int(stats, "TotalCallCreated")
    result.successful = _int(stats, "SuccessfulCall(C)")
    result.failed = _int(stats, "FailedCall(C)")
    result.retransmissions = _int(stats, "Retransmissions(C)")
    refused_log = logdir / "caller_refused.log"
    if refused_log.exists():
        result.refused = sum(1 for line in refused_log.read_text(errors="replace").splitlines()
                             if "refused" in line)
    rtt = read_rtt(logdir)
    result.achieved_cps = achieved_rate(rtt.get("ring@", []), result.created, duration)
    result.ring_ms = percentiles(rtt.get("ring", []))
    result.bye_ms = percentiles(rtt.get("bye", []))
    return result


