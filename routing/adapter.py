"""The KEMI adapter: the only module that touches KSR.

The request route reads like a table of contents; each step is a small method that either
finishes the request (returns DONE) or lets the route go on (returns NEXT). Decisions are made
by routing.decisions; subscriber data comes from routing.store.
"""
from __future__ import annotations

import functools
import json
import logging
import traceback

import KSR  # provided by app_python3 inside Kamailio

from twinning import numbers
from twinning.config import SiteConfig, load as load_config

from . import decisions as rules
from .adapter_handoff import HandoffRoutes
from .decisions import Dialled, Subscriber
from .handoff import LEG_PREFIX
from .store import BatchWriter, CallLog, StoreUnavailable, SubscriberStore

NEXT = True
DONE = False

# rtpengine flags. Each forked branch gets its own offer (via-branch=auto-next: the Via branch
# of that very branch for requests, the top Via for its replies), so a losing branch never
# touches the winner's media.
RTP_COMMON = "replace-origin replace-session-connection ICE=remove RTP/AVP"
RTP_BRANCH = f"via-branch=auto-next {RTP_COMMON}"

# AVPs carry per-call facts from the request route to branch, reply and failure routes.
AVP_TWIN = "$avp(tw_twin)"
AVP_EXT = "$avp(tw_ext)"
AVP_DID = "$avp(tw_did)"
AVP_VMBOX = "$avp(tw_vmbox)"
AVP_CALLER_NUM = "$avp(tw_caller_num)"
AVP_CALLER_NAME = "$avp(tw_caller_name)"
AVP_KIND = "$avp(tw_kind)"          # twin | outbound
FLB_MOBILE = 1                      # branch flag: this branch is the twin leg
DB_QUEUE = "dbwrites"               # mqueue the background writer drains
SUBSCRIBER_HTABLE = "subs"          # subscribers, shared by the workers (see routing.store)
AVP_SUB_ID = "$avp(tw_sub_id)"
AVP_CONTACT = "$avp(tw_contact)"    # the INVITE's Contact URI
AVP_RANG = "$avp(tw_rang)"          # devices offered the call: desk,mobile | trunk

log = logging.getLogger("routing")


def guarded(route):
    """A bug in a route must cost one request, never the proxy: log it, answer 500 where a
    request can still be answered, and carry on."""
    @functools.wraps(route)
    def run(self, *args):
        try:
            return route(self, *args)
        except Exception:  # noqa: BLE001 - the last line of defence of a SIP worker
            KSR.err(f"{route.__name__}: {traceback.format_exc()}\n")
            if route.__name__ == "ksr_request_route" and not KSR.is_ACK():
                KSR.sl.sl_send_reply(500, "Server Internal Error")
            return 1
    return run


class HtableCache:
    """routing.store.SharedCache on a Kamailio htable (shared memory, every worker)."""

    def __init__(self, table: str):
        self.table = table

    def get(self, key: str):
        value = KSR.htable.sht_get(self.table, key)
        return str(value) if value else None

    def put(self, key: str, value: str) -> None:
        KSR.htable.sht_sets(self.table, key, value)

    def clear(self) -> None:
        KSR.htable.sht_reset(self.table)


def reply(code: int, reason: str) -> bool:
    KSR.sl.sl_send_reply(code, reason)
    return DONE


def pv(name: str) -> str:
    value = KSR.pv.get(name)
    return "" if value is None else str(value)


