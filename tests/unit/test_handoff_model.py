"""The stitched-call model: every transition, as the actions it returns."""
from __future__ import annotations

import pytest

from routing.handoff import model
from routing.handoff.actions import (AbsorbAck, AnswerFarFromMedia, CancelLeg, DeleteMedia, Drop,
                                     EndDialog, HandoffFinished, HandoffStarted, Relay, Reply,
                                     ReplyCodeCall, ResumeFar, RingMobile, Save, Send, Switch)
from routing.handoff.sdp import bump_origin_version, is_hold, placeholder_sdp, restrict_codecs
from routing.handoff.state import (LEG_PREFIX, Device, Leg, Outcome, Phase, Sender, Side, StitchedCall,
                                   all_keys, call_key, device_key, leg_key, state_of)

pytestmark = pytest.mark.unit

HOLD = "v=0\r\nc=IN IP4 10.0.0.3\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"
TALK = "v=0\r\nc=IN IP4 10.0.0.3\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n"


def call_on_desk(invite_cseq: int = 10) -> StitchedCall:
    """A trunk call to the DID, answered on the desk (the far end is D1's caller)."""
    far = Leg(Device.FAR, "c1", "far-tag", "sip:carol@10.0.0.2", "sip:3125550199@pbx",
              local_uri="sip:1001@pbx", local_tag="desk-tag", cseq=0)
    desk = Leg(Device.DESK, "c1", "desk-tag", "sip:desk@10.0.0.3", "sip:1001@pbx",
               local_uri="sip:3125550199@pbx", local_tag="far-tag", cseq=invite_cseq)
    return model.answered("1001", "c1", far, desk, Side.CALLER, "+13125550199", "Carol")


def mobile_leg(call: StitchedCall) -> Leg:
    return Leg(Device.MOBILE, call.pending.leg_call_id, "mob-tag", "sip:m@10.0.0.2",
               "sip:+19175550123@pbx", local_uri="sip:+13125550199@pbx",
               local_tag=call.pending.local_tag, sdp=TALK)


def handed_to_mobile() -> StitchedCall:
    call = call_on_desk()
    model.start_to_mobile(call, via_refer=True)
    model.mobile_answered(call, mobile_leg(call))
    return call


def kinds(actions) -> list[type]:
    return [type(a) for a in actions]


def sent(actions, method: str) -> list[Send]:
    return [a for a in actions if isinstance(a, Send) and a.method == method]


def cseq_of(send: Send) -> int:
    return int(next(h for h in send.headers.split("\r\n") if h.startswith("CSeq:")).split()[1])


# ---- answered, senders, state ------------------------------------------------------------------

def test_given_an_answered_trunk_call_then_it_is_connected_with_the_far_end_as_caller():
    call = call_on_desk()
    assert call.phase is Phase.CONNECTED and not call.stitched
    assert call.far.device is Device.FAR and call.near.device is Device.DESK
    assert call.d1_tags == ("far-tag", "desk-tag")


def test_given_a_desk_placed_call_then_the_far_end_is_the_callee():
    desk = Leg(Device.DESK, "c2", "d", "sip:desk@x", "sip:1001@pbx", "sip:n@pbx", "f", cseq=0)
    far = Leg(Device.FAR, "c2", "f", "sip:gw@x", "sip:n@pbx", "sip:1001@pbx", "d", cseq=5)
    call = model.answered("1001", "c2", desk, far, Side.CALLEE, "+13125550188", "")
    assert call.far is far and call.near is desk and call.d1_tags == ("d", "f")


def test_given_a_call_then_senders_are_told_apart_by_call_id_and_tag():
    call = call_on_desk()
    assert model.sender_of(call, "c1", "far-tag") is Sender.FAR
    assert model.sender_of(call, "c1", "desk-tag") is Sender.NEAR
    assert model.sender_of(call, "c1", "someone") is Sender.OTHER
    assert model.sender_of(call, "other", "far-tag") is Sender.OTHER
    call = handed_to_mobile()
    assert model.sender_of(call, "c1", "desk-tag") is Sender.DEPARTED
    assert model.sender_of(call, call.near.call_id, "mob-tag") is Sender.NEAR


def test_given_a_call_then_its_state_survives_json_exactly():
    call = handed_to_mobile()
    again = StitchedCall.from_json(call.to_json())
    assert again == call and again.phase is Phase.STITCHED and again.near.device is Device.MOBILE


