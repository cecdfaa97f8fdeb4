"""Licence tiers: their order and what each allows."""
import pytest

from twinning import licence

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("tier,allowed", [("basic", False), ("entry-ucc", True),
                                          ("standard-ucc", True), ("premium-ucc", True),
                                          ("gold", False), ("", False)])
def test_given_a_tier_then_twinning_is_allowed_from_entry_ucc_up(tier, allowed):
    assert licence.allows_twinning(tier) == allowed


def test_given_an_unknown_tier_then_the_reason_names_every_tier():
    with pytest.raises(licence.LicenceError) as err:
        licence.parse("gold")
    assert all(tier in str(err.value) for tier in licence.TIERS) and "\n" not in str(err.value)
