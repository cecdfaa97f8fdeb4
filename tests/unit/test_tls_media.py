"""SRTP toward phones on TLS, plain RTP elsewhere: the flags the routing gives rtpengine, and
SDES in the answer to a desk's code call (issue 13, item 4)."""
from __future__ import annotations

import pytest

from routing.handoff.sdp import is_secure_contact, match_crypto
from tests.unit.test_adapter import handler, ksr  # noqa: F401 (fixtures)

pytestmark = pytest.mark.unit


@pytest.fixture
def media(handler):  # noqa: F811 - reloaded over the installed KSR stub
    from routing import media
    return media


def test_given_an_offer_toward_tls_then_it_asks_for_savp_without_null_suites(media):
    module_flags, MEDIA, SECURE = media.module_flags, media.MEDIA, media.SECURE
    offer_options = media.offer_options
    assert module_flags(MEDIA, SECURE) == (
        "replace-origin replace-session-connection ICE=remove "
        "SDES-no-NULL_HMAC_SHA1_80 SDES-no-NULL_HMAC_SHA1_32 RTP/SAVP")
    ng = offer_options(True, via_branch="v1").to_ng()
    assert ng["transport-protocol"] == SECURE and ng["via-branch"] == "v1"
    assert ng["SDES"] == ["no-NULL_HMAC_SHA1_80", "no-NULL_HMAC_SHA1_32"]


def test_given_an_offer_toward_the_trunk_or_an_answer_then_no_srtp_is_asked_for(media):
    module_flags, MEDIA, PLAIN, offer_options = (media.module_flags, media.MEDIA, media.PLAIN,
                                                 media.offer_options)
    assert module_flags(MEDIA, PLAIN).endswith("ICE=remove RTP/AVP")
    assert "SDES" not in offer_options(False).to_ng()
    # Answers name no protocol: rtpengine answers in the protocol the offerer used.
    assert "RTP/" not in module_flags(MEDIA) and "SDES" not in module_flags(MEDIA)


@pytest.mark.parametrize("uri, secure", [
    ("sip:1001@127.0.1.3:5081;transport=TLS", True), ("sips:1001@127.0.1.3", True),
    ("sip:1001@127.0.1.3:5061", False), ("sip:1001@127.0.1.3;transport=tcp", False)])
def test_given_a_contact_then_tls_is_told_by_its_scheme_or_transport(uri, secure):
    assert is_secure_contact(uri) is secure


DESK = ("v=0\r\nm=audio 4000 RTP/SAVP 0\r\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:DESKKEY1\r\n"
        "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:DESKKEY2\r\na=sendrecv\r\n")
RTPENGINE = ("v=0\r\nm=audio 5000 RTP/SAVP 0\r\n"
             "a=crypto:1 AEAD_AES_256_GCM inline:OURS1\r\n"
             "a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:OURS7\r\n"
             "a=crypto:8 AES_CM_128_HMAC_SHA1_32 inline:OURS8\r\na=sendrecv\r\n")


def test_given_a_desks_srtp_offer_when_answered_with_rtpengines_then_one_suite_under_its_tag():
    answer, desk_for_media = match_crypto(RTPENGINE, DESK)
    assert [line for line in answer.splitlines() if line.startswith("a=crypto")] == \
        ["a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:OURS7"]
    assert [line for line in desk_for_media.splitlines() if line.startswith("a=crypto")] == \
        ["a=crypto:7 AES_CM_128_HMAC_SHA1_80 inline:DESKKEY1"]
    assert answer.endswith("a=sendrecv\r\n") and "m=audio 5000 RTP/SAVP 0" in answer


def test_given_plain_sdp_on_either_side_then_the_crypto_match_changes_nothing():
    plain = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n"
    assert match_crypto(plain, DESK) == (plain, DESK)
    assert match_crypto(RTPENGINE, plain) == (RTPENGINE, plain)


def test_given_a_branch_to_a_tls_desk_then_it_is_offered_srtp(ksr, handler):  # noqa: F811
    ksr.returns.update({"textops.has_body_type": 1, "rtpengine.rtpengine_offer": 1})
    ksr.pv.update({"$nh(P)": "tls", "$fs": "tls:127.0.1.1:5061",
                   "$ru": "sip:1001@127.0.1.3:5081;transport=tls"})
    handler.ring.branch()
    [(flags,)] = ksr.called("rtpengine.rtpengine_offer")
    assert flags.startswith("via-branch=auto-next ") and flags.endswith(" RTP/SAVP")
    assert not ksr.called("pv.unset")


def test_given_the_twin_leg_beside_a_tls_desk_then_it_leaves_plain_on_its_own_socket(
        ksr, handler):  # noqa: F811
    ksr.returns.update({"textops.has_body_type": 1, "rtpengine.rtpengine_offer": 1})
    ksr.pv.update({"$nh(P)": "udp", "$fs": "tls:127.0.1.1:5061",
                   "$ru": "sip:+19175550123@127.0.1.2:5060"})
    handler.ring.branch()
    assert ksr.called("pv.unset") == [("$fs",)]
    [(flags,)] = ksr.called("rtpengine.rtpengine_offer")
    assert flags.endswith(" RTP/AVP") and "SDES" not in flags