def test_given_a_handed_off_call_then_its_keys_cover_d1_the_leg_and_the_device():
    call = handed_to_mobile()
    values, gone = state_of(call)
    assert values[call_key("c1")] == call.to_json()
    assert values[device_key("1001", Device.MOBILE)] == "c1"
    assert values[leg_key(call.near.call_id)] == "c1"
    assert gone == [device_key("1001", Device.DESK)]
    assert set(values) <= set(all_keys(call))


def test_given_a_failed_handoff_then_its_leg_is_still_released_with_the_call():
    call = call_on_desk()
    model.start_to_mobile(call, via_refer=True)
    leg = call.pending.leg_call_id
    model.mobile_refused(call, 603, "Decline")
    assert leg_key(leg) in all_keys(call) and leg_key(leg) not in state_of(call)[0]


# ---- in D1: relaying and the CSeq rule ---------------------------------------------------------

def test_given_both_parties_in_d1_then_requests_are_relayed_unchanged():
    call = call_on_desk()
    actions = model.in_dialog(call, Sender.FAR, "INVITE", 1, TALK)
    assert actions == [Relay(None), Save(durable=False)]
    assert call.near.cseq == 10         # the desk has seen 10 (the INVITE) and 1: max stays


def test_given_the_desk_holds_then_the_call_knows_the_far_end_is_held():
    call = call_on_desk()
    model.in_dialog(call, Sender.NEAR, "INVITE", 2, HOLD)
    assert call.far_held and call.far.cseq == 2
    model.in_dialog(call, Sender.NEAR, "INVITE", 3, TALK)
    assert not call.far_held


def test_given_a_failed_handoff_then_the_far_ends_later_bye_is_renumbered_above_the_notify():
    """The second bug of issue 9: the proxy's NOTIFY used up the far end's next number."""
    call = call_on_desk(invite_cseq=10)
    model.start_to_mobile(call, via_refer=True)
    actions = model.mobile_refused(call, 603, "Decline")
    notify = sent(actions, "NOTIFY")[0]
    assert cseq_of(notify) == 11 and "SIP/2.0 603 Decline" in notify.body
    assert "Contact: <sip:carol@10.0.0.2>" in notify.headers     # the desk's target stays
    assert call.phase is Phase.CONNECTED and call.near.shift == 1
    bye = model.in_dialog(call, Sender.FAR, "BYE", 11)
    assert Relay(12) in bye and Drop("hung up by the far end") in bye


def test_given_a_renumbered_invite_then_its_ack_carries_the_same_number():
    call = call_on_desk(invite_cseq=10)
    model.start_to_mobile(call, via_refer=True)
    model.mobile_refused(call, 486, "Busy Here")
    assert model.in_dialog(call, Sender.FAR, "INVITE", 11, TALK)[0] == Relay(12)
    assert model.in_dialog(call, Sender.FAR, "ACK", 11) == [Relay(12), Save(durable=False)]


def test_given_both_parties_in_d1_when_the_desk_hangs_up_while_the_mobile_rings_then_it_stops():
    call = call_on_desk()
    model.start_to_mobile(call, via_refer=True)
    leg = call.pending.leg_call_id
    actions = model.in_dialog(call, Sender.NEAR, "BYE", 3)
    assert CancelLeg(leg) in actions and Relay(None) in actions
    assert any(isinstance(a, HandoffFinished) and a.outcome is Outcome.FAILED for a in actions)
    assert isinstance(actions[0], Drop) and call.pending is None


# ---- desk → mobile -----------------------------------------------------------------------------

def test_given_a_refer_to_the_code_then_it_is_accepted_and_the_mobile_rung():
    call = call_on_desk()
    actions = model.start_to_mobile(call, via_refer=True, domain="pbx")
    assert kinds(actions) == [Reply, HandoffStarted, Save, RingMobile]
    assert actions[0] == Reply(202, "Accepted") and call.phase is Phase.RINGING
    assert call.pending.leg_call_id.startswith(LEG_PREFIX)


def test_given_a_refusal_or_a_ringing_handoff_then_no_second_handoff_starts():
    call = call_on_desk()
    assert model.start_to_mobile(call, True, refusal="No Twin Number Set") == [
        Reply(403, "No Twin Number Set")]
    model.start_to_mobile(call, True)
    assert model.start_to_mobile(call, True) == [Reply(491, "Handoff Already In Progress")]
    mobile_call = handed_to_mobile()
    assert model.start_to_mobile(mobile_call, True) == [Reply(403, "Call Is Not On The Desk")]


