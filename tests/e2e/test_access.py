"""Who may call what, and bad input: clear final responses, never a crash."""
from __future__ import annotations

import pytest

from lab import calls
from lab.agents import STRANGER_IP, TRUNK_IP
from lab.calls import setup_subscriber
from twinctl import stack as stack_mod

pytestmark = pytest.mark.e2e

INVITE = """INVITE sip:{user}@127.0.1.1:5060 SIP/2.0
Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK{branch};rport
Max-Forwards: {maxfwd}
From: <sip:3125550199@{ip}>;tag=abc{branch}
To: <sip:{user}@127.0.1.1>
Call-ID: {branch}@test
CSeq: 1 INVITE
Contact: <sip:3125550199@{ip}:{port}>
Content-Length: 0

"""


def invite(cfg, user, ip=TRUNK_IP, maxfwd=70, branch="1"):
    text = INVITE.replace("{user}", user).replace("{ip}", ip).replace(
        "{maxfwd}", str(maxfwd)).replace("{branch}", branch)
    return calls.send_raw(cfg, text, ip=ip)


@pytest.mark.parametrize("user", ["2125550101", "12125550101", "+12125550101"])
def test_given_a_stranger_when_it_calls_a_did_then_403(stack, db, user):
    setup_subscriber(db, stack)
    assert invite(stack, user, ip=STRANGER_IP).startswith("SIP/2.0 403")


@pytest.mark.parametrize("user", ["2125550199", "1001x", "9999"])
def test_given_the_trunk_when_it_calls_an_unknown_number_then_404(stack, db, user):
    setup_subscriber(db, stack)
    assert invite(stack, user, branch=f"u{user}").startswith("SIP/2.0 404")


def test_given_a_stranger_when_it_calls_an_extension_then_it_is_challenged(stack, db):
    setup_subscriber(db, stack)
    assert invite(stack, "1001", ip=STRANGER_IP, branch="x1").startswith("SIP/2.0 407")


def test_given_max_forwards_zero_then_483(stack, db):
    assert invite(stack, "2125550101", maxfwd=0, branch="m0").startswith("SIP/2.0 483")


@pytest.mark.parametrize("garbage", [
    "INVITE sip:2125550101@127.0.1.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.1.2:{port};branch=z9hG4bKg1\n"
    "From: <sip:a@b>;tag=1\nTo: <sip:2125550101@127.0.1.1>\nCall-ID: g1\nCSeq: x INVITE\n"
    "Content-Length: 0\n\n",
    "INVITE sip:2125550101@127.0.1.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.1.2:{port};branch=z9hG4bKg2\n"
    "From: <sip:a@b>;tag=1\nTo: <sip:2125550101@127.0.1.1>\nCall-ID: g2\nCSeq: 1 BYE\n"
    "Content-Length: 0\n\n",
])
def test_given_a_malformed_request_then_400_and_the_proxy_lives_on(stack, db, garbage):
    assert calls.send_raw(stack, garbage).startswith("SIP/2.0 400")
    calls.send_raw(stack, "\x00\xff garbage \r\n\r\n")
    assert stack_mod.sip_options(stack)


def test_given_a_desk_when_it_dials_an_unknown_extension_then_404(stack, db, logdir):
    setup_subscriber(db, stack)
    calls.add_subscriber(db, stack, "1002", "2125550102")
    p = calls.party("caller", "uac/rejected.xml", calls.DESK_IPS[1], 5062,
                    remote=f"{stack.proxy_address}:{stack.proxy_port}", dial="1999",
                    caller="1002")
    try:
        calls.sipp.run([p.agent], logdir, timeout=15)
    finally:
        p.probe.close()
    # rejected.xml takes the 407 as its final answer; a desk retrying with credentials is
    # covered by the extension-call test. Here: a challenge, never a crash or a relay.
    assert p.agent.received("407")
