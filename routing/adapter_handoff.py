"""KEMI glue of the handoff (see routing.handoff for the model): part of the adapter, the only
code besides routing.adapter that touches KSR.

State: htable `call` (shared memory, every worker; saved to PostgreSQL at shutdown and loaded at
start) holds, per answered call, `c:<D1 Call-ID>` = the StitchedCall JSON, `l:<leg Call-ID>` =
the D1 Call-ID of a leg the proxy made or accepted, and `s:<ext>:<desk|mobile>` = the D1 Call-ID
of the subscriber's call whose near end is that device (how *55 finds the call to take).
"""
from __future__ import annotations

import time
from typing import Optional

import KSR

from rtpctl import AnswerOptions, Client, OfferOptions, RtpctlError
from twinning import licence
from twinning.numbers import is_dialable_twin

from . import handoff as model
from .handoff import Leg, Pending, Sender, StitchedCall

HT = "call"
NEXT = True
DONE = False
MEDIA_FLAGS = dict(replace=["origin", "session-connection"], ice="remove",
                   transport_protocol="RTP/AVP")


def pv(name: str) -> str:
    value = KSR.pv.get(name)
    return "" if value is None else str(value)


def _ht_get(key: str) -> Optional[str]:
    value = KSR.htable.sht_get(HT, key)
    return str(value) if value else None


def _outcome(code: int) -> str:
    if code in (486, 600, 603):
        return "declined"
    if code in (408, 480, 487):
        return "no-answer"
    return "failed"