def test_given_the_mobile_answers_a_transfer_then_media_switches_and_the_desk_gets_notify_200():
    call = call_on_desk()
    model.start_to_mobile(call, via_refer=True)
    pending, mobile = call.pending, mobile_leg(call)
    actions = model.mobile_answered(call, mobile)
    assert actions[0] == Switch(mobile, pending.via_branch, "desk-tag")
    assert "SIP/2.0 200 OK" in sent(actions, "NOTIFY")[0].body
    assert actions[-1] == HandoffFinished(pending.handoff_id, Outcome.COMPLETED, True)
    assert call.phase is Phase.STITCHED and call.near is mobile and call.handoffs == 1
    assert ResumeFar() not in actions


def test_given_the_desk_held_before_the_transfer_then_the_hold_is_taken_back():
    call = call_on_desk()
    model.in_dialog(call, Sender.NEAR, "INVITE", 2, HOLD)
    model.start_to_mobile(call, via_refer=True)
    actions = model.mobile_answered(call, mobile_leg(call))
    assert ResumeFar() in actions and not call.far_held
    resume = model.resume_request(call, "sdp", "sip:handoff@pbx")
    assert cseq_of(resume) == 3 and "tag=desk-tag" in resume.headers   # as the departed desk
    assert "Contact: <sip:handoff@pbx>" in resume.headers


def test_given_the_code_dialled_with_the_call_held_then_the_code_call_ends_480_and_desk_bye():
    call = call_on_desk()
    actions = model.start_to_mobile(call, False, code_call="k1", code_cseq="1")
    assert actions[0] == Reply(180, "Ringing Your Mobile")
    actions = model.mobile_answered(call, mobile_leg(call))
    assert ReplyCodeCall("k1", "1", 480, "Call Moved To Your Mobile") in actions
    assert sent(actions, "BYE")[0].target == "sip:desk@10.0.0.3"
    assert not sent(actions, "NOTIFY")


def test_given_the_mobile_declines_a_dialled_handoff_then_the_code_call_gets_the_reason():
    call = call_on_desk()
    model.start_to_mobile(call, False, code_call="k1", code_cseq="1")
    helper = call.pending.helper_tag
    actions = model.mobile_refused(call, 603, "Decline")
    assert DeleteMedia(helper) in actions
    assert ReplyCodeCall("k1", "1", 603, "Decline") in actions
    assert not sent(actions, "BYE") and call.near.shift == 0      # nothing used up in D1


def test_given_the_code_call_is_cancelled_then_the_mobile_stops_ringing():
    """The limit of issue 9: hanging up the code call early cancels the mobile."""
    call = call_on_desk()
    model.start_to_mobile(call, False, code_call="k1", code_cseq="1")
    leg, helper, handoff = call.pending.leg_call_id, call.pending.helper_tag, call.pending.handoff_id
    actions = model.code_call_cancelled(call)
    assert actions == [Save(), CancelLeg(leg), DeleteMedia(helper),
                       ReplyCodeCall("k1", "1", 487, "Request Terminated"),
                       HandoffFinished(handoff, Outcome.CANCELLED)]
    assert call.pending is None and call.phase is Phase.CONNECTED


def test_given_a_handoff_that_never_got_a_final_reply_then_the_next_one_replaces_it():
    call = call_on_desk()
    model.start_to_mobile(call, via_refer=True, now=1000.0)
    old_leg = call.pending.leg_call_id
    assert model.start_to_mobile(call, True, now=1010.0) == [
        Reply(491, "Handoff Already In Progress")]
    actions = model.start_to_mobile(call, True, now=1000.0 + model.HANDOFF_STALE_S + 1)
    assert CancelLeg(old_leg) in actions and Reply(202, "Accepted") in actions
    assert any(isinstance(a, HandoffFinished) and a.outcome is Outcome.NO_ANSWER
               for a in actions)
    assert call.pending.leg_call_id != old_leg


@pytest.mark.parametrize("code, outcome", [(486, Outcome.DECLINED), (603, Outcome.DECLINED),
                                           (408, Outcome.NO_ANSWER), (480, Outcome.NO_ANSWER),
                                           (503, Outcome.FAILED), (500, Outcome.FAILED)])
def test_given_a_refused_handoff_then_its_outcome_follows_the_reply(code, outcome):
    call = call_on_desk()
    model.start_to_mobile(call, via_refer=True)
    assert model.mobile_refused(call, code, "x")[-1].outcome is outcome


# ---- stitched: the proxy stands in for the departed device -------------------------------------

