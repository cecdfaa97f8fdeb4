"""The twin leg's rules in the proxy (routing.twinleg) against the KSR stub: what it sends and
counts when the mobile's carrier answers too soon, how it waits to ring the desk first, and
what the call's transaction is told when the trunk is out of service."""
from __future__ import annotations

import json

import pytest

from tests.unit.test_adapter import handler, ksr  # noqa: F401 (fixtures)
from tests.unit.test_sipmsg import OK

pytestmark = pytest.mark.unit

PLAN = dict(leg="twin", number="+19175550123", extension="1001", sub_id=1, soon_ms=1500,
            ring_max_s=19, delay_s=0, confirm=False)


SPIRAL = "z9hG4bKo.1"        # the call's Via the leg came with (second in OK)


def ringing_leg(ksr, handler, sent_ms_ago: int, winner: str | None = None,
                **plan) -> dict:  # noqa: F811
    """A twin leg ringing, and a 2xx of it from the trunk being handled. `winner`: the
    call's claim ("" nobody yet, a To-tag: that answer took the call, None: no claim).
    Returns the htable as the test may change it."""
    from routing import twinleg
    leg = json.dumps({"sent": twinleg.now_ms() - sent_ms_ago, "spiral": SPIRAL,
                      "plan": dict(PLAN, **plan)})
    tables = {("twin", "l:c1@127.0.1.2"): leg}
    if winner is not None:
        tables[("twin_gone", "w:c1@127.0.1.2")] = winner
    ksr.returns.update({"htable.sht_get": lambda table, key: tables.get((table, key)),
                        "htable.sht_sets": lambda table, key, value:
                        tables.__setitem__((table, key), value)})
    ksr.pv.update({"$rs": "200", "$rm": "INVITE", "$ci": "c1@127.0.1.2", "$tt": "mob",
                   "$ft": "abc", "$si": "127.0.1.2", "$sp": "5060", "$mb": OK,
                   "$sel(via[2].branch)": SPIRAL})
    return tables


def the_desks_2xx(ksr) -> None:  # noqa: F811
    """The 2xx being handled is the desk's: the same Call-ID, the caller's Via second."""
    ksr.pv.update({"$tt": "desk", "$si": "127.0.1.3", "$sp": "5061",
                   "$sel(via[2].branch)": "z9hG4bK-caller"})


def test_given_the_leg_rings_when_the_desk_answers_quickly_then_its_2xx_goes_on_untouched(ksr, handler):  # noqa: F811,E501
    # Issue 23: the desk's 2xx was taken for the leg's (same Call-ID) and the desk hung up on.
    tables = ringing_leg(ksr, handler, sent_ms_ago=300, winner="")
    the_desks_2xx(ksr)
    handler.ksr_reply_route(None)
    assert ksr.called("set_drop") == [] and ksr.called("tm.t_uac_send") == []
    assert tables[("twin_gone", "w:c1@127.0.1.2")] == "desk"     # the desk took the call


def test_given_the_desk_took_the_call_when_the_mobile_answers_then_the_proxy_ends_the_mobile(ksr, handler):  # noqa: F811,E501
    ringing_leg(ksr, handler, sent_ms_ago=2500, winner="desk")
    handler.ksr_reply_route(None)
    assert ksr.called("set_drop") == [()]
    assert [args[0] for args in ksr.called("tm.t_uac_send")] == ["ACK", "BYE"]
    [(_, reply)] = ksr.called("corex.send_data")
    assert reply.startswith("SIP/2.0 487 ")                     # the leg's transaction is over
    assert ksr.called("xhttp_prom.counter_inc_l2") == []        # not a voicemail avoided


def test_given_the_mobile_took_the_call_when_the_desk_answers_then_the_proxy_ends_the_desk(ksr, handler):  # noqa: F811,E501
    ringing_leg(ksr, handler, sent_ms_ago=2500, winner="mob")
    the_desks_2xx(ksr)
    handler.ksr_reply_route(None)
    assert ksr.called("set_drop") == [()]
    sent = ksr.called("tm.t_uac_send")
    assert [args[0] for args in sent] == ["ACK", "BYE"]
    assert "Call completed elsewhere" in sent[1][4]
    [(_, reply)] = ksr.called("corex.send_data")
    assert reply.startswith("SIP/2.0 487 ")                     # the call's desk branch is over


def test_given_the_desk_took_the_call_then_its_own_2xx_again_and_a_reinvites_answer_go_on(ksr, handler):  # noqa: F811,E501
    ringing_leg(ksr, handler, sent_ms_ago=2500, winner="desk")
    the_desks_2xx(ksr)
    handler.ksr_reply_route(None)                               # its retransmission
    ksr.pv.update({"$tt": "abc", "$ft": "desk"})               # the answer to the desk's hold
    handler.ksr_reply_route(None)
    assert ksr.called("set_drop") == []


