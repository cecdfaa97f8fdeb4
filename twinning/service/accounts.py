"""Subscribers as accounts: the extension, the desk phone's credentials (digest hashes only), the
display name, the licence gate."""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import Optional

import psycopg

from twinning import licence

from .errors import NotFound, ServiceError

EXTENSION = re.compile(r"^[0-9]{4}$")


def check_extension(ext: str) -> str:
    if not EXTENSION.match(ext):
        raise ServiceError(f"extension must be exactly 4 digits, got {ext!r}")
    return ext


def parse_license(text: str) -> str:
    """The tier of the price list the operator means (twinning.licence.parse), as a refusal."""
    try:
        return licence.parse(text)
    except licence.LicenceError as exc:
        raise ServiceError(str(exc)) from None


def subscriber_row(conn: psycopg.Connection, ext: str, lock: bool = False) -> dict:
    check_extension(ext)
    row = conn.execute("SELECT * FROM subscriber WHERE extension = %s" +
                       (" FOR UPDATE" if lock else ""), (ext,)).fetchone()
    if row is None:
        raise NotFound(f"no subscriber with extension {ext}")
    return row


def digest_hashes(username: str, realm: str, password: str) -> tuple[str, str]:
    """HA1 and HA1b (user@domain form) as auth_db expects them; the password itself is dropped."""
    ha1 = hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()
    ha1b = hashlib.md5(f"{username}@{realm}:{realm}:{password}".encode()).hexdigest()
    return ha1, ha1b


def password_matches(sub: dict, password: str) -> bool:
    """Whether the password is the desk phone's SIP password: its HA1 against the stored one
    (the only form the password is kept in), compared in constant time."""
    ha1, _ = digest_hashes(sub["username"], sub["domain"], password)
    return hmac.compare_digest(ha1, sub["ha1"])


def check_password(password: str) -> str:
    if len(password) < 4:
        raise ServiceError("password must have at least 4 characters")
    if len(password) > 128:
        raise ServiceError("password must have at most 128 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in password):
        raise ServiceError("password may not contain control characters")
    return password


def check_display_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ServiceError("display name may not be empty")
    if len(name) > 64:
        raise ServiceError("display name must have at most 64 characters")
    if re.search(r'[\x00-\x1f"<>]', name):
        raise ServiceError('display name may not contain control characters, quotes, < or >')
    return name


def twinning_refusal(sub: dict) -> Optional[str]:
    """The licence gate: why this subscriber's twin never rings nor takes a handoff, or None.
    (The routing asks twinning.licence.allows_twinning itself, call by call.)"""
    if licence.allows_twinning(sub["license"]):
        return None
    return (f"license {sub['license']} does not include twinning "
            f"({licence.TWINNING_MIN} or above does)")