def test_given_a_stitched_call_when_the_far_end_hangs_up_then_the_mobile_gets_bye_and_d1_ends():
    """The first bug of issue 9: the dialog module must learn that D1 ended."""
    call = handed_to_mobile()
    actions = model.in_dialog(call, Sender.FAR, "BYE", 5)
    assert actions[0] == Reply(200, "OK")
    assert sent(actions, "BYE")[0].target == "sip:m@10.0.0.2"
    assert kinds(actions)[1] is Drop and kinds(actions)[-2:] == [DeleteMedia, EndDialog]
    assert call.phase is Phase.ENDED


def test_given_a_stitched_call_when_the_mobile_hangs_up_then_the_far_end_gets_bye_from_the_desk():
    call = handed_to_mobile()
    actions = model.in_dialog(call, Sender.NEAR, "BYE", 2)
    bye = sent(actions, "BYE")[0]
    assert bye.target == "sip:carol@10.0.0.2" and "tag=desk-tag" in bye.headers
    assert EndDialog() in actions


def test_given_a_resumed_far_end_then_the_final_bye_is_numbered_above_the_resume():
    call = call_on_desk()
    model.in_dialog(call, Sender.NEAR, "INVITE", 2, HOLD)
    model.start_to_mobile(call, via_refer=True)
    model.mobile_answered(call, mobile_leg(call))
    resume = model.resume_request(call, "sdp", "sip:handoff@pbx")
    bye = sent(model.in_dialog(call, Sender.NEAR, "BYE", 2), "BYE")[0]
    assert cseq_of(bye) == cseq_of(resume) + 1


def test_given_a_stitched_call_then_far_reinvites_are_answered_from_media_and_others_locally():
    call = handed_to_mobile()
    assert model.in_dialog(call, Sender.FAR, "INVITE", 6, HOLD) == [AnswerFarFromMedia()]
    assert model.in_dialog(call, Sender.FAR, "OPTIONS", 7) == [Reply(200, "OK")]
    assert model.in_dialog(call, Sender.FAR, "ACK", 6) == [AbsorbAck()]
    assert model.in_dialog(call, Sender.DEPARTED, "BYE", 4) == [Reply(200, "OK")]
    assert model.in_dialog(call, Sender.OTHER, "BYE", 1)[0].code == 481


def test_given_the_new_near_end_refreshes_then_it_gets_its_sdp_back_with_a_higher_version():
    call = handed_to_mobile()
    call.near.given_sdp = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n"
    actions = model.in_dialog(call, Sender.NEAR, "INVITE", 2, TALK)
    assert actions == [Save(), Reply(200, "OK", "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\na=sendrecv\r\n")]
    held = model.in_dialog(call, Sender.NEAR, "INVITE", 3, HOLD)[1]
    assert "a=recvonly" in held.sdp and "o=- 1 3 " in held.sdp          # RFC 3264 §6.1


def test_given_a_call_on_the_mobile_when_the_desk_takes_it_then_the_mobile_gets_bye():
    call = handed_to_mobile()
    desk = Leg(Device.DESK, "k2", "desk2", "sip:desk@10.0.0.3", "sip:1001@pbx",
               "sip:*55@pbx", "ours", sdp=TALK, given_sdp=TALK)
    actions = model.desk_answered(call, desk, "v9")
    assert actions[:3] == [Save(), Reply(200, "OK", TALK), Switch(desk, "v9", "mob-tag")]
    assert sent(actions, "BYE")[0].target == "sip:m@10.0.0.2"
    assert call.near is desk and call.handoffs == 2
    assert model.sender_of(call, call.departed[-1].split(" ")[0], "mob-tag") is Sender.DEPARTED


def test_given_back_and_forth_three_times_then_every_device_that_left_is_departed():
    call = call_on_desk()
    for n in range(3):
        model.start_to_mobile(call, via_refer=True)
        model.mobile_answered(call, mobile_leg(call))
        model.desk_answered(call, Leg(Device.DESK, f"k{n}", f"d{n}", "sip:desk@x", "sip:1001@p",
                                      "sip:*55@p", "o"), f"v{n}")
    assert call.handoffs == 6 and len(call.departed) == 6 and call.near.device is Device.DESK
    assert model.in_dialog(call, Sender.DEPARTED, "BYE", 9) == [Reply(200, "OK")]


def test_given_the_dialog_module_times_d1_out_then_both_sides_get_bye_from_the_proxy():
    call = call_on_desk()
    actions = model.dialog_timed_out(call)
    byes = sent(actions, "BYE")
    assert {b.target for b in byes} == {"sip:carol@10.0.0.2", "sip:desk@10.0.0.3"}
    assert isinstance(actions[0], Drop) and call.phase is Phase.ENDED


