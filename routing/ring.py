"""Twin ring and outbound calls: the routing's decision turned into branches, and the branch,
reply and failure routes of those transactions.

What the later routes of a transaction need to know of the call travels in one record, the
JSON of `CallFacts` in one AVP, set once in the request route."""
from __future__ import annotations

import json
from dataclasses import dataclass

import KSR

from . import decisions as rules
from .decisions import Subscriber
from .handoff.state import Device, Side
from .kemi import DONE, pv, reply
from .records import to_json
from .twinleg import LegPlan, TwinLegs

FACTS_AVP = "$avp(tw_call)"
ANSWERED_VAR = "$dlg_var(tw_answered)"   # who answered the call (counted once, in metrics)
FLB_MOBILE = 1                      # branch flag: this branch is the twin leg
TWIN_LEGS_PROFILE = "twin_legs"
VOICEMAIL_RING_MS = 60000           # how long the voicemail server may take to answer
OUTBOUND_RING_MS = 120000           # how long an outside number may ring


@dataclass
class CallFacts:
    kind: str                       # twin | outbound
    extension: str
    sub_id: int
    did: str
    voicemail_box: str
    twin: str
    caller_num: str
    caller_name: str
    contact: str                    # the INVITE's Contact URI
    rang: str                       # devices offered the call: desk,mobile | trunk

    def keep(self) -> None:
        KSR.pv.sets(FACTS_AVP, to_json(self))

    @classmethod
    def of_transaction(cls) -> "CallFacts | None":
        raw = pv(FACTS_AVP)
        return cls(**json.loads(raw)) if raw else None


