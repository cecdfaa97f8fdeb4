"""What a finished call may leave behind, checked in one place: after the calls have ended,
nothing of them may remain in Kamailio, rtpengine or PostgreSQL.

A minimal version (the soak needs it now); a fuller module replaces it, with this signature.
"""
from __future__ import annotations

import time

import psycopg

from rtpctl import Client
from twinctl import rpc


def residue(cfg) -> dict[str, object]:
    """Everything left now, by name; an empty dict when nothing is."""
    left: dict[str, object] = {}
    dialogs = rpc.call(cfg, "dlg.list") or []
    if dialogs:
        left["dialogs"] = [d.get("call-id", d) if isinstance(d, dict) else d for d in dialogs]
    legs = int(rpc.call(cfg, "dlg.profile_get_size", "twin_legs") or 0)
    if legs:
        left["twin_legs profile"] = legs
    entries = [e.get("name") for slot in rpc.call(cfg, "htable.dump", "call") or []
               for e in slot.get("slot", [])]
    if entries:
        left["htable call"] = entries
    with Client(cfg.rtpengine_ng.host, cfg.rtpengine_ng.port) as client:
        sessions = client.list(limit=1_000_000)
    if sessions:
        left["rtpengine sessions"] = sessions
    with psycopg.connect(cfg.dsn(), autocommit=True) as db:
        rows = [r[0] for r in db.execute("SELECT key_name FROM htable")]
        live = [r[0] for r in db.execute("SELECT call_id FROM call WHERE ended_at IS NULL")]
    if rows:
        left["PostgreSQL htable rows"] = rows
    if live:
        left["live call rows"] = live
    transactions = int((rpc.call(cfg, "tm.stats") or {}).get("current", 0))
    if transactions:
        left["tm transactions"] = transactions
    return left


def assert_no_residue(cfg, timeout: float = 10.0) -> None:
    """Wait up to `timeout` s for every trace of the calls to go; then fail naming what is
    left (tm and the dialog module keep an ended call a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        left = residue(cfg)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if left:
        shown = {k: (v if not isinstance(v, list) else f"{len(v)}: {v[:5]}")
                 for k, v in left.items()}
        raise AssertionError(f"left behind after {timeout:g} s: {shown}")
