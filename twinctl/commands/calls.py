"""twinctl calls: the call and handoff log."""
from __future__ import annotations

import typer

from .. import context, output
from ..db import connect
from ..errors import NotFound

app = typer.Typer(no_args_is_help=True, help="Calls through the proxy and their handoffs.")


def list_calls(conn, live_only: bool, limit: int) -> list[dict]:
    return conn.execute(
        "SELECT c.call_id, s.extension, c.direction, c.caller, c.callee, c.answered_by,"
        " c.started_at, c.ended_at, c.outcome,"
        " (SELECT count(*) FROM handoff h WHERE h.call_id = c.call_id) AS handoffs"
        " FROM call c LEFT JOIN subscriber s ON s.id = c.subscriber_id"
        " WHERE NOT %s OR c.ended_at IS NULL ORDER BY c.started_at DESC LIMIT %s",
        (live_only, limit)).fetchall()


def show_call(conn, call_id: str) -> dict:
    row = conn.execute(
        "SELECT c.*, s.extension FROM call c LEFT JOIN subscriber s ON s.id = c.subscriber_id"
        " WHERE c.call_id = %s", (call_id,)).fetchone()
    if row is None:
        raise NotFound(f"no call with Call-ID {call_id!r}")
    row.pop("id", None)
    row.pop("subscriber_id", None)
    row["handoffs"] = conn.execute(
        "SELECT from_device, to_device, requested_at, answered_at, completed_at, outcome,"
        " switch_ms FROM handoff WHERE call_id = %s ORDER BY id", (call_id,)).fetchall()
    return row


@app.command("list")
def list_cli(live: bool = typer.Option(False, "--live", help="Only calls in progress."),
             limit: int = typer.Option(50, "--limit", min=1, max=10000),
             as_json: bool = output.JsonOption) -> None:
    """List recent calls, newest first."""
    with connect(context.config()) as conn:
        output.table(list_calls(conn, live, limit),
                     ("call_id", "extension", "direction", "caller", "callee", "answered_by",
                      "started_at", "ended_at", "handoffs"), as_json)


@app.command("show")
def show_cli(call_id: str, as_json: bool = output.JsonOption) -> None:
    """Show one call with its handoffs."""
    with connect(context.config()) as conn:
        row = show_call(conn, call_id)
    if as_json:
        output.record(row, True)
        return
    handoffs = row.pop("handoffs")
    output.record(row, False)
    print()
    output.table(handoffs, ("from_device", "to_device", "requested_at", "completed_at",
                            "outcome", "switch_ms"), False)
