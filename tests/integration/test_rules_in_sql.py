"""The database repeats two rules as constraints, so a row written by hand obeys them too:
is_nanp_number() (sql/migrations/0002) the digit rules of twinning.numbers. These tests check
that the SQL copy agrees with the Python definition, so the two cannot drift apart."""
from __future__ import annotations

import itertools

import pytest

from twinning import numbers

pytestmark = pytest.mark.integration

# Area codes and exchanges that exercise each rule: ordinary, premium, N11, toll-free.
AREA_CODES = ("212", "917", "900", "976", "411", "911", "800")
EXCHANGES = ("555", "976", "411", "911", "900", "200")


@pytest.mark.parametrize("npa,nxx", list(itertools.product(AREA_CODES, EXCHANGES)))
def test_given_a_number_then_sql_and_python_agree_on_premium_and_n11(db, npa, nxx):
    e164 = f"+1{npa}{nxx}0123"
    in_sql = db.execute("SELECT is_nanp_number(%s) AS ok", (e164,)).fetchone()["ok"]
    assert in_sql == (numbers.outbound_refusal(e164) is None), e164
