"""The registrar's Contact rule (routing.security): which Contacts a desk may register."""
from __future__ import annotations

import pytest

from tests.support.ksr_stub import KsrStub

pytestmark = pytest.mark.unit

KsrStub().install()
from routing import security  # noqa: E402

PROXY, TRUNK = "127.0.1.1", "127.0.1.2"


def is_own(ip: str, _port: int) -> bool:
    return ip == PROXY


def is_trunk(ip: str, _port: int) -> bool:
    return ip == TRUNK


def register(*contacts: str) -> str:
    head = "".join(f"Contact: {c}\r\n" for c in contacts)
    return f"REGISTER sip:{PROXY} SIP/2.0\r\nTo: <sip:1001@{PROXY}>\r\n{head}\r\n"


def refusal(*contacts: str):
    return security.contact_refusal(security.contacts_of(register(*contacts)), is_own, is_trunk)


@pytest.mark.parametrize("contact", [
    "<sip:1001@127.0.1.5:5062>", "<sip:1001@127.0.1.5:5062;transport=tcp>;expires=600",
    "<sips:1001@127.0.1.5:5063>", "sip:1001@127.0.1.5", "*", "<sip:ann-desk@[::1]:5070>",
    "<sip:1001@127.0.1.5:5062;ob>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-1>\""])
def test_given_a_phone_s_own_address_then_the_contact_is_kept(contact):
    assert refusal(contact) is None


@pytest.mark.parametrize("contact, why", [
    ("<sip:011447700900123@127.0.1.2>", "trunk"),
    ("<sip:1001@127.0.1.2:5070>", "trunk"),                 # the trunk's host, any port
    ("<sip:1001@127.0.1.1:5060>", "proxy"),
    ("<sip:1001@127.0.1.1:9090>", "proxy"),
    ("<sip:+18762901234@127.0.1.9>", "number"),             # a number: a gateway's address
    ("<sip:011447700900123@127.0.1.9>", "number"),
    ("<sip:1001@127.0.1.9;user=phone>", "number"),
    ("<sip:1001@gw.example.net>", "host name"),
    ("<tel:+18762901234>", "not a SIP address"),
    ("<sip:1001@127.0.1.5:x>", "not a SIP address"),
])
def test_given_a_contact_aimed_at_a_trunk_the_proxy_or_a_gateway_then_it_is_refused(contact, why):
    text = refusal(contact)
    assert text and why in text and contact.strip("<>").split(";")[0][:12] in text


def test_given_several_contacts_in_one_header_or_compact_form_then_each_is_judged():
    assert refusal("<sip:1001@127.0.1.5:5062>, <sip:+18762901234@127.0.1.2>")
    raw = register("<sip:1001@127.0.1.5:5062>").replace(
        "\r\n\r\n", "\r\nm: <sip:011447700900123@127.0.1.2>\r\n\r\n")
    assert security.contact_refusal(security.contacts_of(raw), is_own, is_trunk)


def test_given_a_uri_then_its_host_is_read():
    assert security.host_of("sip:1001@127.0.1.5:5062;transport=tcp") == "127.0.1.5"
    assert security.host_of("sip:[::1]:5060") == "::1"
    assert security.host_of("") == ""


def test_given_an_in_dialog_request_then_its_target_must_be_the_party_s_own():
    contact = "sip:3125550199@127.0.1.2:5071;transport=udp"
    assert security.same_target("sip:3125550199@127.0.1.2:5071", contact)
    assert not security.same_target("sip:+18762901234@127.0.1.2:5071", contact)
    assert not security.same_target("sip:3125550199@127.0.1.2", contact)      # the trunk's 5060
    assert security.same_target("sip:a@127.0.1.2", "sip:a@127.0.1.2:5060")


def test_given_a_next_hop_then_it_must_be_in_the_dialog_s_route_set():
    rs = "<sip:127.0.1.1;lr;ftag=x>,<sip:sbc.example:5080;lr>"
    assert security.in_route_set("sip:sbc.example:5080;lr", rs)
    assert not security.in_route_set("sip:127.0.1.2:5060", rs)
    assert not security.in_route_set("sip:127.0.1.2:5060", ",")
