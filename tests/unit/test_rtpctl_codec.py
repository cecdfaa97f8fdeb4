"""Codec: rtpengine's unsorted dictionaries, text handling, framing."""
from __future__ import annotations

import pytest

from rtpctl.codec import decode_body, decode_message, encode_message, split_packet
from rtpctl.errors import ProtocolError

pytestmark = pytest.mark.unit


def test_decodes_unsorted_keys_as_rtpengine_sends_them():
    # given the exact shape rtpengine 10.5 sends ("sdp" before "result": not sorted)
    body = b"d3:sdp5:v=0\r\n6:result2:oke"
    assert decode_body(body) == {"sdp": "v=0\r\n", "result": "ok"}


def test_encode_sorts_keys_drops_none_and_frames_with_cookie():
    data = encode_message("abc_1", {"command": "offer", "sdp": "v=0", "via-branch": None,
                                    "flags": ["port latching"], "delete-delay": 0})
    assert data == b"abc_1 d7:command5:offer12:delete-delayi0e5:flagsl13:port latchinge3:sdp3:v=0e"


def test_round_trip():
    msg = {"command": "x", "nested": {"b": [1, "two"], "a": "é"}}
    cookie, decoded = decode_message(encode_message("k_9", msg))
    assert cookie == "k_9" and decoded == msg


def test_invalid_utf8_does_not_crash():
    assert decode_body(b"d3:sdp2:\xff\xfee")["sdp"] == "\udcff\udcfe"


@pytest.mark.parametrize("data", [b"nocookie", b" d1:ai1ee"])
def test_missing_cookie(data):
    with pytest.raises(ProtocolError):
        split_packet(data)


def test_depth_bomb_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        decode_body(b"l" * 500 + b"e" * 500)
