"""The country rule of twinning.numbers (toll fraud): which NANP area code is whose, the decision
for every area code, and the site's [calls] allowed_nanp_countries."""
from __future__ import annotations

import re

import phonenumbers
import pytest

from scripts import gen_nanp_area_codes
from twinning import nanp_area_codes
from twinning.config import DEFAULT_CONFIG, ConfigError, load
from twinning.numbers import (COUNTRIES, NumberError, country_refusal, is_dialable_twin, is_n11,
                              outbound_refusal, parse_nanp)

pytestmark = pytest.mark.unit

EVERY_AREA_CODE = [str(npa) for npa in range(200, 1000)]
# The non-US/Canada countries of +1 this project was asked about, the US territories among them.
REFUSED = {"876": "Jamaica", "658": "Jamaica", "809": "Dominican Republic",
           "829": "Dominican Republic", "849": "Dominican Republic",
           "284": "British Virgin Islands", "649": "Turks And Caicos Islands", "473": "Grenada",
           "268": "Antigua and Barbuda", "246": "Barbados", "242": "Bahamas",
           "345": "Cayman Islands", "664": "Montserrat", "721": "Sint Maarten (Dutch part)",
           "758": "Saint Lucia", "767": "Dominica", "784": "Saint Vincent And The Grenadines",
           "868": "Trinidad and Tobago", "869": "Saint Kitts And Nevis", "441": "Bermuda",
           "264": "Anguilla", "787": "Puerto Rico", "939": "Puerto Rico",
           "340": "U.S. Virgin Islands", "671": "Guam", "670": "Northern Mariana Islands",
           "684": "American Samoa"}


def example(region: str) -> str:
    """A number phonenumbers holds valid for the region, in E.164."""
    return phonenumbers.format_number(phonenumbers.example_number(region),
                                      phonenumbers.PhoneNumberFormat.E164)


def test_given_the_installed_phonenumbers_then_the_generated_table_is_its_own():
    area_codes, names = gen_nanp_area_codes.derive()
    assert (nanp_area_codes.AREA_CODES, nanp_area_codes.COUNTRIES) == (area_codes, names), \
        "phonenumbers changed its NANP data: run scripts/gen_nanp_area_codes.py"


@pytest.mark.parametrize("npa", EVERY_AREA_CODE)
def test_given_every_area_code_then_us_and_canada_pass_and_the_others_are_refused_by_name(npa):
    region = nanp_area_codes.AREA_CODES.get(npa)
    number = f"+1{npa}5550123"
    refusal = country_refusal(npa)
    if region in ("US", "CA"):
        assert refusal is None
        assert "international rates" not in (outbound_refusal(number) or "")
    elif region is None:
        assert refusal == f"area code {npa} is not in service in North America"
        assert outbound_refusal(number) is not None
        assert not is_dialable_twin(number)
    else:
        assert refusal == f"+1 {npa} is {COUNTRIES[region]}: international rates, not allowed"
        assert outbound_refusal(number) == refusal and not is_dialable_twin(number)
        with pytest.raises(NumberError, match=re.escape(refusal)):
            parse_nanp(number)
    if npa in REFUSED:
        assert COUNTRIES[region] == REFUSED[npa]
    if not is_n11(npa) and region not in ("US", "CA"):
        assert npa in REFUSED or region is None, f"{npa} ({region}) is refused: list it here"


def test_given_a_us_territory_then_it_is_a_country_of_its_own_and_refused():
    for region in ("PR", "VI", "GU", "MP", "AS"):
        assert not is_dialable_twin(example(region))
        assert "international rates, not allowed" in outbound_refusal(example(region))


@pytest.mark.parametrize("region", sorted(set(nanp_area_codes.AREA_CODES.values()) - {"US", "CA"}))
def test_given_a_country_the_site_allows_then_its_numbers_pass_and_only_its_own(region):
    number = example(region)
    assert not is_dialable_twin(number) and outbound_refusal(number)
    assert outbound_refusal(number, (region,)) is None
    assert parse_nanp(number, (region,)).e164 == number
    assert is_dialable_twin(number, [region])
    other = "JM" if region != "JM" else "PR"
    assert not is_dialable_twin(example(other), [region])


def test_given_us_and_canadian_numbers_then_they_are_twins_without_any_site_setting():
    assert is_dialable_twin("+12125550123") and is_dialable_twin("+14165550123")
    assert outbound_refusal("+14165550123") is None


# ---- [calls] allowed_nanp_countries -----------------------------------------------------------

def site(tmp_path, line: str):
    text = DEFAULT_CONFIG.read_text().replace("allowed_nanp_countries = []\n", line + "\n")
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_given_the_shipped_config_then_no_other_country_is_allowed():
    assert load(DEFAULT_CONFIG).allowed_nanp_countries == ()


def test_given_no_key_then_no_other_country_is_allowed(tmp_path):
    assert load(site(tmp_path, "")).allowed_nanp_countries == ()


def test_given_countries_then_they_are_kept_sorted_once(tmp_path):
    cfg = load(site(tmp_path, 'allowed_nanp_countries = ["PR", "VI", "PR"]'))
    assert cfg.allowed_nanp_countries == ("PR", "VI")


@pytest.mark.parametrize("line, message", [
    ('allowed_nanp_countries = ["XX"]', "'XX' is not a North American country's ISO code"),
    ('allowed_nanp_countries = ["jm"]', "'jm' is not a North American country's ISO code"),
    ('allowed_nanp_countries = ["GB"]', "'GB' is not a North American country's ISO code"),
    ('allowed_nanp_countries = [1]', "1 is not a North American country's ISO code"),
    ('allowed_nanp_countries = [["PR"]]', "['PR'] is not a North American country's ISO code"),
    ('allowed_nanp_countries = "PR"', "[calls] allowed_nanp_countries must be a list"),
])
def test_given_a_bad_value_then_one_clear_line(tmp_path, line, message):
    with pytest.raises(ConfigError) as err:
        load(site(tmp_path, line))
    assert message in str(err.value) and "\n" not in str(err.value)
    if "ISO code" in message:
        assert "JM" in str(err.value) and "US" not in str(err.value).split(";")[1]
