"""twinctl status: presence statuses and where each sends calls ("Manage Status")."""
from __future__ import annotations

from typing import Optional

import psycopg
import typer

from twinning.service import statuses
from twinning.service.statuses import (RING_MEMBERS, SEND_TO, edit_status,  # noqa: F401
                                       parse_ring, parse_send_to, set_current, status_row)

from .. import context, output
from ..db import connect

app = typer.Typer(no_args_is_help=True, help="Presence statuses and their call routing.")


def list_statuses(conn: psycopg.Connection, ext: str) -> list[dict]:
    """The service's list without the row ids (the page's handles, not the operator's)."""
    rows = statuses.list_statuses(conn, ext)
    for row in rows:
        del row["id"]
    return rows


@app.command("list")
def list_cli(ext: str, as_json: bool = output.JsonOption) -> None:
    """List the statuses; the current one is marked."""
    with connect(context.config()) as conn:
        rows = list_statuses(conn, ext)
    output.table(rows, ("current", "name", "send_to", "ring"), as_json)


@app.command("edit")
def edit_cli(ext: str, status: str,
             send_to: Optional[str] = typer.Option(None, "--send-to",
                                                   help="ring-group | voicemail"),
             ring: Optional[str] = typer.Option(None, "--ring",
                                                help="Ring-group members: desk,mobile"),
             mobile_delay_s: Optional[int] = typer.Option(
                 None, "--mobile-delay-s",
                 help="Ring the desk first: seconds before the mobile rings too (default 0)."),
             as_json: bool = output.JsonOption) -> None:
    """Say where calls go while STATUS is current."""
    with connect(context.config()) as conn:
        row = edit_status(conn, ext, status, send_to, ring, mobile_delay_s)
    if as_json:
        output.record(row, True)
    else:
        members = f" ({', '.join(row['ring']) or 'nobody'})" if row["send_to"] == "ring-group" else ""
        delay = f", mobile after {row['mobile_delay_s']} s" \
            if row["mobile_delay_s"] and "mobile" in row["ring"] else ""
        output.info(f"{ext} / {row['name']}: send calls to {row['send_to']}{members}{delay}")


@app.command("set")
def set_cli(ext: str, status: str) -> None:
    """Make STATUS the current status (applies to the next call)."""
    with connect(context.config()) as conn:
        name = set_current(conn, ext, status)
    output.info(f"{ext} is now {name}")
