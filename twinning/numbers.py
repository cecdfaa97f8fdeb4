"""North American number rules shared by twinctl (input) and routing (the toll-fraud guard).

A twin or DID must be a North American geographic or mobile number. We check the digit rules
ourselves first, so the operator gets the precise reason (N11, premium, bad exchange), then ask
`phonenumbers` whether the area code exists and what kind of number it is.

The premium-rate, N11 and country rules are defined here once; twin input, the twin guard and
the outbound guard all ask them. The database's is_nanp_number() (sql/migrations/0002) repeats
the digit rules in SQL, nanp_country_refusal() (0014) the country rule, and
tests/integration/test_rules_in_sql.py checks that each agrees with Python.

The country rule (toll fraud, docs/security.md "Numbers: NANP countries"): +1 is shared by the
US, Canada and 23 other countries and territories (Jamaica, the Dominican Republic, Puerto
Rico, ...) whose numbers are billed at international rates, the favourite destinations of
revenue-share fraud. Only US and Canadian area codes are allowed, and the countries a site
lists in [calls] allowed_nanp_countries; which area code is whose is the generated table
twinning/nanp_area_codes.py (from phonenumbers' metadata).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Collection, Optional

import phonenumbers
from phonenumbers import PhoneNumberType

from .nanp_area_codes import AREA_CODES, COUNTRIES

PREMIUM_AREA_CODES = frozenset({"900", "976"})
PREMIUM_EXCHANGE = "976"          # premium in every area code
_ALLOWED_TYPES = frozenset({
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
})
_PUNCTUATION = re.compile(r"[\s().\-/]")
_DIGITS = re.compile(r"^\+?[0-9]+$")


def is_premium_rate(npa: str, nxx: str) -> bool:
    """The one premium-rate rule: area code 900 or 976, or exchange 976 in any area code."""
    return npa in PREMIUM_AREA_CODES or nxx == PREMIUM_EXCHANGE


def is_n11(code: str) -> bool:
    """The one N11 rule: 211 ... 911 are service codes, never an area code or an exchange."""
    return code[1:] == "11"


ALWAYS_ALLOWED_COUNTRIES = frozenset({"US", "CA"})
NANP_COUNTRIES = frozenset(COUNTRIES)     # the ISO regions [calls] allowed_nanp_countries may name


def country_refusal(npa: str, allowed_countries: Collection[str] = ()) -> Optional[str]:
    """The one country rule: why area code npa may not be called or twinned (one line), or None.
    US and Canada are allowed, and the countries listed in allowed_countries; every other NANP
    country (the US territories too: Puerto Rico, USVI, Guam, ... are countries of their own
    in the numbering plan) and every area code not in service are refused."""
    region = AREA_CODES.get(npa)
    if region is None:
        return f"area code {npa} is not in service in North America"
    if region in ALWAYS_ALLOWED_COUNTRIES or region in allowed_countries:
        return None
    return f"+1 {npa} is {COUNTRIES[region]}: international rates, not allowed"


class NumberError(ValueError):
    """A number that may not be a twin or a DID; str() is the one-line reason."""


@dataclass(frozen=True)
class NanpNumber:
    e164: str                     # +1NPANXXXXXX

    @property
    def national(self) -> str:    # 10 digits
        return self.e164[2:]

    @property
    def area_code(self) -> str:
        return self.e164[2:5]

    def __str__(self) -> str:
        return self.e164


def _digits(text: str) -> str:
    cleaned = _PUNCTUATION.sub("", text.strip())
    if not cleaned:
        raise NumberError("no number given; give a North American 10-digit number")
    if cleaned.startswith("+"):
        if not cleaned.startswith("+1"):
            raise NumberError(f"{text!r}: international numbers are not allowed; "
                              "give a North American 10-digit number")
        cleaned = cleaned[2:]
    elif cleaned.startswith("011") or cleaned.startswith("00"):
        raise NumberError(f"{text!r}: international numbers are not allowed; "
                          "give a North American 10-digit number")
    if not cleaned.isdigit():
        raise NumberError(f"{text!r}: a number may hold only digits, spaces, "
                          "'+', '(', ')', '-' and '.'")
    if len(cleaned) == 11 and cleaned[0] == "1":
        cleaned = cleaned[1:]
    if len(cleaned) != 10:
        raise NumberError(f"{text!r}: a North American number has 10 digits "
                          f"(area code + 7), got {len(cleaned)}")
    return cleaned


def parse_nanp(text: str, allowed_countries: Collection[str] = ()) -> NanpNumber:
    """Parse 10-digit, 1+10 or +1 E.164 input (punctuation allowed); raise NumberError.
    allowed_countries: the site's [calls] allowed_nanp_countries (see country_refusal)."""
    digits = _digits(text)
    npa, nxx = digits[:3], digits[3:6]
    if npa[0] in "01":
        raise NumberError(f"{text!r}: area code {npa} is invalid (it cannot start with 0 or 1)")
    if is_n11(npa):
        raise NumberError(f"{text!r}: {npa} is an N11 service code, not an area code")
    if is_premium_rate(npa, nxx):
        raise NumberError(f"{text!r}: premium-rate numbers (900/976) are not allowed")
    if nxx[0] in "01":
        raise NumberError(f"{text!r}: exchange {nxx} is invalid (it cannot start with 0 or 1)")
    if is_n11(nxx):
        raise NumberError(f"{text!r}: exchange {nxx} is an N11 service code")
    refusal = country_refusal(npa, allowed_countries)
    if refusal:
        raise NumberError(f"{text!r}: {refusal}")
    parsed = phonenumbers.parse("+1" + digits, None)
    if not phonenumbers.is_valid_number(parsed):
        raise NumberError(f"{text!r}: area code {npa} is not in service in North America")
    kind = phonenumbers.number_type(parsed)
    if kind == PhoneNumberType.PREMIUM_RATE:
        raise NumberError(f"{text!r}: premium-rate numbers are not allowed")
    if kind not in _ALLOWED_TYPES:
        label = "toll-free" if kind == PhoneNumberType.TOLL_FREE else "special-service"
        raise NumberError(f"{text!r}: {label} numbers are not allowed; "
                          "give a geographic or mobile number")
    return NanpNumber("+1" + digits)


