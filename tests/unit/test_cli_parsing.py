import pytest

from twinctl.commands.common import check_extension, digest_hashes, parse_license
from twinctl.commands.status import parse_ring, parse_send_to
from twinctl.errors import TwinctlError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text,tier", [("basic", "basic"), ("entry-ucc", "entry-ucc"),
                                       ("Entry UCC", "entry-ucc"), ("entry_ucc", "entry-ucc"),
                                       ("premium", "premium-ucc"), ("STANDARD-UCC", "standard-ucc")])
def test_license_tiers_accept_the_price_list_spellings(text, tier):
    assert parse_license(text) == tier


@pytest.mark.parametrize("bad", ["gold", "", "ucc"])
def test_unknown_license_tier_is_refused(bad):
    with pytest.raises(TwinctlError):
        parse_license(bad)


@pytest.mark.parametrize("bad", ["123", "12345", "abcd", "１２３４", ""])
def test_extension_is_four_ascii_digits(bad):
    with pytest.raises(TwinctlError):
        check_extension(bad)


def test_ring_members_parse():
    assert parse_ring("desk,mobile") == (True, True)
    assert parse_ring(" Mobile ") == (False, True)
    assert parse_ring("") == (False, False)
    with pytest.raises(TwinctlError):
        parse_ring("desk,fax")


def test_send_to_parse():
    assert parse_send_to("ring-group") == "ring-group"
    assert parse_send_to("Voicemail") == "voicemail"
    with pytest.raises(TwinctlError):
        parse_send_to("forward")


def test_digest_hashes_are_rfc2617_ha1():
    import hashlib
    ha1, ha1b = digest_hashes("1001", "127.0.0.1", "pw")
    assert ha1 == hashlib.md5(b"1001:127.0.0.1:pw").hexdigest()
    assert ha1b == hashlib.md5(b"1001@127.0.0.1:127.0.0.1:pw").hexdigest()
