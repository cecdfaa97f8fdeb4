"""What the routing counts in xhttp_prom (routing.metrics), against the KSR stub."""
from __future__ import annotations

import json

import pytest

from tests.unit.test_adapter import handler, ksr  # noqa: F401 (fixtures)

pytestmark = pytest.mark.unit


def facts(**kw) -> str:
    base = dict(kind="twin", extension="1001", sub_id=1, did="+12125550101",
                voicemail_box="1001", twin="+19175550123", caller_num="3125550199",
                caller_name="Carol", contact="sip:c@127.0.1.2", rang="desk,mobile")
    return json.dumps(dict(base, **kw))


def counted(ksr, name: str) -> list[tuple]:
    return [args for args in ksr.called("xhttp_prom.counter_inc_l1") if args[0] == name]


def test_given_voicemail_answers_then_it_is_counted_once_for_all_its_200s(ksr, handler):  # noqa: F811
    from routing.metrics import ANSWERED
    ksr.returns.update({"isbflagset": False})
    ksr.pv.update({"$avp(tw_call)": facts(), "$si": handler.ring.voicemail_hostport.split(":")[0]})
    handler.ring.answered()
    handler.ring.answered()                       # the 200's retransmission
    assert counted(ksr, ANSWERED) == [(ANSWERED, 1, "voicemail")]


def test_given_the_mobile_answers_a_twin_ring_call_then_the_mobile_is_counted(ksr, handler):  # noqa: F811
    from routing.metrics import ANSWERED
    ksr.returns.update({"isbflagset": True})
    ksr.pv.update({"$avp(tw_call)": facts(), "$si": "127.0.1.2", "$ci": "c1"})
    handler.ring.answered()
    assert counted(ksr, ANSWERED) == [(ANSWERED, 1, "mobile")]


def test_given_a_desk_places_an_outside_call_then_no_answer_is_counted(ksr, handler):  # noqa: F811
    from routing.metrics import ANSWERED
    ksr.pv.update({"$avp(tw_call)": facts(kind="outbound", rang="trunk"), "$ci": "c2"})
    handler.ring.answered()
    assert counted(ksr, ANSWERED) == []


def test_given_a_worker_starts_then_every_series_is_declared_at_zero(ksr, handler):  # noqa: F811
    handler.metrics.declare_series()
    assert all(args[1] == 0 for args in ksr.called("xhttp_prom.counter_inc_l2"))
    assert len(ksr.called("xhttp_prom.counter_inc_l2")) == 2 * 5 + 2 * 3     # handoffs; avoided legs × reasons
    # devices; overload rules; security refusal reasons
    assert len(ksr.called("xhttp_prom.counter_inc_l1")) == 3 + 2 + 4
