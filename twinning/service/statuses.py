"""Presence statuses ("Manage Status"): where calls go while each is current, and which one is."""
from __future__ import annotations

from typing import Optional

import psycopg

from .accounts import subscriber_row
from .errors import NotFound, ServiceError

SEND_TO = ("ring-group", "voicemail")
RING_MEMBERS = ("desk", "mobile")
MOBILE_DELAY_MAX_S = 60         # "ring the desk first": longer and the mobile would never ring


class EmptyRingGroup(ServiceError):
    """Calls sent to a ring group that rings nobody."""


def parse_ring(text: str) -> tuple[bool, bool]:
    members = {m.strip().lower() for m in text.split(",") if m.strip()}
    unknown = members - set(RING_MEMBERS)
    if unknown:
        raise ServiceError(f"unknown ring-group member(s) {', '.join(sorted(unknown))}; "
                           f"use desk and/or mobile, e.g. --ring desk,mobile")
    return "desk" in members, "mobile" in members


def parse_send_to(text: str) -> str:
    value = text.strip().lower().replace("_", "-").replace(" ", "-")
    if value in ("ringgroup", "my-ring-group"):
        value = "ring-group"
    if value not in SEND_TO:
        raise ServiceError(f"unknown --send-to {text!r}; one of: {', '.join(SEND_TO)}")
    return value


def _members(desk: bool, mobile: bool) -> list[str]:
    return [m for m, on in zip(RING_MEMBERS, (desk, mobile)) if on]


def status_row(conn: psycopg.Connection, sub: dict, name: str) -> dict:
    row = conn.execute("SELECT * FROM status WHERE subscriber_id = %s AND lower(name) = lower(%s)",
                       (sub["id"], name.strip())).fetchone()
    if row is None:
        names = [r["name"] for r in conn.execute(
            "SELECT name FROM status WHERE subscriber_id = %s ORDER BY position", (sub["id"],))]
        raise NotFound(f"subscriber {sub['extension']} has no status {name!r}; "
                       f"statuses: {', '.join(names)}")
    return row


def status_by_id(conn: psycopg.Connection, sub: dict, status_id: int) -> dict:
    """One of the subscriber's own statuses by its id; another subscriber's is not found."""
    row = conn.execute("SELECT * FROM status WHERE subscriber_id = %s AND id = %s",
                       (sub["id"], status_id)).fetchone()
    if row is None:
        raise NotFound(f"subscriber {sub['extension']} has no status number {status_id}")
    return row


def list_statuses(conn: psycopg.Connection, ext: str) -> list[dict]:
    sub = subscriber_row(conn, ext)
    rows = conn.execute(
        "SELECT id, name, send_to::text AS send_to, ring_desk, ring_mobile, mobile_delay_s,"
        " id = %s AS current FROM status WHERE subscriber_id = %s ORDER BY position, id",
        (sub["current_status_id"], sub["id"])).fetchall()
    for row in rows:
        row["ring"] = _members(row["ring_desk"], row["ring_mobile"])
    return rows


def route_status(conn: psycopg.Connection, row: dict, send_to: str, desk: bool,
                 mobile: bool, mobile_delay_s: Optional[int] = None) -> dict:
    """The status rules: a ring group has at least one member; the desk-first delay is bounded.
    mobile_delay_s None keeps the status's own."""
    if send_to == "ring-group" and not (desk or mobile):
        raise EmptyRingGroup("a ring group needs at least one member: --ring desk, mobile or "
                           "desk,mobile")
    delay = row["mobile_delay_s"] if mobile_delay_s is None else mobile_delay_s
    if not 0 <= delay <= MOBILE_DELAY_MAX_S:
        raise ServiceError(f"--mobile-delay-s must be 0..{MOBILE_DELAY_MAX_S} s, got {delay}")
    conn.execute("UPDATE status SET send_to = %s, ring_desk = %s, ring_mobile = %s WHERE id = %s",
                 (send_to, desk, mobile, row["id"]))
    if mobile_delay_s is not None:      # the delay is the operator's (the web role may not)
        conn.execute("UPDATE status SET mobile_delay_s = %s WHERE id = %s", (delay, row["id"]))
    return {"name": row["name"], "send_to": send_to, "ring": _members(desk, mobile),
            "mobile_delay_s": delay}


def edit_status(conn: psycopg.Connection, ext: str, name: str, send_to: Optional[str],
                ring: Optional[str], mobile_delay_s: Optional[int] = None) -> dict:
    """send_to and ring as the operator types them; what is not given stays as it is."""
    if send_to is None and ring is None and mobile_delay_s is None:
        raise ServiceError("nothing to change: give --send-to, --ring or --mobile-delay-s")
    sub = subscriber_row(conn, ext)
    row = status_row(conn, sub, name)
    send_to = parse_send_to(send_to) if send_to is not None else row["send_to"]
    desk, mobile = parse_ring(ring) if ring is not None else (row["ring_desk"], row["ring_mobile"])
    return route_status(conn, row, send_to, desk, mobile, mobile_delay_s)


def make_current(conn: psycopg.Connection, sub: dict, row: dict) -> str:
    conn.execute("UPDATE subscriber SET current_status_id = %s WHERE id = %s",
                 (row["id"], sub["id"]))
    return row["name"]


def set_current(conn: psycopg.Connection, ext: str, name: str) -> str:
    sub = subscriber_row(conn, ext, lock=True)
    return make_current(conn, sub, status_row(conn, sub, name))
