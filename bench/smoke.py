"""The benchmark's smoke version, for the test suite (tests/e2e/test_bench_smoke.py): the bench's
own load step (load.py) at a low rate against the stack of $TWIN_CONFIG, checked for
correctness only, and the native-cfg baseline through Kamailio's own cfg check.

    python -m bench smoke --logdir DIR [--rate 5] [--seconds 5] [--subscribers 10]
    python -m bench check-native --scratch DIR

The tests run these as programs, the way an operator would, so they never import the bench.
`smoke` prints the step's result as JSON and exits 1 unless every call completed;
`check-native` exits with Kamailio's status and prints what it said on stderr.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lab.agents import DESK_IPS, TRUNK_IP
from twinctl import stack as stack_mod
from twinning.config import SiteConfig

from . import load
from . import testbed as tb

# The roles of the stack's own net (lab.agents), on ports the test suite's calls do not use.
ROLES = load.Roles(trunk_ip=TRUNK_IP, desk_ip=DESK_IPS[0], desk_port=5061,
                   mobile_port=5060, caller_port=5073, direct_port=5083)


def smoke(cfg: SiteConfig, logdir: Path, rate: float = 5, seconds: float = 5,
          subscribers: int = 10) -> load.StepResult:
    """Seed and register that many benchmark subscribers, then one load step at `rate`."""
    tb.seed(cfg, subscribers, log=lambda *_: None)
    tb.register_desks(cfg, subscribers, desk_ip=ROLES.desk_ip, desk_port=ROLES.desk_port)
    return load.run_step(cfg, "twin", rate=rate, duration=seconds, logdir=logdir, hold_ms=500,
                         ring_ms=100, subscribers=range(subscribers), roles=ROLES, trace=True)


def check_native(cfg: SiteConfig, scratch: Path) -> subprocess.CompletedProcess:
    """bench/kamailio-native.cfg rendered for this stack into a scratch dir (not the stack's
    own cfg) and checked by `kamailio -c`."""
    body = tb.native_body(cfg)
    scratch.mkdir(parents=True, exist_ok=True)

    class Paths:
        root = cfg.state_dir
        run = cfg.state_dir / "run"
        log = scratch
        kamailio_cfg = scratch / "kamailio-native.cfg"
        kamailio_env = scratch / "kamailio-native.env"

    stack_mod.Kamailio(cfg, Paths(), body).render()
    return subprocess.run([stack_mod.KAMAILIO, "-c", "-f", str(Paths.kamailio_cfg)],
                          capture_output=True,
                          text=True, timeout=60)


def smoke_cli(cfg: SiteConfig, logdir: str, rate: float, seconds: float,
              subscribers: int) -> int:
    result = smoke(cfg, Path(logdir), rate, seconds, subscribers)
    print(json.dumps(result.as_dict(), indent=2))
    return 0 if result.failed == 0 and result.successful == result.calls else 1


def check_native_cli(cfg: SiteConfig, scratch: str) -> int:
    res = check_native(cfg, Path(scratch))
    sys.stderr.write(res.stderr)
    return res.returncode
