"""rtpctl against a real rtpengine 10.5 on loopback; media verified with real RTP packets."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from typer.testing import CliRunner

from rtpctl import AnswerOptions, CallNotFound, Client, NodeSet, OfferOptions
from rtpctl.cli import app

from rtpctl_rtp_probe import MEDIA_PORTS, Probe, audio_port

pytestmark = pytest.mark.integration


def new_call_id() -> str:
    return f"it-{uuid.uuid4().hex}"


def two_party_call(rtp: Client, a: Probe, b: Probe, flags: list[str] | None = None,
                   via_branch: str | None = "z9hG4bK-b1") -> tuple[str, int, int]:
    """Offer from A (tag 'ta'), answer from B (tag 'tb'). Returns (call-id, port A sends to,
    port B sends to)."""
    call_id = new_call_id()
    offer = rtp.offer(call_id, "ta", a.sdp(), OfferOptions(via_branch=via_branch,
                                                           flags=list(flags or [])))
    answer = rtp.answer(call_id, "ta", "tb", b.sdp(), AnswerOptions(via_branch=via_branch,
                                                                    flags=list(flags or [])))
    return call_id, audio_port(answer.sdp), audio_port(offer.sdp)


def test_offer_answer_rewrites_ports_and_learns_endpoints(rtp, probes):
    a, b = probes(), probes()
    call_id = new_call_id()
    offer = rtp.offer(call_id, "ta", a.sdp(), OfferOptions(via_branch="v1"))
    answer = rtp.answer(call_id, "ta", "tb", b.sdp(), AnswerOptions(via_branch="v1"))
    to_b_port, to_a_port = audio_port(offer.sdp), audio_port(answer.sdp)
    for port in (to_b_port, to_a_port):
        assert MEDIA_PORTS[0] <= port <= MEDIA_PORTS[1]
    assert to_b_port != a.port and to_a_port != b.port
    assert "telephone-event/8000" in offer.sdp
    a.send(to_a_port, 5, others=[b])
    b.send(to_b_port, 5, others=[a])
    q = rtp.query(call_id)
    assert q.tags["ta"].medias[0].rtp.endpoint.port == a.port
    assert q.tags["tb"].medias[0].rtp.endpoint.port == b.port
    assert q.tags["ta"].medias[0].rtp.local_port == to_a_port
    rtp.delete(call_id, delete_delay=0)


def test_query_counts_packets_per_tag(rtp, probes):
    a, b = probes(), probes()
    call_id, to_a, to_b = two_party_call(rtp, a, b)
    a.send(to_a, 12, others=[b])
    b.send(to_b, 7, others=[a])
    b.settle()
    a.settle()
    q = rtp.query(call_id)
    assert set(q.tags) == {"ta", "tb"}
    assert q.tags["ta"].rtp_counters.packets == 12
    assert q.tags["tb"].rtp_counters.packets == 7
    assert q.tags["ta"].peers == ("tb",)
    assert q.rtp.packets == 19
    assert len(b.received) == 12 and len(a.received) == 7
    rtp.delete(call_id, delete_delay=0)


def test_delete_leaves_list_empty(rtp, probes):
    call_id, _, _ = two_party_call(rtp, probes(), probes())
    assert call_id in rtp.list()
    rtp.delete(call_id, delete_delay=0)
    assert call_id not in rtp.list()
    with pytest.raises(CallNotFound):
        rtp.query(call_id)


def test_delete_of_unknown_call_is_a_warning_not_an_error(rtp):
    result = rtp.delete(new_call_id())
    assert result.warning and "not found" in result.warning


def test_via_branch_delete_leaves_the_other_branch_alive(rtp, probes):
    # given A's INVITE forked to two branches, each with its own offer
    a, b1, b2 = probes(), probes(), probes()
    call_id = new_call_id()
    offer1 = rtp.offer(call_id, "ta", a.sdp(), OfferOptions(via_branch="br-1"))
    rtp.offer(call_id, "ta", a.sdp(), OfferOptions(via_branch="br-2"))
    # when the losing branch is cleaned up (its 487) with a via-branch scoped delete
    rtp.delete(call_id, from_tag="ta", via_branch="br-2", delete_delay=0)
    # then the call survives and the winning branch answers and carries media both ways
    assert call_id in rtp.list()
    answer = rtp.answer(call_id, "ta", "tb1", b1.sdp(), AnswerOptions(via_branch="br-1"))
    a.send(audio_port(answer.sdp), 10, others=[b1])
    b1.send(audio_port(offer1.sdp), 10, others=[a])
    assert len(b1.received) + len(b1.settle()) >= 9
    assert len(a.received) + len(a.settle()) >= 9
    assert b2.received == []
    rtp.delete(call_id, delete_delay=0)


def test_to_tag_scoped_delete_keeps_the_rest_of_the_call(rtp, probes):
    # given both branches answered (B1 on br-1, B2 on br-2)
    a, b1, b2 = probes(), probes(), probes()
    call_id = new_call_id()
    rtp.offer(call_id, "ta", a.sdp(), OfferOptions(via_branch="br-1"))
    rtp.offer(call_id, "ta", a.sdp(), OfferOptions(via_branch="br-2"))
    rtp.answer(call_id, "ta", "tb1", b1.sdp(), AnswerOptions(via_branch="br-1"))
    rtp.answer(call_id, "ta", "tb2", b2.sdp(), AnswerOptions(via_branch="br-2"))
    # when only the dialogue ta/tb2 is deleted
    rtp.delete(call_id, from_tag="ta", to_tag="tb2", via_branch="br-2", delete_delay=0)
    # then the call is still there
    assert call_id in rtp.list()
    assert "tb1" in rtp.query(call_id).tags
    rtp.delete(call_id, delete_delay=0)


def test_block_media_stops_forwarding_and_unblock_restores_it(rtp, probes):
    a, b = probes(), probes()
    call_id, to_a, to_b = two_party_call(rtp, a, b)
    a.send(to_a, 5, others=[b])
    assert len(b.received) + len(b.settle()) == 5
    rtp.block_media(call_id, from_tag="ta")
    b.received.clear()
    a.send(to_a, 10, others=[b])
    b.send(to_b, 10, others=[a])
    assert b.received + b.settle() == []            # A's media is blocked ...
    assert len(a.received) + len(a.settle()) >= 9   # ... B's still flows
    rtp.unblock_media(call_id, from_tag="ta")
    a.send(to_a, 5, others=[b])
    assert len(b.received) + len(b.settle()) >= 4
    rtp.delete(call_id, delete_delay=0)


def test_play_dtmf_reaches_the_other_side_as_telephone_event(rtp, probes):
    # "inject DTMF" in offer and answer makes rtpengine keep a media path it can inject into
    a, b = probes(), probes()
    call_id, to_a, to_b = two_party_call(rtp, a, b, flags=["inject DTMF"])
    a.send(to_a, 5, others=[b])      # rtpengine needs A's SSRC before it can inject
    rtp.play_dtmf(call_id, from_tag="ta", code="5", duration_ms=200)
    a.send(to_a, 25, others=[b])
    b.settle()
    assert 101 in {p.payload_type for p in b.received}, \
        {p.payload_type for p in b.received}
    rtp.delete(call_id, delete_delay=0)


def test_handoff_switch_keeps_far_end_port(rtp, probes):
    """design.md §3: fresh from-tag + via-branch offer, answer with port latching, scoped
    delete of the old near end. The far end's rtpengine port must not move."""
    far, desk, mobile = probes(), probes(), probes()
    call_id, far_sends_to, desk_sends_to = two_party_call(rtp, far, desk, via_branch="orig")
    far.send(far_sends_to, 3, others=[desk])
    # start of handoff: offer with a helper tag and a fresh branch, placeholder SDP
    placeholder = far.sdp().replace(f"m=audio {far.port}", "m=audio 9").replace(
        "c=IN IP4 127.0.0.1", "c=IN IP4 192.0.2.1")
    offer = rtp.offer(call_id, "helper-H", placeholder, OfferOptions(via_branch="handoff-V"))
    mobile_sends_to = audio_port(offer.sdp)
    # the mobile answers
    answer = rtp.answer(call_id, "ta", "mobile-tag", mobile.sdp(),
                        AnswerOptions(via_branch="handoff-V", port_latching=True))
    rtp.delete(call_id, from_tag="ta", to_tag="tb", delete_delay=0)
    assert audio_port(answer.sdp) == far_sends_to  # far end keeps sending where it did
    for probe in (far, desk, mobile):
        probe.settle(0.05)
        probe.received.clear()
    far.send(far_sends_to, 10, others=[mobile, desk])
    mobile.send(mobile_sends_to, 10, others=[far])
    desk.send(desk_sends_to, 5, others=[far])
    for probe in (far, desk, mobile):
        probe.settle(0.1)
    assert len(mobile.received) >= 8 and {p.ssrc for p in mobile.received} == {far.ssrc}
    assert desk.received == []                                   # old near end is cut off
    assert {p.ssrc for p in far.received} == {mobile.ssrc}       # far hears only the mobile
    assert len(far.received) >= 8
    rtp.delete(call_id, delete_delay=0)


