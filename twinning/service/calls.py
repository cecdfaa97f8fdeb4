"""The call and handoff log, as the subscriber's own recent calls."""
from __future__ import annotations

import psycopg


def recent_calls(conn: psycopg.Connection, sub: dict, limit: int = 20) -> list[dict]:
    """The subscriber's newest calls, each with its handoffs (oldest first)."""
    calls = conn.execute(
        "SELECT call_id, direction, caller, callee, rang, answered_by, started_at, answered_at,"
        " ended_at, outcome FROM call WHERE subscriber_id = %s"
        " ORDER BY started_at DESC, id DESC LIMIT %s", (sub["id"], limit)).fetchall()
    by_id = {c["call_id"]: c for c in calls}
    for call in calls:
        call["handoffs"] = []
    if by_id:
        for row in conn.execute(
                "SELECT call_id, from_device, to_device, requested_at, completed_at, outcome"
                " FROM handoff WHERE call_id = ANY(%s) ORDER BY id", (list(by_id),)):
            by_id[row["call_id"]]["handoffs"].append(row)
    return calls
