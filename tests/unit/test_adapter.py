"""The KEMI adapter against the KSR stub generated from the real Kamailio's API list."""
from __future__ import annotations

import pytest

from tests.support.ksr_stub import KsrStub

pytestmark = pytest.mark.unit


class FakeStore:
    def __init__(self, subs):
        self.subs = subs

    def by_extension(self, ext):
        return next((s for s in self.subs if s.extension == ext), None)

    def by_did(self, did):
        return next((s for s in self.subs if s.did == did), None)

    def is_phone_address(self, ip):
        return False


@pytest.fixture
def ksr():
    return KsrStub().install()


@pytest.fixture
def handler(ksr):
    import importlib

    from routing import (adapter, confirm, kemi, media, metrics, overload, registrar, requests,
                         ring, twinleg)
    from routing.handoff import routes
    for module in (kemi, media, metrics, overload, confirm, twinleg, routes, requests, registrar,
                   ring, adapter):
        importlib.reload(module)       # bind the freshly installed stub
    from twinning.config import load
    from tests.conftest import TEST_CONFIG
    from tests.unit.test_decisions import subscriber
    h = adapter.Handler(load(TEST_CONFIG))
    h.wire(FakeStore([subscriber()]))
    return h


def trunk_invite(ksr, ruser, trusted=True):
    ksr.returns.update({"siputils.has_totag": -1,
                        "permissions.allow_source_address": 1 if trusted else -1,
                        "auth.has_credentials": -1, "registrar.registered": 1})
    ksr.pv.update({"$rm": "INVITE", "$rU": ruser, "$fU": "3125550199", "$fn": '"Carol"',
                   "$si": "127.0.1.2"})


def test_given_a_trunk_call_to_a_did_then_desk_and_mobile_branches_are_relayed(ksr, handler):
    trunk_invite(ksr, "2125550101")
    assert handler.ksr_request_route(None) == 1
    assert ksr.called("registrar.lookup") == [("location",)]
    assert ksr.called("corex.append_branch_uri")           # the mobile branch
    assert ksr.called("tm.t_set_disable_6xx") == [(1,)]
    assert ksr.called("tm.t_on_failure") == [("ksr_failure_twin",)]
    assert ksr.called("tm.t_relay")
    assert ksr.called("dialog.set_dlg_profile") == [("twin_legs", "1001")]


def test_given_a_trunk_call_to_an_unknown_did_then_404(ksr, handler):
    trunk_invite(ksr, "2125550199")
    handler.ksr_request_route(None)
    assert ksr.called("sl.sl_send_reply") == [(404, "Not Found")]
    assert not ksr.called("tm.t_relay")


def test_given_the_database_down_then_503_not_a_crash(ksr, handler):
    from routing.store import StoreUnavailable

    class Down(FakeStore):
        def by_did(self, did):
            raise StoreUnavailable("connection refused")
    handler.wire(Down([]))
    trunk_invite(ksr, "2125550101")
    assert handler.ksr_request_route(None) == 1
    assert ksr.called("sl.sl_send_reply") == [(503, "Service Unavailable")]


def test_given_the_stub_then_a_function_kamailio_lacks_is_an_error(ksr):
    import KSR
    with pytest.raises(AttributeError):
        KSR.tm.t_no_such_function()
