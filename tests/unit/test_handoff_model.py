"""The stitched-call model: who sent what, leaving and joining, the SDP and message helpers."""
from __future__ import annotations

import pytest

from routing import handoff as model
from routing.handoff import Leg, Pending, Sender, StitchedCall

pytestmark = pytest.mark.unit


def call_on_desk() -> StitchedCall:
    desk = Leg("desk", "c1", "desk-tag", "sip:desk@10.0.0.3", remote_uri="sip:1001@pbx",
               local_uri="sip:3125550199@trunk", local_tag="far-tag", cseq=1)
    return StitchedCall("c1", "1001", far_tag="far-tag", far_side="caller",
                        d1_from_tag="far-tag", d1_to_tag="desk-tag",
                        far_uri="sip:3125550199@trunk", far_number="+13125550199",
                        far_name="Carol", far_contact="sip:carol@10.0.0.2", near=desk,
                        d1_near_uri="sip:1001@pbx", d1_near_tag="desk-tag")


def test_given_a_call_on_the_desk_then_senders_are_told_apart_by_call_id_and_tag():
    call = call_on_desk()
    assert model.sender_of(call, "c1", "far-tag") is Sender.FAR
    assert model.sender_of(call, "c1", "desk-tag") is Sender.NEAR
    assert model.sender_of(call, "c1", "someone") is Sender.OTHER
    assert model.sender_of(call, "other-call", "far-tag") is Sender.OTHER


def test_given_a_handoff_to_the_mobile_then_the_desk_is_departed_and_the_leg_is_near():
    call = call_on_desk()
    call.pending = Pending("mobile", "twho-1", "t1", "h1", "v1", 0.0)
    mobile = Leg("mobile", "twho-1", "mob-tag", "sip:m@trunk", local_tag="t1")
    old = model.leave(call, mobile)
    assert old.device == "desk" and call.near is mobile and call.handed_off
    assert call.pending is None and call.handoffs == 1
    assert model.sender_of(call, "c1", "desk-tag") is Sender.DEPARTED
    assert model.sender_of(call, "twho-1", "mob-tag") is Sender.NEAR
    # …and back to a desk leg: the mobile leg is now departed as a whole.
    model.leave(call, Leg("desk", "c3", "desk2", "sip:desk@10.0.0.3"))
    assert model.sender_of(call, "twho-1", "mob-tag") is Sender.DEPARTED
    assert call.handoffs == 2


def test_state_round_trips_through_json():
    call = call_on_desk()
    call.pending = Pending("mobile", "twho-1", "t1", "h1", "v1", 12.5, handoff_id=7)
    again = StitchedCall.from_json(call.to_json())
    assert again == call


def test_next_request_advances_the_cseq_and_speaks_for_the_right_side():
    leg = call_on_desk().near
    first = leg.next_request("NOTIFY", "Event: refer\r\n")
    second = leg.next_request("BYE")
    assert "From: <sip:3125550199@trunk>;tag=far-tag" in first       # as the far end, in D1
    assert "To: <sip:1001@pbx>;tag=desk-tag" in first
    assert "CSeq: 2 NOTIFY" in first and "CSeq: 3 BYE" in second
    assert first.endswith("Event: refer\r\n")


def test_the_mobile_invite_shows_the_far_end_and_names_the_did():
    call = call_on_desk()
    pending = Pending("mobile", "twho-1", "t1", "h1", "v1", 0.0)
    headers = model.invite_to_mobile(call, pending, "sip:+19175550123@gw", "pbx",
                                     "sip:handoff@pbx", "+12125550101")
    assert 'From: "Carol" <sip:+13125550199@pbx>;tag=t1' in headers
    assert 'P-Asserted-Identity: "Carol" <sip:+13125550199@pbx>' in headers
    assert "Diversion: <sip:+12125550101@pbx>" in headers
    assert "Call-ID: twho-1" in headers


@pytest.mark.parametrize("refer_to,ok", [("<sip:*55@127.0.0.1>", True), ("sip:*55@pbx;user=phone", True),
                                         ("<tel:*55>", True), ("<sip:*555@pbx>", False),
                                         ("<sip:1002@pbx>", False), ("", False), ("garbage", False)])
def test_refer_to_the_handoff_code_is_recognised(refer_to, ok):
    assert model.handoff_code_target(refer_to, "*55") is ok


def test_codecs_given_to_the_desk_are_those_it_offered():
    offer = model.placeholder_sdp("1")
    desk = "v=0\r\nm=audio 4000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    kept = model.restrict_codecs(offer, desk)
    assert "m=audio 9 RTP/AVP 8 101" in kept
    assert "PCMU" not in kept and "a=rtpmap:101 telephone-event/8000" in kept


@pytest.mark.parametrize("sdp,held", [("a=sendonly\r\n", True), ("a=inactive\r\n", True),
                                      ("c=IN IP4 0.0.0.0\r\n", True), ("a=sendrecv\r\n", False),
                                      ("a=recvonly\r\n", False), ("", False)])
def test_hold_is_recognised(sdp, held):
    assert model.is_hold("v=0\r\n" + sdp) is held


def test_origin_version_goes_up():
    assert "o=- 1 3 IN IP4" in model.bump_origin_version("v=0\r\no=- 1 2 IN IP4 x\r\n")


def test_the_transfer_notify_is_a_final_sipfrag():
    headers, body = model.refer_notify("SIP/2.0 603 Decline")
    assert "Subscription-State: terminated" in headers and "message/sipfrag" in headers
    assert body == "SIP/2.0 603 Decline\r\n"
