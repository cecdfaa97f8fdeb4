import pytest

from twinning.numbers import NumberError, is_dialable_twin, outbound_refusal, parse_nanp

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["2125550123", "(212) 555-0123", "212.555.0123", "1 212 555 0123",
                                  "+1 212-555-0123", "+12125550123", "12125550123"])
def test_given_north_american_forms_when_parsed_then_e164(text):
    assert parse_nanp(text).e164 == "+12125550123"


@pytest.mark.parametrize("text,reason", [
    ("212555012", "10 digits"),
    ("212555012345", "10 digits"),
    ("", "no number"),
    ("+442071234567", "international"),
    ("011442071234567", "international"),
    ("4115550123", "N11"),
    ("9115550123", "N11"),
    ("2124110123", "N11"),
    ("9005550123", "premium"),
    ("2129760123", "premium"),
    ("9765550123", "premium"),
    ("0125550123", "area code"),
    ("1125550123", "area code"),
    ("2120550123", "exchange"),
    ("5555550123", "not in service"),
    ("8005550123", "toll-free"),
    ("212555abcd", "digits"),
])
def test_given_a_forbidden_number_when_parsed_then_a_one_line_reason(text, reason):
    with pytest.raises(NumberError) as err:
        parse_nanp(text)
    assert reason in str(err.value) and "\n" not in str(err.value)


def test_given_the_guard_then_only_e164_geographic_numbers_are_dialable():
    assert is_dialable_twin("+19175550123")
    for bad in ("+19005550123", "9175550123", "+442071234567", "+14115550123", "", "+1917555012x"):
        assert not is_dialable_twin(bad)


@pytest.mark.parametrize("number,refused", [("+19005550101", True), ("+12129765555", True),
                                            ("+14115550101", True), ("+18005550101", False),
                                            ("+12125550101", False)])
def test_outbound_toll_fraud_guard(number, refused):
    assert (outbound_refusal(number) is not None) == refused