def test_given_a_call_ending_while_the_mobile_rings_then_the_ringing_is_cancelled():
    call = handed_to_mobile()
    call = StitchedCall.from_json(call.to_json())
    model.desk_answered(call, Leg(Device.DESK, "k", "d", "sip:desk@x", "sip:1001@p", "s", "o"),
                        "v")
    model.start_to_mobile(call, via_refer=True)
    leg = call.pending.leg_call_id
    actions = model.in_dialog(call, Sender.FAR, "BYE", 9)
    assert CancelLeg(leg) in actions and EndDialog() in actions


# ---- SDP and messages --------------------------------------------------------------------------

def test_given_the_placeholder_then_it_offers_pcmu_pcma_and_dtmf_on_a_dead_address():
    sdp = placeholder_sdp("1")
    assert "c=IN IP4 192.0.2.1" in sdp and "m=audio 9 RTP/AVP 0 8 101" in sdp


def test_given_a_device_that_offers_only_pcma_then_the_answer_keeps_only_pcma():
    ours = placeholder_sdp("1")
    desk = "v=0\r\nm=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    restricted = restrict_codecs(ours, desk)
    assert "m=audio 9 RTP/AVP 8" in restricted and "PCMU" not in restricted


def test_given_hold_forms_then_they_are_recognised():
    assert is_hold(HOLD) and is_hold("c=IN IP4 0.0.0.0\r\n") and not is_hold(TALK)
    assert bump_origin_version("o=- 7 41 IN IP4 x\r\n") == "o=- 7 42 IN IP4 x\r\n"


def test_given_the_mobile_invite_then_it_shows_the_far_end_and_names_the_did():
    call = call_on_desk()
    model.start_to_mobile(call, via_refer=True)
    headers = model.invite_to_mobile(call, call.pending, "sip:+19175550123@gw", "pbx",
                                     "sip:handoff@pbx", "+12125550101")
    assert 'From: "Carol" <sip:+13125550199@pbx>' in headers
    assert "Diversion: <sip:+12125550101@pbx>" in headers


@pytest.mark.parametrize("refer_to, yes", [("<sip:*55@pbx>", True), ("tel:*55", True),
                                           ("<sip:*56@pbx>", False), ("", False)])
def test_given_a_refer_to_then_the_handoff_code_is_recognised(refer_to, yes):
    assert model.handoff_code_target(refer_to, "*55") is yes


def _transitions():
    """(name, actions) of every transition that both saves and sends."""
    call = call_on_desk()
    yield "start", model.start_to_mobile(call, via_refer=True)
    yield "refused", model.mobile_refused(call, 603, "Decline")
    model.in_dialog(call, Sender.NEAR, "INVITE", 2, HOLD)
    model.start_to_mobile(call, False, code_call="k1", code_cseq="1")
    yield "cancelled", model.code_call_cancelled(call)
    model.start_to_mobile(call, via_refer=True)
    yield "answered", model.mobile_answered(call, mobile_leg(call))
    yield "to desk", model.desk_answered(call, Leg(Device.DESK, "k", "d", "sip:d@x",
                                                   "sip:1001@p", "s", "o"), "v")


def test_given_any_transition_then_its_state_is_saved_before_anything_is_sent():
    """Another worker handles the answer to what is sent, and must find the new state."""
    outgoing = (Send, RingMobile, ReplyCodeCall, CancelLeg, ResumeFar)
    for name, actions in _transitions():
        sends = [i for i, a in enumerate(actions) if isinstance(a, outgoing)]
        saves = [i for i, a in enumerate(actions) if isinstance(a, Save)]
        assert saves and sends and saves[0] < sends[0], (name, kinds(actions))
        if ResumeFar() in actions:
            assert saves[-1] > actions.index(ResumeFar()), name


def test_given_a_bye_while_the_mobile_rings_then_the_call_is_released_before_the_cancel():
    """The mobile's 487 to that CANCEL is handled by another worker: it must find no call."""
    call = call_on_desk()
    model.start_to_mobile(call, via_refer=True)
    actions = model.in_dialog(call, Sender.NEAR, "BYE", 3)
    assert kinds(actions).index(Drop) < kinds(actions).index(CancelLeg)


@pytest.mark.parametrize("offer, answered", [("sendonly", "recvonly"), ("inactive", "inactive"),
                                             ("recvonly", "sendonly"), ("sendrecv", "sendrecv")])
def test_given_an_offer_direction_then_the_answer_mirrors_it(offer, answered):
    from routing.handoff.sdp import answer_direction
    answer = answer_direction(f"v=0\r\nm=audio 1 RTP/AVP 0\r\na={offer}\r\n", TALK)
    assert f"a={answered}" in answer and answer.count("a=") == 1
