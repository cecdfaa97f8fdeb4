"""Twin ring on the wire: who rings, who wins, what the mobile sees, where media flows."""
from __future__ import annotations

import re

import pytest

from tests.support import calls
from tests.support.calls import (CALLER_NUM, SUB_DID, SUB_TWIN, Call, assert_nothing_left,
                                 connect_media, desk, mobile, register_desk, setup_subscriber,
                                 trunk_caller, voicemail)
from tests.support.rtp import assert_two_way

pytestmark = pytest.mark.e2e

COMPLETED_ELSEWHERE = 'Reason: SIP;cause=200;text="Call completed elsewhere"'


def header(msg: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(.*)$", msg, re.M | re.I)
    return match.group(1).strip() if match else ""


def test_given_mobile_ticked_when_the_desk_answers_a_trunk_call_then_mobile_is_cancelled(
        stack, db, logdir):
    setup_subscriber(db, stack)
    register_desk(stack, logdir)
    call = Call({"desk": desk(pause_ms=1000), "mobile": calls.mobile(),
                 "caller": trunk_caller(stack)})
    try:
        calls.start(call, logdir)
        since = connect_media(call["caller"], "200", call["desk"], "INVITE")
        calls.run(call, logdir)
        assert_two_way(call["caller"].probe, call["desk"].probe, since)
    finally:
        call.close()
    invite = call["mobile"].agent.received("INVITE")[0]
    assert invite.startswith(f"INVITE sip:{SUB_TWIN}@")
    assert CALLER_NUM in header(invite, "From")
    assert CALLER_NUM in header(invite, "P-Asserted-Identity")
    assert SUB_DID in header(invite, "Diversion")
    cancel = call["mobile"].agent.received("CANCEL")[0]
    assert COMPLETED_ELSEWHERE in cancel
    assert_nothing_left(stack)
