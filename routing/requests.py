"""Request checks and the requests that are not new calls: malformed or looping requests,
CANCEL, in-dialog requests, and OPTIONS to the proxy itself."""
from __future__ import annotations

import KSR

from . import security
from .handoff.routes import CSEQ_AVP
from .kemi import DONE, NEXT, pv, reply

SANITY_CHECKS = 17895                # ruri, version, cseq, content-length, to/from, ... (sanity)
SANITY_URI_CHECKS = 7
MAX_HOPS = 10


class RequestRoutes:
    def __init__(self, media, handoff, legs, cfg):
        self.media = media
        self.handoff = handoff
        self.legs = legs
        # The peers of a cluster (docs/cluster.md) and the port their KDMQ requests come to.
        self.peers = frozenset(cfg.peers)
        self.dmq_port = str(cfg.cluster.dmq_port) if cfg.cluster else ""

    def cluster_message(self, method: str) -> bool:
        """KDMQ: a peer's replication (dialogs, htable entries, the node list), handled by
        the dmq module. Only from a peer, on the DMQ port; nobody else may write our state."""
        if method != "KDMQ":
            return NEXT
        if self.peers and pv("$si") in self.peers and pv("$Rp") == self.dmq_port:
            KSR.dmq.handle_message()
            return DONE
        return reply(403, "Forbidden")

    def reqinit(self, _method: str) -> bool:
        if KSR.maxfwd.process_maxfwd(MAX_HOPS) < 0:
            return reply(483, "Too Many Hops")
        if KSR.sanity.sanity_check(SANITY_CHECKS, SANITY_URI_CHECKS) < 0:
            # sanity has already answered 400 (or dropped what it cannot answer).
            KSR.xlog.xlog("L_NOTICE", "malformed $rm from $si:$sp refused\n")
            return DONE
        return NEXT

    def cancel(self, method: str) -> bool:
        if method != "CANCEL":
            return NEXT
        if self.handoff.code_call_cancelled() is DONE:
            return DONE
        if KSR.tm.t_check_trans() > 0:
            # The call's CANCEL of its twin leg (the spiral) must not end the call's media.
            if not self.legs.is_leg_uri_user(pv("$rU")):
                self.media.drop_call()
            else:
                self.legs.cancelling()
            KSR.tm.t_relay()
        return DONE

    def within_dialog(self, method: str) -> bool:
        if KSR.siputils.has_totag() < 0:
            return NEXT
        call_id = pv("$ci")
        if self.handoff.in_dialog(method, call_id) is DONE:
            return DONE
        if method == "BYE" and self.legs.confirm.leg_hung_up(call_id):
            return DONE                         # the mobile gave up before pressing 1
        if KSR.rr.loose_route() > 0:
            refusal = self.dialog_refusal()
            if refusal is not None:
                security.refused(*refusal)
                if method == "ACK":
                    return DONE                 # an ACK is never answered
                if refusal[0] == security.UNKNOWN_DIALOG:
                    return reply(481, "Call/Transaction Does Not Exist")
                return reply(403, "Forbidden")
            offer_answer = method in ("INVITE", "UPDATE")
            if method == "BYE":
                self.media.drop_call()
            elif offer_answer and KSR.textops.has_body_type("application/sdp") > 0:
                self.media.offer_in_dialog()
            if offer_answer or pv(CSEQ_AVP):
                KSR.tm.t_on_reply("ksr_reply_indialog")
            KSR.tm.t_relay()
            return DONE
        if method == "ACK":
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return DONE
        return reply(404, "Not Here")

    @staticmethod
    def dialog_refusal() -> tuple[str, str] | None:
        """Why an in-dialog request the proxy would relay must not be (None: relay it). It
        must belong to a dialog the dialog module holds (a To-tag and a Route naming us are
        free to forge: they made the proxy an open relay to the trunk), and go to the
        dialog's other party, the target that party gave (its Contact, refreshed by its
        target refreshes): a party of a call cannot aim the next request of it at the trunk
        or anywhere else. Costs no database and no rtpengine: the dialog is in memory."""
        caller_tag = pv("$dlg(from_tag)")       # null: the message matches no dialog
        if not caller_tag:
            return security.UNKNOWN_DIALOG, "no such dialog"
        # Downstream (from the caller): to the callee's Contact; else to the caller's.
        downstream = pv("$ft") == caller_tag
        target = pv("$dlg(to_contact)" if downstream else "$dlg(from_contact)")
        if not target:
            return None                         # an early dialog: no target known yet
        request_uri = pv("$ru")
        if not security.same_target(request_uri, target):
            return security.RELAY_DENIED, f"to {request_uri}, the dialog's party is {target}"
        # A next hop other than the target (a carrier's SBC that record-routed) must be one
        # of the dialog's own route set.
        next_hop = pv("$du")
        if next_hop and not security.in_route_set(
                next_hop, pv("$dlg(to_rs)") + "," + pv("$dlg(from_rs)")):
            return security.RELAY_DENIED, f"via {next_hop}, not a hop of the dialog"
        return None

    def reply_in_dialog(self) -> None:
        if KSR.textops.has_body_type("application/sdp") > 0:
            self.media.answer_in_dialog()
        self.handoff.renumbered_reply()

    @staticmethod
    def local_request(method: str) -> bool:
        """OPTIONS to the proxy itself: the keepalive and health probe."""
        if method == "OPTIONS" and not pv("$rU") and KSR.is_myself_ruri():
            return reply(200, "OK")
        return NEXT