def is_dialable_twin(e164: str, allowed_countries: Collection[str] = ()) -> bool:
    """The routing guard: True only for a number parse_nanp accepts, already in E.164."""
    return _is_dialable_twin(e164, frozenset(allowed_countries))


@functools.lru_cache(maxsize=4096)
def _is_dialable_twin(e164: str, allowed_countries: frozenset[str]) -> bool:
    # Cached: it runs for every twinned INVITE, and a number's verdict does not change.
    try:
        return parse_nanp(e164, allowed_countries).e164 == e164
    except NumberError:
        return False


def normalize_nanp(user: str) -> Optional[str]:
    """10-digit, 1+10 or +1 E.164 (as carriers and phones put it in a request URI) → E.164."""
    if not _DIGITS.match(user or ""):
        return None
    digits = user.lstrip("+")
    if user.startswith("+") and not digits.startswith("1"):
        return None
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) != 10 or digits[0] in "01" or digits[3] in "01":
        return None
    return "+1" + digits


def outbound_refusal(e164: str, allowed_countries: Collection[str] = ()) -> Optional[str]:
    """Why a desk may not call this external number (toll-fraud guard), or None.
    allowed_countries: the site's [calls] allowed_nanp_countries (see country_refusal)."""
    npa, nxx = e164[2:5], e164[5:8]
    if is_premium_rate(npa, nxx):
        return "Premium-Rate Numbers Not Allowed"
    if is_n11(npa) or is_n11(nxx):
        return "Not A Valid Number"
    return country_refusal(npa, allowed_countries)
