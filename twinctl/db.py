"""PostgreSQL access for twinctl: one connection per command, errors made readable."""
from __future__ import annotations

import contextlib
from typing import Iterator

import psycopg
from psycopg.rows import dict_row

from twinning.config import SiteConfig

from .errors import TwinctlError


@contextlib.contextmanager
def connect(cfg: SiteConfig) -> Iterator[psycopg.Connection]:
    """A connection in a transaction committed on success, rolled back on any error."""
    try:
        conn = psycopg.connect(cfg.dsn(), row_factory=dict_row)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = first.rsplit("failed:", 1)[-1].strip() or "no reason given"
        raise TwinctlError(
            f"cannot reach the database at {cfg.db_host}:{cfg.db_port} ({reason}); "
            "is the stack up? (twinctl stack up)") from None
    try:
        with conn:
            conn.execute("SET statement_timeout = '10s'")
            yield conn
    finally:
        conn.close()
