"""twinctl twin: the subscriber's one external number ("My Numbers", label Mobile)."""
from __future__ import annotations

from typing import Optional

import psycopg
import typer

from twinning.numbers import parse_nanp

from .. import context, output
from ..db import connect
from ..errors import TwinctlError
from .common import subscriber_row

app = typer.Typer(no_args_is_help=True, help="The twin (external) number of a subscriber.")


def set_twin(conn: psycopg.Connection, ext: str, number: str, label: Optional[str]) -> dict:
    sub = subscriber_row(conn, ext, lock=True)
    e164 = parse_nanp(number).e164
    if e164 == sub["did"]:
        raise TwinctlError(f"{e164} is the subscriber's own DID; a twin must be another phone")
    if label is not None:
        label = label.strip()
        if not 1 <= len(label) <= 32:
            raise TwinctlError("label must have 1 to 32 characters")
    return conn.execute(
        "INSERT INTO twin (subscriber_id, label, number) VALUES (%s, coalesce(%s, 'Mobile'), %s)"
        " ON CONFLICT (subscriber_id) DO UPDATE SET number = excluded.number,"
        " label = coalesce(%s, twin.label), updated_at = now()"
        " RETURNING label, number",
        (sub["id"], label, e164, label)).fetchone()


def clear_twin(conn: psycopg.Connection, ext: str) -> bool:
    sub = subscriber_row(conn, ext, lock=True)
    return conn.execute("DELETE FROM twin WHERE subscriber_id = %s", (sub["id"],)).rowcount > 0


def show_twin(conn: psycopg.Connection, ext: str) -> Optional[dict]:
    sub = subscriber_row(conn, ext)
    return conn.execute("SELECT label, number FROM twin WHERE subscriber_id = %s",
                        (sub["id"],)).fetchone()


@app.command("set")
def set_cli(ext: str, number: str = typer.Argument(..., help="10-digit number with area code."),
            label: Optional[str] = typer.Option(None, "--label", help='Default "Mobile".'),
            as_json: bool = output.JsonOption) -> None:
    """Set (or replace) the twin number."""
    with connect(context.config()) as conn:
        row = set_twin(conn, ext, number, label)
    if as_json:
        output.record(row, True)
    else:
        output.info(f"twin of {ext}: {row['label']} {row['number']}")


@app.command("clear")
def clear_cli(ext: str) -> None:
    """Remove the twin number."""
    with connect(context.config()) as conn:
        had = clear_twin(conn, ext)
    output.info(f"twin of {ext} cleared" if had else f"{ext} had no twin set")


@app.command("show")
def show_cli(ext: str, as_json: bool = output.JsonOption) -> None:
    """Show the twin number."""
    with connect(context.config()) as conn:
        output.record(show_twin(conn, ext), as_json, empty=f"{ext} has no twin set")
