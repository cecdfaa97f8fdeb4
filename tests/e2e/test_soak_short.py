"""The soak's short version (bench/soak.py, issue 9 item 5 "Repeated use"): the same long-running
agents and the same mix of twin-ring calls and handoffs, for 102 calls (51 handed off to the
mobile, 17 handoffs the mobile declines, 34 plain calls), then nothing may be left behind and
a fresh call must still ring the mobile. Correctness only, never timings.
The bench runs as a program (`python -m bench.soak`): tests do not import it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CALLS = 102                 # six kinds of call, 17 each
RATE = 25                   # calls per second: well under what the stack sustains for the mix


def soak(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.soak", *args], capture_output=True,
                          text=True, timeout=240, cwd=REPO, env=dict(os.environ))


def test_given_a_mix_of_twin_ring_calls_and_handoffs_when_102_calls_are_placed_then_all_complete_and_nothing_is_left(  # noqa: E501
        stack, db, logdir):
    out = logdir / "soak.json"
    res = soak("--calls", str(CALLS), "--rate", str(RATE), "--out", str(out),
               "--logdir", str(logdir / "agents"))
    assert out.exists(), (res.stdout[-2000:], res.stderr[-3000:])
    result = json.loads(out.read_text())
    problems = result["problems"]
    for name, kind in result["kinds"].items():
        assert kind["attempted"] == kind["planned"] == CALLS // 6, (name, kind, problems)
        assert kind["completed"] == kind["planned"] and kind["failed"] == 0, (name, kind,
                                                                              problems)
    assert result["caller"]["failed"] == 0 and result["caller"]["successful"] == CALLS
    assert all(not a.get("failed") for a in result["agents"].values()), result["agents"]
    handoffs = result["handoffs"]
    assert handoffs["completed"] == handoffs["planned_completed"] >= 50, handoffs
    assert handoffs["declined"] == handoffs["planned_declined"] > 0, handoffs
    assert not handoffs["other_outcomes"], handoffs
    assert result["mobile"]["ring-cancelled"] == CALLS, result["mobile"]  # every call rang it
    assert result["call_rows"] == {"n": CALLS, "live": 0, "desk": CALLS}, result["call_rows"]
    assert result["residue"]["clean"], result["residue"]
    fresh = result["fresh_call"]
    assert fresh["mobile_rung"] and fresh["completed"], fresh
    assert result["after_fresh_call"]["clean"], result["after_fresh_call"]
    assert result["ok"] and res.returncode == 0, problems
