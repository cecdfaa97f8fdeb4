"""Every combination of status × ring members × license × twin × desk registration."""
from __future__ import annotations

import itertools

import pytest

from routing import decisions as rules
from routing.decisions import Dialled, Subscriber
from twinning import licence

pytestmark = pytest.mark.unit

TWIN = "+19175550123"


def subscriber(send_to="ring-group", desk=True, mobile=True, license="entry-ucc", twin=TWIN):
    return Subscriber(id=1, extension="1001", did="+12125550101", display_name="Ann",
                      license=license, voicemail_box="1001", ring_timeout=20,
                      status="In Office" if send_to == "ring-group" else "Do Not Disturb",
                      send_to=send_to, ring_desk=desk, ring_mobile=mobile, twin_number=twin)


CASES = list(itertools.product(
    ("ring-group", "voicemail"),            # status sends calls to
    (True, False),                          # desk ticked
    (True, False),                          # mobile ticked
    licence.TIERS,                          # license tier
    (TWIN, None),                           # twin set
    (True, False),                          # desk registered
))


@pytest.mark.parametrize("send_to,desk_ticked,mobile_ticked,license,twin,registered", CASES)
def test_ring_decision_matrix(send_to, desk_ticked, mobile_ticked, license, twin, registered):
    sub = subscriber(send_to, desk_ticked, mobile_ticked, license, twin)
    decision = rules.decide_ring(sub, registered, twin_legs_in_use=0, max_twin_legs=2)
    ring_group = send_to == "ring-group"
    expect_desk = ring_group and desk_ticked and registered
    expect_mobile = (ring_group and mobile_ticked and twin is not None
                     and license != "basic")
    assert (decision.desk, decision.mobile) == (expect_desk, expect_mobile), decision.reason
    assert decision.voicemail_now == (not expect_desk and not expect_mobile)
    assert decision.timeout == 20


def test_given_twin_legs_at_the_limit_then_the_mobile_is_not_rung():
    decision = rules.decide_ring(subscriber(), True, twin_legs_in_use=2, max_twin_legs=2)
    assert decision.desk and not decision.mobile and "twin legs" in decision.reason


@pytest.mark.parametrize("twin", ["+19005550123", "+14115550123", "+442071234567",
                                  "+18005550123", "9175550123"])
def test_given_a_twin_the_guard_forbids_then_the_mobile_is_not_rung(twin):
    decision = rules.decide_ring(subscriber(twin=twin), True, 0, 2)
    assert not decision.mobile and "toll-fraud" in decision.reason


@pytest.mark.parametrize("user,kind,value", [
    ("*55", Dialled.HANDOFF, "*55"),
    ("911", Dialled.EMERGENCY, "911"),
    ("1001", Dialled.EXTENSION, "1001"),
    ("2125550101", Dialled.NUMBER, "+12125550101"),
    ("12125550101", Dialled.NUMBER, "+12125550101"),
    ("+12125550101", Dialled.NUMBER, "+12125550101"),
    ("+442071234567", Dialled.INVALID, "+442071234567"),
    ("0125550101", Dialled.INVALID, "0125550101"),
    ("", Dialled.INVALID, ""),
    ("abc", Dialled.INVALID, "abc"),
])
def test_classify_dialled(user, kind, value):
    target = rules.classify_dialled(user, "*55", ("911",))
    assert (target.kind, target.value) == (kind, value)


def test_headers_are_well_formed():
    assert rules.diversion_header("+12125550101", "pbx", "no-answer") == (
        "Diversion: <sip:+12125550101@pbx>;reason=no-answer;counter=1;privacy=off\r\n")
    assert rules.asserted_identity_header("+1312", 'Bad "Name"', "pbx") == (
        'P-Asserted-Identity: "Bad Name" <sip:+1312@pbx>\r\n')
    assert rules.voicemail_reason(486) == "user-busy"
    assert rules.gateway_failed(503) and rules.gateway_failed(408)
    assert not rules.gateway_failed(486) and not rules.gateway_failed(404)
    assert rules.voicemail_reason(408) == "no-answer"
