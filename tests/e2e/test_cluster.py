"""Issue 14, first slice: two proxies (A 127.0.6.1, B 127.0.6.2) and two rtpengines sharing one
PostgreSQL (tests/site-cluster.toml), replicating over Kamailio's DMQ. A desk registered through
A is reached through B; a call set up through A is known to B (dialog and call state), so its
BYE may come through B. Every test ends with the residue check on every proxy."""
from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from lab import sipp
from lab.calls import CALLER_NAME, CALLER_NUM, SUB_DID, SUB_EXT, setup_subscriber
from lab.residue import assert_no_residue, residue
from lab.rtp import wait_for
from tests.conftest import fresh_stack
from tests.support.phones import assert_two_way
from tests.support.pjsip_scenarios import (answered_on_the_desk, far_end_hangs_up,
                                           held_code_to_mobile)
from twinctl import rpc
from twinctl import stack as stack_mod
from twinning import config as site_config

pytestmark = pytest.mark.e2e

CLUSTER_CONFIG = Path(__file__).resolve().parent.parent / "site-cluster.toml"
TRUNK = "127.0.6.20"            # the carrier: callers, and the mobile behind it on 5060
DESK = "127.0.6.30"
DID_DIALLED = SUB_DID.removeprefix("+1")


@pytest.fixture(scope="module")
def cluster():
    yield from fresh_stack(site_config.load(CLUSTER_CONFIG))


@pytest.fixture
def nodes(cluster):
    return site_config.cluster_nodes(cluster)[0]


@pytest.fixture
def cdb(cluster, nodes):
    with psycopg.connect(cluster.dsn(), row_factory=dict_row, autocommit=True) as conn:
        for row in conn.execute("SELECT DISTINCT username FROM location").fetchall():
            rpc.call(nodes[0], "ul.rm", "location", row["username"])
        conn.execute("DELETE FROM subscriber")
        conn.execute("DELETE FROM call")
        yield conn


def at(node) -> str:
    return f"{node.proxy_address}:{node.proxy_port}"


def desk_registered_at(node, cluster, cdb, phones):
    """The subscriber in place, its desk phone registered through `node`."""
    setup_subscriber(cdb, cluster)
    desk = phones("desk", DESK, 5061)
    desk.register(SUB_EXT, "secret1", at(node))
    return desk


def clean_everywhere(nodes) -> None:
    for node in nodes:
        assert_no_residue(node)


def test_given_the_cluster_is_up_then_health_shows_every_node_and_each_proxy_sees_its_peer(
        cluster):
    rows = {h.name: h for h in stack_mod.health(cluster)}
    assert {"postgresql", "rtpengine rtp1", "rtpengine rtp2", "kamailio a", "kamailio b",
            "portal"} <= set(rows)
    assert all(h.ok for h in rows.values()), rows
    assert "DMQ peers 127.0.6.2" in rows["kamailio a"].detail
    assert "DMQ peers 127.0.6.1" in rows["kamailio b"].detail


def test_given_a_desk_registered_through_a_when_the_trunk_calls_through_b_then_the_desk_answers(
        cluster, nodes, cdb, phones):
    a, b = nodes
    call = answered_on_the_desk(b, phones, desk_registered_at(a, cluster, cdb, phones),
                                trunk=TRUNK)
    invite = call.desk.received("INVITE")[0]
    assert b.proxy_address in invite.header("Record-Route")      # B rang the desk
    far_end_hangs_up(call, call.desk_call)
    clean_everywhere(nodes)


def test_given_a_call_set_up_through_a_when_its_bye_comes_through_b_then_both_ends_are_released(
        cluster, nodes, cdb, phones, logdir):
    a, b = nodes
    desk = desk_registered_at(a, cluster, cdb, phones)
    desk.on_incoming(answer_after_ms=200)
    phones("mobile", TRUNK, 5060)                                # rings until CANCELled
    caller = sipp.Agent("caller", "uac/call_bye_elsewhere.xml", TRUNK, 5072, remote=at(a),
                        keys={"dial": DID_DIALLED, "caller": CALLER_NUM,
                              "caller_name": CALLER_NAME, "rtp_ip": TRUNK, "rtp_port": "49990",
                              "bye_host": b.proxy_address, "bye_port": str(b.proxy_port)},
                        extra=["-d", "4000"])
    sipp.start([caller], logdir)
    desk_call = desk.incoming()
    desk_call.wait("confirmed")
    call_id = desk_call.call_id
    # While the call is up, B holds its dialog (confirmed) and its call state, from A.
    wait_for(lambda: any(d.get("call-id") == call_id and d.get("state") == 4
                         for d in rpc.call(b, "dlg.list") or []), 5,
             "the call's confirmed dialog on B")
    wait_for(lambda: f"c:{call_id}" in residue(b).get("htable call", []), 5,
             "the call's state on B")
    sipp.wait([caller], 20)
    bye = desk.received("BYE")
    assert bye and b.proxy_address in bye[0].header("Via"), "the BYE did not come through B"
    desk_call.wait("disconnected")
    assert caller.received("200")
    clean_everywhere(nodes)


def test_given_a_call_set_up_through_a_when_the_desk_dials_the_code_through_b_then_the_mobile_takes_it(  # noqa: E501
        cluster, nodes, cdb, phones):
    """The handoff asked for through the other proxy: B finds the call's state (replicated
    from A), rings the mobile through its own twin leg, and switches the media on the
    rtpengine that has the call; the far end's BYE then comes through A."""
    a, b = nodes
    call = answered_on_the_desk(a, phones, desk_registered_at(a, cluster, cdb, phones),
                                trunk=TRUNK)
    mobile_call = held_code_to_mobile(call, b)
    assert b.proxy_address in call.mobile.received("INVITE")[-1].header("Via")
    assert_two_way(call.far_call, mobile_call)
    far_end_hangs_up(call, mobile_call)
    clean_everywhere(nodes)
