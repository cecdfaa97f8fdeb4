"""Fixtures shared by the tiers. The private test stack (tests/site-test.toml) is started once
per session, from an empty state dir, only when an integration or e2e test asks for it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

# TWIN_TEST_CONFIG runs the suite against another private stack (other loopback net and state
# dir), so two runs on one machine never share daemons.
TEST_CONFIG = Path(os.environ.get("TWIN_TEST_CONFIG")
                   or Path(__file__).resolve().parent / "site-test.toml")
os.environ["TWIN_CONFIG"] = str(TEST_CONFIG)          # twinctl run by tests uses it too
os.environ.pop("TWIN_STATE_DIR", None)

# The shared steps of the PJSIP tests assert too: pytest explains their failures as well.
pytest.register_assert_rewrite("tests.support.pjsip_scenarios")

from lab.calls import forget_registrations  # noqa: E402
from twinctl import stack as stack_mod  # noqa: E402
from twinning import config as site_config  # noqa: E402

LOG_ROOT = Path(os.environ.get("TWIN_TEST_LOGS", "/tmp/twinning-test-logs"))


@pytest.fixture(scope="session")
def cfg():
    return site_config.load(TEST_CONFIG)


def fresh_stack(cfg):
    """The whole stack of `cfg` (a cluster's: every node) up from an empty state dir, until
    the generator is closed."""
    stack_mod.remove_state(cfg)
    rows = stack_mod.up(cfg, log=lambda *_: None)
    assert all(h.ok for h in rows), rows
    yield cfg
    stack_mod.down(cfg, log=lambda *_: None)


@pytest.fixture(scope="session")
def stack(cfg):
    """The whole stack up, from scratch; down at the end of the session."""
    yield from fresh_stack(cfg)


@pytest.fixture
def db(stack):
    """A connection (autocommit) to the stack's database, with the subscriber data emptied."""
    with psycopg.connect(stack.dsn(), row_factory=dict_row, autocommit=True) as conn:
        forget_registrations(stack, conn)
        conn.execute("DELETE FROM subscriber")
        conn.execute("DELETE FROM call")
        yield conn


@pytest.fixture
def logdir(request):
    """Per-test folder for agent logs; kept after the run (wiped at the next session)."""
    path = LOG_ROOT / request.node.nodeid.replace("/", "_").replace("::", "__")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def phones(logdir):
    """Makes PJSIP phones (tests.support.phones) for a test; all are closed at its end, even
    when it fails."""
    from tests.support.phones import Phones
    made = Phones(logdir)
    yield made
    made.close()


def pytest_addoption(parser):
    parser.addoption("--timing-seed", default=None,
                     help="seed of the timing matrix's random cells (tests/e2e/"
                          "test_timing_matrix.py); each run prints the one it used")


def pytest_sessionstart(session):
    shutil.rmtree(LOG_ROOT, ignore_errors=True)
