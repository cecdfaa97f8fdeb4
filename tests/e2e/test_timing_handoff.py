"""Issue 23, the handoff's part of the timing matrix (tests/e2e/test_timing_matrix.py has the
twin ring's): PJSIP phones, the subscriber on the product's defaults (an answer within 1500 ms
is the carrier's voicemail), the desk answering at 300 ms. The desk presses Handoff (blind
transfer to the code) and the mobile answers at 100 ms (its voicemail), at 2.5 s (a person),
never, or not at all (nothing answers at the trunk's address); or the desk dials the code
again while the mobile rings. Invariants: the far end stays connected to exactly one device,
the desk learns the outcome by its NOTIFY within the leg's own ring maximum, two-way audio
after, and nothing left anywhere."""
from __future__ import annotations

import socket
import time

import pytest

from lab.agents import DESK_IPS, TRUNK_IP
from lab.calls import (CALLER_NAME, CALLER_NUM, CALLER_PORT, MOBILE_PORT, SUB_EXT,
                       setup_subscriber)
from lab.residue import assert_no_residue
from tests.support.phones import Call, Phone, assert_two_way
from tests.support.pjsip_scenarios import (DID_DIALLED, Answered, cleared_after,  # noqa: F401
                                           code_uri, proxy, refusals)
from twinctl.commands import subscriber as subscriber_cmd

pytestmark = pytest.mark.e2e

RING_MAX_S = 5                      # the subscriber's mobile_ring_max_s (its lowest): quick
PERSON_MS = 2500


def the_call(cfg, db, phones, mobile: Phone | None) -> Answered:
    """The far end calls the DID; only the desk rings (so the mobile's phone is the
    handoff's alone) and answers at 300 ms, inside what used to be the guard's blind spot."""
    setup_subscriber(db, cfg, ring="desk", answer_too_soon_ms=None)
    subscriber_cmd.set_twin_leg(db, SUB_EXT, mobile_ring_max_s=RING_MAX_S)
    desk = phones("desk", DESK_IPS[0], 5061)
    desk.register(SUB_EXT, "secret1", proxy(cfg))
    desk.on_incoming(answer_after_ms=300)
    far = phones("far", TRUNK_IP, CALLER_PORT, uri=f'"{CALLER_NAME}" <sip:{CALLER_NUM}@{TRUNK_IP}>')
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(cfg)}")
    far_call.wait("confirmed")
    desk_call = desk.incoming()
    assert desk_call.wait("confirmed")
    assert_two_way(far_call, desk_call)
    return Answered(far, desk, mobile, far_call, desk_call)


def handoff_fails_and_the_desk_keeps_the_call(call: Answered, started: float,
                                              within_s: float) -> int:
    code = call.desk_call.wait_transfer(timeout=within_s + 5)
    took = time.monotonic() - started
    assert code >= 300, f"the handoff should have failed, NOTIFY said {code}"
    assert took <= within_s, f"the desk waited {took:.1f} s for its NOTIFY (at most {within_s})"
    assert call.desk_call.state == "confirmed" and call.far_call.state == "confirmed"
    assert_two_way(call.far_call, call.desk_call)
    return code


def ends(call: Answered, near: Call) -> None:
    call.far_call.hangup()
    assert call.far_call.wait("disconnected")[0] == 200
    near.wait("disconnected")
    assert refusals(call.far) == []


def test_given_the_mobiles_voicemail_answers_the_handoff_at_once_then_the_call_stays_on_the_desk(
        stack, db, phones):
    mobile = phones("mobile", TRUNK_IP, MOBILE_PORT)
    mobile.on_incoming(answer_after_ms=100)
    call = the_call(stack, db, phones, mobile)
    started = time.monotonic()
    call.desk_call.xfer(code_uri(stack))
    handoff_fails_and_the_desk_keeps_the_call(call, started, within_s=3)
    mobile.incoming().wait("disconnected")
    assert "Answered Too Soon" in mobile.received("BYE")[0].header("Reason")
    ends(call, call.desk_call)
    assert_no_residue(stack)


def test_given_a_person_answers_the_handoff_after_two_and_a_half_seconds_then_the_call_is_theirs(
        stack, db, phones):
    mobile = phones("mobile", TRUNK_IP, MOBILE_PORT)
    mobile.on_incoming(answer_after_ms=PERSON_MS)
    call = the_call(stack, db, phones, mobile)
    call.desk_call.xfer(code_uri(stack))
    assert call.desk_call.wait_transfer() == 200
    call.desk_call.hangup()
    mobile_call = mobile.incoming()
    mobile_call.wait("confirmed")
    assert_two_way(call.far_call, mobile_call)
    assert not mobile.received("BYE")
    ends(call, mobile_call)
    assert_no_residue(stack)


def test_given_the_mobile_rings_on_then_the_desk_learns_of_it_within_the_legs_ring_maximum(
        stack, db, phones):
    mobile = phones("mobile", TRUNK_IP, MOBILE_PORT)            # rings, never answers
    call = the_call(stack, db, phones, mobile)
    started = time.monotonic()
    call.desk_call.xfer(code_uri(stack))
    handoff_fails_and_the_desk_keeps_the_call(call, started, within_s=RING_MAX_S + 2)
    assert mobile.incoming().wait("disconnected")[0] == 487      # CANCELled by the proxy
    ends(call, call.desk_call)
    assert_no_residue(stack)


def test_given_nothing_answers_at_the_trunk_then_the_desk_learns_of_it_within_the_legs_ring_maximum(
        stack, db, phones):
    """The carrier swallows the INVITE (no 100, no 180): a local timeout, not the 30 s of a
    proxy-wide timer and the desk's transfer left hanging."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((TRUNK_IP, MOBILE_PORT))
    try:
        call = the_call(stack, db, phones, None)
        started = time.monotonic()
        call.desk_call.xfer(code_uri(stack))
        handoff_fails_and_the_desk_keeps_the_call(call, started, within_s=RING_MAX_S + 2)
        silent.settimeout(0.2)
        try:
            assert silent.recv(4096).startswith(b"INVITE ")      # the leg did go out
        except socket.timeout:
            pytest.fail("the handoff's INVITE never reached the trunk")
        ends(call, call.desk_call)
    finally:
        silent.close()
    assert_no_residue(stack)


def test_given_the_mobile_rings_for_a_handoff_when_the_desk_dials_the_code_again_then_refused_and_the_handoff_goes_on(
        stack, db, phones):
    mobile = phones("mobile", TRUNK_IP, MOBILE_PORT)
    mobile.on_incoming(answer_after_ms=PERSON_MS)
    call = the_call(stack, db, phones, mobile)
    call.desk_call.xfer(code_uri(stack))
    mobile.incoming()                                           # it rings
    again = call.desk.make_call(code_uri(stack))
    deadline = time.monotonic() + 5
    while again.state != "disconnected" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert again.state == "disconnected", "the second code call got no final answer"
    assert 400 <= again.info()["code"] < 500, again.info()
    assert call.desk_call.wait_transfer() == 200                # the first handoff completes
    call.desk_call.hangup()
    mobile_call = mobile.incoming()
    mobile_call.wait("confirmed")
    assert_two_way(call.far_call, mobile_call)
    ends(call, mobile_call)
    assert_no_residue(stack)
