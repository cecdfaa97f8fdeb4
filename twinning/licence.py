"""Licence tiers of the price list, their order, and what each allows.

The tiers are listed lowest first; a tier allows what every tier below it allows. The database's
license_tier enum (sql/migrations/0002) lists the same names in the same order, so SQL may
compare tiers (`license >= 'entry-ucc'`); tests/integration/test_rules_in_sql.py checks that the
two agree.
"""
from __future__ import annotations

import re

TIERS = ("basic", "entry-ucc", "standard-ucc", "premium-ucc")
DEFAULT = "entry-ucc"           # a new subscriber's tier, as the column's default
TWINNING_MIN = "entry-ucc"      # the lowest tier whose twin may ring and take a handoff


class LicenceError(ValueError):
    """Not a tier of the price list; str() is the one-line reason."""


def parse(text: str) -> str:
    """Accept entry-ucc, entry_ucc, 'Entry UCC', ENTRYUCC … for the tiers of the price list."""
    key = re.sub(r"[\s_-]+", "", text.strip().lower())
    for tier in TIERS:
        if key in (tier.replace("-", ""), tier.replace("-ucc", "")):
            return tier
    raise LicenceError(f"unknown license tier {text!r}; one of: {', '.join(TIERS)}")


def allows_twinning(tier: str) -> bool:
    try:
        return TIERS.index(tier) >= TIERS.index(TWINNING_MIN)
    except ValueError:
        return False
