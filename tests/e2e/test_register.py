"""Desk phones register with digest auth; registrations survive a restart of the stack."""
from __future__ import annotations

import pytest

from tests.support import sipp
from tests.support.agents import DESK_IPS, add_subscriber
from twinctl import rpc, stack as stack_mod

pytestmark = pytest.mark.e2e


def register(cfg, logdir, name, user, password, expect, ip=DESK_IPS[0], port=5061,
             expires=600):
    agent = sipp.Agent(name, "register/register.xml", ip, port,
                       remote=f"{cfg.proxy_address}:{cfg.proxy_port}",
                       keys={"user": user, "expires": str(expires)},
                       extra=["-au", user, "-ap", password])
    sipp.run([agent], logdir, timeout=15)
    return agent


def test_given_a_subscriber_when_the_desk_registers_with_the_right_password_then_401_then_200(
        stack, db, logdir):
    add_subscriber(db, stack, "1001", "2125550101", "secret1")
    agent = register(stack, logdir, "desk", "1001", "secret1", 200)
    challenge = agent.received("401")
    assert challenge and f'Digest realm="{stack.proxy_address}"' in challenge[0]
    assert agent.received("200")
    rows = db.execute("SELECT username, contact FROM location").fetchall()
    assert [(r["username"], r["contact"]) for r in rows] == [
        ("1001", f"sip:1001@{DESK_IPS[0]}:5061")]


@pytest.mark.parametrize("user,password", [("1001", "wrong"), ("1999", "secret1")])
def test_given_bad_credentials_when_the_desk_registers_then_it_is_refused(
        stack, db, logdir, user, password):
    add_subscriber(db, stack, "1001", "2125550101", "secret1")
    agent = register(stack, logdir, "desk", user, password, 403)
    assert agent.received("403") and not agent.received("200")
    assert db.execute("SELECT count(*) AS n FROM location").fetchone()["n"] == 0


def test_given_a_registered_desk_when_the_stack_restarts_then_the_registration_is_kept(
        stack, db, logdir):
    add_subscriber(db, stack, "1001", "2125550101", "secret1")
    register(stack, logdir, "desk", "1001", "secret1", 200)
    db.close()
    stack_mod.down(stack, log=lambda *_: None)
    assert not stack_mod.sip_options(stack)
    rows = stack_mod.up(stack, log=lambda *_: None)
    assert all(h.ok for h in rows)
    # Kamailio's in-memory location has it again (loaded from PostgreSQL at start).
    found = rpc.call(stack, "ul.lookup", "location", "1001")
    contacts = str(found)
    assert f"sip:1001@{DESK_IPS[0]}:5061" in contacts
