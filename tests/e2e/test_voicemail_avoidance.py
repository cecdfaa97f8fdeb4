"""Issue 11: the twin leg never loses a call to the mobile's voicemail. PJSIP phones: the far
end calls the DID through the trunk, the desk is registered, the mobile sits behind the trunk
and the subscriber's voicemail server answers on its own address. The subscriber has the
product's defaults (answer too soon 1500 ms, mobile rings at most 19 s) unless a test says.
Every test ends with the residue check."""
from __future__ import annotations

import time

import pytest

from lab.agents import DESK_IPS, TRUNK_IP, VOICEMAIL_IP
from lab.calls import (CALLER_NAME, CALLER_NUM, CALLER_PORT, MOBILE_PORT, SUB_EXT,
                       db_settled, setup_subscriber)
from lab.residue import assert_no_residue
from lab.rtp import wait_for
from tests.e2e.test_metrics import grew, scrape
from tests.support.phones import assert_two_way
from tests.support.pjsip_scenarios import (DID_DIALLED, answered_on_the_desk, code_uri, proxy,
                                           cleared_after, refusals)  # noqa: F401
from twinctl.commands import status as status_cmd
from twinctl.commands import subscriber as subscriber_cmd

pytestmark = pytest.mark.e2e

CARRIER_VOICEMAIL_MS = 150      # a carrier's voicemail answers the twin leg this fast


def parties(cfg, phones):
    desk = phones("desk", DESK_IPS[0], 5061)
    desk.register(SUB_EXT, "secret1", proxy(cfg))
    mobile = phones("mobile", TRUNK_IP, MOBILE_PORT)
    far = phones("far", TRUNK_IP, CALLER_PORT,
                 uri=f'"{CALLER_NAME}" <sip:{CALLER_NUM}@{TRUNK_IP}>')
    return far, desk, mobile


def the_default_subscriber(db, cfg, **kw):
    """The subscriber with the product's defaults (what the lab's machine mobiles turn off)."""
    setup_subscriber(db, cfg, answer_too_soon_ms=None, **kw)
    row = subscriber_cmd.show_subscriber(db, SUB_EXT)
    assert (row["answer_too_soon_ms"], row["mobile_ring_max_s"], row["mobile_confirm"]) == \
        (1500, 19, False)


def avoided(db, reason: str) -> list[dict]:
    return db_settled(db, "SELECT leg, reason, after_ms FROM twin_leg_avoided WHERE reason = %s",
                      (reason,))


def one_avoided(db, stack, counted_before: dict, reason: str) -> dict:
    """The one leg the proxy kept from the caller: its row, and the counter grown by one."""
    [row] = avoided(db, reason)
    assert row["leg"] == "twin"
    assert grew(counted_before, scrape(stack.metrics_kamailio),
                "kamailio_twinning_voicemail_avoided_calls_total", leg="twin",
                reason=reason) == 1
    return row


def the_mobile_was_ended_by_the_proxy(mobile) -> None:
    """The proxy itself ACKed the mobile's 200 and hung that leg up (Reason says why)."""
    call = mobile.incoming()
    call.wait("disconnected")
    assert mobile.received("ACK"), "the proxy ACKs the 200 it keeps from the caller"
    [bye] = mobile.received("BYE")
    assert "Answered Too Soon" in bye.header("Reason")
    assert mobile.sent("200")[-1].header("CSeq").endswith("BYE")


def test_given_the_carriers_voicemail_answers_at_once_then_the_desk_rings_on_and_the_call_reaches_the_subscribers_mailbox(
        stack, db, phones):
    the_default_subscriber(db, stack)
    far, desk, mobile = parties(stack, phones)
    voicemail = phones("voicemail", VOICEMAIL_IP, 5060)
    voicemail.on_incoming(answer_after_ms=200)
    mobile.on_incoming(answer_after_ms=CARRIER_VOICEMAIL_MS)        # the carrier's voicemail
    counted_before = scrape(stack.metrics_kamailio)
    started = time.monotonic()
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    desk_call = desk.incoming()
    the_mobile_was_ended_by_the_proxy(mobile)
    assert desk_call.state in ("incoming", "early"), "the desk rings on"
    far_call.wait("confirmed", timeout=15)                          # the ring timeout (8 s)
    assert time.monotonic() - started > 7
    assert desk_call.wait("disconnected")[0] == 487
    vm_call = voicemail.incoming()
    invite = voicemail.received("INVITE")[0]
    assert invite.first_line.startswith(f"INVITE sip:{SUB_EXT}@")   # the subscriber's box
    assert "reason=no-answer" in invite.header("Diversion")
    assert_two_way(far_call, vm_call)
    # The caller never heard of the mobile's answer: one 200 only, the voicemail's.
    assert len(far.received("200")) == 1
    assert one_avoided(db, stack, counted_before, "answered-too-soon")["after_ms"] < 1500
    far_call.hangup()
    vm_call.wait("disconnected")
    assert refusals(far) == refusals(desk) == []
    assert_no_residue(stack)


