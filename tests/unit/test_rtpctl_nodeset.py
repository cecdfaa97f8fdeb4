"""Node selection (Kamailio's rule) and locating a call over several rtpengines."""
from __future__ import annotations

import pytest

from rtpctl import NodeSet, NoNodeAvailable, kamailio_hash, pick_by_weight
from rtpctl.testing import FakeServer, Received, reply

pytestmark = pytest.mark.unit


def test_hash_is_byte_sum_low_8_bits():
    assert kamailio_hash("a") == 97
    assert kamailio_hash("abc") == (97 + 98 + 99) & 0xFF
    # bytes >= 0x80 are signed chars in Kamailio's C; the low 8 bits are the same
    assert kamailio_hash("é") == (0xC3 + 0xA9) & 0xFF


def test_pick_by_weight_walks_nodes_in_order():
    assert pick_by_weight(0, [1, 1, 1]) == 0
    assert pick_by_weight(4, [1, 1, 1]) == 1      # 4 % 3 == 1
    assert pick_by_weight(5, [1, 1, 1]) == 2
    assert pick_by_weight(7, [2, 3]) == 1         # 7 % 5 == 2 -> past the first node's 2
    assert pick_by_weight(6, [2, 3]) == 0
    assert pick_by_weight(3, [0, 0]) is None


def test_select_skips_down_nodes_like_kamailio():
    nodes = NodeSet.from_addresses([("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)])
    call_id = "x"  # 120 % 3 == 0 -> first node
    assert nodes.select(call_id) is nodes.nodes[0]
    nodes.nodes[0].up = False
    nodes.nodes[0].recheck_at = float("inf")
    # two enabled nodes: 120 % 2 == 0 -> the first *enabled* node
    assert nodes.select(call_id) is nodes.nodes[1]
    for n in nodes:
        n.up, n.recheck_at = False, float("inf")
    with pytest.raises(NoNodeAvailable):
        nodes.select(call_id)


def test_locate_asks_other_nodes_when_the_computed_one_lacks_the_call():
    def knows_nothing(req: Received, server: FakeServer):
        return [reply(req.cookie, {"result": "error", "error-reason": "Unknown call-id"})]

    def knows_it(req: Received, server: FakeServer):
        return [reply(req.cookie, {"result": "ok", "tags": {}})]

    with FakeServer(knows_nothing) as a, FakeServer(knows_it) as b:
        nodes = NodeSet.from_addresses([(a.host, a.port), (b.host, b.port)], timeout=0.1)
        found = nodes.locate("call-1")
        assert found is nodes.nodes[1]


def test_check_marks_dead_node_down():
    with FakeServer() as alive:
        nodes = NodeSet.from_addresses([(alive.host, alive.port), ("127.0.0.1", 22349)],
                                       timeout=0.1)
        health = nodes.check()
    assert [h.up for h in health] == [True, False]
    assert "22349" in (health[1].error or "")
