"""Steps of PJSIP call tests, shared by the test modules: a call set up the way a subscriber
gets one, handoffs the ways a desk asks for them, and what to check on the wire afterwards
(who sent which error reply, what each phone answered)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pytest

from lab.agents import DESK_IPS, TRUNK_IP
from lab.calls import (CALLER_NAME, CALLER_NUM, CALLER_PORT, MOBILE_PORT, SUB_DID, SUB_EXT,
                       SUB_TWIN)
from lab.residue import clear_residue
from lab.rtp import media_address, wait_for
from tests.support.phones import Call, Phone, assert_two_way

DID_DIALLED = SUB_DID.removeprefix("+1")
OTHER_EXT, OTHER_DID = "1002", "+12125550102"   # a second desk, calling the subscriber
OUTSIDE_NUMBER = "3125550188"                   # what the desk dials out through the trunk


@pytest.fixture(autouse=True)
def cleared_after(stack):
    """Set up before `phones`, so it runs after they are closed: what a failed test (a known
    bug) left in the stack is ended, and the next test starts clean. A test module takes it
    in by importing it."""
    yield
    left = clear_residue(stack)
    if left:
        print(f"cleared after the test: {left}")


def proxy(cfg) -> str:
    return f"{cfg.proxy_address}:{cfg.proxy_port}"


def code_uri(cfg) -> str:
    return f"sip:{cfg.handoff_code}@{proxy(cfg)}"


@dataclass
class Answered:
    """A call of the subscriber's: the far end's phone and call, the desk and the mobile, and
    the subscriber's call on each device (None where it is not, or no longer, there).
    `origin`: did (the far end called the DID through the trunk), extension (another desk
    dialled 1001), outside (the desk dialled a number through the trunk, where one phone is
    both the called party and, for the twin number, the mobile)."""
    far: Phone
    desk: Phone
    mobile: Phone
    far_call: Call
    desk_call: Optional[Call]
    mobile_call: Optional[Call] = None
    origin: str = "did"


def answered_on_the_desk(cfg, phones, desk: Optional[Phone] = None,
                         trunk: str = TRUNK_IP) -> Answered:
    """The far end calls the DID; the twin ring rings the desk and the mobile; the desk
    answers, the mobile's ringing is CANCELled; both ways of audio are checked. `desk`: a
    registered desk phone of the test's own (default: a plain one on UDP); `trunk`: the
    carrier's address (the far end and the mobile behind it) when not the test stack's."""
    if desk is None:
        desk = phones("desk", DESK_IPS[0], 5061)
        desk.register(SUB_EXT, "secret1", proxy(cfg))
    desk.on_incoming(answer_after_ms=300)
    mobile = phones("mobile", trunk, MOBILE_PORT)                # rings until CANCELled
    far = phones("far", trunk, CALLER_PORT, uri=f'"{CALLER_NAME}" <sip:{CALLER_NUM}@{trunk}>')
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(cfg)}")
    far_call.wait("confirmed")
    desk_call = desk.incoming()
    assert mobile.incoming().wait("disconnected")[0] == 487       # the twin leg lost
    assert_two_way(far_call, desk_call)
    return Answered(far, desk, mobile, far_call, desk_call)


def refusals(phone: Phone) -> list[str]:
    """Error replies the phone sent (a strict stack's complaints), but for the 487 that
    answers a CANCEL."""
    return [m.first_line for m in phone.sent() if m.first_line.startswith("SIP/2.0 ")
            and int(m.first_line.split()[1]) >= 400 and not m.is_("487")]


def answers_to(phone: Phone, method: str) -> list[str]:
    """Status lines the phone sent in reply to requests of that method."""
    return [m.first_line for m in phone.sent() if m.first_line.startswith("SIP/2.0 ")
            and m.header("CSeq").endswith(" " + method)]


def handed_to_mobile(call: Answered, cfg, hold_first: bool = False) -> Call:
    """The desk presses Handoff (blind transfer to the code, after a hold if asked); the
    mobile answers; the desk gets NOTIFY 200 and hangs up. Returns the mobile's call."""
    call.mobile.on_incoming(answer_after_ms=300)
    if hold_first:
        call.desk_call.hold()
        wait_for(lambda: call.far.received("INVITE"), 5, "the hold re-INVITE at the far end")
    call.desk_call.xfer(code_uri(cfg))
    assert call.desk_call.wait_transfer() == 200
    call.desk_call.hangup()
    call.desk_call.wait("disconnected")
    mobile_call = call.mobile.incoming(2)
    mobile_call.wait("confirmed")
    assert call.desk.received("202")
    return mobile_call


def assert_mobile_shows_the_far_end(mobile: Phone) -> None:
    """The handoff's INVITE: the far end's number in From, number and name asserted (tm's
    t_uac_send rebuilds From without the display name the routing gives it)."""
    invite = mobile.received("INVITE")[-1]
    assert CALLER_NUM in invite.header("From")
    assert CALLER_NUM in invite.header("P-Asserted-Identity") and \
        CALLER_NAME in invite.header("P-Asserted-Identity")


def far_end_hangs_up(call: Answered, near: Call) -> None:
    call.far_call.hangup()
    assert call.far_call.wait("disconnected")[0] == 200
    near.wait("disconnected")


# ---- the three ways a subscriber has a call --------------------------------------------------

def a_call(cfg, phones, origin: str = "did", on: str = "desk",
           desk_locks_codec: bool = False) -> Answered:
    """A call of the given origin (see Answered), answered on the desk or the mobile (the
    twin ring: the device that answers first wins, the other's ringing is CANCELled); both
    ways of audio are checked. The subscriber (and, for `extension`, 1002) must exist.
    desk_locks_codec: the desk re-INVITEs at once when an answer offers several codecs (the
    proxy's answer to the code call does)."""
    desk = phones("desk", DESK_IPS[0], 5061, lock_codec=desk_locks_codec)
    desk.register(SUB_EXT, "secret1", proxy(cfg))
    if origin == "outside":
        assert on == "desk", "the desk places an outside call"
        trunk = phones("trunk", TRUNK_IP, MOBILE_PORT)       # the number, and the mobile
        trunk.on_incoming(answer_after_ms=200)
        desk_call = desk.make_call(f"sip:{OUTSIDE_NUMBER}@{proxy(cfg)}")
        desk_call.wait("confirmed")
        far_call = trunk.incoming()
        far_call.wait("confirmed")
        assert OUTSIDE_NUMBER in far_call.messages()[0].first_line.split()[1]
        assert_two_way(far_call, desk_call)
        return Answered(trunk, desk, trunk, far_call, desk_call, origin=origin)
    mobile = phones("mobile", TRUNK_IP, MOBILE_PORT)
    if origin == "did":
        far = phones("far", TRUNK_IP, CALLER_PORT,
                     uri=f'"{CALLER_NAME}" <sip:{CALLER_NUM}@{TRUNK_IP}>')
        dialled = DID_DIALLED
    else:
        far = phones("far", DESK_IPS[1], 5062)
        far.register(OTHER_EXT, "secret1", proxy(cfg))
        dialled = SUB_EXT
    answering, losing = (desk, mobile) if on == "desk" else (mobile, desk)
    answering.on_incoming(answer_after_ms=300 if on == "desk" else 100)
    far_call = far.make_call(f"sip:{dialled}@{proxy(cfg)}")   # the loser rings until CANCEL
    far_call.wait("confirmed")
    near_call = answering.incoming()
    assert losing.incoming().wait("disconnected")[0] == 487
    assert_two_way(far_call, near_call)
    if on == "desk":
        return Answered(far, desk, mobile, far_call, near_call, origin=origin)
    return Answered(far, desk, mobile, far_call, None, near_call, origin=origin)


# ---- what a dialog saw -----------------------------------------------------------------------

def replies_received(call: Call, method: str) -> list[str]:
    """Status lines the phone received in this call's dialog for requests of that method."""
    return [m.first_line for m in call.messages() if m.direction == "received"
            and m.first_line.startswith("SIP/2.0 ") and m.header("CSeq").endswith(" " + method)]


def answers_in(call: Call, method: str) -> list[str]:
    """Status lines the phone sent in this call's dialog for requests of that method."""
    return [m.first_line for m in call.messages() if m.direction == "sent"
            and m.first_line.startswith("SIP/2.0 ") and m.header("CSeq").endswith(" " + method)]


def codes(status_lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in status_lines]


def final_reply(call: Call, method: str, timeout: float = 5.0) -> int:
    """The final reply the phone got to its (last) request of that method in the call (pjsua
    shows a call disconnected as soon as it sends BYE, before the answer)."""
    return wait_for(lambda: [c for c in codes(replies_received(call, method)) if c >= 200],
                    timeout, f"{call.phone.name}'s {method} to be answered")[-1]


def calls_received(phone: Phone) -> int:
    return sum(c["incoming"] for c in phone.command("calls_summary"))


def far_requests(call: Answered) -> list[str]:
    """Methods of the requests the far end received in its call, past the initial INVITE and
    its ACK when it was the one called."""
    methods = [r.split()[0] for r in call.far_call.requests_received()]
    if call.origin == "outside":
        assert methods[:2] == ["INVITE", "ACK"], methods
        methods = methods[2:]
    return methods


# ---- handoffs --------------------------------------------------------------------------------

def reinvite(call: Call, how: str) -> None:
    """hold or unhold the call, and wait for the 200 to the re-INVITE."""
    before = len([c for c in codes(replies_received(call, "INVITE")) if c == 200])
    getattr(call, how)()
    wait_for(lambda: len([c for c in codes(replies_received(call, "INVITE")) if c == 200])
             > before, 5, f"the {how} re-INVITE of {call.phone.name} to be answered")


def transfer_to_code(call: Answered, cfg, answer_after_ms: Optional[int] = 300,
                     reject: Optional[int] = None) -> int:
    """The desk presses Handoff (a blind transfer to the code); the mobile is told how to take
    the call it is about to get. Returns how many calls the mobile had received before."""
    before = calls_received(call.mobile)
    call.mobile.on_incoming(answer_after_ms=answer_after_ms, reject=reject)
    call.desk_call.xfer(code_uri(cfg))
    return before


def dial_code_while_held(call: Answered, cfg, answer_after_ms: Optional[int] = 300,
                         reject: Optional[int] = None) -> tuple[Call, int]:
    """With its call held (reinvite(call.desk_call, "hold")), the desk dials the code and
    hears ringing (180). Returns the code call and how many calls the mobile had received
    before."""
    before = calls_received(call.mobile)
    call.mobile.on_incoming(answer_after_ms=answer_after_ms, reject=reject)
    code_call = call.desk.make_call(code_uri(cfg))
    wait_for(lambda: code_call.state in ("early", "confirmed", "disconnected"), 10,
             "the code call to be answered")
    assert 180 in codes(replies_received(code_call, "INVITE"))      # the desk hears ringing
    return code_call, before


FAR_NUMBER = {"did": CALLER_NUM, "extension": OTHER_DID, "outside": OUTSIDE_NUMBER}


def the_mobiles_handoff_call(call: Answered, before: int) -> Call:
    """The handoff's INVITE at the mobile: to the twin number (the outside call's phone tells
    it from the far end's call by that), showing the far end's number."""
    mobile_call = call.mobile.incoming(before + 1)
    invite = mobile_call.messages()[0]
    assert invite.first_line.startswith(f"INVITE sip:{SUB_TWIN}@"), invite.first_line
    assert FAR_NUMBER[call.origin][-10:] in invite.header("From"), invite.header("From")
    return mobile_call


def refer_to_mobile(call: Answered, cfg) -> Call:
    """Desk → mobile by transfer: the desk gets 202 and NOTIFY 200, hangs up (the proxy
    answers that BYE 200), and the mobile has the call."""
    before = transfer_to_code(call, cfg)
    assert call.desk_call.wait_transfer() == 200
    assert codes(replies_received(call.desk_call, "REFER")) == [202]
    call.desk_call.hangup()
    assert final_reply(call.desk_call, "BYE") == 200
    mobile_call = the_mobiles_handoff_call(call, before)
    mobile_call.wait("confirmed")
    call.desk_call, call.mobile_call = None, mobile_call
    return mobile_call


def held_code_to_mobile(call: Answered, cfg) -> Call:
    """Desk → mobile by the code with the call held: the code call ends 480 "Call Moved To
    Your Mobile" once the mobile answers, and the held call gets BYE (answered 200)."""
    held = call.desk_call
    reinvite(held, "hold")
    code_call, before = dial_code_while_held(call, cfg)
    mobile_call = the_mobiles_handoff_call(call, before)
    mobile_call.wait("confirmed")
    assert code_call.wait("disconnected") == (480, "Call Moved To Your Mobile")
    held.wait("disconnected")
    assert held.requests_received()[-1].startswith("BYE ")
    assert codes(answers_in(held, "BYE")) == [200]
    call.desk_call, call.mobile_call = None, mobile_call
    return mobile_call


def desk_takes_it_back(call: Answered, cfg) -> Call:
    """Mobile → desk: the desk dials the code and is answered at once (no ringing); the
    mobile gets BYE and answers it 200."""
    mobile_call = call.mobile_call
    desk_call = call.desk.make_call(code_uri(cfg))
    desk_call.wait("confirmed")
    answers = codes(replies_received(desk_call, "INVITE"))
    assert 200 in answers and not [c for c in answers if 100 < c < 200], answers  # no ringing
    mobile_call.wait("disconnected")
    assert mobile_call.requests_received()[-1].startswith("BYE ")
    assert codes(answers_in(mobile_call, "BYE")) == [200]
    call.desk_call, call.mobile_call = desk_call, None
    return desk_call


# ---- hanging up ------------------------------------------------------------------------------

def hangs_up(caller: Call, other: Call) -> None:
    """`caller` sends BYE (answered 200); `other` gets BYE and answers it 200."""
    caller.hangup()
    assert final_reply(caller, "BYE") == 200
    other.wait("disconnected")
    assert other.requests_received()[-1].startswith("BYE ")
    assert wait_for(lambda: codes(answers_in(other, "BYE")), 5, "the BYE's answer") == [200]


def own_call_ids(phone: Phone) -> set[str]:
    """Call-IDs of the calls this phone placed or received in this test (what a stack still
    retransmits of an earlier test's call to the same address is not this test's)."""
    return {c["call_id"] for c in phone.command("calls_summary")}


def refused_in_calls(phone: Phone) -> list[str]:
    """Error replies the phone sent in its own calls (but for a 487 to a CANCEL)."""
    own = own_call_ids(phone)
    return [f"{m.first_line} (CSeq {m.header('CSeq')})" for m in phone.sent()
            if m.first_line.startswith("SIP/2.0 ") and int(m.first_line.split()[1]) >= 400
            and not m.is_("487") and m.header("Call-ID") in own]


def rejected_in_dialog(phone: Phone) -> list[str]:
    """Error replies the phone received to requests it sent inside one of its calls (with a
    To tag): the proxy refusing what a phone says in a call it is in."""
    own = own_call_ids(phone)
    sent = {(m.header("Call-ID"), m.header("CSeq")) for m in phone.sent()
            if not m.first_line.startswith("SIP/") and ";tag=" in m.header("To")
            and m.header("Call-ID") in own}
    return [f"{m.first_line} (CSeq {m.header('CSeq')})" for m in phone.received()
            if m.first_line.startswith("SIP/2.0 ") and int(m.first_line.split()[1]) >= 400
            and (m.header("Call-ID"), m.header("CSeq")) in sent]


def assert_no_refusals(phones, expected: Optional[dict[str, list[int]]] = None) -> None:
    """No phone sent an error reply in its calls (but for a 487 to a CANCEL), or only the
    codes expected of it (a decline, a 503 from the trunk); and none had a request inside a
    call refused."""
    expected = expected or {}
    sent = {p.name: codes(refused_in_calls(p)) for p in phones.all}
    assert sent == {name: expected.get(name, []) for name in sent}, \
        {p.name: refused_in_calls(p) for p in phones.all}
    rejected = {p.name: rejected_in_dialog(p) for p in phones.all}
    assert rejected == {name: [] for name in rejected}


# ---- offers and answers ----------------------------------------------------------------------

def _direction(sdp_text: str) -> str:
    for attr in ("sendonly", "recvonly", "inactive", "sendrecv"):
        if f"\na={attr}" in sdp_text:
            return attr
    return "sendrecv"


ANSWERS_TO = {"sendonly": ("recvonly", "inactive"), "sendrecv": ("sendrecv",),
              "recvonly": ("sendonly", "inactive"), "inactive": ("inactive",)}


def reinvite_problems(call: Call, count: int, address: tuple[str, int]) -> list[str]:
    """What is wrong with the answers to the last `count` re-INVITEs the phone sent in the
    call (RFC 3264 §6: a 2xx to an offer carries the answer, in the direction that answers
    the offer's; RFC 3261 §13.3.1.4: a 2xx is retransmitted only until its ACK arrives),
    and whether the answer keeps the media `address` the phone had been given."""
    offers = [m for m in call.messages() if m.direction == "sent" and m.is_("INVITE")]
    problems = []
    for offer in offers[-count:]:
        cseq = offer.header("CSeq")
        oks = [m for m in call.messages() if m.direction == "received" and m.is_("200")
               and m.header("CSeq") == cseq]
        wanted = _direction(offer.text)
        what = f"{call.phone.name}'s {wanted} re-INVITE (CSeq {cseq})"
        if not oks:
            problems.append(f"{what}: no 200")
            continue
        answer = oks[0].text
        if "\nm=audio " not in answer:
            problems.append(f"{what}: the 200 carries no SDP answer")
        else:
            if _direction(answer) not in ANSWERS_TO[wanted]:
                problems.append(f"{what}: answered a={_direction(answer)}")
            if media_address(answer) != address:
                problems.append(f"{what}: the answer moved the media to "
                                f"{media_address(answer)} from {address}")
        if len(oks) > 1:
            problems.append(f"{what}: the 200 arrived {len(oks)} times though ACKed")
    return problems