class RingRoutes:
    def __init__(self, cfg, media, handoff, call_log, metrics=None, legs: "TwinLegs | None" = None):
        self.cfg = cfg
        self.metrics = metrics
        self.legs = legs
        self.realm = cfg.sip_domain
        self.media = media
        self.handoff = handoff
        self.call_log = call_log
        vm = cfg.voicemail_uri.split(":", 1)[1] if ":" in cfg.voicemail_uri else cfg.voicemail_uri
        self.voicemail_hostport = vm.split("@")[-1]

    # ---- request route -----------------------------------------------------------------------
    def twin_ring(self, sub: Subscriber, caller_num: str, caller_name: str) -> bool:
        desk_uri = f"sip:{sub.extension}@{self.realm}"
        KSR.pv.sets("$ru", desk_uri)
        desk_registered = KSR.registrar.registered("location") > 0
        legs = 0
        if sub.twin_number:
            KSR.dialog.get_profile_size(TWIN_LEGS_PROFILE, sub.extension, "$var(legs)")
            legs = int(pv("$var(legs)") or 0)
        decision = rules.decide_ring(sub, desk_registered, legs, self.cfg.max_twin_legs,
                                     self.cfg.allowed_nanp_countries)
        KSR.info(f"call to {sub.extension}: {decision.reason}\n")
        rang = ",".join(d for d, on in (("desk", decision.desk), ("mobile", decision.mobile)) if on)
        facts = self._facts("twin", sub, caller_num, caller_name, rang)
        KSR.rr.record_route()
        KSR.dialog.dlg_manage()
        if decision.voicemail_now:
            facts.keep()
            reason = "unconditional" if sub.send_to == "voicemail" else "unavailable"
            return self.to_voicemail(sub.voicemail_box, sub.did, reason)
        # The mobile's branch goes to the twin leg's own transaction (routing.twinleg).
        mobile_uri = self.legs.plan(LegPlan.for_subscriber(
            "twin", sub, sub.mobile_delay_s if decision.desk else 0), pv("$ci"),
            decision.timeout) if decision.mobile else None
        if mobile_uri:
            KSR.dialog.set_dlg_profile(TWIN_LEGS_PROFILE, sub.extension)
            if self.metrics:
                self.metrics.twinned_call()
        facts.keep()
        if decision.desk:
            KSR.registrar.lookup("location")          # $ru is still the desk's AoR
            if mobile_uri:
                KSR.corex.append_branch_uri(mobile_uri)
        elif mobile_uri:
            KSR.pv.sets("$ru", mobile_uri)
        else:
            return self.to_voicemail(sub.voicemail_box, sub.did, "unavailable")
        KSR.tm.t_set_disable_6xx(1)          # a decline on the mobile must not stop the desk
        KSR.tm.t_set_fr(decision.timeout * 1000, 0)
        return self.relay("ksr_failure_twin")

    def _facts(self, kind: str, sub: Subscriber, caller_num: str, caller_name: str,
               rang: str) -> CallFacts:
        return CallFacts(kind, sub.extension, sub.id, sub.did, sub.voicemail_box,
                         sub.twin_number or "", caller_num, caller_name,
                         pv("$(ct{tobody.uri})"), rang)

    def to_voicemail(self, mailbox: str, did: str, reason: str) -> bool:
        KSR.pv.sets("$ru", f"sip:{mailbox}@{self.voicemail_hostport}")
        KSR.hdr.remove("Diversion")
        KSR.hdr.append(rules.diversion_header(did, self.realm, reason))
        KSR.tm.t_set_fr(VOICEMAIL_RING_MS, 0)
        return self.relay("ksr_failure_voicemail")

    def outbound(self, caller: Subscriber, number: str) -> bool:
        self._facts("outbound", caller, caller.did, caller.display_name, "trunk").keep()
        KSR.rr.record_route()
        KSR.dialog.dlg_manage()
        KSR.pv.sets("$ru", f"sip:{number}@{self.realm}")
        if KSR.dispatcher.ds_select_domain(self.cfg.dispatcher_set, 8) < 0:
            return reply(503, "No Trunk Available")
        KSR.hdr.remove("P-Asserted-Identity")
        KSR.hdr.append(rules.asserted_identity_header(caller.did, caller.display_name,
                                                      self.realm))
        KSR.tm.t_set_fr(OUTBOUND_RING_MS, 0)
        return self.relay("ksr_failure_outbound")

    def relay(self, failure_route: str) -> bool:
        KSR.tm.t_on_branch("ksr_branch_media")
        KSR.tm.t_on_reply("ksr_reply_media")
        KSR.tm.t_on_failure(failure_route)
        if KSR.tm.t_relay() < 0:
            self.media.drop_call()
            KSR.sl.sl_reply_error()
        return DONE

    # ---- branch, reply and failure routes ----------------------------------------------------
    def branch(self) -> None:
        facts = CallFacts.of_transaction()
        if facts and facts.kind == "twin" and self.legs.is_leg_uri_user(pv("$rU")):
            # The mobile leg shows the original caller, and names the subscriber's DID as the
            # diverting number so the carrier accepts it and can attest a diverted call.
            number, name = facts.caller_num, facts.caller_name
            KSR.hdr.remove("P-Asserted-Identity")
            KSR.hdr.append(rules.asserted_identity_header(number, name, self.realm))
            KSR.hdr.remove("Diversion")
            KSR.hdr.append(rules.diversion_header(facts.did, self.realm, "follow-me"))
            if pv("$fU") != number:
                KSR.uac.uac_replace_from(f'"{name}"' if name else "",
                                         f"sip:{number}@{self.realm}")
            KSR.setbflag(FLB_MOBILE)
        if pv("$fs").lower().startswith("tls:") and pv("$nh(P)").lower() != "tls":
            # lookup() forced the TLS socket of a desk on TLS for the whole transaction; the
            # twin leg beside it leaves by the trunk's own transport.
            KSR.pv.unset("$fs")
        if KSR.textops.has_body_type("application/sdp") > 0 and not self.media.offer_branch():
            KSR.xlog.xlog("L_ERR", "rtpengine offer failed for branch $T_branch_idx\n")
            KSR.tmx.t_drop()

    def reply(self) -> None:
        code = int(pv("$rs") or 0)
        if 100 < code < 300 and KSR.textops.has_body_type("application/sdp") > 0:
            self.media.answer_branch()
        if 200 <= code < 300:
            self.answered()
        elif code >= 300:
            # A branch that lost (CANCELled, busy, declined) leaves rtpengine now, scoped to its
            # own via-branch: a stale branch would later confuse a handoff on this call.
            self.media.drop_branch()

    def answered(self) -> None:
        facts = CallFacts.of_transaction()
        if facts is None:
            return
        if facts.kind == "twin":
            if KSR.isbflagset(FLB_MOBILE):
                device = Device.MOBILE
            elif pv("$si") == self.voicemail_hostport.split(":")[0]:
                self._count_answered("voicemail")
                return                              # voicemail: nothing to hand off
            else:
                device = Device.DESK
            self._count_answered(device.value)
            far_side, far_number, far_name = Side.CALLER, facts.caller_num, facts.caller_name
        else:                                       # the desk placed the call
            device, far_side, far_number, far_name = Device.DESK, Side.CALLEE, pv("$tU"), ""
        state = self.handoff.call_answered(facts.extension, far_side, device, far_number,
                                           far_name, facts.contact)
        if state:
            self.call_log.answered(pv("$ci"), facts.sub_id,
                                   "inbound" if facts.kind == "twin" else "outbound",
                                   facts.caller_num, pv("$tU"),
                                   [d for d in facts.rang.split(",") if d], device.value,
                                   state)

    def _count_answered(self, device: str) -> None:
        """Once per call: tm relays every retransmission of the 200 through here too."""
        if self.metrics is None or pv(ANSWERED_VAR):
            return
        KSR.pv.sets(ANSWERED_VAR, device)
        self.metrics.answered(device)

    def failure_twin(self) -> None:
        if KSR.tm.t_is_canceled() > 0:
            return
        facts = CallFacts.of_transaction()
        code = int(pv("$T_reply_code") or 0)
        # Busy everywhere, declined, or nobody answered in time: the subscriber's own mailbox.
        self.to_voicemail(facts.voicemail_box, facts.did, rules.voicemail_reason(code))

    def failure_outbound(self) -> None:
        if KSR.tm.t_is_canceled() > 0:
            return
        code = int(pv("$T_reply_code") or 0)
        if rules.gateway_failed(code) and KSR.dispatcher.ds_next_domain() > 0:
            self.relay("ksr_failure_outbound")
            return
        self.media.drop_call()
