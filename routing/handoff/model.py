"""The stitched call: every answered call through the proxy, as plain data and pure transitions.

A call has a far end (the other party: its dialog "D1" and its RTP stream are never disturbed)
and a near end (the subscriber's device now: desk or mobile). A handoff replaces the near end.
Once the original near end has left D1, the proxy stands in for it there, and the new near end
talks to the proxy over a leg of its own (a dialog the proxy originated to the mobile, or
accepted from the desk).

Both ends are `Leg`s alike: each knows the party's tags, contact and URI, what the proxy says
as From when it speaks to that party, and the CSeq numbers that party has seen. A transition
takes the call and one event and returns the `Action`s to carry out; routing.handoff.routes
carries them out with KSR and holds no call logic. The phase says where the call is:

    CONNECTED --REFER/code call--> RINGING --mobile answers--> STITCHED --REFER/code--> RINGING
        |  ^                         |                          |  ^                       |
        |  +---decline/timeout/------+                          |  +---decline/cancel------+
        |      code call cancelled                              |
        +--- desk dials the code (call on the mobile) ---> STITCHED (desk answered at once)
    any phase --BYE from the far or the near end, or the dialog module's timeout--> ENDED

The CSeq rule: a request the proxy sends in a party's dialog uses up a number of that
direction. While both parties are still in D1 (CONNECTED, RINGING from CONNECTED), the proxy
relays the far end's later requests to the device renumbered by what it used up (`shift`), and
restores the number in the replies.

The state rule: a transition's Save comes before anything it sends. Another worker handles
the answer to what was sent (a mobile's immediate 603, the desk's BYE right after its
NOTIFY) and must find the call as the transition left it.
"""
from __future__ import annotations

import re
from typing import Optional

from .actions import (AbsorbAck, Action, AnswerFarFromMedia, CancelLeg, DeleteMedia, Drop, EndDialog,
                      HandoffFinished, HandoffStarted, Relay, Reply, ReplyCodeCall, ResumeFar,
                      RingMobile, Save, Send, Switch)
from .sdp import answer_direction, bump_origin_version, is_hold
from .state import (Device, Leg, Outcome, Pending, Phase, Sender, Side, StitchedCall,
                    new_leg_call_id, new_tag)

# ---- a call is answered ------------------------------------------------------------------------

def answered(extension: str, call_id: str, caller: Leg, callee: Leg, far_side: Side,
             far_number: str, far_name: str) -> StitchedCall:
    """A 2xx to an initial INVITE. `caller` and `callee` are D1's two parties, each with the
    CSeq number it has seen from the other and the URI/tag the proxy would speak to it as."""
    caller.local_contact, callee.local_contact = callee.contact, caller.contact
    far, near = (caller, callee) if far_side is Side.CALLER else (callee, caller)
    return StitchedCall(call_id, extension, far=far, near=near, far_side=far_side,
                        d1_tags=(caller.tag, callee.tag), far_number=far_number,
                        far_name=far_name)


# ---- who sent a request ------------------------------------------------------------------------

def sender_of(call: StitchedCall, call_id: str, from_tag: str) -> Sender:
    if call_id == call.call_id:
        if from_tag == call.far.tag:
            return Sender.FAR
        if not call.stitched and from_tag == call.near.tag:
            return Sender.NEAR
    elif call_id == call.near.call_id:
        return Sender.NEAR
    if f"{call_id} {from_tag}" in call.departed or any(
            d.split(" ")[0] == call_id != call.call_id for d in call.departed):
        return Sender.DEPARTED
    return Sender.OTHER


# ---- transitions -------------------------------------------------------------------------------

def in_dialog(call: StitchedCall, sender: Sender, method: str, cseq: int,
              sdp: str = "") -> list[Action]:
    """An in-dialog request of the call (any phase) other than a REFER to the handoff code
    (start_to_mobile)."""
    if not call.stitched:
        return _in_d1(call, sender, method, cseq, sdp)
    if method == "ACK":
        return [AbsorbAck()]                    # ACKs for the proxy's own 200s end here
    if sender is Sender.FAR:
        return _from_far_stitched(call, method)
    if sender is Sender.NEAR:
        return _from_near_stitched(call, method, sdp)
    if sender is Sender.DEPARTED:
        return [Reply(200, "OK")]
    return [Reply(481, "Call/Transaction Does Not Exist")]


