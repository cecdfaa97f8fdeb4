"""Client commands: the ng dictionaries they send and the typed results they return."""
from __future__ import annotations

import pytest

from rtpctl import AnswerOptions, Client, CodecOptions, OfferOptions, ProtocolError
from rtpctl.testing import FakeServer, Received, reply

pytestmark = pytest.mark.unit

QUERY_REPLY = {
    "created": 1700000000, "last signal": 1700000005,
    "tags": {
        "far": {"tag": "far", "created": 1700000000,
                "subscriptions": [{"tag": "near", "type": "offer/answer"}],
                "medias": [{"index": 1, "type": "audio", "protocol": "RTP/AVP",
                            "flags": ["send", "recv"],
                            "streams": [{"local port": 42000, "local address": "127.0.0.1",
                                         "endpoint": {"family": "IPv4", "address": "127.0.0.1",
                                                      "port": 42100},
                                         "advertised endpoint": {"family": "IPv4",
                                                                 "address": "127.0.0.1",
                                                                 "port": 42100},
                                         "flags": ["RTP", "filled"],
                                         "stats": {"packets": 50, "bytes": 8600,
                                                   "errors": 0}},
                                        {"local port": 42001, "flags": ["RTCP"],
                                         "stats": {"packets": 1, "bytes": 80, "errors": 0}}]}]},
        "near": {"tag": "near", "via-branch": "z9hG4bK-1", "medias": []},
    },
    "totals": {"RTP": {"packets": 50, "bytes": 8600, "errors": 0},
               "RTCP": {"packets": 1, "bytes": 80, "errors": 0}},
    "result": "ok",
}


def recording(answer: dict):
    def script(req: Received, server: FakeServer):
        return [reply(req.cookie, answer)]
    return script


def test_offer_sends_typed_options_and_returns_sdp():
    with FakeServer(recording({"sdp": "v=0 rewritten", "result": "ok"})) as server:
        c = Client(server.host, server.port, timeout=0.2)
        result = c.offer("call", "ftag", "v=0", OfferOptions(
            via_branch="V", flags=["trust-address"], replace=["origin"],
            codec=CodecOptions(strip=["all"], offer=["PCMU"]), ice="remove"))
    sent = server.received[0].message
    assert sent == {"command": "offer", "call-id": "call", "from-tag": "ftag", "sdp": "v=0",
                    "via-branch": "V", "flags": ["trust-address"], "replace": ["origin"],
                    "codec": {"strip": ["all"], "offer": ["PCMU"]}, "ICE": "remove"}
    assert result.sdp == "v=0 rewritten" and result.warning is None


def test_answer_with_port_latching_sets_the_flag():
    with FakeServer(recording({"sdp": "v=0", "result": "ok"})) as server:
        Client(server.host, server.port).answer("c", "far", "new", "v=0",
                                                AnswerOptions(via_branch="V", port_latching=True))
    sent = server.received[0].message
    assert sent["flags"] == ["port latching"] and sent["to-tag"] == "new"


def test_scoped_delete_sends_only_given_scope():
    with FakeServer(recording({"result": "ok"})) as server:
        Client(server.host, server.port).delete("c", from_tag="far", to_tag="old",
                                                delete_delay=0)
        Client(server.host, server.port).delete("c", via_branch="V")
    assert server.received[0].message == {"command": "delete", "call-id": "c",
                                          "from-tag": "far", "to-tag": "old", "delete-delay": 0}
    assert server.received[1].message == {"command": "delete", "call-id": "c", "via-branch": "V"}


def test_query_is_parsed_into_tags_media_and_counters():
    with FakeServer(recording(QUERY_REPLY)) as server:
        q = Client(server.host, server.port).query("call")
    far = q.tags["far"]
    assert far.peers == ("near",)
    rtp = far.medias[0].rtp
    assert rtp is not None and rtp.local_port == 42000 and str(rtp.endpoint) == "127.0.0.1:42100"
    assert far.rtp_counters.packets == 50
    assert q.tags["near"].via_branch == "z9hG4bK-1"
    assert q.rtp.bytes == 8600 and q.rtcp.packets == 1


def test_query_with_wrong_types_is_a_protocol_error():
    with FakeServer(recording({"result": "ok", "tags": {"x": {"medias": "nope"}}})) as server:
        with pytest.raises(ProtocolError):
            Client(server.host, server.port).query("call")


def test_offer_reply_without_sdp_is_a_protocol_error():
    with FakeServer(recording({"result": "ok"})) as server:
        with pytest.raises(ProtocolError):
            Client(server.host, server.port).offer("c", "f", "v=0")


def test_list_and_statistics():
    def script(req: Received, server: FakeServer):
        if req.message["command"] == "list":
            return [reply(req.cookie, {"calls": ["a", "b"], "result": "ok"})]
        return [reply(req.cookie, {"statistics": {"currentstatistics": {"sessionsown": 2},
                                                  "totalstatistics": {"uptime": "42"}},
                                   "result": "ok"})]

    with FakeServer(script) as server:
        c = Client(server.host, server.port)
        assert c.list(limit=10) == ["a", "b"]
        s = c.statistics()
    assert server.received[0].message["limit"] == 10
    assert s.sessions_own == 2 and s.uptime == 42


@pytest.mark.parametrize("method,args,command", [
    ("block_media", ("c", "f"), "block media"),
    ("unblock_media", ("c", "f"), "unblock media"),
    ("silence_media", ("c", "f"), "silence media"),
    ("unsilence_media", ("c", "f"), "unsilence media"),
    ("start_forwarding", ("c", "f"), "start forwarding"),
    ("stop_forwarding", ("c", "f"), "stop forwarding"),
    ("stop_media", ("c", "f"), "stop media"),
    ("unsubscribe", ("c", "t"), "unsubscribe"),
])
def test_media_commands_use_ng_names(method, args, command):
    with FakeServer(recording({"result": "ok"})) as server:
        getattr(Client(server.host, server.port), method)(*args)
    assert server.received[0].message["command"] == command


def test_play_dtmf_and_media_parameters():
    with FakeServer(recording({"result": "ok", "duration": 1500})) as server:
        c = Client(server.host, server.port)
        c.play_dtmf("c", "f", "5", duration_ms=200, volume=-8)
        played = c.play_media("c", "f", file="/tmp/x.wav", repeat_times=2)
    assert server.received[0].message == {"command": "play DTMF", "call-id": "c",
                                          "from-tag": "f", "code": "5", "duration": 200,
                                          "volume": -8}
    assert server.received[1].message["file"] == "/tmp/x.wav"
    assert played.duration_ms == 1500


def test_subscribe_request_returns_sdp_and_to_tag():
    with FakeServer(recording({"sdp": "v=0", "to-tag": "sub1", "from-tags": ["a", "b"],
                               "result": "ok"})) as server:
        res = Client(server.host, server.port).subscribe_request("c", ["a", "b"])
    assert server.received[0].message["from-tags"] == ["a", "b"]
    assert res.to_tag == "sub1" and res.from_tags == ("a", "b")
