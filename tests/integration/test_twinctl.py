"""twinctl against the real PostgreSQL of the test stack, run as the operator runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

pytestmark = pytest.mark.integration

TWINCTL = [sys.executable, "-m", "twinctl.main"]


def twinctl(*args, ok=True):
    res = subprocess.run([*TWINCTL, *args], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ))
    if ok:
        assert res.returncode == 0, res.stderr
    return res


def one_line_error(res, *fragments):
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_given_a_new_subscriber_then_defaults_and_hashes_only(db):
    twinctl("subscriber", "add", "2001", "--did", "(917) 555-0101", "--name", "Ann Lee",
            "--password", "s3cret-pw")
    row = db.execute("SELECT * FROM subscriber WHERE extension = '2001'").fetchone()
    assert row["did"] == "+19175550101" and row["license"] == "entry-ucc"
    assert row["username"] == "2001" and len(row["ha1"]) == 32
    assert "s3cret-pw" not in json.dumps({k: str(v) for k, v in row.items()})
    statuses = json.loads(twinctl("status", "list", "2001", "--json").stdout)
    assert [s["name"] for s in statuses] == ["In Office", "Out of Office", "In a Meeting",
                                             "Do Not Disturb", "On Vacation"]
    office = statuses[0]
    assert office["current"] and office["send_to"] == "ring-group" and office["ring"] == ["desk"]
    shown = json.loads(twinctl("subscriber", "show", "2001", "--json").stdout)
    assert shown["status"] == "In Office" and "password" not in json.dumps(shown)


def test_given_a_subscriber_then_twin_status_and_license_round_trip(db):
    twinctl("subscriber", "add", "2001", "--did", "9175550101", "--name", "A", "--password", "pw12")
    twinctl("twin", "set", "2001", "1-646-555-0199")
    assert json.loads(twinctl("twin", "show", "2001", "--json").stdout) == {
        "label": "Mobile", "number": "+16465550199"}
    twinctl("status", "edit", "2001", "in office", "--send-to", "ring-group", "--ring",
            "desk,mobile")
    twinctl("status", "set", "2001", "Do Not Disturb")
    twinctl("subscriber", "license", "2001", "basic")
    row = db.execute("SELECT s.license::text, st.name, t.number FROM subscriber s JOIN status st"
                     " ON st.id = s.current_status_id JOIN twin t ON t.subscriber_id = s.id"
                     ).fetchone()
    assert row == {"license": "basic", "name": "Do Not Disturb", "number": "+16465550199"}
    office = db.execute("SELECT ring_desk, ring_mobile FROM status WHERE name = 'In Office'"
                        ).fetchone()
    assert office == {"ring_desk": True, "ring_mobile": True}
    twinctl("twin", "clear", "2001")
    assert json.loads(twinctl("twin", "show", "2001", "--json").stdout) is None
    twinctl("subscriber", "remove", "2001")
    assert db.execute("SELECT count(*) AS n FROM status").fetchone()["n"] == 0


@pytest.mark.parametrize("args,fragment", [
    (["subscriber", "add", "20011", "--did", "9175550101", "--name", "A", "--password", "pw12"],
     "4 digits"),
    (["subscriber", "add", "2002", "--did", "9005550101", "--name", "A", "--password", "pw12"],
     "premium"),
    (["subscriber", "add", "2002", "--did", "+447700900123", "--name", "A", "--password", "pw12"],
     "international"),
    (["subscriber", "add", "2002", "--did", "9175550101", "--name", "A", "--password", "pw12"],
     "already belongs"),
    (["subscriber", "add", "2002", "--did", "9175550102", "--name", "A", "--password", "pw12",
      "--license", "gold"], "license"),
    (["subscriber", "show", "2999"], "no subscriber"),
    (["twin", "set", "2001", "4115550101"], "N11"),
    (["twin", "set", "2001", "917555"], "10 digits"),
    (["twin", "set", "2999", "9175550188"], "no subscriber"),
    (["status", "set", "2001", "Lunch"], "no status"),
    (["status", "edit", "2001", "In Office", "--send-to", "fax"], "send-to"),
    (["subscriber", "license", "2001", "platinum"], "license"),
    (["trunk", "remove", "nope"], "no trunk"),
    (["trunk", "add", "x", "127.0.0.9:99999"], "HOST[:PORT]"),
])
def test_given_bad_input_then_one_clear_line_and_nonzero_exit(db, args, fragment):
    twinctl("subscriber", "add", "2001", "--did", "9175550101", "--name", "A", "--password", "pw12")
    one_line_error(twinctl(*args, ok=False), fragment)


def test_given_the_database_down_then_one_clear_line(cfg, db, tmp_path):
    broken = tmp_path / "site.toml"
    text = open(os.environ["TWIN_CONFIG"]).read().replace(f"port = {cfg.db_port}", "port = 5999")
    broken.write_text(text)
    res = subprocess.run([*TWINCTL, "--config", str(broken), "subscriber", "list"],
                         capture_output=True, text=True, timeout=30)
    one_line_error(res, "cannot reach the database")


def test_given_migrations_applied_when_run_again_then_nothing_changes(stack):
    assert "up to date" in twinctl("db", "migrate").stdout


def test_given_a_hand_written_row_then_the_database_enforces_the_rules(db):
    twinctl("subscriber", "add", "2001", "--did", "9175550101", "--name", "A", "--password", "pw12")
    sub = db.execute("SELECT id FROM subscriber").fetchone()["id"]
    for number in ("+19005550101", "+14115550101", "+442071234567", "9175550101"):
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute("INSERT INTO twin (subscriber_id, number) VALUES (%s, %s)", (sub, number))
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE status SET send_to = 'ring-group', ring_desk = false, "
                   "ring_mobile = false WHERE subscriber_id = %s", (sub,))


def test_given_trunks_then_dispatcher_and_address_follow(db):
    twinctl("trunk", "add", "backup", "127.0.1.12:5070")
    assert db.execute("SELECT destination FROM dispatcher WHERE description = 'trunk:backup'"
                      ).fetchone()["destination"] == "sip:127.0.1.12:5070"
    assert db.execute("SELECT ip_addr, port FROM address WHERE tag = 'trunk:backup'"
                      ).fetchone() == {"ip_addr": "127.0.1.12", "port": 0}
    listed = json.loads(twinctl("trunk", "list", "--json").stdout)
    assert {t["name"] for t in listed} == {"default", "backup"}
    twinctl("trunk", "remove", "backup")
    assert db.execute("SELECT count(*) AS n FROM dispatcher WHERE description = 'trunk:backup'"
                      ).fetchone()["n"] == 0


# ---- issue 11: what keeps the twin leg from the mobile's voicemail --------------------------

def test_given_a_new_subscriber_then_the_twin_leg_rules_have_their_defaults_and_can_be_set(db):
    twinctl("subscriber", "add", "2001", "--did", "9175550101", "--name", "A", "--password", "pw12")
    shown = json.loads(twinctl("subscriber", "show", "2001", "--json").stdout)
    assert (shown["answer_too_soon_ms"], shown["mobile_ring_max_s"], shown["mobile_confirm"]) \
        == (1500, 19, False)
    res = twinctl("subscriber", "set", "2001", "--answer-too-soon-ms", "2000",
                  "--mobile-ring-max-s", "15", "--confirm", "on")
    assert "answer too soon 2000 ms" in res.stdout + res.stderr
    shown = json.loads(twinctl("subscriber", "show", "2001", "--json").stdout)
    assert (shown["answer_too_soon_ms"], shown["mobile_ring_max_s"], shown["mobile_confirm"]) \
        == (2000, 15, True)
    twinctl("subscriber", "set", "2001", "--confirm", "off", "--answer-too-soon-ms", "0")
    row = db.execute("SELECT answer_too_soon_ms, mobile_ring_max_s, mobile_confirm FROM"
                     " subscriber WHERE extension = '2001'").fetchone()
    assert row == {"answer_too_soon_ms": 0, "mobile_ring_max_s": 15, "mobile_confirm": False}


def test_given_a_status_then_its_mobile_delay_can_be_set_alone(db):
    twinctl("subscriber", "add", "2001", "--did", "9175550101", "--name", "A", "--password", "pw12")
    twinctl("status", "edit", "2001", "In Office", "--send-to", "ring-group", "--ring",
            "desk,mobile", "--mobile-delay-s", "5")
    twinctl("status", "edit", "2001", "In Office", "--mobile-delay-s", "6")
    [office] = [s for s in json.loads(twinctl("status", "list", "2001", "--json").stdout)
                if s["name"] == "In Office"]
    assert office["mobile_delay_s"] == 6 and office["ring"] == ["desk", "mobile"]


@pytest.mark.parametrize("args, fragment", [
    (["subscriber", "set", "2001", "--answer-too-soon-ms", "20000"], "0..10000 ms"),
    (["subscriber", "set", "2001", "--mobile-ring-max-s", "2"], "5..300 s"),
    (["subscriber", "set", "2001", "--confirm", "maybe"], "on or off"),
    (["subscriber", "set", "2001"], "nothing to change"),
    (["subscriber", "set", "2009", "--confirm", "on"], "2009"),
    (["subscriber", "set", "2001", "--answer-too-soon-ms", "soon"], "answer-too-soon-ms"),
    (["status", "edit", "2001", "In Office", "--mobile-delay-s", "61"], "0..60 s"),
    (["status", "edit", "2001", "In Office"], "nothing to change"),
])
def test_given_bad_twin_leg_settings_then_one_clear_line(db, args, fragment):
    twinctl("subscriber", "add", "2001", "--did", "9175550101", "--name", "A", "--password", "pw12")
    one_line_error(twinctl(*args, ok=False), fragment)
