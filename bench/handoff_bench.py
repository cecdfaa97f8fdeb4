"""Handoff figures over many handoffs in each direction, against the real stack.

    .venv/bin/python -m bench.handoff_bench [--count 50]

Uses the test suite's stack config (tests/site-test.toml, 127.0.1.x): do not run it while
the test suite runs. Each trial is one call through the proxy with RTP probes on every
device (20 ms packets both ways), and one handoff:

  desk → mobile   the desk answers, REFERs to *55, the mobile answers the proxy's INVITE
  mobile → desk   the mobile answers the twin ring, the desk dials *55 and is answered at once

Measured per handoff:
  gap_ms          at the far end: the old device's last packet to the new device's first
  lost            packets missing (by RTP sequence) in the far end's stream to the new
                  device and in the new device's stream to the far end, first second after
                  the switch
  answer_to_media_ms  the new device's answer (the mobile's 200 OK; for the desk, its *55
                  INVITE, which the proxy answers itself) to the first far-end packet at the new
                  device, from SIPp's trace timestamps and the probe's arrival times (one clock)
  proxy_switch_ms the proxy's own time for the rtpengine commands (handoff.switch_ms)

Writes bench/results/handoff.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TWIN_CONFIG", str(ROOT / "tests" / "site-test.toml"))

from lab import calls, sipp  # noqa: E402
from lab.calls import Call, connect_media, desk, forget_registrations, mobile  # noqa: E402
from lab.rtp import wait_for  # noqa: E402
from twinctl import stack  # noqa: E402
from twinning import config  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def lost_in(arrivals, window_start: float, window: float = 1.0) -> int:
    seqs = sorted({a.seq for a in arrivals if window_start <= a.at < window_start + window})
    if len(seqs) < 2:
        return 0
    return (seqs[-1] - seqs[0] + 1) - len(seqs)


def desk_to_mobile(cfg, logdir: Path) -> dict:
    call = Call({"desk": desk("uas/desk_handoff.xml", pause_ms=500, code="*55"),
                 "mobile": mobile("uas/answer.xml", pause_ms=100),
                 "caller": calls.trunk_caller(cfg, hold_ms=2600)})
    try:
        sipp.start(call.agents(), logdir)
        connect_media(call["caller"], "200", call["desk"], "INVITE")
        mob, far, old = call["mobile"].probe, call["caller"].probe, call["desk"].probe
        mob.talk_to(*call["mobile"].media_from("INVITE"))
        first = wait_for(lambda: far.received_from(mob), 10, "far end hears mobile")[0]
        time.sleep(1.1)
        sipp.wait(call.agents(), 30)
    finally:
        call.close()
    answered = call["mobile"].agent.sent_at("200")[0]
    heard = far_heard = mob.received_from(far)
    return {
        "gap_ms": (first.at - far.received_from(old)[-1].at) * 1000,
        "lost": lost_in(far.received_from(mob), first.at) + lost_in(heard, first.at),
        "answer_to_media_ms": (far_heard[0].wall - answered) * 1000,
    }


def mobile_to_desk(cfg, logdir: Path) -> dict:
    call = Call({"desk": desk("uas/ring_cancel.xml"),
                 "mobile": mobile("uas/answer.xml", pause_ms=100),
                 "caller": calls.trunk_caller(cfg, scenario="uac/call_wait_bye.xml")})
    desk55 = calls.party("desk55", "uac/desk_call.xml", calls.DESK_IPS[0], 5063,
                         remote=f"{cfg.proxy_address}:{cfg.proxy_port}", dial="*55",
                         caller="1001", caller_name="User 1001", pause_ms=1200)
    desk55.agent.extra += ["-au", "1001", "-ap", "secret1"]
    try:
        sipp.start(call.agents(), logdir)
        connect_media(call["caller"], "200", call["mobile"], "INVITE")
        far, old = call["caller"].probe, call["mobile"].probe
        wait_for(lambda: len(far.received_from(old)) > 10, 10, "far end hears mobile")
        call.parties["desk55"] = desk55
        sipp.start([desk55.agent], logdir)
        desk55.probe.talk_to(*desk55.media_from("200"))
        first = wait_for(lambda: far.received_from(desk55.probe), 10, "far end hears desk")[0]
        time.sleep(1.1)
        sipp.wait(call.agents(), 30)
    finally:
        call.close()
    asked = desk55.agent.sent_at("INVITE")[-1]           # the INVITE with credentials
    heard = desk55.probe.received_from(far)
    return {
        "gap_ms": (first.at - max(a.at for a in far.received_from(old) if a.at < first.at))
        * 1000,
        "lost": lost_in(far.received_from(desk55.probe), first.at) + lost_in(heard, first.at),
        "answer_to_media_ms": (heard[0].wall - asked) * 1000,
    }


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"median": statistics.median(ordered), "p99": p99, "max": ordered[-1],
            "min": ordered[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="handoffs in each direction")
    args = parser.parse_args()
    cfg = config.load()
    rows = stack.up(cfg, log=lambda *_: None)
    assert all(h.ok for h in rows), rows
    logroot = Path("/tmp/twinning-bench-handoff")
    with psycopg.connect(cfg.dsn(), row_factory=dict_row, autocommit=True) as db:
        forget_registrations(cfg, db)
        db.execute("DELETE FROM subscriber")
        db.execute("DELETE FROM call")
        results = {}
        for name, ring, trial in (("desk_to_mobile", "desk", desk_to_mobile),
                                  ("mobile_to_desk", "desk,mobile", mobile_to_desk)):
            db.execute("DELETE FROM subscriber")
            calls.setup_subscriber(db, cfg, ring=ring)
            calls.register_desk(cfg, logroot / name / "register")
            samples = []
            for i in range(args.count):
                samples.append(trial(cfg, logroot / name / f"{i:03d}"))
                print(f"{name} {i + 1}/{args.count}: {samples[-1]}", flush=True)
            switch = [r["switch_ms"] for r in db.execute(
                "SELECT switch_ms FROM handoff WHERE outcome = 'completed' AND from_device = %s",
                (name.split("_")[0],))]
            failed = db.execute("SELECT count(*) AS n FROM handoff WHERE outcome <> 'completed'"
                                " AND from_device = %s", (name.split("_")[0],)).fetchone()["n"]
            results[name] = {
                "handoffs": len(samples), "failed": failed,
                "gap_ms": summary([s["gap_ms"] for s in samples]),
                "lost_packets_total": sum(s["lost"] for s in samples),
                "answer_to_media_ms": summary([s["answer_to_media_ms"] for s in samples]),
                "proxy_switch_ms": summary(switch) if switch else None,
            }
    calls.assert_nothing_left(cfg)
    results["machine"] = {"node": platform.node(), "cpus": os.cpu_count(),
                          "kernel": platform.release(), "when": time.strftime("%F %T %Z")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "handoff.json").write_text(json.dumps(results, indent=2))
    print("\n| direction | handoffs | failed | far-end gap ms (median / p99 / max) | lost packets |"
          " answer→media ms (median / p99) | proxy switch ms (median / p99) |")
    print("|---|---|---|---|---|---|---|")
    for name in ("desk_to_mobile", "mobile_to_desk"):
        r = results[name]
        g, a, p = r["gap_ms"], r["answer_to_media_ms"], r["proxy_switch_ms"] or {}
        print(f"| {name.replace('_', ' ')} | {r['handoffs']} | {r['failed']} | "
              f"{g['median']:.1f} / {g['p99']:.1f} / {g['max']:.1f} | {r['lost_packets_total']} "
              f"| {a['median']:.1f} / {a['p99']:.1f} | {p.get('median', 0):.2f} / "
              f"{p.get('p99', 0):.2f} |")


if __name__ == "__main__":
    main()