def test_given_a_person_answers_the_mobile_after_two_and_a_half_seconds_then_the_call_is_theirs(
        stack, db, phones):
    the_default_subscriber(db, stack)
    far, desk, mobile = parties(stack, phones)
    mobile.on_incoming(answer_after_ms=2500)
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    far_call.wait("confirmed", timeout=10)
    mobile_call = mobile.incoming()
    assert desk.incoming().wait("disconnected")[0] == 487
    assert_two_way(far_call, mobile_call)
    assert not mobile.received("BYE")
    far_call.hangup()
    mobile_call.wait("disconnected")
    assert db.execute("SELECT count(*) AS n FROM twin_leg_avoided").fetchone()["n"] == 0
    assert db_settled(db, "SELECT answered_by FROM call WHERE answered_by = 'mobile'")
    assert_no_residue(stack)


def test_given_confirmation_when_the_person_on_the_mobile_presses_1_then_the_call_is_theirs(
        stack, db, phones):
    the_default_subscriber(db, stack)
    subscriber_cmd.set_twin_leg(db, SUB_EXT, confirm=True)
    far, desk, mobile = parties(stack, phones)
    mobile.on_incoming(answer_after_ms=2000)
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    mobile_call = mobile.incoming()
    mobile_call.wait("confirmed", timeout=10)               # the proxy ACKed its 200
    assert mobile.received("ACK")
    # The prompt plays to the mobile; the caller is not connected yet, the desk rings on.
    heard = mobile_call.rtp().rx
    time.sleep(1.0)
    assert mobile_call.rtp().rx - heard >= 35, "the mobile hears the prompt"
    assert far_call.state in ("calling", "early") and far.received("200") == []
    assert desk.incoming().state in ("incoming", "early")
    mobile_call.dtmf("1")
    far_call.wait("confirmed", timeout=5)
    assert desk.incoming().wait("disconnected")[0] == 487
    assert_two_way(far_call, mobile_call)
    assert not mobile.received("BYE")
    assert "Received DTMF digit" not in far.log.read_text(), "the caller heard the key"
    assert db_settled(db, "SELECT answered_by FROM call WHERE answered_by = 'mobile'")
    far_call.hangup()
    mobile_call.wait("disconnected")
    assert db.execute("SELECT count(*) AS n FROM twin_leg_avoided").fetchone()["n"] == 0
    assert refusals(far) == refusals(desk) == []
    assert_no_residue(stack)


def test_given_confirmation_when_nobody_presses_1_then_the_leg_is_dropped_and_the_desk_rings_on(
        stack, db, phones):
    the_default_subscriber(db, stack, ring_timeout=12)
    subscriber_cmd.set_twin_leg(db, SUB_EXT, confirm=True)
    far, desk, mobile = parties(stack, phones)
    mobile.on_incoming(answer_after_ms=2000)               # a voicemail slower than 1.5 s
    desk.on_incoming(answer_after_ms=10000)
    counted_before = scrape(stack.metrics_kamailio)
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    mobile_call = mobile.incoming()
    mobile_call.wait("confirmed", timeout=10)
    answered = time.monotonic()
    mobile_call.wait("disconnected", timeout=10)            # the proxy's BYE, after the window
    waited = time.monotonic() - answered
    assert 5 < waited < 7.5, f"dropped after {waited:.1f} s (the window: 6 s)"
    assert "Not Confirmed" in mobile.received("BYE")[-1].header("Reason")
    assert far.received("200") == [] and far_call.state in ("calling", "early")
    far_call.wait("confirmed", timeout=10)                  # the desk, at 10 s
    desk_call = desk.incoming()
    assert_two_way(far_call, desk_call)
    assert 5000 < one_avoided(db, stack, counted_before, "not-confirmed")["after_ms"] < 7500
    far_call.hangup()
    desk_call.wait("disconnected")
    assert refusals(far) == refusals(desk) == []
    assert_no_residue(stack)


def test_given_confirmation_when_the_desk_answers_while_the_mobile_listens_then_the_mobile_is_hung_up(
        stack, db, phones):
    the_default_subscriber(db, stack)
    subscriber_cmd.set_twin_leg(db, SUB_EXT, confirm=True)
    far, desk, mobile = parties(stack, phones)
    mobile.on_incoming(answer_after_ms=2000)
    desk.on_incoming(answer_after_ms=3500)
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    mobile_call = mobile.incoming()
    mobile_call.wait("confirmed", timeout=10)
    far_call.wait("confirmed", timeout=5)                   # the desk's answer
    desk_call = desk.incoming()
    mobile_call.wait("disconnected", timeout=5)             # the proxy hung the mobile up
    assert mobile.received("BYE")
    assert_two_way(far_call, desk_call)
    assert len(far.received("200")) == 1
    far_call.hangup()
    desk_call.wait("disconnected")
    assert refusals(far) == refusals(desk) == []
    assert_no_residue(stack)


