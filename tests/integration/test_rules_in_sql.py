"""The database repeats two rules as constraints, so a row written by hand obeys them too:
the license_tier enum (sql/migrations/0002) the tiers of twinning.licence, is_nanp_number() the
digit rules of twinning.numbers. These tests check that each SQL copy agrees with the Python
definition, so the two cannot drift apart."""
from __future__ import annotations

import itertools

import pytest

from twinning import licence, numbers

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
