"""The Prometheus endpoints (issue 13, item 6; docs/metrics.md): Kamailio's (its own
statistics and the routing's counters, xhttp_prom) and rtpengine's (--listen-http), scraped
over HTTP before and after a twin-ring call answered on the desk, handed to the mobile and
taken back, with PJSIP phones."""
from __future__ import annotations

import urllib.request

import pytest

from lab.calls import setup_subscriber
from lab.residue import assert_no_residue
from tests.support.phones import assert_two_way
from tests.support.metrics import scrape
from tests.support.pjsip_scenarios import (answered_on_the_desk, cleared_after,  # noqa: F401
                                           desk_takes_it_back, far_end_hangs_up,
                                           handed_to_mobile)

pytestmark = pytest.mark.e2e

def grew(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in after, f"{name}{labels} not in the scrape"
    return after[key] - before.get(key, 0.0)


def test_given_a_twin_ring_call_and_handoffs_when_both_endpoints_are_scraped_then_they_moved(
        stack, db, phones):
    kamailio, rtpengine = stack.metrics_kamailio, stack.metrics_rtpengine
    k0, r0 = scrape(kamailio), scrape(rtpengine)
    # Declared at start: every series is there before its first event.
    assert ("kamailio_twinning_voicemail_avoided_calls_total",
            (("leg", "handoff"), ("reason", "rang-too-long"))) in k0
    assert ("kamailio_twinning_handoffs_total",
            (("direction", "mobile_to_desk"), ("outcome", "declined"))) in k0

    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones)
    call.mobile_call = handed_to_mobile(call, stack)
    assert_two_way(call.far_call, call.mobile_call)
    back = desk_takes_it_back(call, stack)
    assert_two_way(call.far_call, back)
    far_end_hangs_up(call, back)
    assert_no_residue(stack)
    k1, r1 = scrape(kamailio), scrape(rtpengine)

    assert grew(k0, k1, "kamailio_twinning_twinned_calls_total") == 1
    assert grew(k0, k1, "kamailio_twinning_answered_calls_total", device="desk") == 1
    assert grew(k0, k1, "kamailio_twinning_answered_calls_total", device="mobile") == 0
    for way in ("desk_to_mobile", "mobile_to_desk"):
        assert grew(k0, k1, "kamailio_twinning_handoffs_total", direction=way,
                    outcome="completed") == 1
        assert grew(k0, k1, "kamailio_twinning_handoff_switch_ms_count", direction=way) == 1
        switch_ms = grew(k0, k1, "kamailio_twinning_handoff_switch_ms_sum", direction=way)
        assert 0 < switch_ms < 1000
        assert grew(k0, k1, "kamailio_twinning_handoff_switch_ms_bucket", direction=way,
                    le="+Inf") == 1
    assert grew(k0, k1, "kamailio_twinning_handoffs_total", direction="desk_to_mobile",
                outcome="declined") == 0
    for leg in ("twin", "handoff"):
        assert grew(k0, k1, "kamailio_twinning_voicemail_avoided_calls_total", leg=leg,
                    reason="answered-too-soon") == 0
    # Kamailio's own statistics, from the same endpoint.
    assert grew(k0, k1, "kamailio_core_rcv_requests_invite") >= 3   # far end, desk's *55, ...
    assert k1[("kamailio_dialog_active_dialogs", ())] == 0

    # rtpengine's own: the call's session was managed and its packets relayed.
    assert grew(r0, r1, "rtpengine_sessions_total") >= 1
    assert grew(r0, r1, "rtpengine_packets_total", type="userspace") > 100
    assert r1[("rtpengine_sessions", (("type", "own"),))] == 0


def test_given_the_metrics_listener_when_another_path_is_asked_then_404(stack):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://{stack.metrics_kamailio}/other", timeout=5)
    assert refused.value.code == 404