def test_given_the_mobile_declines_then_the_desk_still_rings_and_can_answer(stack, db, phones):
    the_default_subscriber(db, stack)
    far, desk, mobile = parties(stack, phones)
    mobile.on_incoming(reject=603)
    desk.on_incoming(answer_after_ms=2000)
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    assert mobile.incoming().wait("disconnected")[0] == 603
    far_call.wait("confirmed", timeout=10)
    desk_call = desk.incoming()
    assert_two_way(far_call, desk_call)
    far_call.hangup()
    desk_call.wait("disconnected")
    assert refusals(desk) == []
    assert_no_residue(stack)


def test_given_the_mobile_rings_its_maximum_then_only_the_twin_leg_is_cancelled_and_the_desk_rings_on(
        stack, db, phones):
    the_default_subscriber(db, stack, ring_timeout=12)
    subscriber_cmd.set_twin_leg(db, SUB_EXT, mobile_ring_max_s=5)
    far, desk, mobile = parties(stack, phones)
    desk.on_incoming(answer_after_ms=8000)
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    mobile_call = mobile.incoming()
    started = time.monotonic()
    assert mobile_call.wait("disconnected", timeout=10)[0] == 487
    rang = time.monotonic() - started
    assert 4.5 < rang < 6.5, f"the mobile rang {rang:.1f} s (its maximum: 5 s)"
    [cancel] = mobile.received("CANCEL")
    far_call.wait("confirmed", timeout=10)                          # the desk, at 8 s
    desk_call = desk.incoming()
    assert_two_way(far_call, desk_call)
    [row] = avoided(db, "rang-too-long")
    assert row["leg"] == "twin"
    far_call.hangup()
    desk_call.wait("disconnected")
    assert_no_residue(stack)


def test_given_a_status_that_rings_the_desk_first_then_the_mobile_rings_after_its_delay(
        stack, db, phones):
    the_default_subscriber(db, stack)
    status_cmd.edit_status(db, SUB_EXT, "In Office", None, None, mobile_delay_s=3)
    far, desk, mobile = parties(stack, phones)
    mobile.on_incoming(answer_after_ms=2000)
    started = time.monotonic()
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    desk_call = desk.incoming()
    desk_rang = time.monotonic() - started
    mobile.incoming(timeout=10)
    mobile_rang = time.monotonic() - started
    assert desk_rang < 1 and 2.8 < mobile_rang < 4.5, (desk_rang, mobile_rang)
    far_call.wait("confirmed", timeout=10)
    assert desk_call.wait("disconnected")[0] == 487
    far_call.hangup()
    assert_no_residue(stack)


def test_given_a_desk_first_status_when_the_desk_answers_before_the_delay_then_the_mobile_never_rings(
        stack, db, phones):
    the_default_subscriber(db, stack)
    status_cmd.edit_status(db, SUB_EXT, "In Office", None, None, mobile_delay_s=4)
    far, desk, mobile = parties(stack, phones)
    desk.on_incoming(answer_after_ms=1000)
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    far_call.wait("confirmed", timeout=10)
    desk_call = desk.incoming()
    time.sleep(4.5)                                   # past the delay: the leg was cancelled
    assert mobile.received("INVITE") == []
    assert_two_way(far_call, desk_call)
    far_call.hangup()
    desk_call.wait("disconnected")
    assert_no_residue(stack)


def test_given_a_handoff_answered_by_the_mobiles_voicemail_then_the_call_stays_on_the_desk(
        stack, db, phones):
    the_default_subscriber(db, stack)
    subscriber_cmd.set_twin_leg(db, SUB_EXT, answer_too_soon_ms=0)   # the twin ring's own leg
    call = answered_on_the_desk(stack, phones)                       # answered there at once
    subscriber_cmd.set_twin_leg(db, SUB_EXT, answer_too_soon_ms=1500)
    call.mobile.on_incoming(answer_after_ms=CARRIER_VOICEMAIL_MS)
    call.desk_call.xfer(code_uri(stack))
    assert call.desk_call.wait_transfer() == 480          # NOTIFY: the handoff did not happen
    wait_for(lambda: call.mobile.received("BYE"), 5, "the proxy's BYE to the mobile")
    assert "Answered Too Soon" in call.mobile.received("BYE")[-1].header("Reason")
    assert call.desk_call.state == "confirmed"
    assert_two_way(call.far_call, call.desk_call)           # still on the desk
    [row] = avoided(db, "answered-too-soon")
    assert row["leg"] == "handoff"
    assert db_settled(db, "SELECT outcome FROM handoff WHERE outcome = 'no-answer'")
    call.far_call.hangup()
    call.desk_call.wait("disconnected")
    assert call.far.requests_received() == []             # the far end saw nothing of it
    assert refusals(call.desk) == refusals(call.far) == []
    assert_no_residue(stack)
