"""The KEMI adapter: the only module that touches KSR.

The request route reads like a table of contents (reqinit, cancel, in-dialog, local, register,
invite); each step is a small method that either finishes the request (returns DONE) or lets the
route go on (returns NEXT). Decisions are made by the pure modules beside this one.
"""
from __future__ import annotations

import KSR  # provided by app_python3 inside Kamailio

from twinctl.config import SiteConfig, load as load_config

NEXT = True
DONE = False


class Handler:
    def __init__(self, cfg: SiteConfig):
        self.cfg = cfg
        self.realm = cfg.sip_domain

    # ---- lifecycle -------------------------------------------------------------------------
    def child_init(self, rank: int) -> int:
        return 0

    # ---- request route ---------------------------------------------------------------------
    def ksr_request_route(self, msg) -> int:
        for step in (self.reqinit, self.cancel, self.within_dialog, self.local_request,
                     self.register):
            if step() is DONE:
                return 1
        KSR.sl.sl_send_reply(501, "Not Implemented")
        return 1

    def ksr_reply_route(self, msg) -> int:
        return 1

    def ksr_onsend_route(self, msg) -> int:
        return 1

    # ---- steps -----------------------------------------------------------------------------
    def reqinit(self) -> bool:
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return DONE
        if KSR.sanity.sanity_check(17895, 7) < 0:
            # sanity has already answered 400 (or dropped what it cannot answer).
            KSR.xlog.xlog("L_NOTICE", "malformed $rm from $si:$sp dropped\n")
            return DONE
        return NEXT

    def cancel(self) -> bool:
        if not KSR.is_CANCEL():
            return NEXT
        if KSR.tm.t_check_trans() > 0:
            KSR.tm.t_relay()
        return DONE

    def within_dialog(self) -> bool:
        if KSR.siputils.has_totag() < 0:
            return NEXT
        if KSR.rr.loose_route() > 0:
            KSR.tm.t_relay()
            return DONE
        if KSR.is_ACK():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return DONE
        KSR.sl.sl_send_reply(404, "Not Here")
        return DONE

    def local_request(self) -> bool:
        """OPTIONS to the proxy itself: the keepalive and health probe."""
        if KSR.is_OPTIONS() and not KSR.pv.get("$rU") and KSR.is_myself_ruri():
            KSR.sl.sl_send_reply(200, "OK")
            return DONE
        return NEXT

    def register(self) -> bool:
        if not KSR.is_REGISTER():
            return NEXT
        if not KSR.is_myself_ruri():
            KSR.sl.sl_send_reply(403, "Not Our Domain")
            return DONE
        code = KSR.auth_db.auth_check(self.realm, "subscriber", 1)
        if code < 0:
            self.challenge_or_refuse(code, KSR.auth.auth_challenge)
            return DONE
        KSR.auth.consume_credentials()
        if KSR.registrar.save("location", 0) < 0:
            KSR.sl.sl_reply_error()
        return DONE

    def challenge_or_refuse(self, code: int, challenge) -> None:
        """Challenge when credentials are missing or stale; refuse wrong ones outright.

        auth codes: -2 bad password, -3 unknown user, -8 auth user not the To/From user. Both
        unknown user and bad password get the same 403, so the reply tells a scanner nothing.
        """
        if code in (-2, -3, -8):
            KSR.sl.sl_send_reply(403, "Forbidden")
        else:
            challenge(self.realm, 0)


def mod_init() -> Handler:
    return Handler(load_config())
