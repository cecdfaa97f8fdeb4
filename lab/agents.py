"""Loopback roles of the test stack and helpers to put subscribers in place."""
from __future__ import annotations

import psycopg

from twinctl.commands import subscriber as subscriber_cmd
from twinning import config as site_config
from twinning.config import SiteConfig

# The roles sit beside the proxy (x.y.z.1) of the stack the suite runs against.
_NET = site_config.load().proxy_address.rsplit(".", 1)[0]
TRUNK_IP = f"{_NET}.2"        # the carrier: callers to DIDs, and the mobile behind it
VOICEMAIL_IP = f"{_NET}.4"
DESK_IPS = tuple(f"{_NET}.{n}" for n in (3, 5, 6, 7))
STRANGER_IP = f"{_NET}.9"     # not a trunk, not a phone
SECOND_GATEWAY_IP = f"{_NET}.12"   # another carrier gateway, for failover between gateways


# The lab's mobiles are machines that answer within milliseconds: the rule that takes such an
# answer for the carrier's voicemail (routing.twinleg) is off for the subscribers the lab adds,
# unless a test asks for it (the voicemail-avoidance tests give the product's default).
LAB_ANSWER_TOO_SOON_MS = 0


def add_subscriber(conn: psycopg.Connection, cfg: SiteConfig, ext: str, did: str,
                   password: str = "secret1",
                   answer_too_soon_ms: int | None = LAB_ANSWER_TOO_SOON_MS, **kw) -> dict:
    row = subscriber_cmd.add_subscriber(conn, cfg, ext, did, f"User {ext}", password, **kw)
    if answer_too_soon_ms is not None:
        row = subscriber_cmd.set_twin_leg(conn, ext, answer_too_soon_ms=answer_too_soon_ms)
    return row