class HandoffRoutes:
    """Mixed into routing.adapter.Handler (which provides cfg, store, call_log, realm)."""

    rtp: Optional[Client] = None

    # ---- state ----------------------------------------------------------------------------
    def media(self) -> Client:
        if self.rtp is None:
            ng = self.cfg.rtpengine_ng
            self.rtp = Client(ng.host, ng.port, timeout=0.5, retries=2)
        return self.rtp

    @property
    def leg_contact(self) -> str:
        return f"sip:handoff@{self.cfg.proxy_address}:{self.cfg.proxy_port}"

    def load_call(self, call_id: str) -> Optional[StitchedCall]:
        raw = _ht_get(f"c:{call_id}")
        if raw is None:
            d1 = _ht_get(f"l:{call_id}")
            raw = _ht_get(f"c:{d1}") if d1 else None
        return StitchedCall.from_json(raw) if raw else None

    def state_of(self, call: StitchedCall) -> tuple[dict[str, str], list[str]]:
        """The htable entries that describe a call now, and the ones that no longer do."""
        values = {f"c:{call.call_id}": call.to_json(),
                  f"s:{call.extension}:{call.near.device}": call.call_id}
        if call.near.call_id != call.call_id:
            values[f"l:{call.near.call_id}"] = call.call_id
        if call.pending:
            values[f"l:{call.pending.leg_call_id}"] = call.call_id
        other = f"s:{call.extension}:{'desk' if call.near.device == 'mobile' else 'mobile'}"
        gone = [other] if _ht_get(other) == call.call_id else []
        return values, gone

    def put_in_memory(self, values: dict[str, str], gone: list[str]) -> None:
        for key, value in values.items():
            KSR.htable.sht_sets(HT, key, value)
        for key in gone:
            KSR.htable.sht_rm(HT, key)

    def save_call(self, call: StitchedCall) -> None:
        """Shared memory first (every worker sees it at once), then PostgreSQL (a restarted
        proxy loads it back), in one round trip."""
        values, gone = self.state_of(call)
        self.put_in_memory(values, gone)
        self.call_log.state(values, gone)

    def drop_call(self, call: StitchedCall, outcome: str) -> None:
        gone = [f"c:{call.call_id}"]
        for leg_id in [call.near.call_id, *call.departed_legs,
                       *([call.pending.leg_call_id] if call.pending else [])]:
            if leg_id != call.call_id:
                gone.append(f"l:{leg_id}")
        for device in ("desk", "mobile"):
            if _ht_get(f"s:{call.extension}:{device}") == call.call_id:
                gone.append(f"s:{call.extension}:{device}")
        self.put_in_memory({}, gone)
        self.call_log.ended(call.call_id, outcome, gone)

    # ---- a call is answered: remember it, so it can be handed off ---------------------------
    def call_answered(self, kind: str, extension: str, sub_id: str, caller_num: str,
                      caller_name: str, request_contact: str, rang: str = "") -> None:
        """A 2xx to an initial INVITE (reply route). request_contact: the INVITE's Contact,
        i.e. the far end's for a call to the subscriber, the desk's for a call it placed."""
        call_id = pv("$ci")
        if _ht_get(f"c:{call_id}") is not None:
            return                                  # a retransmitted 200
        contact = pv("$(ct{tobody.uri})")
        if kind == "twin":
            if KSR.dispatcher.ds_is_from_list(self.cfg.dispatcher_set) > 0:
                device = "mobile"
            elif pv("$si") == self.voicemail_hostport.split(":")[0]:
                return                              # voicemail: nothing to hand off
            else:
                device = "desk"
            near = Leg(device, call_id, pv("$tt"), contact, remote_uri=pv("$tu"),
                       local_uri=pv("$fu"), local_tag=pv("$ft"), cseq=int(pv("$cs") or 1))
            call = StitchedCall(call_id, extension, far_tag=pv("$ft"), far_side="caller",
                                d1_from_tag=pv("$ft"), d1_to_tag=pv("$tt"), far_uri=pv("$fu"),
                                far_number=caller_num, far_name=caller_name,
                                far_contact=request_contact, near=near, d1_near_uri=pv("$tu"),
                                d1_near_tag=pv("$tt"))
            direction = "inbound"
        else:                                       # the desk placed the call
            device = "desk"
            near = Leg(device, call_id, pv("$ft"), request_contact, remote_uri=pv("$fu"),
                       local_uri=pv("$tu"), local_tag=pv("$tt"), cseq=1)
            call = StitchedCall(call_id, extension, far_tag=pv("$tt"), far_side="callee",
                                d1_from_tag=pv("$ft"), d1_to_tag=pv("$tt"), far_uri=pv("$tu"),
                                far_number=pv("$tU"), far_name="", far_contact=contact,
                                near=near, d1_near_uri=pv("$fu"), d1_near_tag=pv("$ft"),
                                d1_near_cseq=int(pv("$cs") or 1))
            direction = "outbound"
        values, gone = self.state_of(call)
        self.put_in_memory(values, gone)
        self.call_log.answered(call_id, int(sub_id) if sub_id.isdigit() else None, direction,
                               caller_num, pv("$tU"), [d for d in rang.split(",") if d],
                               device, values)

    # ---- in-dialog requests of a known call --------------------------------------------------
    def known_call_request(self) -> bool:
        """In-dialog requests of calls the proxy stands in for (or is handing off)."""
        call = self.load_call(pv("$ci"))
        if call is None:
            return NEXT
        sender = model.sender_of(call, pv("$ci"), pv("$ft"))
        if KSR.is_REFER() and sender is Sender.NEAR and model.handoff_code_target(
                pv("$hdr(Refer-To)"), self.cfg.handoff_code):
            return self.refer_to_mobile(call)
        if not call.handed_off:
            self.track_d1(call, sender)
            if KSR.is_BYE():
                if call.pending:
                    self.cancel_pending(call)
                self.drop_call(call, "hung up by the far end" if sender is Sender.FAR
                               else "hung up by the desk")
            return NEXT
        if KSR.is_ACK():
            return DONE                      # ACKs for the proxy's own 200s end here
        if sender is Sender.FAR:
            return self.from_far_end(call)
        if sender is Sender.NEAR:
            return self.from_near_end(call)
        if sender is Sender.DEPARTED:
            return self.answer_locally(200, "OK")
        return self.answer_locally(481, "Call/Transaction Does Not Exist")

    def track_d1(self, call: StitchedCall, sender: Sender) -> None:
        """While the near end is still in D1: follow both sides' CSeqs (requests the proxy may
        later send there must use higher ones) and whether the near end holds the far end."""
        if KSR.is_ACK() or KSR.is_BYE() or call.near.call_id != call.call_id:
            return                  # an ACK repeats its INVITE's CSeq; a BYE ends the call
        cseq = int(pv("$cs") or 0)
        before = (call.near.cseq, call.d1_near_cseq, call.far_held)
        if sender is Sender.FAR:
            call.near.cseq = max(call.near.cseq, cseq)
        elif sender is Sender.NEAR:
            call.d1_near_cseq = max(call.d1_near_cseq, cseq)
            if KSR.is_INVITE() and KSR.textops.has_body_type("application/sdp") > 0:
                call.far_held = model.is_hold(pv("$rb"))
        if (call.near.cseq, call.d1_near_cseq, call.far_held) != before:
            # Shared memory only: a mid-call CSeq is not worth a database write per request.
            KSR.htable.sht_sets(HT, f"c:{call.call_id}", call.to_json())

    def answer_locally(self, code: int, reason: str, sdp: str = "") -> bool:
        KSR.tm.t_newtran()
        if sdp:
            KSR.hdr.append_to_reply(f"Contact: <{self.leg_contact}>\r\n")
            KSR.textops.set_reply_body(sdp, "application/sdp")
        KSR.tm.t_reply(code, reason)
        return DONE

    def from_far_end(self, call: StitchedCall) -> bool:
        if KSR.is_BYE():
            KSR.rr.loose_route()             # lets the dialog module see D1 end
            self.answer_locally(200, "OK")
            if call.pending:
                self.cancel_pending(call)
            self.send_bye(call.near)
            self.delete_media(call)
            self.drop_call(call, "hung up by the far end")
            return DONE
        if KSR.is_INVITE() and KSR.textops.has_body_type("application/sdp") > 0:
            return self.far_reinvite(call)
        return self.answer_locally(200, "OK")

    def far_reinvite(self, call: StitchedCall) -> bool:
        """A far-end re-INVITE (session refresh, hold, resume): the proxy answers for the near
        end from rtpengine, which keeps every port; the near end is not disturbed."""
        near = call.near
        try:
            self.media().offer(call.call_id, call.far_tag, pv("$rb"),
                               OfferOptions(extra={"to-tag": near.media_tag},
                                            port_latching=True, **MEDIA_FLAGS))
            answer = self.media().answer(call.call_id, call.far_tag, near.media_tag, near.sdp,
                                         AnswerOptions(port_latching=True, **MEDIA_FLAGS))
        except RtpctlError as exc:
            KSR.err(f"re-INVITE of handed-off call {call.call_id}: {exc}\n")
            return self.answer_locally(500, "Media Server Error")
        return self.answer_locally(200, "OK", answer.sdp)

    def from_near_end(self, call: StitchedCall) -> bool:
        if KSR.is_BYE():
            self.answer_locally(200, "OK")
            if call.pending:
                self.cancel_pending(call)
            self.bye_far_end(call)
            self.delete_media(call)
            self.drop_call(call, f"hung up on the {call.near.device}")
            return DONE
        if KSR.is_INVITE():
            # A refresh or hold from the new near end: its media address is kept as it was.
            return self.answer_locally(200, "OK", model.bump_origin_version(call.near.given_sdp))
        return self.answer_locally(200, "OK")

    # ---- desk → mobile -----------------------------------------------------------------------
    def refer_to_mobile(self, call: StitchedCall) -> bool:
        """The desk pressed Handoff: a blind transfer (REFER) to the handoff code."""
        if call.near.device != "desk":
            return self.answer_locally(403, "Call Is Not On The Desk")
        return self.start_to_mobile(call, 202, "Accepted")

    def code_to_mobile(self, call: StitchedCall) -> bool:
        """The desk dialled the handoff code while its call is held: ring the mobile; the
        desk hears ringing, and its code call ends when the handoff does."""
        return self.start_to_mobile(call, 180, "Ringing Your Mobile", pv("$ci"), pv("$cs"))

    def start_to_mobile(self, call: StitchedCall, code: int, reason: str,
                        code_call: str = "", code_cseq: str = "") -> bool:
        if call.pending:
            return self.answer_locally(491, "Handoff Already In Progress")
        refusal = self.twin_refusal(self.store.by_extension(call.extension))
        if refusal:
            return self.answer_locally(403, refusal)
        KSR.tm.t_newtran()
        KSR.tm.t_reply(code, reason)
        return self.ring_mobile(call, code_call, code_cseq)

    def ring_mobile(self, call: StitchedCall, code_call: str = "", code_cseq: str = "") -> bool:
        pending = Pending("mobile", model.new_leg_call_id(self.realm), model.new_tag("t"),
                          model.new_tag("h"), model.new_tag("v"), time.time(),
                          code_call=code_call, code_cseq=code_cseq)
        call.pending = pending
        try:
            offer = self.media().offer(call.call_id, pending.helper_tag,
                                       model.placeholder_sdp(str(int(time.time()))),
                                       OfferOptions(via_branch=pending.via_branch, **MEDIA_FLAGS))
        except RtpctlError as exc:
            KSR.err(f"handoff offer for {call.call_id}: {exc}\n")
            self.handoff_ended(call, 500, "Media Server Error")
            self.save_call(call)
            return DONE
        sub = self.store.by_extension(call.extension)
        KSR.pv.sets("$ru", f"sip:{sub.twin_number}@{self.realm}")
        if KSR.dispatcher.ds_select_domain(self.cfg.dispatcher_set, 8) < 0:
            self.media().delete(call.call_id, from_tag=pending.helper_tag)
            self.handoff_ended(call, 503, "No Trunk Available")
            self.save_call(call)
            return DONE
        mobile_uri = pv("$ru")
        pending.handoff_id = self.call_log.handoff_started(call.call_id, "desk", "mobile")
        self.save_call(call)
        headers = model.invite_to_mobile(call, pending, mobile_uri, self.realm,
                                         self.leg_contact, sub.did)
        KSR.tm.t_uac_send("INVITE", mobile_uri, "", "", headers, offer.sdp)
        return DONE

    def handoff_ended(self, call: StitchedCall, code: int, reason: str,
                      desk: Optional[Leg] = None) -> None:
        """Tell the desk how a handoff to the mobile ended: NOTIFY for a transfer, the final
        reply to its code call otherwise. On success the desk's held leg also gets BYE (a
        transferring desk hangs up by itself after the NOTIFY)."""
        pending = call.pending
        desk = desk or call.near
        if pending and pending.code_call:
            KSR.tmx.t_reply_callid(pending.code_call, pending.code_cseq,
                                   480 if code < 300 else code,
                                   "Call Moved To Your Mobile" if code < 300 else reason)
            if code < 300:
                self.send_bye(desk)
        else:
            self.notify_transfer(call, desk, f"SIP/2.0 {code} {reason}")
        call.pending = None

    def twin_refusal(self, sub) -> Optional[str]:
        if sub is None or not sub.twin_number:
            return "No Twin Number Set"
        if not licence.allows_twinning(sub.license):
            return "License Does Not Include Twinning"
        if not is_dialable_twin(sub.twin_number):
            return "Twin Number Not Allowed"
        return None

    def handoff_leg_reply(self) -> None:
        """Replies to the INVITE the proxy sent the mobile (core reply route, any worker)."""
        if pv("$rm") != "INVITE":
            return
        code = int(pv("$rs") or 0)
        if code < 200:
            return
        call = self.load_call(pv("$ci"))
        if call is None or call.pending is None or call.pending.leg_call_id != pv("$ci"):
            return                                      # a retransmission, or too late
        if code < 300:
            self.mobile_answered(call)
        else:
            self.mobile_refused(call, code, pv("$rr"))

    def mobile_answered(self, call: StitchedCall) -> None:
        pending = call.pending
        started = time.perf_counter()
        mobile = Leg("mobile", pending.leg_call_id, pv("$tt"), pv("$(ct{tobody.uri})"),
                     remote_uri=pv("$tu"), local_uri=pv("$fu"), local_tag=pending.local_tag,
                     cseq=1, sdp=pv("$rb"))
        old = call.near
        try:
            self.media().answer(call.call_id, call.far_tag, mobile.media_tag, mobile.sdp,
                                AnswerOptions(via_branch=pending.via_branch, port_latching=True,
                                              **MEDIA_FLAGS))
            self.media().delete(call.call_id, from_tag=call.far_tag, to_tag=old.media_tag,
                                delete_delay=0)
        except RtpctlError as exc:
            KSR.err(f"handoff switch for {call.call_id}: {exc}\n")
        switch_ms = (time.perf_counter() - started) * 1000
        model.leave(call, mobile)
        call.pending = pending                  # handoff_ended reads how it was asked for
        self.handoff_ended(call, 200, "OK", desk=old)
        if call.far_held:
            self.resume_far_end(call)
        self.save_call(call)
        self.call_log.handoff_finished(pending.handoff_id, "completed", switch_ms, answered=True)
        KSR.info(f"handoff of {call.call_id} desk→mobile: media switched in {switch_ms:.2f} ms\n")

    def mobile_refused(self, call: StitchedCall, code: int, reason: str) -> None:
        pending = call.pending
        try:
            self.media().delete(call.call_id, from_tag=pending.helper_tag, delete_delay=0)
        except RtpctlError as exc:
            KSR.err(f"handoff clean-up for {call.call_id}: {exc}\n")
        KSR.htable.sht_rm(HT, f"l:{pending.leg_call_id}")
        self.call_log.state({}, [f"l:{pending.leg_call_id}"])
        self.handoff_ended(call, code, reason or "Failed")
        self.save_call(call)
        self.call_log.handoff_finished(pending.handoff_id, _outcome(code))

    def cancel_pending(self, call: StitchedCall) -> None:
        KSR.tmx.t_cancel_callid(call.pending.leg_call_id, "1", 0)
        self.call_log.handoff_finished(call.pending.handoff_id, "failed")

    def notify_transfer(self, call: StitchedCall, leg: Leg, status_line: str) -> None:
        """Tell the desk how its transfer ended (RFC 3515 NOTIFY with a sipfrag)."""
        extra, body = model.refer_notify(status_line)
        headers = leg.next_request("NOTIFY", extra + f"Contact: <{self.leg_contact}>\r\n")
        KSR.tm.t_uac_send("NOTIFY", leg.contact, "", "", headers, body)

    def resume_far_end(self, call: StitchedCall) -> None:
        """The desk held the far end before it handed off: take the hold back, or the far end
        would never send to the mobile. The one request a handoff can cost the far end, and
        only in this case; its ports stay as they were."""
        near = call.near
        try:
            offer = self.media().offer(call.call_id, near.media_tag, near.sdp,
                                       OfferOptions(extra={"to-tag": call.far_tag},
                                                    port_latching=True, **MEDIA_FLAGS))
        except RtpctlError as exc:
            KSR.err(f"resume of {call.call_id}: {exc}\n")
            return
        call.d1_near_cseq += 1
        headers = (f"From: <{call.d1_near_uri}>;tag={call.d1_near_tag}\r\n"
                   f"To: <{call.far_uri}>;tag={call.far_tag}\r\n"
                   f"Call-ID: {call.call_id}\r\n"
                   f"CSeq: {call.d1_near_cseq} INVITE\r\n"
                   f"Max-Forwards: 70\r\n"
                   f"Contact: <{self.leg_contact}>\r\n"
                   f"Content-Type: application/sdp\r\n")
        KSR.tm.t_uac_send("INVITE", call.far_contact, "", "", headers, offer.sdp)
        call.far_held = False

    # ---- mobile → desk -----------------------------------------------------------------------
    def handoff_to_desk(self, extension: str) -> bool:
        """The desk dialled the handoff code: answer it at once with the far end's media."""
        d1 = _ht_get(f"s:{extension}:mobile")
        call = self.load_call(d1) if d1 else None
        if call is None or call.near.device != "mobile":
            d1 = _ht_get(f"s:{extension}:desk")
            on_desk = self.load_call(d1) if d1 else None
            if on_desk is not None and on_desk.near.device == "desk":
                return self.code_to_mobile(on_desk)
            return self.answer_locally(480, "No Call To Hand Off")
        if call.pending:
            return self.answer_locally(491, "Handoff Already In Progress")
        if KSR.textops.has_body_type("application/sdp") < 0:
            return self.answer_locally(488, "An SDP Offer Is Needed")
        KSR.tm.t_newtran()
        handoff_id = self.call_log.handoff_started(call.call_id, "mobile", "desk")
        desk_sdp, desk_tag = pv("$rb"), pv("$ft")
        helper, branch = model.new_tag("h"), model.new_tag("v")
        try:
            offer = self.media().offer(call.call_id, helper,
                                       model.placeholder_sdp(str(int(time.time()))),
                                       OfferOptions(via_branch=branch, **MEDIA_FLAGS))
        except RtpctlError as exc:
            KSR.err(f"handoff to desk for {call.call_id}: {exc}\n")
            KSR.tm.t_reply(500, "Media Server Error")
            self.call_log.handoff_finished(handoff_id, "failed")
            return DONE
        # Answer the desk first, then switch: the desk starts sending as soon as it has our
        # SDP, and the far end hears the mobile until the switch a millisecond later.
        given = model.restrict_codecs(offer.sdp, desk_sdp)
        KSR.hdr.append_to_reply(f"Contact: <{self.leg_contact}>\r\n")
        KSR.textops.set_reply_body(given, "application/sdp")
        KSR.tm.t_reply(200, "OK")
        started = time.perf_counter()
        try:
            self.media().answer(call.call_id, call.far_tag, desk_tag, desk_sdp,
                                AnswerOptions(via_branch=branch, port_latching=True,
                                              **MEDIA_FLAGS))
            self.media().delete(call.call_id, from_tag=call.far_tag,
                                to_tag=call.near.media_tag, delete_delay=0)
        except RtpctlError as exc:
            KSR.err(f"handoff switch to desk for {call.call_id}: {exc}\n")
        switch_ms = (time.perf_counter() - started) * 1000
        desk = Leg("desk", pv("$ci"), desk_tag, pv("$(ct{tobody.uri})"), remote_uri=pv("$fu"),
                   local_uri=pv("$tu"), local_tag=pv("$ltt(t)"), cseq=1, sdp=desk_sdp,
                   given_sdp=given)
        old = model.leave(call, desk)
        self.send_bye(old)
        self.save_call(call)
        self.call_log.handoff_finished(handoff_id, "completed", switch_ms, answered=True)
        KSR.info(f"handoff of {call.call_id} mobile→desk: media switched in {switch_ms:.2f} ms\n")
        return DONE

    # ---- ending ------------------------------------------------------------------------------
    def send_bye(self, leg: Leg) -> None:
        KSR.tm.t_uac_send("BYE", leg.contact, "", "", leg.next_request("BYE"), "")

    def bye_far_end(self, call: StitchedCall) -> None:
        """End the far end's dialog as the near end that left it would have."""
        if KSR.dialog.dlg_get(call.call_id, call.d1_from_tag, call.d1_to_tag) > 0 and \
                KSR.dialog.dlg_bye(call.far_side) > 0:
            return
        far = Leg("far", call.call_id, call.far_tag, call.far_contact, remote_uri=call.far_uri,
                  local_uri=call.d1_near_uri, local_tag=call.d1_near_tag,
                  cseq=call.d1_near_cseq + 1000)
        self.send_bye(far)

    def dialog_ended(self, call_id: str, event: str) -> None:
        """The dialog module ended a dialog (timeout, or an end the routing did not see):
        release what the call still holds. A call ended by a BYE was released already."""
        call = self.load_call(call_id)
        if call is None or call.call_id != call_id:
            return
        if call.pending:
            self.cancel_pending(call)
        self.delete_media(call)
        self.drop_call(call, f"ended by the proxy ({event})")

    def delete_media(self, call: StitchedCall) -> None:
        try:
            self.media().delete(call.call_id, delete_delay=0)
        except RtpctlError as exc:
            KSR.err(f"media delete for {call.call_id}: {exc}\n")