def test_given_the_mobile_answers_at_once_then_the_proxy_ends_that_leg_and_drops_the_2xx(ksr, handler):  # noqa: F811,E501
    ringing_leg(ksr, handler, sent_ms_ago=150)
    handler.ksr_reply_route(None)
    assert ksr.called("set_drop") == [()]                       # tm never sees the 2xx
    sent = [args[0] for args in ksr.called("tm.t_uac_send")]
    assert sent == ["ACK", "BYE"]
    [(uri, reply)] = ksr.called("corex.send_data")
    assert uri == f"sip:{handler.cfg.proxy_address}:5060"
    assert reply.startswith("SIP/2.0 480 Answered Too Soon")
    assert ("twinning_voicemail_avoided_calls_total", 1, "twin", "answered-too-soon") in \
        ksr.called("xhttp_prom.counter_inc_l2")


def test_given_a_person_answers_after_the_threshold_then_the_2xx_goes_on_to_the_caller(ksr, handler):  # noqa: F811,E501
    ringing_leg(ksr, handler, sent_ms_ago=2500)
    handler.ksr_reply_route(None)
    assert ksr.called("set_drop") == [] and ksr.called("tm.t_uac_send") == []


def test_given_the_rule_is_off_then_even_an_instant_answer_is_connected(ksr, handler):  # noqa: F811
    ringing_leg(ksr, handler, sent_ms_ago=10, soon_ms=0)
    handler.ksr_reply_route(None)
    assert ksr.called("set_drop") == []


def test_given_the_desk_rings_first_then_the_leg_waits_in_milliseconds_on_a_core_async_worker(ksr, handler):  # noqa: F811,E501
    plan = json.dumps(dict(PLAN, delay_s=4))
    ksr.returns.update({"htable.sht_get": lambda table, key: plan, "is_INVITE": True,
                        "siputils.has_totag": -1})
    ksr.pv.update({"$rU": "tw-abc", "$si": handler.cfg.proxy_address, "$sp": "5060"})
    handler.legs.request("INVITE")
    assert ksr.called("async.ms_route") == [("ksr_twinleg_go", 4000)]
    assert ksr.called("tm.t_reply") == [(100, "Trying")]
    assert ksr.called("tm.t_relay") == []


def test_given_someone_else_sends_a_leg_uri_then_it_is_refused(ksr, handler):  # noqa: F811
    ksr.returns.update({"is_INVITE": True, "siputils.has_totag": -1})
    ksr.pv.update({"$rU": "tw-abc", "$si": "127.0.1.2", "$sp": "5060"})
    handler.legs.request("INVITE")
    assert ksr.called("sl.sl_send_reply") == [(403, "Forbidden")]


def test_given_every_gateway_answers_503_then_the_call_hears_503_not_500(ksr, handler):  # noqa: F811
    ksr.returns.update({"tm.t_is_canceled": -1})
    ksr.pv.update({"$T_reply_code": "503", "$ci": "c1"})
    handler.legs.failure()
    assert ksr.called("tm.t_reply") == [(503, "Service Unavailable")]


def test_given_rtpengines_dtmf_reports_then_only_well_formed_ones_are_read():
    from routing.confirm import digit_of
    report = (b'{"callid":"c1","source_tag":"mob","tags":["abc","mob"],"type":"DTMF",'
              b'"timestamp":1,"source_ip":"127.0.1.2","event":1,"duration":100,"volume":10}')
    assert digit_of(report) == ("c1", "mob", 1)
    for junk in (b"", b"not json", b"[]", b'{"type":"DTMF"}', b'{"type":"other","event":1}'):
        assert digit_of(junk) is None


def test_given_confirmation_then_a_late_answer_is_held_and_the_mobile_acked(ksr, handler):  # noqa: F811
    ringing_leg(ksr, handler, sent_ms_ago=2500, confirm=True)
    held = []
    handler.legs.confirm.media = type("M", (), {
        "hold_for_confirmation": lambda self, *args: held.append(args)})()
    handler.ksr_reply_route(None)
    assert ksr.called("set_drop") == [()]                       # the caller waits for the key
    assert [args[0] for args in ksr.called("tm.t_uac_send")] == ["ACK"]
    assert held and held[0][4] == "z9hG4bKo.1"                  # the call's branch of the offer
    [(queue, call_id, _deadline)] = ksr.called("mqueue.mq_add")
    assert (queue, call_id) == ("confirm", "c1@127.0.1.2")


def test_given_confirmation_when_rtpengine_fails_then_the_answer_goes_through(ksr, handler):  # noqa: F811
    ringing_leg(ksr, handler, sent_ms_ago=2500, confirm=True)

    def down(self, *args):
        raise OSError("no rtpengine")
    handler.legs.confirm.media = type("M", (), {"hold_for_confirmation": down})()
    handler.ksr_reply_route(None)
    assert ksr.called("set_drop") == [] and ksr.called("tm.t_uac_send") == []
