"""Twin ring on the wire: who rings, who wins, what the mobile sees, where media flows."""
from __future__ import annotations

import re

import pytest

from tests.support import calls
from tests.support.agents import SPARE_GW_IP
from tests.support.calls import (CALLER_NUM, SUB_DID, SUB_TWIN, Call, assert_nothing_left,
                                 desk, mobile, register_desk, setup_subscriber, trunk_caller,
                                 voicemail)
from twinctl.commands import status as status_cmd

pytestmark = pytest.mark.e2e

MOBILE_SIDE = (calls.TRUNK_IP, calls.MOBILE_PORT)     # where twin legs arrive
DESK_SIDE = (calls.DESK_IPS[0], 5061)
COMPLETED_ELSEWHERE = 'Reason: SIP;cause=200;text="Call completed elsewhere"'


def header(msg: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(.*)$", msg, re.M | re.I)
    return match.group(1).strip() if match else ""


def test_given_mobile_ticked_when_the_desk_answers_a_trunk_call_then_mobile_is_cancelled(
        stack, db, logdir):
    setup_subscriber(db, stack)
    register_desk(stack, logdir)
    call = Call({"desk": desk(pause_ms=1000), "mobile": calls.mobile(),
                 "caller": trunk_caller(stack)})
    calls.talk(call, logdir, "caller", "200", "desk", "INVITE")
    invite = call["mobile"].agent.received("INVITE")[0]
    assert invite.startswith(f"INVITE sip:{SUB_TWIN}@")
    assert CALLER_NUM in header(invite, "From")
    assert CALLER_NUM in header(invite, "P-Asserted-Identity")
    assert SUB_DID in header(invite, "Diversion")
    cancel = call["mobile"].agent.received("CANCEL")[0]
    assert COMPLETED_ELSEWHERE in cancel
    assert_nothing_left(stack)


def test_given_mobile_ticked_when_the_mobile_answers_then_the_desk_is_cancelled(
        stack, db, logdir):
    setup_subscriber(db, stack)
    register_desk(stack, logdir)
    call = Call({"desk": desk("uas/ring_cancel.xml"), "mobile": mobile("uas/answer.xml",
                                                                       pause_ms=800),
                 "caller": trunk_caller(stack)})
    calls.talk(call, logdir, "caller", "200", "mobile", "INVITE")
    assert COMPLETED_ELSEWHERE in call["desk"].agent.received("CANCEL")[0]
    assert_nothing_left(stack)


def test_given_two_desks_when_one_dials_the_others_extension_then_desk_and_mobile_ring(
        stack, db, logdir):
    setup_subscriber(db, stack)
    calls.add_subscriber(db, stack, "1002", "2125550102")
    register_desk(stack, logdir)
    register_desk(stack, logdir, ext="1002", ip=calls.DESK_IPS[1], port=5062)
    call = Call({"desk": desk(pause_ms=1000), "mobile": mobile(),
                 "caller": calls.desk_caller(stack, "1001")})
    calls.talk(call, logdir, "caller", "200", "desk", "INVITE")
    invite = call["mobile"].agent.received("INVITE")[0]
    # The mobile shows the calling colleague: their DID and name, not an internal extension.
    assert "+12125550102" in header(invite, "From") and "User 1002" in header(invite, "From")
    assert "+12125550102" in header(invite, "P-Asserted-Identity")
    assert COMPLETED_ELSEWHERE in call["mobile"].agent.received("CANCEL")[0]
    assert_nothing_left(stack)


def test_given_nobody_answers_when_the_ring_timeout_ends_then_the_subscribers_voicemail(
        stack, db, logdir):
    setup_subscriber(db, stack, ring_timeout=5)
    register_desk(stack, logdir)
    call = Call({"desk": desk("uas/ring_cancel.xml"), "mobile": mobile(),
                 "voicemail": voicemail(pause_ms=100), "caller": trunk_caller(stack, hold_ms=2000)})
    calls.talk(call, logdir, "caller", "200", "voicemail", "INVITE")
    invite = call["voicemail"].agent.received("INVITE")[0]
    assert invite.startswith(f"INVITE sip:1001@{calls.VOICEMAIL_IP}")    # the mailbox
    assert SUB_DID in header(invite, "Diversion") and "no-answer" in header(invite, "Diversion")
    assert call["desk"].agent.received("CANCEL") and call["mobile"].agent.received("CANCEL")
    assert_nothing_left(stack)


def test_given_the_desk_still_ringing_when_the_mobile_declines_then_the_desk_keeps_ringing(
        stack, db, logdir):
    setup_subscriber(db, stack)
    register_desk(stack, logdir)
    call = Call({"desk": desk(pause_ms=2000),
                 "mobile": mobile("uas/decline.xml", pause_ms=300),
                 "caller": trunk_caller(stack, hold_ms=1500)})
    calls.talk(call, logdir, "caller", "200", "desk", "INVITE", minimum=15)
    assert not call["caller"].agent.received("603")
    assert_nothing_left(stack)


@pytest.mark.parametrize("case", ["mobile not ticked", "license basic", "no twin set"])
def test_given_the_mobile_not_allowed_then_only_the_desk_rings(stack, db, logdir, case):
    setup_subscriber(db, stack, ring="desk" if case == "mobile not ticked" else "desk,mobile",
                     license="basic" if case == "license basic" else "entry-ucc",
                     twin=None if case == "no twin set" else SUB_TWIN)
    register_desk(stack, logdir)
    call = Call({"desk": desk(pause_ms=300), "caller": trunk_caller(stack, hold_ms=500)})
    rung = calls.run_watching(call, logdir, MOBILE_SIDE)
    assert call["desk"].agent.received("INVITE")
    assert rung == [], f"the mobile was rung: {rung[:1]}"
    assert_nothing_left(stack)


def test_given_the_desk_unregistered_and_mobile_ticked_then_only_the_mobile_rings(
        stack, db, logdir):
    setup_subscriber(db, stack)
    sink = calls.SipSink(*DESK_SIDE)
    call = Call({"mobile": mobile("uas/answer.xml", pause_ms=300),
                 "caller": trunk_caller(stack, hold_ms=1500)})
    try:
        calls.talk(call, logdir, "caller", "200", "mobile", "INVITE", minimum=15)
    finally:
        rung = sink.messages()
        sink.close()
    assert rung == []
    assert_nothing_left(stack)


def test_given_a_voicemail_status_then_calls_go_straight_to_voicemail(stack, db, logdir):
    setup_subscriber(db, stack, status="Do Not Disturb", send_to="voicemail")
    register_desk(stack, logdir)
    call = Call({"voicemail": voicemail(pause_ms=100), "caller": trunk_caller(stack, hold_ms=500)})
    rung = calls.run_watching(call, logdir, DESK_SIDE, MOBILE_SIDE)
    invite = call["voicemail"].agent.received("INVITE")[0]
    assert invite.startswith(f"INVITE sip:1001@{calls.VOICEMAIL_IP}")
    assert SUB_DID in header(invite, "Diversion")
    assert rung == []
    assert_nothing_left(stack)


def test_given_a_forbidden_twin_written_by_hand_then_it_is_never_dialled(stack, db, logdir):
    setup_subscriber(db, stack)
    register_desk(stack, logdir)
    db.execute("ALTER TABLE twin DROP CONSTRAINT twin_number_check")
    try:
        db.execute("UPDATE twin SET number = '+19005550123'")
        call = Call({"desk": desk(pause_ms=300), "caller": trunk_caller(stack, hold_ms=500)})
        assert calls.run_watching(call, logdir, MOBILE_SIDE) == []
    finally:
        db.execute("DELETE FROM twin WHERE NOT is_nanp_number(number)")
        db.execute("ALTER TABLE twin ADD CONSTRAINT twin_number_check "
                   "CHECK (is_nanp_number(number))")
    assert_nothing_left(stack)


def test_given_a_twinctl_change_between_calls_then_the_next_call_follows_it(stack, db, logdir):
    """No restart: the routing's cache is emptied by the database's change notification."""
    setup_subscriber(db, stack, ring="desk")
    register_desk(stack, logdir)
    for round_, expect_mobile in ((1, False), (2, True)):
        call = Call({"desk": desk(pause_ms=300), "caller": trunk_caller(stack, hold_ms=300)})
        rung = calls.run_watching(call, logdir / f"call{round_}", MOBILE_SIDE)
        assert bool(rung) == expect_mobile, f"call {round_}: mobile rung={bool(rung)}"
        status_cmd.edit_status(db, "1001", "In Office", "ring-group", "desk,mobile")
    assert_nothing_left(stack)


def test_given_a_desk_when_it_calls_an_external_number_then_it_leaves_by_the_trunk_anchored(
        stack, db, logdir):
    setup_subscriber(db, stack)
    register_desk(stack, logdir)
    far = calls.party("far", "uas/answer.xml", calls.TRUNK_IP, calls.MOBILE_PORT, listens=True,
                      pause_ms=300)
    call = Call({"far": far, "caller": calls.desk_caller(stack, "3125550188", ext="1001",
                                                         ip=calls.DESK_IPS[0], port=5061,
                                                         hold_ms=1500)})
    calls.talk(call, logdir, "caller", "200", "far", "INVITE", minimum=15)
    invite = call["far"].agent.received("INVITE")[0]
    assert invite.startswith(f"INVITE sip:+13125550188@{calls.TRUNK_IP}")
    assert SUB_DID in header(invite, "P-Asserted-Identity")
    assert f"c=IN IP4 {stack.proxy_address}" in invite       # media anchored by rtpengine
    assert_nothing_left(stack)


@pytest.mark.parametrize("dial", ["911"])
def test_given_a_desk_when_it_dials_emergency_then_it_always_goes_out(stack, db, logdir, dial):
    setup_subscriber(db, stack, license="basic")
    register_desk(stack, logdir)
    far = calls.party("psap", "uas/answer.xml", calls.TRUNK_IP, calls.MOBILE_PORT, listens=True,
                      pause_ms=100)
    call = Call({"psap": far, "caller": calls.desk_caller(stack, dial, ext="1001",
                                                          ip=calls.DESK_IPS[0], port=5061,
                                                          hold_ms=300)})
    try:
        calls.start(call, logdir)
        calls.run(call, logdir)
    finally:
        call.close()
    assert call["psap"].agent.received("INVITE")[0].startswith(
        f"INVITE sip:{dial}@{calls.TRUNK_IP}")
    assert_nothing_left(stack)


def test_given_a_worker_that_wrote_the_call_log_when_twinctl_changes_the_status_then_it_follows(
        stack, db, logdir):
    """Regression: a change notification that arrived while a worker was writing the call log
    was swallowed by psycopg, and that worker kept routing with the old status."""
    setup_subscriber(db, stack, ring="desk")
    register_desk(stack, logdir)
    for round_ in range(1, 3 * stack.children):          # every worker answers some calls
        call = Call({"desk": desk(pause_ms=50), "caller": trunk_caller(stack, hold_ms=50)})
        try:
            calls.start(call, logdir / f"warm{round_}")
            calls.run(call, logdir)
        finally:
            call.close()
    status_cmd.edit_status(db, "1001", "In Office", "ring-group", "desk,mobile")
    for round_ in range(1, 2 * stack.children):
        call = Call({"desk": desk(pause_ms=50), "caller": trunk_caller(stack, hold_ms=50)})
        rung = calls.run_watching(call, logdir / f"after{round_}", MOBILE_SIDE)
        assert rung, f"call {round_} after the change did not ring the mobile"
    assert_nothing_left(stack)


def test_given_the_first_gateway_fails_the_twin_leg_then_the_next_one_carries_it(
        stack, db, logdir):
    from twinctl import rpc
    from twinctl.commands import trunk as trunk_cmd
    setup_subscriber(db, stack)
    register_desk(stack, logdir)
    trunk_cmd.add_trunk(db, stack, "first", f"{SPARE_GW_IP}:5060", priority=10)
    rpc.call(stack, "dispatcher.reload")
    try:
        bad = calls.party("bad-gw", "uas/unavailable.xml", SPARE_GW_IP, 5060, listens=True,
                          pause_ms=100)
        call = Call({"gw1": bad, "desk": desk("uas/ring_cancel.xml"),
                     "mobile": mobile("uas/answer.xml", pause_ms=300),
                     "caller": trunk_caller(stack, hold_ms=1500)})
        calls.talk(call, logdir, "caller", "200", "mobile", "INVITE", minimum=15)
        assert bad.agent.received("INVITE")[0].startswith(f"INVITE sip:{SUB_TWIN}@{SPARE_GW_IP}")
        assert call["mobile"].agent.received("INVITE")[0].startswith(f"INVITE sip:{SUB_TWIN}@")
        assert COMPLETED_ELSEWHERE in call["desk"].agent.received("CANCEL")[0]
    finally:
        trunk_cmd.remove_trunk(db, "first")
        rpc.call(stack, "dispatcher.reload")
    assert_nothing_left(stack)
