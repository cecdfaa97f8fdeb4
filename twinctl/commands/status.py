"""twinctl status: presence statuses and where each sends calls ("Manage Status")."""
from __future__ import annotations

from typing import Optional

import psycopg
import typer

from .. import context, output
from ..db import connect
from ..errors import NotFound, TwinctlError
from .common import subscriber_row

app = typer.Typer(no_args_is_help=True, help="Presence statuses and their call routing.")

SEND_TO = ("ring-group", "voicemail")
RING_MEMBERS = ("desk", "mobile")


def parse_ring(text: str) -> tuple[bool, bool]:
    members = {m.strip().lower() for m in text.split(",") if m.strip()}
    unknown = members - set(RING_MEMBERS)
    if unknown:
        raise TwinctlError(f"unknown ring-group member(s) {', '.join(sorted(unknown))}; "
                           f"use desk and/or mobile, e.g. --ring desk,mobile")
    return "desk" in members, "mobile" in members


def parse_send_to(text: str) -> str:
    value = text.strip().lower().replace("_", "-").replace(" ", "-")
    if value in ("ringgroup", "my-ring-group"):
        value = "ring-group"
    if value not in SEND_TO:
        raise TwinctlError(f"unknown --send-to {text!r}; one of: {', '.join(SEND_TO)}")
    return value


def status_row(conn: psycopg.Connection, sub: dict, name: str) -> dict:
    row = conn.execute("SELECT * FROM status WHERE subscriber_id = %s AND lower(name) = lower(%s)",
                       (sub["id"], name.strip())).fetchone()
    if row is None:
        names = [r["name"] for r in conn.execute(
            "SELECT name FROM status WHERE subscriber_id = %s ORDER BY position", (sub["id"],))]
        raise NotFound(f"subscriber {sub['extension']} has no status {name!r}; "
                       f"statuses: {', '.join(names)}")
    return row


def list_statuses(conn: psycopg.Connection, ext: str) -> list[dict]:
    sub = subscriber_row(conn, ext)
    rows = conn.execute(
        "SELECT name, send_to::text AS send_to, ring_desk, ring_mobile,"
        " id = %s AS current FROM status WHERE subscriber_id = %s ORDER BY position, id",
        (sub["current_status_id"], sub["id"])).fetchall()
    for row in rows:
        row["ring"] = [m for m, on in zip(RING_MEMBERS, (row["ring_desk"], row["ring_mobile"])) if on]
    return rows


def edit_status(conn: psycopg.Connection, ext: str, name: str, send_to: str,
                ring: Optional[str]) -> dict:
    sub = subscriber_row(conn, ext)
    row = status_row(conn, sub, name)
    send_to = parse_send_to(send_to)
    desk, mobile = parse_ring(ring) if ring is not None else (row["ring_desk"], row["ring_mobile"])
    if send_to == "ring-group" and not (desk or mobile):
        raise TwinctlError("a ring group needs at least one member: --ring desk, mobile or "
                           "desk,mobile")
    conn.execute("UPDATE status SET send_to = %s, ring_desk = %s, ring_mobile = %s WHERE id = %s",
                 (send_to, desk, mobile, row["id"]))
    return {"name": row["name"], "send_to": send_to,
            "ring": [m for m, on in zip(RING_MEMBERS, (desk, mobile)) if on]}


def set_current(conn: psycopg.Connection, ext: str, name: str) -> str:
    sub = subscriber_row(conn, ext, lock=True)
    row = status_row(conn, sub, name)
    conn.execute("UPDATE subscriber SET current_status_id = %s WHERE id = %s",
                 (row["id"], sub["id"]))
    return row["name"]


@app.command("list")
def list_cli(ext: str, as_json: bool = output.JsonOption) -> None:
    """List the statuses; the current one is marked."""
    with connect(context.config()) as conn:
        rows = list_statuses(conn, ext)
    output.table(rows, ("current", "name", "send_to", "ring"), as_json)


@app.command("edit")
def edit_cli(ext: str, status: str,
             send_to: str = typer.Option(..., "--send-to", help="ring-group | voicemail"),
             ring: Optional[str] = typer.Option(None, "--ring",
                                                help="Ring-group members: desk,mobile"),
             as_json: bool = output.JsonOption) -> None:
    """Say where calls go while STATUS is current."""
    with connect(context.config()) as conn:
        row = edit_status(conn, ext, status, send_to, ring)
    if as_json:
        output.record(row, True)
    else:
        members = f" ({', '.join(row['ring']) or 'nobody'})" if row["send_to"] == "ring-group" else ""
        output.info(f"{ext} / {row['name']}: send calls to {row['send_to']}{members}")


@app.command("set")
def set_cli(ext: str, status: str) -> None:
    """Make STATUS the current status (applies to the next call)."""
    with connect(context.config()) as conn:
        name = set_current(conn, ext, status)
    output.info(f"{ext} is now {name}")
