"""twinctl subscriber: add, list, show, set, remove, passwd, license."""
from __future__ import annotations

from typing import Optional

import psycopg
import typer
from psycopg import sql

from twinning import licence
from twinning.config import SiteConfig
from twinning.numbers import parse_nanp

from .. import context, output
from ..db import connect
from ..errors import Conflict, TwinctlError
from .common import (check_display_name, check_extension, check_password, digest_hashes,
                     parse_license, subscriber_row)

app = typer.Typer(no_args_is_help=True, help="Subscribers: extension, DID, desk phone login.")

# The statuses of the user's guide, in its order. In Office rings the desk only: the user ticks
# Mobile themselves ("Manage Status").
DEFAULT_STATUSES = (
    ("In Office", "ring-group", True, False),
    ("Out of Office", "ring-group", True, False),
    ("In a Meeting", "voicemail", True, False),
    ("Do Not Disturb", "voicemail", True, False),
    ("On Vacation", "voicemail", True, False),
)
CURRENT_AT_START = "In Office"

_SUMMARY = """
    SELECT s.extension, s.did, s.display_name AS name, s.license::text AS license,
           st.name AS status, t.label AS twin_label, t.number AS twin,
           s.ring_timeout, s.voicemail_box, s.answer_too_soon_ms, s.mobile_ring_max_s,
           s.mobile_confirm
      FROM subscriber s
      JOIN status st ON st.id = s.current_status_id
      LEFT JOIN twin t ON t.subscriber_id = s.id
"""


def add_subscriber(conn: psycopg.Connection, cfg: SiteConfig, ext: str, did: str, name: str,
                   password: str, license: str = licence.DEFAULT,
                   ring_timeout: Optional[int] = None,
                   voicemail_box: Optional[str] = None) -> dict:
    ext = check_extension(ext)
    number = parse_nanp(did, cfg.allowed_nanp_countries).e164
    name = check_display_name(name)
    tier = parse_license(license)
    ha1, ha1b = digest_hashes(ext, cfg.sip_domain, check_password(password))
    timeout = cfg.default_ring_timeout if ring_timeout is None else ring_timeout
    if not 5 <= timeout <= 300:
        raise Conflict(f"ring timeout must be 5..300 seconds, got {timeout}")
    for column, value, what in (("extension", ext, "extension"), ("did", number, "DID")):
        query = sql.SQL("SELECT extension FROM subscriber WHERE {} = %s").format(
            sql.Identifier(column))
        taken = conn.execute(query, (value,)).fetchone()
        if taken:
            raise Conflict(f"{what} {value} already belongs to subscriber {taken['extension']}")
    with conn.transaction():
        status_ids = [conn.execute("SELECT nextval('status_id_seq') AS id").fetchone()["id"]
                      for _ in DEFAULT_STATUSES]
        current = status_ids[[s[0] for s in DEFAULT_STATUSES].index(CURRENT_AT_START)]
        sub_id = conn.execute(
            "INSERT INTO subscriber (extension, did, display_name, username, domain, ha1, ha1b,"
            " license, voicemail_box, ring_timeout, current_status_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (ext, number, name, ext, cfg.sip_domain, ha1, ha1b, tier, voicemail_box or ext,
             timeout, current)).fetchone()["id"]
        for position, (sid, (sname, send_to, desk, mobile)) in enumerate(
                zip(status_ids, DEFAULT_STATUSES)):
            conn.execute(
                "INSERT INTO status (id, subscriber_id, name, position, send_to, ring_desk,"
                " ring_mobile) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (sid, sub_id, sname, position, send_to, desk, mobile))
    return show_subscriber(conn, ext)


def list_subscribers(conn: psycopg.Connection) -> list[dict]:
    return conn.execute(_SUMMARY + " ORDER BY s.extension").fetchall()


def show_subscriber(conn: psycopg.Connection, ext: str) -> dict:
    subscriber_row(conn, ext)
    row = conn.execute(_SUMMARY + " WHERE s.extension = %s", (ext,)).fetchone()
    contacts = conn.execute(
        "SELECT contact, expires, user_agent FROM location WHERE username = %s"
        " AND expires > now() ORDER BY expires", (ext,)).fetchall()
    row["registered"] = [c["contact"] for c in contacts]
    return row


def remove_subscriber(conn: psycopg.Connection, ext: str) -> None:
    subscriber_row(conn, ext, lock=True)
    conn.execute("DELETE FROM location WHERE username = %s", (ext,))
    conn.execute("DELETE FROM subscriber WHERE extension = %s", (ext,))


def set_password(conn: psycopg.Connection, cfg: SiteConfig, ext: str, password: str) -> None:
    sub = subscriber_row(conn, ext, lock=True)
    ha1, ha1b = digest_hashes(ext, sub["domain"], check_password(password))
    conn.execute("UPDATE subscriber SET ha1 = %s, ha1b = %s WHERE id = %s", (ha1, ha1b, sub["id"]))


def set_license(conn: psycopg.Connection, ext: str, tier: str) -> str:
    sub = subscriber_row(conn, ext, lock=True)
    tier = parse_license(tier)
    conn.execute("UPDATE subscriber SET license = %s WHERE id = %s", (tier, sub["id"]))
    return tier


# What keeps a twin leg from the mobile's voicemail (routing.twinleg): name, range, unit.
TWIN_LEG_LIMITS = {"answer_too_soon_ms": (0, 10000, "ms"), "mobile_ring_max_s": (5, 300, "s")}
ON_OFF = {"on": True, "off": False, "yes": True, "no": False, "true": True, "false": False}


def parse_on_off(text: str, option: str) -> bool:
    value = ON_OFF.get(text.strip().lower())
    if value is None:
        raise TwinctlError(f"{option} takes on or off, got {text!r}")
    return value


def set_twin_leg(conn: psycopg.Connection, ext: str, answer_too_soon_ms: Optional[int] = None,
                 mobile_ring_max_s: Optional[int] = None,
                 confirm: Optional[bool] = None) -> dict:
    """Change how the subscriber's twin legs are kept from the mobile's voicemail; the next
    call uses it. Returns the subscriber as `show` does."""
    sub = subscriber_row(conn, ext, lock=True)
    changes = {"answer_too_soon_ms": answer_too_soon_ms, "mobile_ring_max_s": mobile_ring_max_s,
               "mobile_confirm": confirm}
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise TwinctlError("nothing to change: give --answer-too-soon-ms, --mobile-ring-max-s "
                           "or --confirm")
    for column, (low, high, unit) in TWIN_LEG_LIMITS.items():
        value = changes.get(column)
        if value is not None and not low <= value <= high:
            option = "--" + column.replace("_", "-")
            raise TwinctlError(f"{option} must be {low}..{high} {unit}, got {value}")
    assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k))
                                     for k in changes)
    conn.execute(sql.SQL("UPDATE subscriber SET {} WHERE id = %s").format(assignments),
                 (*changes.values(), sub["id"]))
    return show_subscriber(conn, ext)


