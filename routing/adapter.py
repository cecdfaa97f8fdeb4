"""The KEMI adapter: app_python3's entry. The request route reads like a table of contents;
each step belongs to a route module by concern and either finishes the request (DONE) or lets
the route go on (NEXT). This module only wires the modules together and names the routes."""
from __future__ import annotations

import json
import logging

import KSR  # provided by app_python3 inside Kamailio

from rtpctl import Client, NodeSet
from twinning import licence, numbers
from twinning.config import KAMAILIO, SiteConfig, load as load_config

from . import decisions as rules
from .calls import CallStore
from .decisions import Dialled
from .engines import Engine, EngineWatch, rpc_enable_request
from .handoff.routes import HandoffRoutes
from .handoff.state import LEG_PREFIX
from .kemi import DONE, Htable, guarded, pv, reply
from .media import Media
from .metrics import Metrics
from .overload import Admission
from .registrar import RegistrarRoutes
from .requests import RequestRoutes
from .ring import RingRoutes
from .store import BatchWriter, CallLog, StoreUnavailable, SubscriberStore
from .twinleg import TwinLegs

DB_QUEUE = "dbwrites"               # mqueue the background writer drains
SUBSCRIBER_HTABLE = "subs"          # subscribers, shared by the workers (see routing.store)
CALL_HTABLE = "call"                # stitched calls (see routing.calls)
NG_TIMEOUT_S, NG_RETRIES = 0.5, 2   # the handoff's own rtpengine commands

log = logging.getLogger("routing")


def twin_refusal(sub, allowed_countries: tuple[str, ...] = ()) -> str | None:
    """Why the subscriber's calls cannot go to the twin now (None: they can)."""
    if sub is None or not sub.twin_number:
        return "No Twin Number Set"
    if not licence.allows_twinning(sub.license):
        return "License Does Not Include Twinning"
    if not numbers.is_dialable_twin(sub.twin_number, allowed_countries):
        return "Twin Number Not Allowed"
    return None


def queue_write(op: str, params: list) -> None:
    if KSR.mqueue.mq_add(DB_QUEUE, op, json.dumps(params)) < 0:
        KSR.err(f"call-log queue full: {op} dropped\n")


