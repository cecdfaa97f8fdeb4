"""Calls and handoffs with strict SIP phones (PJSIP): a registered desk, the mobile behind the
trunk, and the far end calling the DID through the trunk. Where SIPp accepts anything, PJSIP
checks CSeqs, tags and dialog state as a real phone does; each test ends by checking that the
stack kept nothing of the call.

The last four are issue 9's regressions (each failed on the routing before the stitched-call
model, for the reason in its docstring).
"""
from __future__ import annotations

import time

import pytest

from lab.calls import setup_subscriber
from lab.residue import assert_no_residue
from lab.rtp import wait_for
from tests.support.phones import assert_two_way
from tests.support.pjsip_scenarios import (answered_on_the_desk, answers_to,
                                           assert_mobile_shows_the_far_end, code_uri,
                                           cleared_after, far_end_hangs_up,  # noqa: F401
                                           handed_to_mobile, refusals)

pytestmark = pytest.mark.e2e


# ---- calls that work today ---------------------------------------------------------------------

def test_given_a_call_to_the_did_when_the_desk_answers_then_audio_flows_until_the_far_end_hangs_up(
        stack, db, phones):
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    far_end_hangs_up(call, call.desk_call)
    assert call.desk.received("BYE") and answers_to(call.desk, "BYE") == ["SIP/2.0 200 OK"]
    assert refusals(call.desk) == refusals(call.far) == []
    assert_no_residue(stack)


def test_given_a_call_on_the_desk_when_it_blind_transfers_to_the_code_then_the_mobile_takes_it(
        stack, db, phones):
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    mobile_call = handed_to_mobile(call, stack)
    assert_two_way(call.far_call, mobile_call)
    assert_mobile_shows_the_far_end(call.mobile)
    far_end_hangs_up(call, mobile_call)
    assert answers_to(call.mobile, "BYE") == ["SIP/2.0 200 OK"]
    assert call.far.requests_received() == []               # the far end saw nothing of it
    assert refusals(call.desk) == refusals(call.far) == []
    assert_no_residue(stack)


# ---- issue 9's regressions ---------------------------------------------------------------------

def test_given_the_desk_held_the_call_when_it_hands_off_then_nothing_is_left_once_it_ends(
        stack, db, phones):
    """Issue 9, bug 1a: the proxy's resume re-INVITE made it the far end's target, so the far
    end's BYE no longer reached the dialog module (loose_route ran no callbacks) and D1 stayed
    confirmed with its twin_legs entry."""
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    mobile_call = handed_to_mobile(call, stack, hold_first=True)
    assert_two_way(call.far_call, mobile_call)        # the proxy took the hold back
    hold, resume = call.far.received("INVITE")        # all a handoff may cost the far end
    assert "a=sendonly" in hold.text and "a=sendrecv" in resume.text
    time.sleep(3)
    far_end_hangs_up(call, mobile_call)
    assert call.mobile.received("BYE")
    assert [r.split()[0] for r in call.far.requests_received()] == ["INVITE", "ACK"] * 2
    assert refusals(call.desk) == refusals(call.far) == []
    assert_no_residue(stack)


def test_given_a_handed_off_call_when_the_far_end_holds_and_resumes_then_nothing_is_left(
        stack, db, phones):
    """Issue 9, bug 1b: the same leak through the proxy's answers to the far end's re-INVITEs."""
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    mobile_call = handed_to_mobile(call, stack)
    call.far_call.hold()
    wait_for(lambda: len(call.far.received("200")) >= 2, 5, "the hold to be answered")
    call.far_call.unhold()
    wait_for(lambda: len(call.far.received("200")) >= 3, 5, "the resume to be answered")
    assert_two_way(call.far_call, mobile_call)
    far_end_hangs_up(call, mobile_call)
    requests = [r.split()[0] for r in call.mobile.requests_received()]
    assert requests == ["INVITE", "CANCEL", "ACK",       # the twin ring
                        "INVITE", "ACK", "BYE"]          # the handoff: no re-INVITE reached it
    assert refusals(call.far) == refusals(call.mobile) == []
    assert_no_residue(stack)


def test_given_the_mobile_declines_a_handoff_when_the_far_end_hangs_up_then_the_desk_ends_the_call(
        stack, db, phones):
    """Issue 9, bug 2: the proxy's NOTIFY used the far end's next CSeq; its BYE then got
    `500 Invalid CSeq` from the desk, which stayed in a dead call."""
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    call.mobile.on_incoming(reject=603)
    call.desk_call.xfer(code_uri(stack))
    assert call.desk_call.wait_transfer() == 603
    assert call.mobile.incoming(2).wait("disconnected")[0] == 603
    assert_two_way(call.far_call, call.desk_call)              # the call stayed on the desk
    call.far_call.hangup()
    wait_for(lambda: answers_to(call.desk, "BYE"), 5, "the desk to answer the far end's BYE")
    assert answers_to(call.desk, "BYE") == ["SIP/2.0 200 OK"]
    call.desk_call.wait("disconnected", timeout=2)
    assert call.far.requests_received() == []
    assert_no_residue(stack)


def test_given_a_held_call_when_the_desk_hangs_up_its_code_call_then_the_mobile_stops_ringing(
        stack, db, phones):
    """Issue 9, limit 3: CANCEL of the *55 code call did not stop the mobile's ringing."""
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    call.desk_call.hold()
    wait_for(lambda: call.far.received("INVITE"), 5, "the hold re-INVITE at the far end")
    code_call = call.desk.make_call(code_uri(stack))
    assert code_call.wait("early")[0] == 180                   # the desk hears it ringing
    mobile_ringing = call.mobile.incoming(2)
    mobile_ringing.wait("early")
    code_call.hangup()                                         # CANCEL
    assert code_call.wait("disconnected")[0] == 487
    assert mobile_ringing.wait("disconnected", timeout=5)[0] == 487
    assert len(call.mobile.received("CANCEL")) == 2            # the twin ring's, and this one
    call.desk_call.unhold()
    assert_two_way(call.far_call, call.desk_call)              # the held call is still there
    far_end_hangs_up(call, call.desk_call)
    assert [r.split()[0] for r in call.far.requests_received()] == ["INVITE", "ACK"] * 2
    assert refusals(call.desk) == refusals(call.far) == []
    assert_no_residue(stack)
