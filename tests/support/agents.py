"""Loopback roles of the test stack and helpers to put subscribers in place."""
from __future__ import annotations

import psycopg

from twinctl.commands import subscriber as subscriber_cmd
from twinctl.config import SiteConfig

TRUNK_IP = "127.0.1.2"        # the carrier: callers to DIDs, and the mobile behind it
VOICEMAIL_IP = "127.0.1.4"
DESK_IPS = ("127.0.1.3", "127.0.1.5", "127.0.1.6", "127.0.1.7")
STRANGER_IP = "127.0.1.9"     # not a trunk, not a phone


def add_subscriber(conn: psycopg.Connection, cfg: SiteConfig, ext: str, did: str,
                   password: str = "secret1", **kw) -> dict:
    return subscriber_cmd.add_subscriber(conn, cfg, ext, did, f"User {ext}", password, **kw)
