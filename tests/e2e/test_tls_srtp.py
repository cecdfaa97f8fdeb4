"""SIP over TLS for phones, and SRTP toward them (issue 13, item 4), with PJSIP phones.

A desk registers over TLS (port [tls] port of the proxy, the certificate `stack up`
generated) and requires SDES-SRTP; the far end and the mobile sit behind the plain trunk.
What is asserted is on the wire: the SDP each side received (RTP/SAVP with a=crypto toward
the TLS desk, RTP/AVP without toward the trunk), the packets each side was sent (SRTP's
ciphertext and authentication tag toward the desk, plain PCMU toward the trunk) and audio
both ways.
"""
from __future__ import annotations

import re
import socket
import ssl
import time

import pytest

from lab.agents import DESK_IPS, TRUNK_IP, add_subscriber
from lab.calls import (CALLER_NAME, CALLER_NUM, CALLER_PORT, MOBILE_PORT, SUB_EXT,
                       setup_subscriber)
from lab.residue import assert_no_residue
from lab.rtp import udp_payloads_to
from tests.support.phones import Phone, assert_two_way
from tests.support.pjsip_scenarios import (DID_DIALLED, OTHER_DID, OTHER_EXT,  # noqa: F401
                                           OUTSIDE_NUMBER, Answered, answered_on_the_desk,
                                           cleared_after,
                                           far_end_hangs_up, handed_to_mobile, proxy,
                                           refusals)

pytestmark = pytest.mark.e2e

DESK_TLS_PORT = 5081
PLAIN_PCMU = 12 + 160           # an RTP header and 20 ms of PCMU


def tls_proxy(cfg) -> str:
    return f"{cfg.proxy_address}:{cfg.tls_port};transport=tls"


def tls_desk(cfg, phones) -> Phone:
    cert, key = cfg.tls_pair
    desk = phones("desk", DESK_IPS[0], 5061, srtp=True,
                  tls={"port": DESK_TLS_PORT, "cert": str(cert), "key": str(key)})
    desk.register(SUB_EXT, "secret1", tls_proxy(cfg))
    return desk


def audio(message) -> tuple[str, bool]:
    """The audio profile of a message's SDP, and whether it carries SDES keys."""
    m = re.search(r"^m=audio \d+ (\S+)", message.text, re.M)
    assert m, f"no audio in {message.first_line}"
    return m.group(1), "a=crypto:" in message.text


def own_media_port(message) -> int:
    return int(re.search(r"^m=audio (\d+)", message.text, re.M).group(1))


def assert_plain_toward(ip: str, port: int) -> None:
    packets = udp_payloads_to(ip, port, 0.6)
    assert len(packets) >= 20, f"no media toward {ip}:{port}"
    assert {len(p) for p in packets} == {PLAIN_PCMU}, "not plain RTP toward the trunk side"
    assert all(p[12:] == b"\xff" * 160 for p in packets[-5:]), "PCMU silence expected in clear"


def assert_srtp_toward(ip: str, port: int) -> None:
    packets = udp_payloads_to(ip, port, 0.6)
    assert len(packets) >= 20, f"no media toward {ip}:{port}"
    assert min(len(p) for p in packets) > PLAIN_PCMU, "no SRTP authentication tag toward desk"
    assert not any(p[12:172] == b"\xff" * 160 for p in packets), "silence in clear toward desk"