def _in_d1(call: StitchedCall, sender: Sender, method: str, cseq: int,
           sdp: str) -> list[Action]:
    """Both parties still in D1: relay, keeping count of the numbers each has seen."""
    if sender not in (Sender.FAR, Sender.NEAR):
        return [Relay()]
    to = call.near if sender is Sender.FAR else call.far
    renumbered = cseq + to.shift
    if method not in ("ACK", "CANCEL"):
        to.cseq = max(to.cseq, renumbered)
    if sender is Sender.NEAR and method == "INVITE" and sdp:
        call.far_held = is_hold(sdp)
    relay = Relay(renumbered if to.shift else None)
    if method == "BYE":
        drop = Drop("hung up by the far end" if sender is Sender.FAR
                    else f"hung up on the {call.near.device.value}")
        return [drop, *_stop_pending(call, Outcome.FAILED), relay]
    return [relay, Save(durable=False)]


def _from_far_stitched(call: StitchedCall, method: str) -> list[Action]:
    if method == "BYE":
        call.phase = Phase.ENDED
        return [Reply(200, "OK"), Drop("hung up by the far end"),
                *_stop_pending(call, Outcome.FAILED), call.near.request("BYE", count=False),
                DeleteMedia(), EndDialog()]
    if method == "INVITE":
        return [AnswerFarFromMedia()]
    return [Reply(200, "OK")]


def _from_near_stitched(call: StitchedCall, method: str, sdp: str) -> list[Action]:
    if method == "BYE":
        call.phase = Phase.ENDED
        return [Reply(200, "OK"), Drop(f"hung up on the {call.near.device.value}"),
                *_stop_pending(call, Outcome.FAILED), call.far.request("BYE", count=False),
                DeleteMedia(), EndDialog()]
    if method == "INVITE":
        # A refresh or hold from the new near end: its media address is kept as it was, in
        # the direction that answers its offer (a hold is answered recvonly).
        call.near.given_sdp = bump_origin_version(call.near.given_sdp)
        return [Save(), Reply(200, "OK", answer_direction(sdp, call.near.given_sdp))]
    return [Reply(200, "OK")]


def _stop_pending(call: StitchedCall, outcome: Outcome) -> list[Action]:
    """The call ends while the mobile rings for a handoff: stop the ringing."""
    pending, call.pending = call.pending, None
    if pending is None:
        return []
    actions: list[Action] = [CancelLeg(pending.leg_call_id), DeleteMedia(pending.helper_tag)]
    if pending.code_call:
        actions.append(ReplyCodeCall(pending.code_call, pending.code_cseq, 487,
                                     "Request Terminated"))
    return actions + [HandoffFinished(pending.handoff_id, outcome)]


# Longer than any ring of the mobile's leg (tm's fr_inv_timer, 30 s): a handoff still
# pending after this never got a final reply (a mobile that sent nothing at all: tm's own
# timeout reaches no route) and gives way to the next one.
HANDOFF_STALE_S = 40


def start_to_mobile(call: StitchedCall, via_refer: bool, code_call: str = "",
                    code_cseq: str = "", refusal: Optional[str] = None,
                    domain: str = "", now: float = 0.0) -> list[Action]:
    """The desk asked for the mobile: by REFER to the code, or by dialling it while held."""
    if call.near.device is not Device.DESK:
        return [Reply(403, "Call Is Not On The Desk")]
    stale: list[Action] = []
    if call.pending and now - call.pending.started_at > HANDOFF_STALE_S:
        stale = _stop_pending(call, Outcome.NO_ANSWER)
    if call.pending:
        return [Reply(491, "Handoff Already In Progress")]
    if refusal:
        return [*stale, Reply(403, refusal)]
    call.pending = Pending(new_leg_call_id(domain or "proxy"), new_tag("t"), new_tag("h"),
                           new_tag("v"), code_call=code_call, code_cseq=code_cseq,
                           started_at=now)
    call.legs.append(call.pending.leg_call_id)
    call.phase = Phase.RINGING
    reply = Reply(202, "Accepted") if via_refer else Reply(180, "Ringing Your Mobile")
    return [*stale, reply, HandoffStarted(Device.DESK, Device.MOBILE), Save(),
            RingMobile(call.pending)]


def mobile_answered(call: StitchedCall, mobile: Leg) -> list[Action]:
    """The mobile took the handoff: switch, release the desk, take back a hold."""
    pending, desk = call.pending, call.near
    actions: list[Action] = [Switch(mobile, pending.via_branch, desk.tag), Save()]
    actions += _tell_desk(call, pending, desk, 200, "OK")
    _leave(call, mobile)
    if call.far_held:
        # The desk held the far end before it handed off: take the hold back, or the far end
        # would never send to the mobile. The one request a handoff can cost the far end.
        call.far_held = False
        actions += [ResumeFar(), Save()]        # it numbers a request toward the far end
    return actions + [HandoffFinished(pending.handoff_id, Outcome.COMPLETED, True)]


