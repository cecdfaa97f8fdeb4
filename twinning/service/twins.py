"""The twin: the subscriber's one external number ("My Numbers", label "Mobile" by default)."""
from __future__ import annotations

from typing import Collection, Optional

import psycopg

from twinning.numbers import parse_nanp

from .accounts import subscriber_row
from .errors import ServiceError

DEFAULT_LABEL = "Mobile"


def set_twin(conn: psycopg.Connection, ext: str, number: str, label: Optional[str],
             allowed_countries: Collection[str] = ()) -> dict:
    """Set or replace the twin; the number is stored in E.164. NumberError or ServiceError
    carry the reason a number or label is refused. allowed_countries: the site's [calls]
    allowed_nanp_countries."""
    sub = subscriber_row(conn, ext, lock=True)
    e164 = parse_nanp(number, allowed_countries).e164
    if e164 == sub["did"]:
        raise ServiceError(f"{e164} is the subscriber's own DID; a twin must be another phone")
    if label is not None:
        label = label.strip()
        if not 1 <= len(label) <= 32:
            raise ServiceError("label must have 1 to 32 characters")
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
