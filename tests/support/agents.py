"""Loopback roles of the test stack and helpers to put subscribers in place."""
from __future__ import annotations

import os

import psycopg

from twinctl import config as site_config
from twinctl.commands import subscriber as subscriber_cmd
from twinctl.config import SiteConfig

# The roles sit beside the proxy (x.y.z.1) of the stack the suite runs against.
_NET = site_config.load().proxy_address.rsplit(".", 1)[0]
TRUNK_IP = f"{_NET}.2"        # the carrier: callers to DIDs, and the mobile behind it
VOICEMAIL_IP = f"{_NET}.4"
DESK_IPS = tuple(f"{_NET}.{n}" for n in (3, 5, 6, 7))
STRANGER_IP = f"{_NET}.9"     # not a trunk, not a phone
SPARE_GW_IP = f"{_NET}.12"    # a second carrier gateway, added by the tests that need one


def add_subscriber(conn: psycopg.Connection, cfg: SiteConfig, ext: str, did: str,
                   password: str = "secret1", **kw) -> dict:
    return subscriber_cmd.add_subscriber(conn, cfg, ext, did, f"User {ext}", password, **kw)
