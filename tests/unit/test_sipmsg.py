"""The messages the proxy writes from a 2xx it keeps from the caller (routing.sipmsg)."""
from __future__ import annotations

import pytest

from routing import sipmsg

pytestmark = pytest.mark.unit

OK = ("SIP/2.0 200 OK\r\n"
      "Via: SIP/2.0/UDP 127.0.1.1;branch=z9hG4bKinner.0, SIP/2.0/UDP 127.0.1.1;branch=z9hG4bKo.1\r\n"
      "v: SIP/2.0/UDP 127.0.1.2:5071;branch=z9hG4bK-caller\r\n"
      "Record-Route: <sip:gw2.carrier.example;lr>, <sip:gw1.carrier.example;lr>\r\n"
      "Record-Route: <sip:127.0.1.1;lr;ftag=abc;did=1.2>\r\n"
      "f: \"Carol\" <sip:+13125550199@127.0.1.1>;tag=abc\r\n"
      "To: <sip:+19175550123@127.0.1.1>;tag=mob\r\n"
      "Call-ID: c1@127.0.1.2\r\n"
      "CSeq: 7 INVITE\r\n"
      "Contact: <sip:vm@127.0.1.2:5060;transport=udp>\r\n"
      "Content-Type: application/sdp\r\n"
      "Content-Length: 4\r\n\r\nv=0\r\n")


def test_given_a_2xx_then_ack_and_bye_go_to_its_contact_through_the_routes_beyond_the_proxy():
    end = sipmsg.leg_end(OK, "127.0.1.1", 'Answered "Too" Soon')
    assert end.target == "sip:vm@127.0.1.2:5060;transport=udp"
    # Entries above the proxy's own are nearer the answerer; nearest to the proxy first.
    assert end.next_hop == "sip:gw1.carrier.example;lr"
    assert end.ack.index("Route: <sip:gw1.carrier.example;lr>") < \
        end.ack.index("Route: <sip:gw2.carrier.example;lr>")
    assert "From: \"Carol\" <sip:+13125550199@127.0.1.1>;tag=abc\r\n" in end.ack
    assert "To: <sip:+19175550123@127.0.1.1>;tag=mob\r\n" in end.ack
    assert "CSeq: 7 ACK\r\n" in end.ack and "CSeq: 8 BYE\r\n" in end.bye
    assert 'Reason: SIP;cause=480;text="Answered Too Soon"' in end.bye
    assert "127.0.1.1;lr;ftag" not in end.ack


def test_given_no_record_route_then_straight_to_the_contact():
    plain = OK.replace("Record-Route: <sip:gw2.carrier.example;lr>, <sip:gw1.carrier.example;lr>\r\n",
                       "")
    end = sipmsg.leg_end(plain, "127.0.1.1", "x")
    assert end.next_hop == "" and "Route:" not in end.ack


def test_given_a_2xx_then_the_final_reply_for_its_branch_keeps_every_via_and_no_body():
    text = sipmsg.final_reply_for(OK, 480, "Answered Too Soon")
    assert text.startswith("SIP/2.0 480 Answered Too Soon\r\n")
    fields = sipmsg.headers(text)
    assert [v for n, v in fields if n == "via"][0].startswith("SIP/2.0/UDP 127.0.1.1;branch=z9hG4bKinner.0")
    assert len([n for n, _ in fields if n == "via"]) == 2     # both lines, compact one too
    assert ("cseq", "7 INVITE") in fields and ("call-id", "c1@127.0.1.2") in fields
    assert "CSeq: 7 INVITE" in text and "Call-ID: c1@127.0.1.2" in text
    assert text.endswith("Content-Length: 0\r\n\r\n") and "v=0" not in text


def test_given_a_folded_header_and_quoted_commas_then_they_are_read_whole():
    raw = "SIP/2.0 200 OK\r\nTo: \"Lee, Ann\" <sip:a@b>;tag=1\r\nSubject: a\r\n b\r\n\r\n"
    assert sipmsg.headers(raw) == [("to", '"Lee, Ann" <sip:a@b>;tag=1'), ("subject", "a b")]
    assert sipmsg.split_list('"Lee, Ann" <sip:a@b>, <sip:c@d>') == ['"Lee, Ann" <sip:a@b>',
                                                                     "<sip:c@d>"]
