"""REGISTER and digest authentication of desk phones (auth_db against our subscriber table,
HA1 only)."""
from __future__ import annotations

from typing import Callable

import KSR

from . import security
from .kemi import DONE, NEXT, pv, reply
from .store import StoreUnavailable

CREDENTIALS_TABLE = "subscriber"
LOCATION_TABLE = "location"
# auth codes: -2 bad password, -3 unknown user, -8 auth user not the To/From user
REFUSED = (-2, -3, -8)


class RegistrarRoutes:
    def __init__(self, realm: str, own_addresses: frozenset[str] = frozenset(),
                 is_trunk: Callable[[str], bool] = lambda _ip: False):
        self.realm = realm
        # The proxy's addresses (and its cluster peers'): no phone registers at any port of
        # them. is_trunk: a trunk's IP (the store asks the database; REGISTERs are rare).
        self.own_addresses = own_addresses
        self.is_trunk = is_trunk

    def register(self, method: str) -> bool:
        if method != "REGISTER":
            return NEXT
        if not KSR.is_myself_ruri():
            return reply(403, "Not Our Domain")
        if self.authenticate() is DONE:
            return DONE
        try:
            refusal = security.contact_refusal(
                security.contacts_of(pv("$mb")),
                lambda ip, port: ip in self.own_addresses or
                KSR.is_myself(f"sip:{ip}:{port}") > 0,
                lambda ip, _port: self.is_trunk(ip))
        except StoreUnavailable as exc:
            KSR.err(f"registration of {pv('$au')} not judged, database unavailable: {exc}\n")
            return reply(503, "Service Unavailable")
        if refusal is not None:
            security.refused(security.CONTACT_NOT_ALLOWED, f"{pv('$au')}: {refusal}")
            return reply(403, security.CONTACT_REFUSED)
        if KSR.registrar.save(LOCATION_TABLE, 0) < 0:
            KSR.sl.sl_reply_error()
        return DONE

    def authenticate(self) -> bool:
        """NEXT once the request carries valid credentials; else challenged or refused."""
        code = KSR.auth_db.auth_check(self.realm, CREDENTIALS_TABLE, 1)
        if code >= 0:
            KSR.auth.consume_credentials()
            return NEXT
        # Unknown user and bad password get the same 403, so the reply tells a scanner nothing.
        if code in REFUSED:
            return reply(403, "Forbidden")
        KSR.auth.auth_challenge(self.realm, 0)
        return DONE
