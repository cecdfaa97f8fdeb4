"""Handoff on the wire: the far end stays, the near end swaps."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab import calls
from lab.calls import (CALLER_NUM, SUB_TWIN, Call, assert_nothing_left, connect_media, desk,
                       mobile, register_desk, setup_subscriber, trunk_caller)
from lab.rtp import assert_two_way, wait_for

pytestmark = pytest.mark.e2e

def twinctl_out(*args) -> str:
    res = subprocess.run([sys.executable, "-m", "twinctl.main", *args], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


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
    row = calls.db_settled(db, "SELECT from_device, to_device, outcome, switch_ms FROM handoff"
                                 " WHERE completed_at IS NOT NULL")[0]
    assert row["outcome"] == "completed" and (row["from_device"], row["to_device"]) == (
        "desk", "mobile")
    calls.db_settled(db, "SELECT count(*) AS n FROM call WHERE ended_at IS NULL",
                     until=lambda rows: rows[0]["n"] == 0)
    # …and the operator sees it: twinctl calls list / show.
    call_id = db.execute("SELECT call_id FROM call").fetchone()["call_id"]
    listed = json.loads(twinctl_out("calls", "list", "--json"))
    assert [c["call_id"] for c in listed] == [call_id] and listed[0]["handoffs"] == 1
    shown = json.loads(twinctl_out("calls", "show", call_id, "--json"))
    assert shown["answered_by"] == "desk" and shown["ended_at"] and shown["rang"] == [
        "desk", "mobile"]
    assert [(h["from_device"], h["to_device"], h["outcome"]) for h in shown["handoffs"]] == [
        ("desk", "mobile", "completed")]
    assert_nothing_left(stack)


def take_back(cfg, scenario="uac/desk_call.xml", hold_ms=3000, port=5063, **keys) -> calls.Party:
    """The desk dialling the handoff code (from another port of the same desk phone)."""
    p = calls.party("desk55", scenario, calls.DESK_IPS[0], port,
                    remote=f"{cfg.proxy_address}:{cfg.proxy_port}", dial="*55", caller="1001",
                    caller_name="User 1001", pause_ms=hold_ms, **keys)
    p.agent.extra += ["-au", "1001", "-ap", "secret1"]
    return p


def caller_waiting_for_bye(cfg) -> calls.Party:
    return trunk_caller(cfg, scenario="uac/call_wait_bye.xml")


def hears(listener, speaker, since=0.0, packets=25):
    wait_for(lambda: len(listener.probe.received_from(speaker.probe, since)) > packets, 10,
             f"{listener.agent.name} to hear {speaker.agent.name}")


def test_given_a_call_answered_on_the_mobile_when_the_desk_dials_the_code_then_it_takes_it(
        stack, db, logdir):
    setup_subscriber(db, stack)
    register_desk(stack, logdir)
    call = Call({"desk": desk("uas/ring_cancel.xml"),
                 "mobile": mobile("uas/answer.xml", pause_ms=300),
                 "caller": caller_waiting_for_bye(stack)})
    desk55 = take_back(stack, hold_ms=3000)
    try:
        calls.start(call, logdir)
        since = connect_media(call["caller"], "200", call["mobile"], "INVITE")
        hears(call["caller"], call["mobile"], since)
        hears(call["mobile"], call["caller"], since)
        call.parties["desk55"] = desk55
        calls.start(Call({"desk55": desk55}), logdir)
        desk55.probe.talk_to(*desk55.media_from("200"))
        switched = wait_for(lambda: call["caller"].probe.received_from(desk55.probe), 10,
                            "the far end to hear the desk")[0].at
        hears(call["caller"], desk55, switched)
        hears(desk55, call["caller"], switched)
        gap = switch_gap_ms(call["caller"].probe, call["mobile"].probe, desk55.probe)
        calls.run(call, logdir)
    finally:
        call.close()
    assert not desk55.agent.received("180") and not desk55.agent.received("183")  # no ringing
    assert call["mobile"].agent.received("BYE")                      # the mobile is released
    assert call["caller"].agent.received("BYE")                      # desk hung up → far end
    assert [r.split(" ", 1)[0] for r in requests_received(call["caller"].agent)] == ["BYE"]
    assert gap <= 40, f"far end heard {gap:.1f} ms of silence at the switch"
    assert calls.db_settled(db, "SELECT outcome FROM handoff WHERE completed_at IS NOT NULL"
                            )[0]["outcome"] == "completed"
    assert_nothing_left(stack)


def test_given_a_handoff_when_the_mobile_declines_then_the_call_stays_on_the_desk(
        stack, db, logdir):
    setup_subscriber(db, stack, ring="desk")
    register_desk(stack, logdir)
    call = Call({"desk": desk("uas/desk_handoff.xml", pause_ms=1500, code="*55"),
                 "mobile": mobile("uas/decline.xml", pause_ms=300),
                 "caller": caller_waiting_for_bye(stack)})
    try:
        calls.start(call, logdir)
        connect_media(call["caller"], "200", call["desk"], "INVITE")
        notify = wait_for(lambda: call["desk"].agent.received("NOTIFY"), 10, "NOTIFY")[0]
        after = time.monotonic()
        hears(call["caller"], call["desk"], after)
        hears(call["desk"], call["caller"], after)
        calls.run(call, logdir)
    finally:
        call.close()
    assert "SIP/2.0 603" in notify                                   # the desk learns why
    assert call["caller"].agent.received("BYE")                      # the desk ended it later
    assert calls.db_settled(db, "SELECT outcome FROM handoff WHERE completed_at IS NOT NULL"
                            )[0]["outcome"] == "declined"
    assert_nothing_left(stack)


def test_given_no_call_when_a_desk_dials_the_code_then_a_clear_refusal(stack, db, logdir):
    setup_subscriber(db, stack)
    p = take_back(stack, "uac/desk_rejected.xml")
    try:
        calls.sipp.run([p.agent], logdir, timeout=15)
    finally:
        p.probe.close()
    assert p.agent.received("480")
    assert "No Call" in p.agent.received("480")[0].split("\r\n", 1)[0]


def test_given_a_call_on_one_subscribers_mobile_when_another_desk_dials_the_code_then_refused(
        stack, db, logdir):
    setup_subscriber(db, stack)
    calls.add_subscriber(db, stack, "1002", "2125550102")
    register_desk(stack, logdir)
    call = Call({"desk": desk("uas/ring_cancel.xml"),
                 "mobile": mobile("uas/answer.xml", pause_ms=300),
                 "caller": trunk_caller(stack, hold_ms=4000)})
    other = calls.party("other", "uac/desk_rejected.xml", calls.DESK_IPS[1], 5062,
                        remote=f"{stack.proxy_address}:{stack.proxy_port}", dial="*55",
                        caller="1002", caller_name="User 1002")
    other.agent.extra += ["-au", "1002", "-ap", "secret1"]
    try:
        calls.start(call, logdir)
        since = connect_media(call["caller"], "200", call["mobile"], "INVITE")
        hears(call["caller"], call["mobile"], since)
        calls.sipp.run([other.agent], logdir, timeout=15)
        after = time.monotonic()
        hears(call["caller"], call["mobile"], after)                 # undisturbed
        hears(call["mobile"], call["caller"], after)
        calls.run(call, logdir)
    finally:
        call.close()
        other.probe.close()
    assert other.agent.received("480")
    assert requests_received(call["caller"].agent) == []
    assert call["mobile"].agent.received("BYE")
    assert_nothing_left(stack)


def test_given_one_call_when_handed_desk_mobile_desk_mobile_then_audio_follows_each_time(
        stack, db, logdir):
    setup_subscriber(db, stack, ring="desk")
    register_desk(stack, logdir)
    mob = mobile("uas/answer.xml", pause_ms=300)
    mob.agent.calls = 2                                   # rung twice by the handoffs
    call = Call({"desk": desk("uas/desk_handoff.xml", pause_ms=1500, code="*55"),
                 "mobile": mob, "caller": trunk_caller(stack, hold_ms=16000)})
    desk55 = take_back(stack, "uac/desk_call_then_handoff.xml", hold_ms=2000, code="*55")
    gaps = []
    try:
        calls.start(call, logdir)
        since = connect_media(call["caller"], "200", call["desk"], "INVITE")
        hears(call["caller"], call["desk"], since)
        hears(call["desk"], call["caller"], since)
        # 1. desk → mobile
        mob.probe.talk_to(*mob.media_from("INVITE", nth=1))
        t1 = wait_for(lambda: call["caller"].probe.received_from(mob.probe), 10, "mobile")[0].at
        hears(call["caller"], mob, t1)
        hears(mob, call["caller"], t1)
        gaps.append(switch_gap_ms(call["caller"].probe, call["desk"].probe, mob.probe))
        # 2. mobile → desk
        call.parties["desk55"] = desk55
        calls.start(Call({"desk55": desk55}), logdir)
        desk55.probe.talk_to(*desk55.media_from("200"))
        t2 = wait_for(lambda: call["caller"].probe.received_from(desk55.probe), 10,
                      "desk again")[0].at
        hears(call["caller"], desk55, t2)
        hears(desk55, call["caller"], t2)
        gaps.append((t2 - max(a.at for a in call["caller"].probe.received_from(mob.probe)
                              if a.at < t2)) * 1000)
        # 3. desk → mobile again: the mobile is rung on a new leg
        mob.probe.talk_to(*mob.media_from("INVITE", nth=2))
        t3 = wait_for(lambda: [a for a in call["caller"].probe.received_from(mob.probe)
                               if a.at > t2], 10, "mobile again")[0].at
        hears(call["caller"], mob, t3)
        hears(mob, call["caller"], t3)
        calls.run(call, logdir, timeout=60)
    finally:
        call.close()
    assert requests_received(call["caller"].agent) == []
    assert all(g <= 40 for g in gaps), gaps
    rows = calls.db_settled(db, "SELECT from_device, to_device, outcome FROM handoff"
                                " WHERE completed_at IS NOT NULL ORDER BY id",
                            until=lambda rows: len(rows) == 3)
    assert [(r["from_device"], r["to_device"], r["outcome"]) for r in rows] == [
        ("desk", "mobile", "completed"), ("mobile", "desk", "completed"),
        ("desk", "mobile", "completed")]
    assert_nothing_left(stack)


def test_given_a_call_the_desk_placed_when_it_hands_off_then_the_mobile_takes_it(
        stack, db, logdir):
    setup_subscriber(db, stack, ring="desk")
    register_desk(stack, logdir)
    trunk = calls.party("trunk", "uas/answer_then_hang_up.xml", calls.TRUNK_IP,
                        calls.MOBILE_PORT, listens=True, pause_ms=200)
    trunk.probe.close()
    trunk.agent.calls = 2
    port = trunk.agent.keys["rtp_port"] = "4930"
    far, mob = calls.RtpProbe(calls.TRUNK_IP, int(port + "1")), \
        calls.RtpProbe(calls.TRUNK_IP, int(port + "2"))
    desk_out = take_back(stack, "uac/desk_call_then_handoff.xml", hold_ms=2000, code="*55",
                         port=5061)
    desk_out.agent.keys["dial"] = "3125550188"
    call = Call({"trunk": calls.Party(trunk.agent, far), "desk": desk_out})
    try:
        calls.start(call, logdir)
        far.talk_to(*call["trunk"].media_from("INVITE", nth=1))
        desk_out.probe.talk_to(*desk_out.media_from("200"))
        since = time.monotonic()
        wait_for(lambda: len(far.received_from(desk_out.probe, since)) > 25, 10, "far←desk")
        wait_for(lambda: len(desk_out.probe.received_from(far, since)) > 25, 10, "desk←far")
        mob.talk_to(*call["trunk"].media_from("INVITE", nth=2))
        t1 = wait_for(lambda: far.received_from(mob), 10, "far end to hear the mobile")[0].at
        wait_for(lambda: len(far.received_from(mob, t1)) > 25, 10, "far←mobile")
        wait_for(lambda: len(mob.received_from(far, t1)) > 25, 10, "mobile←far")
        gap = switch_gap_ms(far, desk_out.probe, mob)
        calls.run(call, logdir, timeout=30)
    finally:
        call.close()
        mob.close()
    second = call["trunk"].agent.received("INVITE")[1]
    assert second.startswith(f"INVITE sip:{SUB_TWIN}@")
    assert "3125550188" in second.split("\r\n\r\n")[0]            # the mobile sees the far end
    assert gap <= 40, gap
    assert_nothing_left(stack)


def handed_to_mobile(call: Call, logdir, event, what: str):
    """Run a call the desk hands to the mobile: once `event()` holds, the caller and the
    mobile must hear each other; then let the call end. Returns what event() returned."""
    try:
        calls.start(call, logdir)
        connect_media(call["caller"], "200", call["desk"], "INVITE")
        call["mobile"].probe.talk_to(*call["mobile"].media_from("INVITE"))
        seen = wait_for(event, 15, what)
        after = time.monotonic()
        hears(call["caller"], call["mobile"], after)
        hears(call["mobile"], call["caller"], after)
        calls.run(call, logdir)
    finally:
        call.close()
    return seen


def test_given_the_desk_held_the_call_when_it_hands_off_then_two_way_audio_on_the_mobile(
        stack, db, logdir):
    setup_subscriber(db, stack, ring="desk")
    register_desk(stack, logdir)
    caller = trunk_caller(stack, hold_ms=3000, scenario="uac/call_held.xml")
    call = Call({"desk": desk("uas/desk_hold_handoff.xml", pause_ms=1500, code="*55"),
                 "mobile": mobile("uas/answer.xml", pause_ms=300), "caller": caller})
    resume = handed_to_mobile(call, logdir, lambda: len(caller.agent.received("INVITE")) >= 2
                              and caller.agent.received("INVITE")[1], "the resume re-INVITE")
    hold = caller.agent.received("INVITE")[0]
    assert "a=sendonly" in hold
    assert "a=sendrecv" in resume or "a=send" not in resume          # taken off hold
    first_port = calls.media_address(call["caller"].agent.received("200")[0])
    assert calls.media_address(resume) == first_port                 # same rtpengine port
    assert_nothing_left(stack)


def test_given_a_handed_off_call_when_the_far_end_refreshes_then_it_is_answered_and_audio_flows(
        stack, db, logdir):
    setup_subscriber(db, stack, ring="desk")
    register_desk(stack, logdir)
    caller = trunk_caller(stack, hold_ms=4500, scenario="uac/call_reinvite.xml")
    call = Call({"desk": desk("uas/desk_handoff.xml", pause_ms=1000, code="*55"),
                 "mobile": mobile("uas/answer.xml", pause_ms=300), "caller": caller})
    handed_to_mobile(call, logdir, lambda: len(caller.agent.received("200")) >= 2,
                     "the re-INVITE's 200")
    first, refreshed = caller.agent.received("200")[:2]
    assert calls.media_address(refreshed) == calls.media_address(first)
    assert requests_received(caller.agent) == []
    assert call["mobile"].agent.received("BYE")
    assert_nothing_left(stack)


def test_given_a_handed_off_call_when_kamailio_restarts_then_either_side_can_still_hang_up(
        stack, db, logdir):
    from twinctl import stack as stack_mod
    setup_subscriber(db, stack, ring="desk")
    register_desk(stack, logdir)
    call = Call({"desk": desk("uas/desk_handoff.xml", pause_ms=1000, code="*55"),
                 "mobile": mobile("uas/answer.xml", pause_ms=200),
                 "caller": trunk_caller(stack, hold_ms=12000)})
    try:
        calls.start(call, logdir)
        connect_media(call["caller"], "200", call["desk"], "INVITE")
        call["mobile"].probe.talk_to(*call["mobile"].media_from("INVITE"))
        wait_for(lambda: call["desk"].agent.proc.poll() is not None, 15, "the desk to leave")
        stack_mod.restart_kamailio(stack, log=lambda *_: None)
        after = time.monotonic()
        hears(call["caller"], call["mobile"], after)          # media never depended on it
        calls.run(call, logdir)                               # far end hangs up after restart
    finally:
        call.close()
    assert call["mobile"].agent.received("BYE")
    assert requests_received(call["caller"].agent) == []
    assert_nothing_left(stack)


def test_given_a_held_call_on_the_desk_when_the_desk_dials_the_code_then_the_mobile_takes_it(
        stack, db, logdir):
    """The second way to hand off to the mobile: hold the call, dial *55 (no transfer key)."""
    setup_subscriber(db, stack, ring="desk")
    register_desk(stack, logdir)
    caller = trunk_caller(stack, hold_ms=2500, scenario="uac/call_held.xml")
    call = Call({"desk": desk("uas/desk_hold_wait_bye.xml", pause_ms=1000),
                 "mobile": mobile("uas/answer.xml", pause_ms=500), "caller": caller})
    code_call = take_back(stack, "uac/desk_rejected.xml")
    try:
        calls.start(call, logdir)
        connect_media(call["caller"], "200", call["desk"], "INVITE")
        wait_for(lambda: call["desk"].agent.received("200"), 10, "the desk's hold to be answered")
        call.parties["code"] = code_call
        calls.start(Call({"code": code_call}), logdir)
        call["mobile"].probe.talk_to(*call["mobile"].media_from("INVITE"))
        resume = wait_for(lambda: len(caller.agent.received("INVITE")) >= 2 and
                          caller.agent.received("INVITE")[1], 15, "the resume re-INVITE")
        after = time.monotonic()
        hears(call["caller"], call["mobile"], after)
        hears(call["mobile"], call["caller"], after)
        calls.run(call, logdir)
    finally:
        call.close()
    assert code_call.agent.received("180")                       # the desk heard it ring
    final = code_call.agent.received("480")[0].split("\r\n", 1)[0]
    assert "Mobile" in final                                     # …and why its call ended
    assert call["desk"].agent.received("BYE")                    # the held leg is released
    assert CALLER_NUM in call["mobile"].agent.received("INVITE")[0].split("\r\n\r\n")[0]
    assert "a=sendrecv" in resume or "a=send" not in resume      # the far end is resumed
    assert calls.db_settled(db, "SELECT outcome FROM handoff WHERE completed_at IS NOT NULL"
                            )[0]["outcome"] == "completed"
    assert_nothing_left(stack)