# ---- CLI ------------------------------------------------------------------------------------

_COLUMNS = ("extension", "did", "name", "license", "status", "twin")


@app.command("add")
def add_cli(ext: str = typer.Argument(..., help="4-digit extension (also the SIP user name)."),
            did: str = typer.Option(..., "--did", help="DID, North American 10-digit number."),
            name: str = typer.Option(..., "--name", help="Display name."),
            password: str = typer.Option(..., "--password", help="Desk phone SIP password."),
            license: str = typer.Option(licence.DEFAULT, "--license",
                                        help="|".join(licence.TIERS)),
            ring_timeout: Optional[int] = typer.Option(None, "--ring-timeout",
                                                       help="Seconds before voicemail."),
            voicemail_box: Optional[str] = typer.Option(None, "--voicemail-box",
                                                        help="Mailbox (default: extension)."),
            as_json: bool = output.JsonOption) -> None:
    """Add a subscriber with the default statuses (current: In Office)."""
    cfg = context.config()
    with connect(cfg) as conn:
        row = add_subscriber(conn, cfg, ext, did, name, password, license, ring_timeout,
                             voicemail_box)
    if as_json:
        output.record(row, True)
    else:
        output.info(f"added subscriber {row['extension']} ({row['name']}), DID {row['did']}, "
                    f"license {row['license']}, status {row['status']}")


@app.command("list")
def list_cli(as_json: bool = output.JsonOption) -> None:
    """List subscribers."""
    with connect(context.config()) as conn:
        output.table(list_subscribers(conn), _COLUMNS, as_json)


@app.command("show")
def show_cli(ext: str, as_json: bool = output.JsonOption) -> None:
    """Show one subscriber, with its registered desk contacts."""
    with connect(context.config()) as conn:
        output.record(show_subscriber(conn, ext), as_json)


@app.command("set")
def set_cli(ext: str,
            answer_too_soon_ms: Optional[int] = typer.Option(
                None, "--answer-too-soon-ms",
                help="A twin leg answered sooner than this is the carrier's voicemail "
                     "(0 = off; default 1500)."),
            mobile_ring_max_s: Optional[int] = typer.Option(
                None, "--mobile-ring-max-s",
                help="The mobile rings at most this long, before its voicemail would "
                     "answer (default 19)."),
            confirm: Optional[str] = typer.Option(
                None, "--confirm", help="on|off: whoever answers the mobile presses 1 first "
                                        "(default off)."),
            as_json: bool = output.JsonOption) -> None:
    """Set how the twin leg is kept from the mobile's voicemail (applies to the next call)."""
    confirm_on = parse_on_off(confirm, "--confirm") if confirm is not None else None
    with connect(context.config()) as conn:
        row = set_twin_leg(conn, ext, answer_too_soon_ms, mobile_ring_max_s, confirm_on)
    if as_json:
        output.record(row, True)
    else:
        output.info(f"{ext}: answer too soon {row['answer_too_soon_ms']} ms, mobile rings at "
                    f"most {row['mobile_ring_max_s']} s, confirm "
                    f"{'on' if row['mobile_confirm'] else 'off'}")


@app.command("remove")
def remove_cli(ext: str) -> None:
    """Remove a subscriber, its twin, statuses and registrations."""
    with connect(context.config()) as conn:
        remove_subscriber(conn, ext)
    output.info(f"removed subscriber {ext}")


@app.command("passwd")
def passwd_cli(ext: str,
               password: Optional[str] = typer.Option(
                   None, "--password", help="New password (prompted for when omitted).")) -> None:
    """Set a new desk phone password (only its digest hashes are stored)."""
    cfg = context.config()
    check_extension(ext)
    if password is None:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    with connect(cfg) as conn:
        set_password(conn, cfg, ext, password)
    output.info(f"password of {ext} changed")


@app.command("license", help=f"Set the license tier (twinning needs {licence.TWINNING_MIN} "
                             "or above).")
def license_cli(ext: str, tier: str) -> None:
    with connect(context.config()) as conn:
        tier = set_license(conn, ext, tier)
    output.info(f"license of {ext} is now {tier}")
