"""The database repeats three rules, so a row written by hand obeys them too: the license_tier
enum (sql/migrations/0002) the tiers of twinning.licence, is_nanp_number() the digit rules of
twinning.numbers, nanp_country_refusal() (0014) its country rule. These tests check that each
SQL copy agrees with the Python definition, so the two cannot drift apart."""
from __future__ import annotations

import itertools

import psycopg
import pytest

from twinctl.commands.subscriber import add_subscriber
from twinning import licence, numbers
from twinning.config import WEB

pytestmark = pytest.mark.integration

# Area codes and exchanges that exercise each rule: ordinary, premium, N11, toll-free.
AREA_CODES = ("212", "917", "900", "976", "411", "911", "800")
EXCHANGES = ("555", "976", "411", "911", "900", "200")


@pytest.mark.parametrize("npa,nxx", list(itertools.product(AREA_CODES, EXCHANGES)))
def test_given_a_number_then_sql_and_python_agree_on_premium_and_n11(db, npa, nxx):
    e164 = f"+1{npa}{nxx}0123"
    in_sql = db.execute("SELECT is_nanp_number(%s) AS ok", (e164,)).fetchone()["ok"]
    assert in_sql == (numbers.outbound_refusal(e164) is None), e164


def test_given_the_database_then_its_licence_tiers_are_ours_in_our_order(db):
    row = db.execute("SELECT enum_range(NULL::license_tier)::text[] AS tiers").fetchone()
    assert tuple(row["tiers"]) == licence.TIERS
    default = db.execute(
        "SELECT column_default FROM information_schema.columns"
        " WHERE table_name = 'subscriber' AND column_name = 'license'").fetchone()
    assert default["column_default"].startswith(f"'{licence.DEFAULT}'")


# ---- the country rule (toll fraud; docs/security.md "Numbers: NANP countries") ---------------

EVERY_AREA_CODE = [str(npa) for npa in range(200, 1000)]


def sql_refusals(db) -> dict[str, str | None]:
    rows = db.execute("SELECT npa, nanp_country_refusal('+1' || npa || '5550123') AS refusal"
                      " FROM generate_series(200, 999) AS g(n), LATERAL (SELECT n::text AS npa) x")
    return {row["npa"]: row["refusal"] for row in rows}


@pytest.fixture
def allowed(db, cfg):
    """Sets the database's allowed countries for a test; the site's again after it."""
    def allow(*regions):
        db.execute("DELETE FROM nanp_country_allowed")
        db.execute("INSERT INTO nanp_country_allowed SELECT unnest(%s::text[])", (list(regions),))
    yield allow
    allow(*cfg.allowed_nanp_countries)


def test_given_every_area_code_then_sql_and_python_refuse_the_same_countries_alike(db, cfg):
    assert cfg.allowed_nanp_countries == ()
    assert sql_refusals(db) == {npa: numbers.country_refusal(npa) for npa in EVERY_AREA_CODE}


def test_given_countries_the_database_allows_then_it_agrees_with_python_allowing_them(
        db, allowed):
    allowed("JM", "PR")
    in_python = {npa: numbers.country_refusal(npa, ("JM", "PR")) for npa in EVERY_AREA_CODE}
    assert sql_refusals(db) == in_python
    assert in_python["876"] is None and in_python["939"] is None and in_python["809"]


def test_given_a_twin_in_a_refused_country_written_by_hand_then_the_database_refuses_it(db, cfg):
    add_subscriber(db, cfg, "1001", "2125550101", "Ann", "secret-pass-1")
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        db.execute("INSERT INTO twin (subscriber_id, number)"
                   " SELECT id, '+18765550123' FROM subscriber WHERE extension = '1001'")
    assert str(err.value).splitlines()[0] == \
        "+18765550123: +1 876 is Jamaica: international rates, not allowed"
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE subscriber SET did = '+18095550101' WHERE extension = '1001'")


def test_given_a_twin_stored_before_the_rule_then_it_stays_and_only_a_new_number_is_judged(
        db, cfg):
    """What the migration does to rows already there: nothing (the trigger judges writes)."""
    add_subscriber(db, cfg, "1001", "2125550101", "Ann", "secret-pass-1")
    db.execute("ALTER TABLE twin DISABLE TRIGGER twin_number_country")
    try:
        db.execute("INSERT INTO twin (subscriber_id, number)"
                   " SELECT id, '+18765550123' FROM subscriber WHERE extension = '1001'")
    finally:
        db.execute("ALTER TABLE twin ENABLE TRIGGER twin_number_country")
    db.execute("UPDATE twin SET label = 'Kingston'")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE twin SET number = '+18765550124'")
    db.execute("UPDATE twin SET number = '+19175550123'")
    assert db.execute("SELECT number, label FROM twin").fetchone() == \
        {"number": "+19175550123", "label": "Kingston"}


def test_given_an_allowed_country_then_a_twin_there_is_stored(db, cfg, allowed):
    allowed("JM")
    add_subscriber(db, cfg, "1001", "2125550101", "Ann", "secret-pass-1")
    db.execute("INSERT INTO twin (subscriber_id, number)"
               " SELECT id, '+18765550123' FROM subscriber WHERE extension = '1001'")


def test_given_the_web_role_then_its_twins_are_judged_by_the_rule_too(db, cfg):
    """My Numbers writes as twinning_web: the trigger must be able to read its tables."""
    add_subscriber(db, cfg, "1001", "2125550101", "Ann", "secret-pass-1")
    insert = ("INSERT INTO twin (subscriber_id, number)"
              " SELECT id, %s FROM subscriber WHERE extension = '1001'")
    with psycopg.connect(cfg.dsn(WEB), autocommit=True) as web:
        with pytest.raises(psycopg.errors.CheckViolation):
            web.execute(insert, ("+18765550123",))
        web.execute(insert, ("+19175550123",))