def test_given_no_certificate_in_the_site_config_then_kamailio_serves_the_generated_pair(stack):
    cert, key = stack.tls_pair
    assert cert.parent == stack.state_dir / "tls" and oct(key.stat().st_mode & 0o777) == "0o600"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((stack.proxy_address, stack.tls_port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            served = tls.getpeercert(binary_form=True)
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    assert served == ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_given_a_desk_on_tls_when_it_registers_then_its_contact_is_bound_to_the_tls_socket(
        stack, db, phones):
    setup_subscriber(db, stack)
    desk = tls_desk(stack, phones)
    [row] = db.execute("SELECT contact, socket FROM location WHERE username = %s",
                       (SUB_EXT,)).fetchall()
    assert row["socket"] == f"tls:{stack.proxy_address}:{stack.tls_port}"
    assert "transport=tls" in row["contact"].lower()
    assert desk.sent("REGISTER")[-1].header("Via").upper().startswith("SIP/2.0/TLS")


def test_given_a_desk_on_tls_when_the_did_is_called_then_the_desk_gets_srtp_and_the_trunk_rtp(
        stack, db, phones):
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones, desk=tls_desk(stack, phones))
    far, desk, mobile = call.far, call.desk, call.mobile
    far_call, desk_call = call.far_call, call.desk_call

    desk_invite = desk.received("INVITE")[0]
    assert desk_invite.header("Via").upper().startswith("SIP/2.0/TLS")
    assert audio(desk_invite) == ("RTP/SAVP", True)
    assert audio(mobile.received("INVITE")[0]) == ("RTP/AVP", False)   # the twin leg: plain
    assert audio(far.received("200")[-1]) == ("RTP/AVP", False)
    assert desk_call.media_protocol == "RTP/SAVP", desk_call.info()
    assert far_call.media_protocol == "RTP/AVP"
    assert_two_way(far_call, desk_call)
    assert_srtp_toward(DESK_IPS[0], own_media_port(desk.sent("200")[-1]))
    assert_plain_toward(TRUNK_IP, own_media_port(far.sent("INVITE")[0]))

    far_end_hangs_up(call, desk_call)
    assert refusals(desk) == refusals(far) == []
    assert_no_residue(stack)


def test_given_a_plain_desk_when_it_calls_a_tls_desks_extension_then_each_gets_its_own_kind(
        stack, db, phones):
    setup_subscriber(db, stack, ring="desk", twin=None)
    add_subscriber(db, stack, OTHER_EXT, OTHER_DID)
    desk = tls_desk(stack, phones)
    desk.on_incoming(answer_after_ms=200)
    other = phones("other", DESK_IPS[1], 5062)
    other.register(OTHER_EXT, "secret1", proxy(stack))
    other_call = other.make_call(f"sip:{SUB_EXT}@{proxy(stack)}")
    other_call.wait("confirmed")
    desk_call = desk.incoming()

    assert audio(desk.received("INVITE")[0]) == ("RTP/SAVP", True)
    assert audio(other.received("200")[-1]) == ("RTP/AVP", False)
    assert desk_call.media_protocol == "RTP/SAVP" and other_call.media_protocol == "RTP/AVP"
    assert_two_way(other_call, desk_call)
    assert_srtp_toward(DESK_IPS[0], own_media_port(desk.sent("200")[-1]))
    assert_plain_toward(DESK_IPS[1], own_media_port(other.sent("INVITE")[0]))

    other_call.hangup()
    desk_call.wait("disconnected")
    assert refusals(desk) == refusals(other) == []
    assert_no_residue(stack)


def test_given_a_tls_desk_on_a_call_when_each_side_holds_and_resumes_then_srtp_stays(
        stack, db, phones):
    setup_subscriber(db, stack, ring="desk", twin=None)
    desk = tls_desk(stack, phones)
    desk.on_incoming(answer_after_ms=200)
    far = phones("far", TRUNK_IP, CALLER_PORT,
                 uri=f'"{CALLER_NAME}" <sip:{CALLER_NUM}@{TRUNK_IP}>')
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    far_call.wait("confirmed")
    desk_call = desk.incoming()
    for holder in (far_call, desk_call):
        holder.hold()
        time.sleep(0.5)
        holder.unhold()
        time.sleep(0.5)
        assert_two_way(far_call, desk_call)
    # Every re-INVITE the desk got (from the far end) offered SRTP; every one the far end got
    # (from the desk) plain RTP; and each was answered in kind.
    assert [audio(m) for m in desk.received("INVITE")] == [("RTP/SAVP", True)] * 3
    assert [audio(m) for m in far.received("INVITE")] == [("RTP/AVP", False)] * 2
    assert all(audio(m) == ("RTP/SAVP", True) for m in desk.received("200")
               if "m=audio" in m.text)
    assert desk_call.media_protocol == "RTP/SAVP" and far_call.media_protocol == "RTP/AVP"
    assert_srtp_toward(DESK_IPS[0], own_media_port(desk.sent("200")[-1]))

    far_end_hangs_up(Answered(far, desk, far, far_call, desk_call), desk_call)
    assert refusals(desk) == refusals(far) == []
    assert_no_residue(stack)


def test_given_a_desk_on_tls_when_it_calls_out_with_srtp_then_the_trunk_gets_plain_rtp(
        stack, db, phones):
    setup_subscriber(db, stack)
    desk = tls_desk(stack, phones)
    trunk = phones("trunk", TRUNK_IP, MOBILE_PORT)
    trunk.on_incoming(answer_after_ms=200)
    desk_call = desk.make_call(f"sip:{OUTSIDE_NUMBER}@{tls_proxy(stack)}")
    desk_call.wait("confirmed")
    far_call = trunk.incoming()
    far_call.wait("confirmed")

    assert audio(desk.sent("INVITE")[0]) == ("RTP/SAVP", True)        # the desk's own offer
    assert audio(trunk.received("INVITE")[0]) == ("RTP/AVP", False)
    assert audio(desk.received("200")[-1]) == ("RTP/SAVP", True)      # answered in SRTP
    assert desk_call.media_protocol == "RTP/SAVP" and far_call.media_protocol == "RTP/AVP"
    assert_two_way(far_call, desk_call)
    assert_srtp_toward(DESK_IPS[0], own_media_port(desk.sent("INVITE")[0]))
    assert_plain_toward(TRUNK_IP, own_media_port(trunk.sent("200")[-1]))

    desk_call.hangup()
    far_call.wait("disconnected")
    assert refusals(desk) == refusals(trunk) == []
    assert_no_residue(stack)


def test_given_a_tls_desk_on_a_call_when_it_hands_off_then_the_mobile_takes_it_in_plain_rtp(
        stack, db, phones):
    setup_subscriber(db, stack)
    call = answered_on_the_desk(stack, phones, desk=tls_desk(stack, phones))
    far, desk, mobile, far_call = call.far, call.desk, call.mobile, call.far_call

    mobile_call = handed_to_mobile(call, stack)
    assert audio(mobile.received("INVITE")[-1]) == ("RTP/AVP", False)
    assert_two_way(far_call, mobile_call)
    assert far.requests_received() == []                  # the far end saw nothing of it

    far_end_hangs_up(call, mobile_call)
    assert refusals(desk) == refusals(far) == refusals(mobile) == []
    assert_no_residue(stack)


def test_given_a_call_on_the_mobile_when_the_tls_desk_dials_the_code_then_it_takes_it_in_srtp(
        stack, db, phones):
    setup_subscriber(db, stack)
    desk = tls_desk(stack, phones)
    mobile = phones("mobile", TRUNK_IP, MOBILE_PORT)
    mobile.on_incoming(answer_after_ms=200)
    far = phones("far", TRUNK_IP, CALLER_PORT,
                 uri=f'"{CALLER_NAME}" <sip:{CALLER_NUM}@{TRUNK_IP}>')
    far_call = far.make_call(f"sip:{DID_DIALLED}@{proxy(stack)}")
    far_call.wait("confirmed")
    mobile_call = mobile.incoming()
    mobile_call.wait("confirmed")
    desk.incoming().wait("disconnected")                  # the desk's ringing was CANCELled
    assert_two_way(far_call, mobile_call)

    code_call = desk.make_call(f"sip:{stack.handoff_code}@{tls_proxy(stack)}")
    code_call.wait("confirmed")
    assert audio(desk.received("200")[-1]) == ("RTP/SAVP", True)
    assert code_call.media_protocol == "RTP/SAVP"
    mobile_call.wait("disconnected")
    assert_two_way(far_call, code_call)
    assert_srtp_toward(DESK_IPS[0], own_media_port(desk.sent("INVITE")[-1]))

    code_call.hangup()
    far_call.wait("disconnected")
    assert refusals(desk) == refusals(far) == []
    assert_no_residue(stack)
