"""The service layer's own logic (twinning/service), the part that needs no database; the
database side is exercised through twinctl (tests/integration/test_twinctl.py) and the web page
(tests/e2e/test_portal.py), which both call it."""
from __future__ import annotations

import hashlib

import pytest

from twinctl.errors import TwinctlError
from twinning.service import ServiceError, accounts, statuses

pytestmark = pytest.mark.unit


class NoDatabase:
    def execute(self, *args):
        raise AssertionError("a refused change must not reach the database")


def test_given_a_password_then_only_its_digest_is_compared_with_the_stored_ha1():
    ha1, ha1b = accounts.digest_hashes("1001", "127.0.0.1", "secret1")
    assert ha1 == hashlib.md5(b"1001:127.0.0.1:secret1").hexdigest()
    assert ha1b == hashlib.md5(b"1001@127.0.0.1:127.0.0.1:secret1").hexdigest()
    sub = {"username": "1001", "domain": "127.0.0.1", "ha1": ha1}
    assert accounts.password_matches(sub, "secret1")
    assert not accounts.password_matches(sub, "secret2")
    assert not accounts.password_matches(dict(sub, domain="127.0.0.2"), "secret1")


@pytest.mark.parametrize("tier,refused", [("basic", True), ("entry-ucc", False),
                                          ("premium-ucc", False)])
def test_given_a_tier_then_the_licence_gate_says_whether_the_twin_rings(tier, refused):
    reason = accounts.twinning_refusal({"license": tier})
    assert (reason is not None) == refused
    if refused:
        assert reason == "license basic does not include twinning (entry-ucc or above does)"


def test_given_a_ring_group_of_nobody_then_it_is_refused_before_any_write():
    with pytest.raises(statuses.EmptyRingGroup) as err:
        statuses.route_status(NoDatabase(), {"id": 1, "name": "In Office"}, "ring-group",
                              False, False)
    assert str(err.value).startswith("a ring group needs at least one member")


def test_given_twinctl_then_its_errors_are_the_service_layers():
    """One refusal type: twinctl's `error: ...` line and the page's message come from it."""
    assert TwinctlError is ServiceError
    with pytest.raises(TwinctlError):
        accounts.check_extension("10011")
