"""The KSR stub of the unit tests must match the KEMI functions the installed Kamailio exports."""
import pytest

from scripts.gen_ksr_api import fetch_api
from tests.support.ksr_stub import load_api

pytestmark = pytest.mark.e2e


def test_given_the_running_kamailio_then_its_kemi_api_equals_the_stub_api(stack):
    live = fetch_api(stack)
    stub = load_api()
    missing = sorted({(f["module"], f["name"]) for f in live} - {(f["module"], f["name"]) for f in stub})
    extra = sorted({(f["module"], f["name"]) for f in stub} - {(f["module"], f["name"]) for f in live})
    assert not missing and not extra, (
        f"KSR stub out of date (run scripts/gen_ksr_api.py): missing {missing[:10]}, "
        f"extra {extra[:10]}")
    assert live == stub, "signatures differ: run scripts/gen_ksr_api.py"
