"""The benchmark's smoke version: the bench runner's own load step (bench/load.py), at a low
rate against the test suite's stack (127.0.1.x, not the bench's), checked for correctness only:
every call completes, nothing is left behind in rtpengine or the dialog table. Never timings.
Also: the native-cfg baseline (bench/kamailio-native.cfg) passes Kamailio's own cfg check."""
from __future__ import annotations

import subprocess

import pytest

from bench import load
from bench import testbed as tb
from tests.support.agents import DESK_IPS, TRUNK_IP
from tests.support.calls import assert_nothing_left
from twinctl import stack as stack_mod

pytestmark = pytest.mark.e2e

SUBSCRIBERS = 10
TEST_ROLES = load.Roles(trunk_ip=TRUNK_IP, desk_ip=DESK_IPS[0], desk_port=5061,
                        mobile_port=5060, caller_port=5073, direct_port=5083)


def test_given_twinned_subscribers_when_calls_arrive_at_5_cps_for_5_s_then_all_complete(
        stack, db, logdir):
    tb.seed(stack, SUBSCRIBERS, log=lambda *_: None)
    tb.register_desks(stack, SUBSCRIBERS, desk_ip=TEST_ROLES.desk_ip,
                      desk_port=TEST_ROLES.desk_port)
    result = load.run_step(stack, "twin", rate=5, duration=5, logdir=logdir, hold_ms=500,
                           ring_ms=100, subscribers=range(SUBSCRIBERS), roles=TEST_ROLES,
                           trace=True)
    assert result.created == 25, result.as_dict()
    assert result.failed == 0 and result.successful == 25, result.as_dict()
    assert_nothing_left(stack, timeout=12)


def test_the_native_baseline_cfg_passes_kamailios_check(stack, tmp_path):
    body = tb.native_body(stack)

    class Paths:                 # render into a scratch dir, not the test stack's own cfg
        root = stack.state_dir
        run = stack.state_dir / "run"
        log = tmp_path
        kamailio_cfg = tmp_path / "kamailio-native.cfg"

    rendered = stack_mod.Kamailio(stack, Paths(), body).render()
    res = subprocess.run([stack_mod.KAMAILIO, "-c", "-f", str(rendered)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
