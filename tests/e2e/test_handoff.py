"""Handoff on the wire: the far end stays, the near end swaps."""
from __future__ import annotations

import pytest

from tests.support import calls
from tests.support.calls import (CALLER_NUM, SUB_TWIN, Call, assert_nothing_left,
                                 connect_media, desk, mobile, register_desk, setup_subscriber,
                                 trunk_caller)
from tests.support.rtp import assert_two_way, wait_for

pytestmark = pytest.mark.e2e

REQUESTS = ("INVITE", "REFER", "UPDATE", "BYE", "NOTIFY", "OPTIONS", "INFO")


def requests_received(agent) -> list[str]:
    return [m.split("\r\n", 1)[0] for method in REQUESTS for m in agent.received(method)]


def twin_rung_mobile() -> calls.Party:
    """The mobile of a twinned call: rung (and CANCELled) by the twin ring, then by the handoff."""
    party = mobile("uas/ring_then_answer_unless_cancelled.xml")
    party.agent.calls = 2
    return party


def switch_gap_ms(far_probe, old_probe, new_probe) -> float:
    """At the far end: time between the old device's last packet and the new one's first."""
    old = far_probe.received_from(old_probe)
    new = far_probe.received_from(new_probe)
    assert old and new, "no media from one of the devices at the far end"
    return (new[0].at - old[-1].at) * 1000


def test_given_a_call_answered_on_the_desk_when_it_hands_off_then_it_continues_on_the_mobile(
        stack, db, logdir):
    setup_subscriber(db, stack)
    register_desk(stack, logdir)
    call = Call({"desk": desk("uas/desk_handoff.xml", pause_ms=2000, code="*55"),
                 "mobile": twin_rung_mobile(),
                 "caller": trunk_caller(stack, hold_ms=7000)})
    try:
        calls.start(call, logdir)
        since = connect_media(call["caller"], "200", call["desk"], "INVITE")
        wait_for(lambda: len(call["caller"].probe.received_from(call["desk"].probe, since)) > 25,
                 10, "audio caller<->desk")
        assert_two_way(call["caller"].probe, call["desk"].probe, since)
        call["mobile"].probe.talk_to(*call["mobile"].media_from("INVITE", nth=2))
        switched = wait_for(lambda: call["caller"].probe.received_from(call["mobile"].probe),
                            10, "the far end to hear the mobile")[0].at
        wait_for(lambda: len(call["caller"].probe.received_from(call["mobile"].probe)) > 50,
                 10, "audio caller<->mobile")
        assert_two_way(call["caller"].probe, call["mobile"].probe, switched)
        gap = switch_gap_ms(call["caller"].probe, call["desk"].probe, call["mobile"].probe)
        calls.run(call, logdir)
    finally:
        call.close()
    mobile_invite = call["mobile"].agent.received("INVITE")[1]         # the handoff's
    assert mobile_invite.startswith(f"INVITE sip:{SUB_TWIN}@")
    assert CALLER_NUM in mobile_invite.split("\r\n\r\n")[0]       # the caller's identity
    assert call["desk"].agent.received("202")
    assert "SIP/2.0 200" in call["desk"].agent.received("NOTIFY")[0]
    assert requests_received(call["caller"].agent) == []         # the far end saw nothing
    assert gap <= 40, f"far end heard {gap:.1f} ms of silence at the switch"
    assert call["mobile"].agent.received("BYE")                  # far end hung up → mobile
    row = db.execute("SELECT from_device, to_device, outcome, switch_ms FROM handoff").fetchone()
    assert row["outcome"] == "completed" and (row["from_device"], row["to_device"]) == (
        "desk", "mobile")
    assert db.execute("SELECT count(*) AS n FROM call WHERE ended_at IS NULL").fetchone()["n"] == 0
    assert_nothing_left(stack)
