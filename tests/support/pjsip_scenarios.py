"""Steps of PJSIP call tests, shared by the test modules: a call set up the way a subscriber
gets one, handoffs the ways a desk asks for them, and what to check on the wire afterwards
(who sent which error reply, what each phone answered)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from lab.agents import DESK_IPS, TRUNK_IP
from lab.calls import CALLER_NAME, CALLER_NUM, CALLER_PORT, MOBILE_PORT, SUB_DID, SUB_EXT
from lab.residue import clear_residue
from lab.rtp import wait_for
from tests.support.phones import Call, Phone, assert_two_way

DID_DIALLED = SUB_DID.removeprefix("+1")


@pytest.fixture(autouse=True)
def cleared_after(stack):
    """Set up before `phones`, so it runs after they are closed: what a failed test (a known
    bug) left in the stack is ended, and the next test starts clean. A test module takes it
    in by importing it."""
    yield
    left = clear_residue(stack)
    if left:
        print(f"cleared after the test: {left}")


def proxy(cfg) -> str:
    return f"{cfg.proxy_address}:{cfg.proxy_port}"


def code_uri(cfg) -> str:
    return f"sip:{cfg.handoff_code}@{proxy(cfg)}"


@dataclass
class Answered:
    """A call from the far end to the DID, answered on the desk."""
    far: Phone
    desk: Phone
    mobile: Phone
    far_call: Call
    desk_call: Call


def answered_on_the_desk(cfg, phones) -> Answered:
    """The far end calls the DID; the twin ring rings the desk and the mobile; the desk
    answers, the mobile's ringing is CANCELled; both ways of audio are checked."""
    desk = phones("desk", DESK_IPS[0], 5061)
    desk.register(SUB_EXT, "secret1", proxy(cfg))
    desk.on_incoming(answer_after_ms=300)
    mobile = phones("mobile", TRUNK_IP, MOBILE_PORT)             # rings until CANCELled
    far = phones("far", TRUNK_IP, CALLER_PORT,
                 uri=f'"{CALLER_NAME}" <sip:{CALLER_NUM}@{TRUNK_IP}>')
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(cfg)}")
    far_call.wait("confirmed")
    desk_call = desk.incoming()
    assert mobile.incoming().wait("disconnected")[0] == 487       # the twin leg lost
    assert_two_way(far_call, desk_call)
    return Answered(far, desk, mobile, far_call, desk_call)


def refusals(phone: Phone) -> list[str]:
    """Error replies the phone sent (a strict stack's complaints), but for the 487 that
    answers a CANCEL."""
    return [m.first_line for m in phone.sent() if m.first_line.startswith("SIP/2.0 ")
            and int(m.first_line.split()[1]) >= 400 and not m.is_("487")]


def answers_to(phone: Phone, method: str) -> list[str]:
    """Status lines the phone sent in reply to requests of that method."""
    return [m.first_line for m in phone.sent() if m.first_line.startswith("SIP/2.0 ")
            and m.header("CSeq").endswith(" " + method)]


def handed_to_mobile(call: Answered, cfg, hold_first: bool = False) -> Call:
    """The desk presses Handoff (blind transfer to the code, after a hold if asked); the
    mobile answers; the desk gets NOTIFY 200 and hangs up. Returns the mobile's call."""
    call.mobile.on_incoming(answer_after_ms=300)
    if hold_first:
        call.desk_call.hold()
        wait_for(lambda: call.far.received("INVITE"), 5, "the hold re-INVITE at the far end")
    call.desk_call.xfer(code_uri(cfg))
    assert call.desk_call.wait_transfer() == 200
    call.desk_call.hangup()
    call.desk_call.wait("disconnected")
    mobile_call = call.mobile.incoming(2)
    mobile_call.wait("confirmed")
    assert call.desk.received("202")
    return mobile_call


def assert_mobile_shows_the_far_end(mobile: Phone) -> None:
    """The handoff's INVITE: the far end's number in From, number and name asserted (tm's
    t_uac_send rebuilds From without the display name the routing gives it)."""
    invite = mobile.received("INVITE")[-1]
    assert CALLER_NUM in invite.header("From")
    assert CALLER_NUM in invite.header("P-Asserted-Identity") and \
        CALLER_NAME in invite.header("P-Asserted-Identity")


def far_end_hangs_up(call: Answered, near: Call) -> None:
    call.far_call.hangup()
    assert call.far_call.wait("disconnected")[0] == 200
    near.wait("disconnected")