class Handler(HandoffRoutes):
    def __init__(self, cfg: SiteConfig):
        self.cfg = cfg
        self.realm = cfg.sip_domain
        self.store: SubscriberStore | None = None
        vm = cfg.voicemail_uri.split(":", 1)[1] if ":" in cfg.voicemail_uri else cfg.voicemail_uri
        self.voicemail_hostport = vm.split("@")[-1]

    # ---- lifecycle -------------------------------------------------------------------------
    def child_init(self, rank: int) -> int:
        # Each worker its own connection, made after the fork (lazily on first use).
        self.store = SubscriberStore(self.cfg.dsn(), self.cfg.statement_timeout_ms,
                                     shared=HtableCache(SUBSCRIBER_HTABLE))
        self.call_log = CallLog(self.queue_write)
        self.writer = BatchWriter(self.store)
        self.unwritten: list[tuple[str, list]] = []
        if rank > 0:
            try:                    # connect now, so the first call does not pay for it
                self.store._connect()
            except StoreUnavailable as exc:
                KSR.warn(f"database not reachable yet ({exc}); will retry per request\n")
        return 0

    @guarded
    def ksr_dialog_event(self, msg, event: str = "") -> int:
        if event in ("dialog:end", "dialog:failed") and self.store is not None:
            self.dialog_ended(pv("$dlg(callid)"), event)
        return 1

    # ---- the background writer ---------------------------------------------------------------
    def queue_write(self, op: str, params: list) -> None:
        if KSR.mqueue.mq_add(DB_QUEUE, op, json.dumps(params)) < 0:
            KSR.err(f"call-log queue full: {op} dropped\n")

    @guarded
    def ksr_rtimer_dbwrites(self, msg, *_event) -> int:
        """rtimer process: write what the workers queued, in one round trip per tick. Kept
        in memory and retried while the database is unreachable (bounded)."""
        if self.store is None:
            self.child_init(0)
        items = self.unwritten
        while len(items) < 2000 and KSR.mqueue.mq_fetch(DB_QUEUE) > 0:
            items.append((str(KSR.mqueue.mqk_get(DB_QUEUE)),
                          json.loads(str(KSR.mqueue.mqv_get(DB_QUEUE)))))
        if not items:
            return 1
        try:
            self.writer.write(items)
            self.unwritten = []
        except StoreUnavailable as exc:
            self.unwritten = items[-100000:]
            KSR.warn(f"call log: {len(items)} writes waiting, database unreachable: {exc}\n")
        return 1

    # ---- request route ---------------------------------------------------------------------
    @guarded
    def ksr_request_route(self, msg) -> int:
        for step in (self.reqinit, self.cancel, self.within_dialog, self.local_request,
                     self.register, self.invite):
            if step() is DONE:
                return 1
        reply(405, "Method Not Allowed")
        return 1

    @guarded
    def ksr_reply_route(self, msg) -> int:
        # Every reply passes here first; only those of the proxy's own handoff legs matter.
        if pv("$ci").startswith(LEG_PREFIX):
            self.handoff_leg_reply()
        return 1

    # ---- steps -----------------------------------------------------------------------------
    def reqinit(self) -> bool:
        if KSR.maxfwd.process_maxfwd(10) < 0:
            return reply(483, "Too Many Hops")
        if KSR.sanity.sanity_check(17895, 7) < 0:
            # sanity has already answered 400 (or dropped what it cannot answer).
            KSR.xlog.xlog("L_NOTICE", "malformed $rm from $si:$sp refused\n")
            return DONE
        return NEXT

    def cancel(self) -> bool:
        if not KSR.is_CANCEL():
            return NEXT
        if KSR.tm.t_check_trans() > 0:
            KSR.rtpengine.rtpengine_delete0()
            KSR.tm.t_relay()
        return DONE

    def within_dialog(self) -> bool:
        if KSR.siputils.has_totag() < 0:
            return NEXT
        if self.store is None:
            self.child_init(0)
        if self.known_call_request() is DONE:
            return DONE
        if KSR.rr.loose_route() > 0:
            if KSR.is_BYE():
                KSR.rtpengine.rtpengine_delete0()
            elif KSR.is_INVITE() or KSR.is_UPDATE():
                if KSR.textops.has_body_type("application/sdp") > 0:
                    KSR.rtpengine.rtpengine_offer(RTP_COMMON)
                KSR.tm.t_on_reply("ksr_reply_indialog")
            KSR.tm.t_relay()
            return DONE
        if KSR.is_ACK():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return DONE
        return reply(404, "Not Here")

    def local_request(self) -> bool:
        """OPTIONS to the proxy itself: the keepalive and health probe."""
        if KSR.is_OPTIONS() and not pv("$rU") and KSR.is_myself_ruri():
            return reply(200, "OK")
        return NEXT

    def register(self) -> bool:
        if not KSR.is_REGISTER():
            return NEXT
        if not KSR.is_myself_ruri():
            return reply(403, "Not Our Domain")
        code = KSR.auth_db.auth_check(self.realm, "subscriber", 1)
        if code < 0:
            self.challenge_or_refuse(code)
            return DONE
        KSR.auth.consume_credentials()
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()
        return DONE

    def challenge_or_refuse(self, code: int) -> None:
        """Challenge when credentials are missing or stale; refuse wrong ones outright.

        auth codes: -2 bad password, -3 unknown user, -8 auth user not the To/From user. Both
        unknown user and bad password get the same 403, so the reply tells a scanner nothing.
        """
        if code in (-2, -3, -8):
            reply(403, "Forbidden")
        else:
            KSR.auth.auth_challenge(self.realm, 0)

    def invite(self) -> bool:
        if not KSR.is_INVITE():
            return NEXT
        if self.store is None:
            self.child_init(0)
        target = rules.classify_dialled(pv("$rU"), self.cfg.handoff_code,
                                        self.cfg.emergency_numbers)
        try:
            if KSR.permissions.allow_source_address(self.cfg.trusted_group) > 0:
                return self.from_trunk(target)
            return self.from_phone(target)
        except StoreUnavailable as exc:
            KSR.err(f"subscriber data unavailable: {exc}\n")
            return reply(503, "Service Unavailable")

    # ---- calls from the carrier --------------------------------------------------------------
    def from_trunk(self, target: rules.Target) -> bool:
        sub = self.store.by_did(target.value) if target.kind is Dialled.NUMBER else None
        if sub is None:
            return reply(404, "Not Found")
        # Carriers send the caller as 10 digits, 1+10 or E.164: the mobile leg asserts E.164.
        caller_num = numbers.normalize_nanp(pv("$fU")) or pv("$fU")
        caller_name = pv("$fn").strip('"')
        return self.twin_ring(sub, caller_num, caller_name)

    # ---- calls from desk phones -------------------------------------------------------------
    def from_phone(self, target: rules.Target) -> bool:
        if target.kind is Dialled.NUMBER and KSR.auth.has_credentials(self.realm) < 0:
            # Only a trunk may send calls to our DIDs; a desk phone (it has registered from
            # this address) is challenged like for any call, anything else is refused.
            if self.store.by_did(target.value) and not self.store.is_phone_address(pv("$si")):
                return reply(403, "Forbidden")
        code = KSR.auth_db.auth_check(self.realm, "subscriber", 1)
        if code < 0:
            self.challenge_or_refuse(code)
            return DONE
        KSR.auth.consume_credentials()
        caller = self.store.by_extension(pv("$au"))
        if caller is None:
            return reply(403, "Forbidden")
        if target.kind is Dialled.HANDOFF:
            return self.handoff_to_desk(caller.extension)
        if target.kind is Dialled.EMERGENCY:
            return self.outbound(caller, target.value)
        if target.kind is Dialled.EXTENSION:
            callee = self.store.by_extension(target.value)
            if callee is None:
                return reply(404, "Not Found")
            return self.twin_ring(callee, caller.did, caller.display_name)
        if target.kind is Dialled.NUMBER:
            callee = self.store.by_did(target.value)
            if callee is not None:
                return self.twin_ring(callee, caller.did, caller.display_name)
            refusal = numbers.outbound_refusal(target.value)
            if refusal:
                return reply(403, refusal)
            return self.outbound(caller, target.value)
        return reply(404, "Not Found")

    # ---- twin ring ----------------------------------------------------------------------------
    def twin_ring(self, sub: Subscriber, caller_num: str, caller_name: str) -> bool:
        KSR.pv.sets("$ru", f"sip:{sub.extension}@{self.realm}")
        desk_registered = KSR.registrar.registered("location") > 0
        KSR.pv.sets("$var(legs)", "0")
        if sub.twin_number:
            KSR.dialog.get_profile_size("twin_legs", sub.extension, "$var(legs)")
        legs = int(pv("$var(legs)") or 0)
        decision = rules.decide_ring(sub, desk_registered, legs, self.cfg.max_twin_legs)
        KSR.info(f"call to {sub.extension}: {decision.reason}\n")
        self.remember_call(sub, caller_num, caller_name, "twin")
        KSR.rr.record_route()
        KSR.dialog.dlg_manage()
        KSR.pv.sets(AVP_RANG, ",".join(d for d, on in (("desk", decision.desk),
                                                       ("mobile", decision.mobile)) if on))
        if decision.voicemail_now:
            reason = "unconditional" if sub.send_to == "voicemail" else "unavailable"
            return self.to_voicemail(sub.voicemail_box, sub.did, reason)
        mobile_uri = None
        if decision.mobile:
            KSR.pv.sets("$ru", f"sip:{sub.twin_number}@{self.realm}")
            if KSR.dispatcher.ds_select_domain(self.cfg.dispatcher_set, 8) < 0:
                KSR.warn(f"no trunk for the twin of {sub.extension}\n")
            else:
                mobile_uri = pv("$ru")
                KSR.dialog.set_dlg_profile("twin_legs", sub.extension)
        if decision.desk:
            KSR.pv.sets("$ru", f"sip:{sub.extension}@{self.realm}")
            KSR.registrar.lookup("location")
            if mobile_uri:
                KSR.corex.append_branch_uri(mobile_uri)
        elif mobile_uri:
            KSR.pv.sets("$ru", mobile_uri)
        else:
            return self.to_voicemail(sub.voicemail_box, sub.did, "unavailable")
        KSR.tm.t_set_disable_6xx(1)          # a decline on the mobile must not stop the desk
        KSR.tm.t_set_fr(decision.timeout * 1000, 0)
        KSR.tm.t_on_branch_failure("ksr_branch_failure_twin")
        return self.relay("ksr_failure_twin")

    def remember_call(self, sub: Subscriber, caller_num: str, caller_name: str,
                      kind: str) -> None:
        KSR.pv.sets(AVP_EXT, sub.extension)
        KSR.pv.sets(AVP_DID, sub.did)
        KSR.pv.sets(AVP_VMBOX, sub.voicemail_box)
        KSR.pv.sets(AVP_TWIN, sub.twin_number or "")
        KSR.pv.sets(AVP_CALLER_NUM, caller_num)
        KSR.pv.sets(AVP_CALLER_NAME, caller_name)
        KSR.pv.sets(AVP_KIND, kind)
        KSR.pv.sets(AVP_SUB_ID, str(sub.id))
        KSR.pv.sets(AVP_CONTACT, pv("$(ct{tobody.uri})"))

    def to_voicemail(self, mailbox: str, did: str, reason: str) -> bool:
        KSR.pv.sets("$ru", f"sip:{mailbox}@{self.voicemail_hostport}")
        KSR.hdr.remove("Diversion")
        KSR.hdr.append(rules.diversion_header(did, self.realm, reason))
        KSR.tm.t_set_fr(60000, 0)
        return self.relay("ksr_failure_voicemail")

    def outbound(self, caller: Subscriber, number: str) -> bool:
        self.remember_call(caller, caller.did, caller.display_name, "outbound")
        KSR.pv.sets(AVP_RANG, "trunk")
        KSR.rr.record_route()
        KSR.dialog.dlg_manage()
        KSR.pv.sets("$ru", f"sip:{number}@{self.realm}")
        if KSR.dispatcher.ds_select_domain(self.cfg.dispatcher_set, 8) < 0:
            return reply(503, "No Trunk Available")
        KSR.hdr.remove("P-Asserted-Identity")
        KSR.hdr.append(rules.asserted_identity_header(caller.did, caller.display_name,
                                                      self.realm))
        KSR.tm.t_set_fr(120000, 0)
        return self.relay("ksr_failure_outbound")

    def relay(self, failure_route: str) -> bool:
        KSR.tm.t_on_branch("ksr_branch_media")
        KSR.tm.t_on_reply("ksr_reply_media")
        KSR.tm.t_on_failure(failure_route)
        if KSR.tm.t_relay() < 0:
            KSR.rtpengine.rtpengine_delete0()
            KSR.sl.sl_reply_error()
        return DONE

    # ---- per-branch, reply and failure routes --------------------------------------------------
    @guarded
    def ksr_branch_media(self, msg) -> int:
        twin = pv(AVP_TWIN)
        if twin and pv("$rU") == twin and pv(AVP_KIND) == "twin":
            # The mobile leg shows the original caller, and names the subscriber's DID as the
            # diverting number so the carrier accepts it and can attest a diverted call.
            number, name = pv(AVP_CALLER_NUM), pv(AVP_CALLER_NAME)
            KSR.hdr.remove("P-Asserted-Identity")
            KSR.hdr.append(rules.asserted_identity_header(number, name, self.realm))
            KSR.hdr.remove("Diversion")
            KSR.hdr.append(rules.diversion_header(pv(AVP_DID), self.realm, "follow-me"))
            if pv("$fU") != number:
                display = f'"{name}"' if name else ""
                KSR.uac.uac_replace_from(display, f"sip:{number}@{self.realm}")
            KSR.setbflag(FLB_MOBILE)
        if KSR.textops.has_body_type("application/sdp") > 0:
            if KSR.rtpengine.rtpengine_offer(RTP_BRANCH) < 0:
                KSR.xlog.xlog("L_ERR", "rtpengine offer failed for branch $T_branch_idx\n")
                KSR.tmx.t_drop()
        return 1

    @guarded
    def ksr_reply_media(self, msg) -> int:
        code = int(pv("$rs") or 0)
        if 100 < code < 300 and KSR.textops.has_body_type("application/sdp") > 0:
            KSR.rtpengine.rtpengine_answer(RTP_BRANCH)
        if 200 <= code < 300:
            self.call_answered(pv(AVP_KIND), pv(AVP_EXT), pv(AVP_SUB_ID), pv(AVP_CALLER_NUM),
                               pv(AVP_CALLER_NAME), pv(AVP_CONTACT), pv(AVP_RANG))
        elif code >= 300:
            # A branch that lost (CANCELled, busy, declined) leaves rtpengine now, scoped to its
            # own via-branch: a stale branch would later confuse a handoff on this call.
            KSR.rtpengine.rtpengine_delete(RTP_BRANCH)
        return 1

    @guarded
    def ksr_reply_indialog(self, msg) -> int:
        if KSR.textops.has_body_type("application/sdp") > 0:
            KSR.rtpengine.rtpengine_answer(RTP_COMMON)
        return 1

    @guarded
    def ksr_branch_failure_twin(self, msg) -> int:
        """The twin leg failed on one gateway (5xx, 408) while the desk may still ring: try
        the next gateway of the set for the mobile alone."""
        code = int(pv("$T_reply_code") or 0)
        if not KSR.isbflagset(FLB_MOBILE) or not rules.gateway_failed(code) \
                or KSR.tm.t_is_canceled() > 0:
            return 1
        KSR.pv.sets("$ru", f"sip:{pv(AVP_TWIN)}@{self.realm}")
        if KSR.dispatcher.ds_next_domain() < 0:
            return 1
        KSR.xlog.xlog("L_INFO", f"twin leg failed with {code}: next gateway $ru\n")
        KSR.tm.t_on_branch("ksr_branch_media")
        KSR.tm.t_on_branch_failure("ksr_branch_failure_twin")
        KSR.tm.t_relay()
        return 1

    @guarded
    def ksr_failure_twin(self, msg) -> int:
        if KSR.tm.t_is_canceled() > 0:
            return 1
        code = int(pv("$T_reply_code") or 0)
        # Busy everywhere, declined, or nobody answered in time: the subscriber's own mailbox.
        self.to_voicemail(pv(AVP_VMBOX), pv(AVP_DID), rules.voicemail_reason(code))
        return 1

    @guarded
    def ksr_failure_voicemail(self, msg) -> int:
        KSR.rtpengine.rtpengine_delete0()
        return 1

    @guarded
    def ksr_failure_outbound(self, msg) -> int:
        if KSR.tm.t_is_canceled() > 0:
            return 1
        code = int(pv("$T_reply_code") or 0)
        if rules.gateway_failed(code) and KSR.dispatcher.ds_next_domain() > 0:
            self.relay("ksr_failure_outbound")
            return 1
        KSR.rtpengine.rtpengine_delete0()
        return 1


def mod_init() -> Handler:
    logging.basicConfig(level=logging.INFO)
    return Handler(load_config())