class Handler:
    def __init__(self, cfg: SiteConfig):
        self.cfg = cfg
        self.realm = cfg.sip_domain
        self.store: SubscriberStore | None = None
        self.engine_watch: EngineWatch | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def child_init(self, rank: int) -> int:
        """Each worker builds its collaborators after the fork (its own DB connection)."""
        self.wire(SubscriberStore(self.cfg.dsn(KAMAILIO), self.cfg.statement_timeout_ms,
                                  shared=Htable(SUBSCRIBER_HTABLE)))
        if rank > 0:
            self.metrics.declare_series()
            try:                    # connect now, so the first call does not pay for it
                self.store._connect()
            except StoreUnavailable as exc:
                KSR.warn(f"database not reachable yet ({exc}); will retry per request\n")
        return 0

    def wire(self, store) -> None:
        """The route modules and what they share, around one subscriber store."""
        cfg = self.cfg
        self.store = store
        self.call_log = CallLog(queue_write)
        self.writer = BatchWriter(self.store)
        self.unwritten: list[tuple[str, list]] = []
        engines = [(e.host, e.port) for e in cfg.rtpengines]
        media = Media(lambda: Client(cfg.rtpengine_ng.host, cfg.rtpengine_ng.port,
                                     timeout=NG_TIMEOUT_S, retries=NG_RETRIES),
                      (lambda: NodeSet.from_addresses(engines, timeout=NG_TIMEOUT_S,
                                                      retries=NG_RETRIES))
                      if len(engines) > 1 else None)
        calls = CallStore(Htable(CALL_HTABLE), self.call_log)
        self.metrics = Metrics()
        self.admission = Admission(cfg, self.metrics)
        self.legs = TwinLegs(cfg, self.call_log, self.metrics, media)
        self.handoff = HandoffRoutes(cfg, calls, media, self.call_log, self.store,
                                     lambda sub: twin_refusal(sub, cfg.allowed_nanp_countries),
                                     self.metrics, self.legs)
        self.requests = RequestRoutes(media, self.handoff, self.legs, cfg)
        self.registrar = RegistrarRoutes(
            self.realm, frozenset((cfg.proxy_address, *cfg.peers)),
            lambda ip: self.store.is_trunk_address(ip))
        self.ring = RingRoutes(cfg, media, self.handoff, self.call_log, self.metrics, self.legs)

    def ready(self) -> None:
        if self.store is None:
            self.child_init(0)

    # ---- request route ---------------------------------------------------------------------
    @guarded
    def ksr_request_route(self, msg) -> int:
        self.ready()
        method = pv("$rm")              # read once: each step compares it, no KSR call
        for step in (self.requests.reqinit, self.requests.cluster_message,
                     self.requests.cancel, self.requests.within_dialog,
                     self.requests.local_request, self.registrar.register, self.legs.request,
                     self.invite):
            if step(method) is DONE:
                return 1
        reply(405, "Method Not Allowed")
        return 1

    def invite(self, method: str) -> bool:
        if method != "INVITE":
            return reply(405, "Method Not Allowed")
        if self.admission.new_call() is DONE:
            return DONE
        target = rules.classify_dialled(pv("$rU"), self.cfg.handoff_code,
                                        self.cfg.emergency_numbers)
        try:
            if KSR.permissions.allow_source_address(self.cfg.trusted_group) > 0:
                return self.from_trunk(target)
            return self.from_phone(target)
        except StoreUnavailable as exc:
            KSR.err(f"subscriber data unavailable: {exc}\n")
            return reply(503, "Service Unavailable")

    def from_trunk(self, target: rules.Target) -> bool:
        sub = self.store.by_did(target.value) if target.kind is Dialled.NUMBER else None
        if sub is None:
            return reply(404, "Not Found")
        # Carriers send the caller as 10 digits, 1+10 or E.164: the mobile leg asserts E.164.
        caller_num = numbers.normalize_nanp(pv("$fU")) or pv("$fU")
        return self.ring.twin_ring(sub, caller_num, pv("$fn").strip('"'))

    def from_phone(self, target: rules.Target) -> bool:
        if target.kind is Dialled.NUMBER and KSR.auth.has_credentials(self.realm) < 0:
            # Only a trunk may send calls to our DIDs; a desk phone (it has registered from
            # this address) is challenged like for any call, anything else is refused.
            if self.store.by_did(target.value) and not self.store.is_phone_address(pv("$si")):
                return reply(403, "Forbidden")
        if self.registrar.authenticate() is DONE:
            return DONE
        caller = self.store.by_extension(pv("$au"))
        if caller is None:
            return reply(403, "Forbidden")
        if target.kind is Dialled.HANDOFF:
            return self.handoff.code_dialled(caller.extension)
        if target.kind is Dialled.EMERGENCY:
            return self.ring.outbound(caller, target.value)
        callee = None
        if target.kind is Dialled.EXTENSION:
            callee = self.store.by_extension(target.value)
        elif target.kind is Dialled.NUMBER:
            callee = self.store.by_did(target.value)
            if callee is None:
                refusal = numbers.outbound_refusal(target.value, self.cfg.allowed_nanp_countries)
                return reply(403, refusal) if refusal else \
                    self.ring.outbound(caller, target.value)
        if callee is None:
            return reply(404, "Not Found")
        return self.ring.twin_ring(callee, caller.did, caller.display_name)

    # ---- the other routes, by name (t_on_branch, t_on_reply, ... and the core callbacks) ---
    @guarded
    def ksr_reply_route(self, msg) -> int:
        # Every reply passes here first: the twin legs' 2xx the caller must not get end here
        # (dropped before tm), and the proxy's own handoff legs learn their answer. app_python3
        # ignores the value a route returns: only set_drop() drops the reply.
        self.ready()
        if self.legs.guard() is DONE:
            KSR.set_drop()
            return 0
        if pv("$ci").startswith(LEG_PREFIX) and self.legs.from_self():
            self.handoff.leg_reply()
        return 1

    @guarded
    def ksr_branch_media(self, msg) -> int:
        self.ring.branch()
        return 1

    @guarded
    def ksr_reply_media(self, msg) -> int:
        self.ring.reply()
        return 1

    @guarded
    def ksr_reply_indialog(self, msg) -> int:
        self.requests.reply_in_dialog()
        return 1

    # ---- the twin leg's own transaction (routing.twinleg) --------------------------------
    @guarded
    def ksr_twinleg_go(self, msg) -> int:
        self.ready()
        self.legs.go()
        return 1

    @guarded
    def ksr_branch_twinleg(self, msg) -> int:
        self.legs.branch()
        return 1

    @guarded
    def ksr_reply_twinleg(self, msg) -> int:
        self.legs.reply()
        return 1

    @guarded
    def ksr_branch_failure_twinleg(self, msg) -> int:
        self.legs.branch_failure()
        return 1

    @guarded
    def ksr_failure_twinleg(self, msg) -> int:
        self.legs.failure()
        return 1

    @guarded
    def ksr_failure_twin(self, msg) -> int:
        self.ring.failure_twin()
        return 1

    @guarded
    def ksr_failure_voicemail(self, msg) -> int:
        self.ring.media.drop_call()
        return 1

    @guarded
    def ksr_failure_outbound(self, msg) -> int:
        self.ring.failure_outbound()
        return 1

    @guarded
    def ksr_dialog_event(self, msg, event: str = "") -> int:
        if event == "dialog:end":
            self.ready()
            self.handoff.dialog_ended(pv("$dlg(callid)"))
        return 1

    @guarded
    def ksr_xhttp_event(self, msg, *_event) -> int:
        """HTTP on a TCP listener: GET /metrics on the metrics listener (xhttp_prom), nothing
        else anywhere."""
        if pv("$Rp") == str(self.cfg.metrics_kamailio.port) and \
                KSR.xhttp_prom.check_uri() > 0:
            KSR.xhttp_prom.dispatch()
        else:
            KSR.xhttp.xhttp_reply(404, "Not Found", "text/plain", "not here\n")
        return 1

    # ---- the twin legs' confirmations (routing.confirm) --------------------------------------
    @guarded
    def ksr_rtimer_legs(self, msg, *_event) -> int:
        """rtimer process: the keys rtpengine saw, and the confirmations that ran out."""
        self.ready()
        self.legs.confirm.tick()
        return 1

    @guarded
    def ksr_rtimer_engines(self, msg, *_event) -> int:
        """rtimer process of a cluster's proxy: the rtpengine watch (routing.engines)."""
        if self.engine_watch is None:
            self.engine_watch = EngineWatch(
                [Engine(e.ng_url, Client(e.host, e.port))
                 for e in self.cfg.rtpengines],
                module_enable, lambda text: KSR.warn(text + "\n"),
                show=Metrics.engine_in_set)
        self.engine_watch.tick()
        return 1

    # ---- the background writer ---------------------------------------------------------------
    @guarded
    def ksr_rtimer_dbwrites(self, msg, *_event) -> int:
        """rtimer process: write what the workers queued, in one round trip per tick. Kept
        in memory and retried while the database is unreachable (bounded)."""
        self.ready()
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


def module_enable(url: str, on: bool) -> bool:
    """rtpengine.enable through jsonrpcs, in this process; True if the module did it."""
    if KSR.jsonrpcs.exec(rpc_enable_request(url, on)) < 0:
        return False
    try:
        status = json.loads(str(KSR.pv.get("$jsonrpl(body)")))["result"]["status"]
    except (ValueError, KeyError, TypeError):
        return False
    return status == ("enable" if on else "disable")


def mod_init() -> Handler:
    logging.basicConfig(level=logging.INFO)
    return Handler(load_config())
