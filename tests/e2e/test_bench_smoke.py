"""The benchmark's smoke version: the bench runner's own load step (bench/load.py), at a low
rate against the test suite's stack (not the bench's), checked for correctness only: every call
completes, nothing is left behind in rtpengine or the dialog table. Never timings.
Also: the native-cfg baseline (bench/kamailio-native.cfg) passes Kamailio's own cfg check.
The bench runs as a program (`python -m bench smoke|check-native`): tests do not import it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.calls import assert_nothing_left

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SUBSCRIBERS = 10


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True,
                          text=True, timeout=180, cwd=REPO, env=dict(os.environ))


def test_given_twinned_subscribers_when_calls_arrive_at_5_cps_for_5_s_then_all_complete(
        stack, db, logdir):
    res = bench("smoke", "--logdir", str(logdir), "--rate", "5", "--seconds", "5",
                "--subscribers", str(SUBSCRIBERS))
    assert res.stdout.strip(), res.stderr[-2000:]
    result = json.loads(res.stdout)
    assert result["created"] == 25, result
    assert result["failed"] == 0 and result["successful"] == 25, result
    assert_nothing_left(stack, timeout=12)


def test_the_native_baseline_cfg_passes_kamailios_check(stack, tmp_path):
    res = bench("check-native", "--scratch", str(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
