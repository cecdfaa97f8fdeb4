"""Log-in, sessions, CSRF tokens and lock-outs, all kept in PostgreSQL (migration 0011) so every
uvicorn worker sees the same ones. The password is checked against the stored HA1 and dropped."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Optional

import psycopg

from twinning.config import WebConfig
from twinning.service.accounts import EXTENSION, password_matches

SESSION_COOKIE = "twin_session"
LOGIN_COOKIE = "twin_login"        # the log-in form's CSRF nonce (no session exists yet)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    token_hash: str
    csrf_token: str
    subscriber_id: int


@dataclass(frozen=True)
class LoginResult:
    """Exactly one of: token (logged in), locked_until (HTTP 429: why), or a wrong password."""
    token: Optional[str] = None
    locked_until: Optional[dt.datetime] = None
    locked_what: str = ""

    @property
    def ok(self) -> bool:
        return self.token is not None


def _locked(conn: psycopg.Connection, kind: str, key: str) -> Optional[dt.datetime]:
    row = conn.execute("SELECT until FROM portal_lockout WHERE kind = %s AND key = %s"
                       " AND until > now()", (kind, key)).fetchone()
    return row["until"] if row else None


def _count_failures(conn: psycopg.Connection, column: str, key: str, minutes: int) -> int:
    query = ("SELECT count(*) AS n FROM portal_login_failure WHERE extension = %s"
             if column == "extension" else
             "SELECT count(*) AS n FROM portal_login_failure WHERE client = %s")
    return conn.execute(query + " AND at > now() - make_interval(mins => %s)",
                        (key, minutes)).fetchone()["n"]


def _lock(conn: psycopg.Connection, kind: str, key: str, minutes: int) -> None:
    conn.execute("INSERT INTO portal_lockout (kind, key, until)"
                 " VALUES (%s, %s, now() + make_interval(mins => %s))"
                 " ON CONFLICT (kind, key) DO UPDATE SET until = excluded.until",
                 (kind, key, minutes))


def log_in(conn: psycopg.Connection, web: WebConfig, extension: str, password: str,
           client: str) -> LoginResult:
    """One log-in attempt (extension as typed, however long: only its first 32 characters are
    counted). After web.lockout_failures wrong passwords for one extension (or
    web.address_failures from one client address) within web.lockout_minutes, log-ins for it
    are refused for web.lockout_minutes, even with the right password."""
    extension = extension[:32]
    # One attempt at a time per extension and per address: two workers must count alike.
    for key in (f"portal-ext:{extension}", f"portal-addr:{client}"):
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
    conn.execute("DELETE FROM portal_lockout WHERE until <= now()")
    conn.execute("DELETE FROM portal_login_failure WHERE at < now() - make_interval(mins => %s)",
                 (web.lockout_minutes,))
    for kind, key in (("address", client), ("extension", extension)):
        until = _locked(conn, kind, key)
        if until is not None:
            return LoginResult(locked_until=until, locked_what=kind)
    sub = None
    if EXTENSION.match(extension):
        sub = conn.execute("SELECT id, username, domain, ha1 FROM subscriber"
                           " WHERE extension = %s", (extension,)).fetchone()
    if sub is not None and password_matches(sub, password):
        conn.execute("DELETE FROM portal_login_failure WHERE extension = %s", (extension,))
        return LoginResult(token=_new_session(conn, web, sub["id"], client))
    conn.execute("INSERT INTO portal_login_failure (extension, client) VALUES (%s, %s)",
                 (extension, client))
    if _count_failures(conn, "extension", extension, web.lockout_minutes) \
            >= web.lockout_failures:
        _lock(conn, "extension", extension, web.lockout_minutes)
    if _count_failures(conn, "client", client, web.lockout_minutes) >= web.address_failures:
        _lock(conn, "address", client, web.lockout_minutes)
    return LoginResult()


def _new_session(conn: psycopg.Connection, web: WebConfig, subscriber_id: int,
                 client: str) -> str:
    conn.execute("DELETE FROM portal_session WHERE expires_at <= now()"
                 " OR created_at <= now() - make_interval(hours => %s)",
                 (web.session_max_hours,))
    token = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO portal_session (token_hash, subscriber_id, csrf_token, client,"
                 " expires_at) VALUES (%s, %s, %s, %s, now() + make_interval(mins => %s))",
                 (token_hash(token), subscriber_id, secrets.token_urlsafe(32), client,
                  web.session_minutes))
    return token


def session(conn: psycopg.Connection, web: WebConfig, token: Optional[str]) -> Optional[Session]:
    """The live session the cookie names, its idle expiry pushed on; None if there is none."""
    if not token:
        return None
    row = conn.execute(
        "UPDATE portal_session SET seen_at = now(),"
        " expires_at = now() + make_interval(mins => %s)"
        " WHERE token_hash = %s AND expires_at > now()"
        " AND created_at > now() - make_interval(hours => %s)"
        " RETURNING token_hash, csrf_token, subscriber_id",
        (web.session_minutes, token_hash(token), web.session_max_hours)).fetchone()
    return Session(**row) if row else None


def log_out(conn: psycopg.Connection, token: Optional[str]) -> None:
    if token:
        conn.execute("DELETE FROM portal_session WHERE token_hash = %s", (token_hash(token),))


# ---- the log-in form's CSRF token: a nonce cookie and its HMAC in the form ---------------------

def login_nonce() -> str:
    return secrets.token_urlsafe(24)


def login_csrf(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, b"login:" + nonce.encode(), hashlib.sha256).hexdigest()


def _same(expected: str, given: object) -> bool:
    """Constant-time equality of a token and what a form sent (which may be anything)."""
    return isinstance(given, str) and bool(given) and hmac.compare_digest(
        expected.encode(), given.encode("utf-8", "replace"))


def login_csrf_ok(secret: bytes, nonce: Optional[str], token: object) -> bool:
    return bool(nonce) and _same(login_csrf(secret, nonce), token)


def session_csrf_ok(sess: Optional[Session], token: object) -> bool:
    return sess is not None and _same(sess.csrf_token, token)
