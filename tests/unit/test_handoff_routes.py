"""The KEMI side of the handoff against the KSR stub: SIP events in, the model's actions
carried out with the right KSR calls (the wire itself is covered by the PJSIP tests)."""
from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

from rtpctl import NgTimeout
from tests.support.ksr_stub import KsrStub

pytestmark = pytest.mark.unit


class Table:
    def __init__(self):
        self.data: dict[str, str] = {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value

    def remove(self, key):
        self.data.pop(key, None)


class Log:
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        def record(*args, **kw):
            self.events.append((name, args))
            return f"h{len(self.events)}" if name == "handoff_started" else None
        return record


class FakeMedia:
    def __init__(self, fail: bool = False):
        self.fail, self.calls = fail, []

    def __getattr__(self, name):
        def command(*args):
            self.calls.append((name, args))
            if self.fail:
                raise NgTimeout("127.0.1.1", 2233, 3)
            return 1.5 if name == "switch" else "v=0\r\no=- 1 1 IN IP4 127.0.1.1\r\n"
        return command


@pytest.fixture
def ksr():
    return KsrStub().install()


@pytest.fixture
def world(ksr):
    from routing import calls, kemi
    from routing.handoff import routes
    for module in (kemi, calls, routes):
        importlib.reload(module)
    from routing.handoff.model import answered
    from routing.handoff.state import Device, Leg, Side

    table, log, media = Table(), Log(), FakeMedia()
    sub = SimpleNamespace(id=1, extension="1001", twin_number="+19175550123",
                          did="+12125550101", answer_too_soon_ms=1500, mobile_ring_max_s=19,
                          mobile_confirm=False)
    plans = []
    legs = SimpleNamespace(plan=lambda plan: plans.append(plan) or "sip:tw-1@127.0.1.1:5060")
    cfg = SimpleNamespace(proxy_address="127.0.1.1", proxy_port=5060, tls_port=5061, sip_domain="127.0.1.1",
                          handoff_code="*55", dispatcher_set=1)
    store = calls.CallStore(table, log)
    handoff = routes.HandoffRoutes(cfg, store, media, log,
                                   SimpleNamespace(by_extension=lambda ext: sub,
                                                   registered_from=lambda ext, ip: False),
                                   twin_refusal=lambda s: None, legs=legs)
    far = Leg(Device.FAR, "c1", "far-tag", "sip:far@127.0.1.2:5071", "sip:3125550199@pbx",
              "sip:1001@pbx", "desk-tag", cseq=0)
    desk = Leg(Device.DESK, "c1", "desk-tag", "sip:1001@127.0.1.3:5061", "sip:1001@pbx",
               "sip:3125550199@pbx", "far-tag", cseq=10)
    call = answered("1001", "c1", far, desk, Side.CALLER, "+13125550199", "Carol")
    store.remember(call)
    return SimpleNamespace(ksr=ksr, table=table, log=log, media=media, handoff=handoff,
                           store=store, plans=plans)


def request(ksr, method, call_id="c1", from_tag="far-tag", cseq=5, **pvs):
    ksr.calls.clear()
    # The desk (127.0.1.3) sends from its address; the far end from the trunk's.
    source = "127.0.1.3" if from_tag == "desk-tag" else "127.0.1.2"
    ksr.pv.update({"$ci": call_id, "$ft": from_tag, "$rm": method, "$cs": str(cseq),
                   "$si": source,
                   "$hdr(Refer-To)": "<sip:*55@127.0.1.1>", "$fU": "1001", **pvs})
    ksr.returns.update({"textops.has_body_type": -1, "is_BYE": method == "BYE"})


def mobile_answers(w):
    pending = w.store.load("c1").pending
    w.ksr.calls.clear()
    w.ksr.pv.update({"$ci": pending.leg_call_id, "$rm": "INVITE", "$rs": "200",
                     "$tt": "mob-tag", "$(ct{tobody.uri})": "sip:m@127.0.1.2:5060",
                     "$tu": "sip:+19175550123@127.0.1.2", "$fu": "sip:x@pbx", "$rb": "v=0\r\n"})
    w.handoff.leg_reply()


def test_given_a_refer_to_the_code_then_202_and_the_mobile_is_invited_with_the_far_end(world):
    w = world
    request(w.ksr, "REFER", from_tag="desk-tag", cseq=11)
    w.ksr.pv["$ru"] = "sip:+19175550123@127.0.1.2"
    assert w.handoff.in_dialog(w.ksr.pv["$rm"], w.ksr.pv["$ci"]) is False
    assert w.ksr.called("tm.t_reply") == [(202, "Accepted")]
    [(method, ruri, _, _, headers, sdp)] = w.ksr.called("tm.t_uac_send")
    assert method == "INVITE" and "sip:+13125550199@127.0.1.1" in headers
    # The INVITE goes to the twin leg's own transaction, which applies the mobile's rules.
    assert ruri == "sip:tw-1@127.0.1.1:5060" and "To: <sip:+19175550123@127.0.1.1>" in headers
    [plan] = w.plans
    assert (plan.leg, plan.number, plan.soon_ms, plan.ring_max_s) == \
        ("handoff", "+19175550123", 1500, 19)
    assert [c[0] for c in w.media.calls] == ["open_for_new_device"]
    assert w.log.events[0][0] == "handoff_started"


def test_given_a_refer_from_the_far_end_then_403_and_nothing_is_relayed_or_invited(world):
    w = world
    for refer_to in ("<sip:*55@127.0.1.1>", "<sip:+18762901234@127.0.1.2>"):
        request(w.ksr, "REFER", from_tag="far-tag", cseq=6, **{"$hdr(Refer-To)": refer_to})
        assert w.handoff.in_dialog("REFER", "c1") is False
        assert w.ksr.called("sl.sl_send_reply") + w.ksr.called("tm.t_reply") == \
            [(403, "Forbidden")]
        assert not w.ksr.called("tm.t_relay") and not w.ksr.called("tm.t_uac_send")
    assert not w.plans and not w.media.calls


def test_given_the_far_end_swaps_the_tags_then_its_refer_is_told_by_its_address_and_refused(
        world):
    w = world
    request(w.ksr, "REFER", from_tag="desk-tag", cseq=6)
    w.ksr.pv["$si"] = "127.0.1.2"               # the desk's tag, from the trunk
    assert w.handoff.in_dialog("REFER", "c1") is False
    assert w.ksr.called("sl.sl_send_reply") + w.ksr.called("tm.t_reply") == \
        [(403, "Forbidden")]
    assert not w.plans and not w.media.calls


def test_given_the_mobile_answers_then_media_switches_and_the_desk_is_notified(world):
    w = world
    request(w.ksr, "REFER", from_tag="desk-tag", cseq=11)
    w.handoff.in_dialog(w.ksr.pv["$rm"], w.ksr.pv["$ci"])
    mobile_answers(w)
    assert [c[0] for c in w.media.calls] == ["open_for_new_device", "switch"]
    [(method, target, _, _, headers, body)] = w.ksr.called("tm.t_uac_send")
    assert method == "NOTIFY" and target == "sip:1001@127.0.1.3:5061" and "200 OK" in body
    assert w.store.load("c1").stitched
    assert ("handoff_finished", ("h1", "completed", 1.5)) in [
        (e[0], e[1][:3]) for e in w.log.events]


def test_given_a_stitched_call_when_the_far_end_hangs_up_then_the_dialog_module_sees_it(world):
    w = world
    request(w.ksr, "REFER", from_tag="desk-tag", cseq=11)
    w.handoff.in_dialog(w.ksr.pv["$rm"], w.ksr.pv["$ci"])
    mobile_answers(w)
    request(w.ksr, "BYE", cseq=6)
    assert w.handoff.in_dialog(w.ksr.pv["$rm"], w.ksr.pv["$ci"]) is False
    assert w.ksr.called("tm.t_reply") == [(200, "OK")]
    assert w.ksr.called("tm.t_uac_send")[0][:2] == ("BYE", "sip:m@127.0.1.2:5060")
    assert w.ksr.called("dialog.dlg_manage") == [()]
    assert w.table.data == {}                           # every key of the call released


def test_given_a_declined_handoff_then_the_far_ends_bye_is_relayed_renumbered(world):
    w = world
    request(w.ksr, "REFER", from_tag="desk-tag", cseq=11)
    w.handoff.in_dialog(w.ksr.pv["$rm"], w.ksr.pv["$ci"])
    pending = w.store.load("c1").pending
    w.ksr.pv.update({"$ci": pending.leg_call_id, "$rm": "INVITE", "$rs": "603",
                     "$rr": "Decline"})
    w.handoff.leg_reply()
    notify = w.ksr.called("tm.t_uac_send")[-1]
    assert notify[0] == "NOTIFY" and "CSeq: 11 NOTIFY" in notify[4]
    request(w.ksr, "BYE", cseq=11)
    assert w.handoff.in_dialog(w.ksr.pv["$rm"], w.ksr.pv["$ci"]) is True               # relayed by the normal in-dialog path
    assert w.ksr.called("textops.remove_hf") == [("CSeq",)]
    assert w.ksr.called("hdr.append") == [("CSeq: 12 BYE\r\n",)]
    assert w.ksr.pv["$avp(tw_cseq)"] == "11"
    w.ksr.calls.clear()
    w.ksr.pv.update({"$rm": "BYE"})
    w.handoff.renumbered_reply()                       # the desk's 200 gets 11 back
    assert w.ksr.called("hdr.append") == [("CSeq: 11 BYE\r\n",)]


def test_given_the_code_call_is_cancelled_then_the_mobile_leg_is_cancelled(world):
    w = world
    request(w.ksr, "INVITE", call_id="k1", from_tag="desk2", cseq=1)
    call = w.store.load("c1")
    w.handoff.run(call, w.handoff.start_to_mobile(call, False, "k1", "1"))
    leg = w.store.load("c1").pending.leg_call_id
    request(w.ksr, "CANCEL", call_id="k1", from_tag="desk2", cseq=1)
    assert w.handoff.code_call_cancelled() is False
    assert w.ksr.called("tmx.t_cancel_callid") == [(leg, "1", 0)]
    assert w.ksr.called("tmx.t_reply_callid") == [("k1", "1", 487, "Request Terminated")]
    assert w.ksr.called("sl.sl_send_reply") == [(200, "OK")]
    assert w.store.load("c1").pending is None


def test_given_rtpengine_down_when_the_desk_hands_off_then_it_hears_500_and_keeps_its_call(
        world):
    w = world
    w.handoff.media = FakeMedia(fail=True)
    request(w.ksr, "REFER", from_tag="desk-tag", cseq=11)
    w.handoff.in_dialog(w.ksr.pv["$rm"], w.ksr.pv["$ci"])
    notify = w.ksr.called("tm.t_uac_send")[-1]
    assert notify[0] == "NOTIFY" and "SIP/2.0 500 Media Server Error" in notify[5]
    call = w.store.load("c1")
    assert call.pending is None and not call.stitched


def test_given_call_state_from_an_older_release_then_the_call_is_routed_as_a_plain_dialog(world):
    w = world
    w.table.put("c:c2", '{"call_id": "c2", "near": {"device": "desk"}}')
    request(w.ksr, "BYE", call_id="c2")
    assert w.handoff.in_dialog(w.ksr.pv["$rm"], w.ksr.pv["$ci"]) is True
    assert w.ksr.called("warn")
