"""Least privilege in the database (issue 13; grants in sql/migrations/0012_roles.sql): the web
page's role can do everything its service layer does and nothing else; Kamailio's role reads
the subscriber data but cannot change it; each password is its own file, mode 0600."""
from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from lab import calls as lab_calls
from portal import auth
from twinning.config import KAMAILIO, WEB
from twinning.service import calls, statuses, twins

pytestmark = pytest.mark.integration


@pytest.fixture
def subscriber(db, stack):
    lab_calls.setup_subscriber(db, stack)
    db.execute("INSERT INTO call (call_id, subscriber_id, direction, caller, callee, rang)"
               " SELECT 'roles-1', id, 'inbound', '3125550199', did, '{desk,mobile}'"
               " FROM subscriber WHERE extension = %s", (lab_calls.SUB_EXT,))
    yield lab_calls.SUB_EXT
    db.execute("DELETE FROM portal_session")
    db.execute("DELETE FROM portal_login_failure")
    db.execute("DELETE FROM portal_lockout")


def connect(cfg, who: str) -> psycopg.Connection:
    return psycopg.connect(cfg.dsn(who), row_factory=dict_row)


def refused(conn: psycopg.Connection, statement: str) -> bool:
    try:
        with conn.transaction():
            conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def test_given_the_web_role_when_the_page_does_all_it_offers_then_each_step_is_allowed(
        stack, subscriber):
    with connect(stack, WEB) as conn:
        login = auth.log_in(conn, stack.web, subscriber, "wrong", "192.0.2.7")
        assert not login.ok
        login = auth.log_in(conn, stack.web, subscriber, "secret1", "192.0.2.7")
        assert login.ok
        session = auth.session(conn, stack.web, login.token)
        sub = conn.execute("SELECT * FROM subscriber WHERE id = %s",
                           (session.subscriber_id,)).fetchone()
        listed = statuses.list_statuses(conn, subscriber)
        row = statuses.status_by_id(conn, sub, listed[0]["id"])
        statuses.route_status(conn, row, "voicemail", True, False)
        statuses.make_current(conn, sub, row)
        assert twins.set_twin(conn, subscriber, "+19175550177", "Cell")["number"] == "+19175550177"
        assert twins.show_twin(conn, subscriber)["label"] == "Cell"
        assert twins.clear_twin(conn, subscriber)
        assert [c["call_id"] for c in calls.recent_calls(conn, sub)] == ["roles-1"]
        auth.log_out(conn, login.token)
        conn.commit()


@pytest.mark.parametrize("statement", [
    "UPDATE subscriber SET ha1 = 'x'",
    "UPDATE subscriber SET extension = '9999'",
    "DELETE FROM subscriber",
    "INSERT INTO status (subscriber_id, name, send_to) SELECT id, 'x', 'voicemail' FROM subscriber",
    "DELETE FROM status",
    "SELECT * FROM trunk",
    "INSERT INTO trunk (name, host) VALUES ('evil', '192.0.2.66')",
    "SELECT * FROM location",
    "SELECT * FROM dispatcher",
    "UPDATE call SET outcome = 'x'",
    "CREATE TABLE web_was_here (id int)",
])
def test_given_the_web_role_when_it_reaches_beyond_the_page_then_it_is_refused(
        stack, subscriber, statement):
    with connect(stack, WEB) as conn:
        assert refused(conn, statement)


@pytest.mark.parametrize("statement", [
    "UPDATE subscriber SET ha1 = 'x'",
    "DELETE FROM twin",
    "UPDATE status SET send_to = 'voicemail'",
    "INSERT INTO trunk (name, host) VALUES ('evil', '192.0.2.66')",
    "DELETE FROM dispatcher",
    "SELECT * FROM portal_session",
    "CREATE TABLE kamailio_was_here (id int)",
])
def test_given_kamailios_role_when_it_writes_the_subscriber_data_then_it_is_refused(
        stack, subscriber, statement):
    with connect(stack, KAMAILIO) as conn:
        assert refused(conn, statement)


def test_given_the_stack_then_each_role_has_its_own_password_file_readable_by_its_owner_alone(
        stack):
    files = [stack.password_file(who) for who in ("admin", KAMAILIO, WEB)]
    texts = {f.read_text() for f in files}
    assert len(texts) == 3
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files + [stack.web_secret_file])


def test_given_kamailios_role_then_it_can_log_a_twin_leg_it_kept_from_the_caller(
        stack, db, subscriber):
    """routing/store.py's "avoided" write, as the proxy runs it (issue 11's rows)."""
    from routing.store import STATEMENTS
    sub_id = db.execute("SELECT id FROM subscriber WHERE extension = %s",
                        (subscriber,)).fetchone()["id"]
    with connect(stack, KAMAILIO) as conn:
        conn.execute(STATEMENTS["avoided"], ("roles-1", sub_id, "twin", "answered-too-soon",
                                             150, sub_id))
        conn.commit()
        assert refused(conn, "SELECT * FROM twin_leg_avoided")      # it writes, never reads
    assert db.execute("SELECT leg, reason, after_ms FROM twin_leg_avoided").fetchall() == [
        {"leg": "twin", "reason": "answered-too-soon", "after_ms": 150}]
    db.execute("DELETE FROM twin_leg_avoided")