def mobile_refused(call: StitchedCall, code: int, reason: str) -> list[Action]:
    """The mobile declined, did not answer, or the trunk failed: the call stays on the desk."""
    pending, call.pending = call.pending, None
    call.phase = Phase.STITCHED if call.stitched else Phase.CONNECTED
    return ([DeleteMedia(pending.helper_tag), Save()]
            + _tell_desk(call, pending, call.near, code, reason or "Failed")
            + [HandoffFinished(pending.handoff_id, Outcome.of_reply(code))])


def code_call_cancelled(call: StitchedCall) -> list[Action]:
    """The desk hung up its code call before the mobile answered: stop ringing the mobile."""
    call.phase = Phase.STITCHED if call.stitched else Phase.CONNECTED
    stop = _stop_pending(call, Outcome.CANCELLED)
    return [Save(), *stop]


def desk_answered(call: StitchedCall, desk: Leg, via_branch: str) -> list[Action]:
    """The desk dialled the code while the call is on the mobile; the proxy has answered it
    with the far end's media: switch and release the mobile."""
    old = call.near
    _leave(call, desk)
    return [Save(), Reply(200, "OK", desk.given_sdp), Switch(desk, via_branch, old.tag),
            old.request("BYE", count=False)]


def dialog_timed_out(call: StitchedCall) -> list[Action]:
    """The dialog module ended D1 (its lifetime ran out): end both sides from the proxy."""
    call.phase = Phase.ENDED
    return [Drop("ended by the proxy (dialog timeout)"), *_stop_pending(call, Outcome.FAILED),
            call.far.request("BYE", count=False), call.near.request("BYE", count=False),
            DeleteMedia()]


def _tell_desk(call: StitchedCall, pending: Pending, desk: Leg, code: int,
               reason: str) -> list[Action]:
    """How a handoff to the mobile ended, told the way it was asked: NOTIFY for a transfer,
    the final reply to the code call otherwise (and then BYE to the held call on success)."""
    if pending.code_call:
        moved = code < 300
        actions: list[Action] = [ReplyCodeCall(pending.code_call, pending.code_cseq,
                                               480 if moved else code,
                                               "Call Moved To Your Mobile" if moved else reason)]
        return actions + ([desk.request("BYE", count=False)] if moved else [])
    body = f"SIP/2.0 {code} {reason}\r\n"
    extra = ("Event: refer\r\n"
             "Subscription-State: terminated;reason=noresource\r\n"
             "Content-Type: message/sipfrag;version=2.0\r\n")
    return [desk.request("NOTIFY", body, extra, count=not call.stitched)]


def _leave(call: StitchedCall, new_near: Leg) -> None:
    """`new_near` becomes the near end; the old one is remembered as departed (whatever it
    still sends is answered by the proxy)."""
    old = call.near
    call.departed.append(f"{old.call_id} {old.tag}")
    if new_near.call_id not in call.legs:
        call.legs.append(new_near.call_id)
    call.near = new_near
    call.pending = None
    call.phase = Phase.STITCHED
    call.handoffs += 1


def resume_request(call: StitchedCall, sdp: str, contact: str) -> Send:
    """The re-INVITE that takes back the desk's hold: from now on the far end's requests
    come to the proxy itself (`contact`), which stands in for the desk."""
    call.far.local_contact = contact
    return call.far.request("INVITE", sdp, "Content-Type: application/sdp\r\n", count=False)


# ---- messages the proxy sends ------------------------------------------------------------------

def _name_addr(name: str, uri: str) -> str:
    safe = (name or "").replace('"', "").replace("\\", "")
    return f'"{safe}" <{uri}>' if safe else f"<{uri}>"


def invite_to_mobile(call: StitchedCall, pending: Pending, mobile_uri: str, domain: str,
                     contact: str, did: str) -> str:
    """Headers of the INVITE the proxy sends the mobile: it shows the far end's identity."""
    far = _name_addr(call.far_name, f"sip:{call.far_number}@{domain}")
    return (f"From: {far};tag={pending.local_tag}\r\n"
            f"To: <{mobile_uri}>\r\n"
            f"Call-ID: {pending.leg_call_id}\r\n"
            f"CSeq: 1 INVITE\r\n"
            f"Contact: <{contact}>\r\n"
            f"Max-Forwards: 70\r\n"
            f"P-Asserted-Identity: {far}\r\n"
            f"Diversion: <sip:{did}@{domain}>;reason=deflection;counter=1;privacy=off\r\n"
            f"Content-Type: application/sdp\r\n")


def handoff_code_target(refer_to: str, code: str) -> bool:
    """Whether a Refer-To header value points at the handoff code (sip:*55@… or tel:*55)."""
    m = re.search(r"(?:sips?|tel):([^@;>?]+)", refer_to or "")
    return bool(m) and m.group(1) == code
