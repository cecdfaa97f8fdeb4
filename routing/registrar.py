"""REGISTER and digest authentication of desk phones (auth_db against our subscriber table,
HA1 only)."""
from __future__ import annotations

import KSR

from .kemi import DONE, NEXT, reply

CREDENTIALS_TABLE = "subscriber"
LOCATION_TABLE = "location"
# auth codes: -2 bad password, -3 unknown user, -8 auth user not the To/From user
REFUSED = (-2, -3, -8)


class RegistrarRoutes:
    def __init__(self, realm: str):
        self.realm = realm

    def register(self, method: str) -> bool:
        if method != "REGISTER":
            return NEXT
        if not KSR.is_myself_ruri():
            return reply(403, "Not Our Domain")
        if self.authenticate() is DONE:
            return DONE
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