def test_via_branch_without_from_tag_deletes_the_whole_call(rtp, probes):
    """Pinned 10.5 behaviour: via-branch alone does not scope a delete."""
    a = probes()
    call_id = new_call_id()
    rtp.offer(call_id, "ta", a.sdp(), OfferOptions(via_branch="br-1"))
    rtp.offer(call_id, "ta", a.sdp(), OfferOptions(via_branch="br-2"))
    rtp.delete(call_id, via_branch="br-2", delete_delay=0)
    assert call_id not in rtp.list()


def test_nodeset_locates_call_on_the_daemon(rtpengine, rtp, probes):
    call_id, _, _ = two_party_call(rtp, probes(), probes())
    nodes = NodeSet.from_addresses([("127.0.0.1", 22349), ("127.0.0.1", rtpengine.ng_port)],
                                   timeout=0.1, retries=1)
    found = nodes.locate(call_id)
    assert found is not None and found.client.port == rtpengine.ng_port
    assert [h.up for h in nodes.check()] == [False, True]
    rtp.delete(call_id, delete_delay=0)


def test_send_many_pipelines_pings(rtp):
    replies = rtp.send_many([{"command": "ping"}] * 100)
    assert all(r == {"result": "pong"} for r in replies)


# --- CLI --------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_query_list_stats_delete_json(rtpengine, rtp, probes):
    a, b = probes(), probes()
    call_id, to_a, to_b = two_party_call(rtp, a, b)
    a.send(to_a, 4, others=[b])
    ng = ["--ng", rtpengine.ng]

    out = runner.invoke(app, ["ping", *ng, "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)[0]["status"] == "up"

    out = runner.invoke(app, ["list", *ng, "--json"])
    assert out.exit_code == 0 and call_id in [r["call_id"] for r in json.loads(out.stdout)]

    out = runner.invoke(app, ["query", call_id, *ng, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data["tags"]) == {"ta", "tb"} and data["node"] == rtpengine.ng

    out = runner.invoke(app, ["query", call_id, *ng])
    assert out.exit_code == 0 and "ta" in out.stdout and "PACKETS" in out.stdout

    out = runner.invoke(app, ["stats", *ng, "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)[0]["current"]["sessionsown"] >= 1

    out = runner.invoke(app, ["delete", call_id, *ng, "--delete-delay", "0", "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["deleted"] is True
    assert call_id not in rtp.list()


def test_cli_as_subprocess_reports_dead_daemon_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "rtpctl.cli", "ping", "--ng", "127.0.0.1:22349",
                           "--timeout", "0.05"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: no reply from rtpengine at 127.0.0.1:22349 after 3 "
                                   "tries (connection refused)")
