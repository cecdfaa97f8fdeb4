"""The KEMI side of the stitched call: it turns SIP events into the model's events and carries
out the actions the model returns. No call logic lives here (see routing.handoff.model)."""
from __future__ import annotations

import time
from typing import Callable, Optional

import KSR

from rtpctl import RtpctlError

from .. import kemi, security
from ..kemi import DONE, NEXT, pv
from . import model
from .actions import (AbsorbAck, Action, AnswerFarFromMedia, CancelLeg, DeleteMedia, Drop, EndDialog,
                      HandoffFinished, HandoffStarted, Relay, Reply, ReplyCodeCall, ResumeFar,
                      RingMobile, Save, Send, Switch)
from .sdp import answer_direction, is_secure_contact, match_crypto, restrict_codecs
from ..twinleg import LegPlan
from .state import Device, Leg, Sender, Side, StitchedCall, device_key, new_tag

CSEQ_AVP = "$avp(tw_cseq)"      # the far end's own CSeq number of a request relayed renumbered
TO_MOBILE, TO_DESK = "desk_to_mobile", "mobile_to_desk"     # the metrics' directions


class HandoffRoutes:
    def __init__(self, cfg, calls, media, call_log, subscribers,
                 twin_refusal: Callable[[object], Optional[str]], metrics=None, legs=None):
        self.cfg = cfg
        self.metrics = metrics
        self.calls = calls
        self.media = media
        self.call_log = call_log
        self.subscribers = subscribers
        self.twin_refusal = twin_refusal
        self.legs = legs                # the mobile's leg goes through routing.twinleg
        self.contact = f"sip:handoff@{cfg.proxy_address}:{cfg.proxy_port}"
        # What a phone on TLS is given: its later requests must come back over TLS.
        self.tls_contact = f"sip:handoff@{cfg.proxy_address}:{cfg.tls_port};transport=tls"
        self.switch_ms: Optional[float] = None

    # ---- events ------------------------------------------------------------------------------
    def call_answered(self, extension: str, far_side: Side, device: Device, far_number: str,
                      far_name: str, request_contact: str) -> dict[str, str]:
        """A 2xx to an initial INVITE (reply route): remember the call, so it can be handed
        off. Returns its state entries ({} for a retransmitted 200)."""
        call_id = pv("$ci")
        if self.calls.known(call_id):
            return {}
        reply_contact = pv("$(ct{tobody.uri})")
        from_tag, to_tag, from_uri, to_uri = pv("$ft"), pv("$tt"), pv("$fu"), pv("$tu")
        caller_device = Device.FAR if far_side is Side.CALLER else device
        callee_device = device if far_side is Side.CALLER else Device.FAR
        caller = Leg(caller_device, call_id, from_tag, request_contact, from_uri,
                     local_uri=to_uri, local_tag=to_tag, cseq=0)
        callee = Leg(callee_device, call_id, to_tag, reply_contact, to_uri,
                     local_uri=from_uri, local_tag=from_tag, cseq=int(pv("$cs") or 1))
        call = model.answered(extension, call_id, caller, callee, far_side, far_number, far_name)
        return self.calls.remember(call)

    def in_dialog(self, method: str, call_id: str) -> bool:
        """An in-dialog request: NEXT unless it belongs to a call the proxy takes part in."""
        call = self.calls.load(call_id)
        if call is None:
            return NEXT
        sender = model.sender_of(call, call_id, pv("$ft"))
        if method == "REFER":
            refused = self.refer_refusal(call, call_id, sender)
            if refused:
                security.refused(security.REFER_NOT_FROM_DESK, refused)
                return self.run(call, [Reply(403, "Forbidden")])
        if method == "REFER" and sender is Sender.NEAR and model.handoff_code_target(
                pv("$hdr(Refer-To)"), self.cfg.handoff_code):
            actions = self.start_to_mobile(call, via_refer=True)
        else:
            sdp = pv("$rb") if KSR.textops.has_body_type("application/sdp") > 0 else ""
            actions = model.in_dialog(call, sender, method, int(pv("$cs") or 0), sdp)
        return self.run(call, actions)

    def refer_refusal(self, call: StitchedCall, call_id: str, sender: Sender) -> str:
        """Why this REFER of the call must be refused ("": it may go on). Only the
        subscriber's own device transfers or hands off: a REFER from the far end would make
        the desk call wherever it names (at the site's cost), or move the subscriber's call.
        In the call's first dialog the tags alone do not tell the desk (the far end knows
        them both and may swap them): the desk's REFER also comes from the desk's address."""
        if sender is not Sender.NEAR:
            return f"from the far end of {call.extension}'s call"
        if call_id != call.call_id or call.near.device is not Device.DESK:
            return ""                       # the proxy's own dialog with the device
        source = pv("$si")
        if source == security.host_of(call.near.contact) or \
                self.subscribers.registered_from(call.extension, source):
            return ""
        return f"with the desk's tag, not from {call.extension}'s desk"

    def start_to_mobile(self, call: StitchedCall, via_refer: bool, code_call: str = "",
                        code_cseq: str = "") -> list[Action]:
        refusal = None
        if call.near.device is Device.DESK and not call.pending:
            refusal = self.twin_refusal(self.subscribers.by_extension(call.extension))
        return model.start_to_mobile(call, via_refer, code_call, code_cseq, refusal,
                                     self.cfg.sip_domain, time.time())

    def code_dialled(self, extension: str) -> bool:
        """The desk dialled the handoff code: take the call from the mobile, or (the desk's
        call held) send it there."""
        call = self._call_on(extension, Device.MOBILE)
        if call is None:
            on_desk = self._call_on(extension, Device.DESK)
            if on_desk is None:
                return self.run(None, [Reply(480, "No Call To Hand Off")])
            return self.run(on_desk, self.start_to_mobile(on_desk, False, pv("$ci"),
                                                          pv("$cs")))
        if call.pending:
            return self.run(call, [Reply(491, "Handoff Already In Progress")])
        if KSR.textops.has_body_type("application/sdp") < 0:
            return self.run(call, [Reply(488, "An SDP Offer Is Needed")])
        return self.take_to_desk(call)

    def take_to_desk(self, call: StitchedCall) -> bool:
        """Answer the desk's code call at once with the far end's media, then switch."""
        KSR.tm.t_newtran()
        handoff_id = self.call_log.handoff_started(call.call_id, "mobile", "desk")
        helper, branch = new_tag("h"), new_tag("v")
        desk_sdp = pv("$rb")
        secure = pv("$pr").lower() == "tls" or is_secure_contact(pv("$(ct{tobody.uri})"))
        try:
            offered = self.media.open_for_new_device(call.call_id, helper, branch, secure)
        except RtpctlError as exc:
            KSR.err(f"handoff to desk for {call.call_id}: {exc}\n")
            self.call_log.handoff_finished(handoff_id, model.Outcome.FAILED.value)
            self._count(TO_DESK, model.Outcome.FAILED.value)
            return self.run(call, [Reply(500, "Media Server Error")])
        given, desk_sdp = match_crypto(restrict_codecs(offered, desk_sdp), desk_sdp)
        # The model saves the desk's leg, answers the desk, then switches: the desk starts
        # sending as soon as it has our SDP, and the far end hears the mobile until the
        # switch a millisecond later.
        desk = Leg(Device.DESK, pv("$ci"), pv("$ft"), pv("$(ct{tobody.uri})"), pv("$fu"),
                   local_uri=pv("$tu"), local_tag=pv("$ltt(t)"), cseq=int(pv("$cs") or 1),
                   sdp=desk_sdp, given_sdp=given, local_contact=self._local_contact())
        self.run(call, model.desk_answered(call, desk, branch))
        self.call_log.handoff_finished(handoff_id, model.Outcome.COMPLETED.value,
                                       self.switch_ms, answered=True)
        self._count(TO_DESK, model.Outcome.COMPLETED.value, self.switch_ms)
        return DONE

    def code_call_cancelled(self) -> bool:
        """A CANCEL: NEXT unless it ends a code call whose handoff is still ringing (the desk
        dials as its extension, so its call is the one on its desk)."""
        call = self._call_on(pv("$fU"), Device.DESK)
        if call is None or call.pending is None or call.pending.code_call != pv("$ci"):
            return NEXT
        self.run(call, model.code_call_cancelled(call))
        return kemi.reply(200, "OK")

    def leg_reply(self) -> None:
        """A final reply to the INVITE the proxy sent the mobile (core reply route)."""
        code = int(pv("$rs") or 0)
        if pv("$rm") != "INVITE" or code < 200:
            return
        call = self.calls.load(pv("$ci"))
        if call is None or call.pending is None or call.pending.leg_call_id != pv("$ci"):
            return                                      # a retransmission, or too late
        if code >= 300:
            self.run(call, model.mobile_refused(call, code, pv("$rr")))
            return
        mobile = Leg(Device.MOBILE, call.pending.leg_call_id, pv("$tt"),
                     pv("$(ct{tobody.uri})"), pv("$tu"), local_uri=pv("$fu"),
                     local_tag=call.pending.local_tag, cseq=1, sdp=pv("$rb"),
                     given_sdp=call.pending.offer_sdp, local_contact=self.contact)
        self.run(call, model.mobile_answered(call, mobile))

    def dialog_ended(self, call_id: str) -> None:
        """The dialog module ended D1 by itself (its lifetime ran out)."""
        call = self.calls.load(call_id)
        if call is not None and call.call_id == call_id:
            self.run(call, model.dialog_timed_out(call))

    def renumbered_reply(self) -> None:
        """A reply to a request relayed renumbered: give it the far end's number back."""
        original = pv(CSEQ_AVP)
        if original:
            KSR.textops.remove_hf("CSeq")
            KSR.hdr.append(f"CSeq: {original} {pv('$rm')}\r\n")

    # ---- carrying out actions ---------------------------------------------------------------
    def run(self, call: Optional[StitchedCall], actions: list[Action]) -> bool:
        """Carry out a transition's actions in order. NEXT when the request is to be relayed."""
        verdict = DONE
        for action in actions:
            if isinstance(action, Relay):
                verdict = NEXT
                if action.cseq is not None:
                    self._renumber(action.cseq)
            else:
                self._carry_out(call, action)
        return verdict

    def _carry_out(self, call: Optional[StitchedCall], action: Action) -> None:
        kind = type(action)
        if kind is Reply:
            self._reply(action.code, action.reason, action.sdp)
        elif kind is AbsorbAck:
            KSR.tm.t_check_trans()
        elif kind is Send:
            KSR.tm.t_uac_send(action.method, action.target, "", "", action.headers, action.body)
        elif kind is Save:
            self.calls.save(call) if action.durable else self.calls.remember(call)
        elif kind is Drop:
            self.calls.drop(call, action.reason)
        elif kind is Switch:
            self._switch(call, action)
        elif kind is RingMobile:
            self._ring_mobile(call)
        elif kind is ResumeFar:
            self._resume_far(call)
        elif kind is AnswerFarFromMedia:
            self._answer_far(call)
        elif kind is DeleteMedia:
            self._media_safely(f"media delete for {call.call_id}", self.media.delete,
                               call.call_id, action.helper_tag)
        elif kind is CancelLeg:
            KSR.tmx.t_cancel_callid(action.call_id, "1", 0)
        elif kind is ReplyCodeCall:
            KSR.tmx.t_reply_callid(action.call_id, action.cseq, action.code, action.reason)
        elif kind is EndDialog:
            self._end_dialog(call)
        elif kind is HandoffStarted:
            call.pending.handoff_id = self.call_log.handoff_started(
                call.call_id, action.from_device.value, action.to_device.value)
        elif kind is HandoffFinished:
            self.call_log.handoff_finished(action.handoff_id, action.outcome.value,
                                           self.switch_ms if action.answered else None,
                                           answered=action.answered)
            # Only a handoff to the mobile is pending until it ends (the desk's is at once).
            self._count(TO_MOBILE, action.outcome.value,
                        self.switch_ms if action.answered else None)

    def _local_contact(self) -> str:
        """The proxy's Contact for the device whose request is being handled."""
        return self.tls_contact if pv("$pr").lower() == "tls" else self.contact

    def _count(self, way: str, outcome: str, switch_ms: Optional[float] = None) -> None:
        if self.metrics is not None:
            self.metrics.handoff(way, outcome, switch_ms)

    def _reply(self, code: int, reason: str, sdp: str = "") -> None:
        KSR.tm.t_newtran()
        if sdp:
            KSR.hdr.append_to_reply(f"Contact: <{self._local_contact()}>\r\n")
            KSR.textops.set_reply_body(sdp, "application/sdp")
        KSR.tm.t_reply(code, reason)

    @staticmethod
    def _renumber(cseq: int) -> None:
        KSR.pv.sets(CSEQ_AVP, pv("$cs"))
        KSR.textops.remove_hf("CSeq")
        KSR.hdr.append(f"CSeq: {cseq} {pv('$rm')}\r\n")

    def _media_safely(self, what: str, command, *args):
        try:
            return command(*args)
        except RtpctlError as exc:
            KSR.err(f"{what}: {exc}\n")
            return None

    def _switch(self, call: StitchedCall, switch: Switch) -> None:
        self.switch_ms = self._media_safely(
            f"handoff switch for {call.call_id}", self.media.switch, call.call_id,
            call.far.tag, switch.new.tag, switch.new.sdp, switch.via_branch, switch.old_tag)
        if self.switch_ms is not None:
            KSR.info(f"handoff of {call.call_id} to the {switch.new.device.value}: media "
                     f"switched in {self.switch_ms:.2f} ms\n")

    def _ring_mobile(self, call: StitchedCall) -> None:
        pending = call.pending
        sdp = self._media_safely(f"handoff offer for {call.call_id}",
                                 self.media.open_for_new_device, call.call_id,
                                 pending.helper_tag, pending.via_branch)
        if sdp is None:
            self.run(call, model.mobile_refused(call, 500, "Media Server Error"))
            return
        sub = self.subscribers.by_extension(call.extension)
        # The leg's own transaction (routing.twinleg) relays it to the trunk and keeps it
        # from the mobile's voicemail; what it refuses reaches leg_reply as a final reply.
        leg_uri = self.legs.plan(LegPlan.for_subscriber("handoff", sub))
        mobile_uri = f"sip:{sub.twin_number}@{self.cfg.sip_domain}"
        pending.offer_sdp = sdp
        self.calls.remember(call)               # before the mobile can answer
        headers = model.invite_to_mobile(call, pending, mobile_uri, self.cfg.sip_domain,
                                         self.contact, sub.did)
        KSR.tm.t_uac_send("INVITE", leg_uri, "", "", headers, sdp)

    def _resume_far(self, call: StitchedCall) -> None:
        near = call.near
        sdp = self._media_safely(f"resume of {call.call_id}", self.media.reoffer,
                                 call.call_id, near.tag, near.sdp, call.far.tag,
                                 is_secure_contact(call.far.contact))
        if sdp is not None:
            self._carry_out(call, model.resume_request(call, sdp, self.contact))

    def _answer_far(self, call: StitchedCall) -> None:
        near = call.near
        sdp = self._media_safely(f"re-INVITE of handed-off call {call.call_id}",
                                 self.media.answer_for, call.call_id, call.far.tag,
                                 pv("$rb"), near.tag, answer_direction(pv("$rb"), near.sdp),
                                 is_secure_contact(near.contact))
        if sdp is None:
            self._reply(500, "Media Server Error")
        else:
            self._reply(200, "OK", sdp)

    def _end_dialog(self, call: StitchedCall) -> None:
        """Let the dialog module forget D1 without sending anything: a far end's BYE it sees
        now; otherwise its lifetime is cut to a second (the module sends no BYE on expiry)."""
        if pv("$ci") == call.call_id and KSR.is_BYE():
            KSR.dialog.dlg_manage()
        elif KSR.dialog.dlg_get(call.call_id, *call.d1_tags) > 0:
            KSR.dialog.dlg_set_timeout(1)

    def _call_on(self, extension: str, device: Device) -> Optional[StitchedCall]:
        d1 = self.calls.table.get(device_key(extension, device))
        call = self.calls.load(d1) if d1 else None
        return call if call is not None and call.near.device is device else None
