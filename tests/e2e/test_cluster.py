"""Issue 14, first slice: two proxies (A 127.0.6.1, B 127.0.6.2) and two rtpengines sharing one
PostgreSQL (tests/site-cluster.toml), replicating over Kamailio's DMQ. A desk registered through
A is reached through B; a call set up through A is known to B (dialog and call state), so its
BYE may come through B. Every test ends with the residue check on every proxy."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from lab import sipp
from lab.calls import (CALLER_NAME, CALLER_NUM, SUB_DID, SUB_EXT, SUB_TWIN, party,
                       setup_subscriber)
from lab.residue import assert_no_residue, residue
from lab.rtp import wait_for
from tests.conftest import fresh_stack
from tests.support.metrics import scrape
from tests.support.phones import assert_two_way
from tests.support.pjsip_scenarios import (Answered, answered_on_the_desk, desk_takes_it_back,
                                           far_end_hangs_up, held_code_to_mobile,
                                           refer_to_mobile)
from rtpctl import Client
from twinctl import rpc
from twinctl.commands import twin as twin_cmd
from twinctl import stack as stack_mod
from twinning import config as site_config

pytestmark = pytest.mark.e2e

CLUSTER_CONFIG = Path(__file__).resolve().parent.parent / "site-cluster.toml"
TRUNK = "127.0.6.20"            # the carrier: callers, and the mobile behind it on 5060
DESK = "127.0.6.30"
DID_DIALLED = SUB_DID.removeprefix("+1")
NEW_TWIN = "+16465550177"


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



def test_given_both_proxies_cached_the_subscriber_when_its_twin_changes_then_both_ring_the_new_one(
        cluster, nodes, cdb, phones):
    """The subscriber cache is each proxy's own, emptied by PostgreSQL's change notification
    on every proxy: after twinctl gives the subscriber a new twin number, calls through A
    and through B ring the new number, with no reload."""
    desk = desk_registered_at(nodes[0], cluster, cdb, phones)
    desk.on_incoming(answer_after_ms=300)
    mobile = phones("mobile", TRUNK, 5060)                       # rings until CANCELled
    far = phones("far", TRUNK, 5071, uri=f'"{CALLER_NAME}" <sip:{CALLER_NUM}@{TRUNK}>')
    rung = []

    def call_through(proxy) -> None:
        before = len(mobile.received("INVITE"))
        far_call = far.make_call(f"sip:{DID_DIALLED}@{at(proxy)}")
        far_call.wait("confirmed")
        invites = wait_for(lambda: mobile.received("INVITE")[before:], 5, "the twin leg")
        rung.append(invites[0].first_line.split()[1].split("@")[0])
        far_call.hangup()
        far_call.wait("disconnected")

    for proxy in nodes:                                         # both cache the subscriber
        call_through(proxy)
    twin_cmd.set_twin(cdb, SUB_EXT, NEW_TWIN, None)
    for proxy in nodes:
        call_through(proxy)
    assert rung == [f"sip:{SUB_TWIN}"] * 2 + [f"sip:{NEW_TWIN}"] * 2, rung
    wait_for(lambda: all(c.state == "disconnected" for c in map(desk.incoming, (1, 2, 3, 4))),
             5, "the desk's calls to end")
    clean_everywhere(nodes)

# ---- a proxy dies mid-call ---------------------------------------------------------------------

@pytest.fixture
def revive(cluster):
    """Whatever a test killed is started again at its end (up starts only what is not
    running), so the next test has the whole cluster."""
    yield
    rows = stack_mod.up(cluster, log=lambda *_: None)
    assert all(h.ok for h in rows), rows


def kill(pidfile: Path, answers) -> float:
    """SIGKILL to a daemon, every process of it (a machine that dies: no BYE, no goodbye to
    its peers); returns when it was killed, once it has stopped answering."""
    os.killpg(int(pidfile.read_text()), signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not answers(), 5, f"the daemon of {pidfile} to die")
    return killed


def kill_proxy(node) -> float:
    return kill(stack_mod.Paths(node).kamailio_pid,
                lambda: stack_mod.sip_options(node, timeout=0.2) is not None)


def failover_caller(first, second):
    """The carrier's caller (SIPp, with an RTP probe): calls the DID through `first`, talks,
    and when nudged hangs up there, or (no answer in 2 s) through `second`."""
    return party("caller", "uac/call_bye_failover.xml", TRUNK, 5072, remote=at(first),
                 dial=DID_DIALLED, caller=CALLER_NUM, caller_name=CALLER_NAME,
                 next_host=second.proxy_address, next_port=second.proxy_port)


def nudge(caller, call_id: str) -> None:
    """Tell the failover caller to hang up now (an OPTIONS of its call)."""
    port = caller.agent.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((TRUNK, 0))
        sock.sendto((f"OPTIONS sip:{CALLER_NUM}@{TRUNK}:{port} SIP/2.0\r\n"
                     f"Via: SIP/2.0/UDP {TRUNK}:{sock.getsockname()[1]};branch=z9hG4bK-nudge\r\n"
                     f"From: <sip:test@{TRUNK}>;tag=nudge\r\nTo: <sip:{CALLER_NUM}@{TRUNK}>\r\n"
                     f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                     "Content-Length: 0\r\n\r\n").encode(), (TRUNK, port))


def longest_silence(probe, start: float, end: float) -> float:
    """The longest time between two RTP packets the probe received in [start, end] (seconds),
    the edges counted: what its user heard as a gap."""
    times = [start] + sorted(a.at for a in probe.arrivals if start <= a.at <= end) + [end]
    return max(b - a for a, b in zip(times, times[1:]))


def media_from_the_desk_side(caller, since: float) -> int:
    return sum(1 for a in caller.probe.arrivals if a.at >= since)


def a_call_through(a, b, cluster, cdb, phones, logdir):
    """The failover caller calls the DID through A, the desk (registered through A) answers,
    the caller's probe talks; returns (caller, desk, desk's call, mobile)."""
    desk = desk_registered_at(a, cluster, cdb, phones)
    desk.on_incoming(answer_after_ms=200)
    mobile = phones("mobile", TRUNK, 5060)                       # rings until CANCELled
    caller = failover_caller(a, b)
    sipp.start([caller.agent], logdir)
    desk_call = desk.incoming()
    desk_call.wait("confirmed")
    caller.probe.talk_to(*caller.media_from("200"))
    wait_for(lambda: media_from_the_desk_side(caller, time.monotonic() - 1) > 45, 5,
             "a second of the desk's media at the caller")
    return caller, desk, desk_call, mobile


def a_dies_while_it_talks(a, caller) -> float:
    """Kill proxy A under a talking call; returns the longest silence the caller heard
    around it (asserted to be none: packets every 20 ms)."""
    killed = kill_proxy(a)
    time.sleep(1.0)
    silence = longest_silence(caller.probe, killed - 0.5, time.monotonic())
    assert silence < 0.2, f"the caller heard {silence:.3f} s of silence when A died"
    return silence


def clean_after_a_died(cluster, nodes) -> None:
    """Nothing left on B; then A started again, nothing on it either. B's replication
    messages to the dead A (KDMQ) are transactions that time out only after fr_timer (5 s):
    the wait allows for the last of them."""
    assert_no_residue(nodes[1], timeout=15)
    stack_mod.up(cluster, log=lambda *_: None)
    clean_everywhere(nodes)


def hang_up_after(caller, call_id: str) -> float:
    """The caller, nudged, hangs up; returns the seconds from its first BYE to the 200 that
    answered it (SIPp's own trace times)."""
    nudge(caller, call_id)
    sipp.wait([caller.agent], 20)
    return caller.agent.sent_at("200", direction="received")[-1] - \
        caller.agent.sent_at("BYE")[0]


def hang_up_after_failover(caller, call_id: str) -> float:
    """The caller hangs up with A dead: its BYE to A goes unanswered, the one to B is
    answered 200 (the time returned)."""
    took = hang_up_after(caller, call_id)
    byes = caller.agent.sent_at("BYE")
    assert byes[-1] - byes[0] >= 1.9, f"the BYE was not retried through B: sent at {byes}"
    return took


def test_given_a_call_through_a_when_a_dies_then_the_media_goes_on_and_the_bye_through_b_ends_it(  # noqa: E501
        cluster, nodes, cdb, phones, logdir, revive):
    """Proxy A is killed while its call talks: the media (rtpengine's) does not notice; the
    caller's BYE to A goes unanswered, its retry through B (an SRV pair's second target) is
    relayed to the desk from B and answered; nothing is left on B, nor on A once restarted."""
    a, b = nodes
    caller, desk, desk_call, _ = a_call_through(a, b, cluster, cdb, phones, logdir)
    try:
        silence = a_dies_while_it_talks(a, caller)
        took = hang_up_after_failover(caller, desk_call.call_id)
        desk_call.wait("disconnected")
        bye = desk.received("BYE")
        assert bye and b.proxy_address in bye[-1].header("Via"), "the BYE did not come from B"
        print(f"proxy A killed: longest silence {silence * 1000:.0f} ms; "
              f"BYE answered through B {took:.2f} s after the caller's first")
    finally:
        caller.probe.close()
    clean_after_a_died(cluster, nodes)


def test_given_a_handed_off_call_when_a_dies_then_b_hands_it_back_and_hangs_it_up(
        cluster, nodes, cdb, phones, logdir, revive):
    """The call is handed to the mobile through A (transfer to the code); A is killed; the
    desk takes the call back through B (B ends the mobile's leg A made, and moves the media
    on the rtpengine that has it); the caller's BYE fails over to B and ends the desk's new
    call. Media measured across the death of A."""
    a, b = nodes
    caller, desk, desk_call, mobile = a_call_through(a, b, cluster, cdb, phones, logdir)
    try:
        call = Answered(far=None, desk=desk, mobile=mobile, far_call=None, desk_call=desk_call)
        mobile_call = refer_to_mobile(call, a)
        silence = a_dies_while_it_talks(a, caller)
        assert mobile_call.state == "confirmed"
        back = desk_takes_it_back(call, b)
        assert b.proxy_address in mobile.received("BYE")[-1].header("Via"), \
            "the mobile's leg (made by A) was not ended by B"
        since = time.monotonic()
        time.sleep(1.0)
        assert media_from_the_desk_side(caller, since) > 35, "no media from the desk again"
        took = hang_up_after_failover(caller, desk_call.call_id)
        back.wait("disconnected")
        print(f"proxy A killed after the handoff: longest silence {silence * 1000:.0f} ms; "
              f"BYE answered through B {took:.2f} s after the caller's first")
    finally:
        caller.probe.close()
    clean_after_a_died(cluster, nodes)


# ---- an rtpengine dies -------------------------------------------------------------------------

def sessions(engine) -> list[str]:
    """The Call-IDs the engine has (none when it is dead)."""
    if not stack_mod.ng_ping(engine, timeout=0.2):
        return []
    with Client(engine.rtpengine_ng.host, engine.rtpengine_ng.port) as ng:
        return ng.list()


def in_the_set(proxy, engine) -> bool:
    """Whether the proxy's rtpengine module has the engine enabled."""
    rows = rpc.call(proxy, "rtpengine.show", "all") or []
    rows = rows if isinstance(rows, list) else [rows]
    return any(r.get("url") == engine.rtpengine_ng.ng_url and str(r.get("disabled")) == "0"
               for r in rows)


def in_set_metric(proxy, engine) -> float | None:
    """kamailio_twinning_rtpengine_in_set{engine=...} on the proxy's metrics listener."""
    return scrape(proxy.metrics_kamailio).get(
        ("kamailio_twinning_rtpengine_in_set", (("engine", engine.rtpengine_ng.ng_url),)))


def test_given_a_call_on_an_rtpengine_when_it_dies_then_new_calls_go_to_the_other_at_once(
        cluster, nodes, cdb, phones, logdir, revive):
    """The rtpengine that has a call is killed. Both proxies' watches take it out of their
    set within a second; new calls through A and through B then ring at once, on the other
    engine, with two-way audio. The call that was on the dead engine has lost its media (no
    Redis takeover on one host: docs/cluster.md) but hangs up cleanly. The engine, restarted,
    is put back in both sets. Nothing is left anywhere."""
    a, b = nodes
    engines = site_config.cluster_nodes(cluster)[1]
    caller, desk, desk_call, mobile = a_call_through(a, b, cluster, cdb, phones, logdir)
    try:
        victim = next(e for e in engines if desk_call.call_id in sessions(e))
        survivor = next(e for e in engines if e is not victim)
        killed = kill(stack_mod.Paths(victim).rtpengine_pid,
                      lambda: stack_mod.ng_ping(victim, timeout=0.2))
        for proxy in nodes:
            wait_for(lambda: not in_the_set(proxy, victim), 5,
                     f"proxy {proxy.node} to take {victim.node} out")
        out_after = time.monotonic() - killed
        for proxy in nodes:                     # what the operator's alarm sees
            assert in_set_metric(proxy, victim) == 0 and in_set_metric(proxy, survivor) == 1
        rings = []
        for n, proxy in enumerate(nodes):
            far = phones(f"far{n}", TRUNK, 5074 + n, uri=f"<sip:{CALLER_NUM}@{TRUNK}>")
            started = time.monotonic()
            new_call = far.make_call(f"sip:{DID_DIALLED}@{at(proxy)}")
            new_call.wait("early", timeout=5)
            rings.append(time.monotonic() - started)
            new_call.wait("confirmed")
            on_desk = desk.incoming(n + 2)
            assert new_call.call_id in sessions(survivor)
            assert_two_way(new_call, on_desk)
            new_call.hangup()
            on_desk.wait("disconnected")
        silence = longest_silence(caller.probe, killed, time.monotonic())
        took = hang_up_after(caller, desk_call.call_id)
        desk_call.wait("disconnected")
        print(f"rtpengine {victim.node} killed: out of both sets after {out_after:.2f} s; "
              f"new calls rang after {', '.join(f'{r * 1000:.0f}' for r in rings)} ms; its "
              f"call heard nothing for {silence:.1f} s (until hung up, {took:.2f} s BYE)")
        assert max(rings) < 1.0, rings
    finally:
        caller.probe.close()
    stack_mod.up(cluster, log=lambda *_: None)
    for proxy in nodes:
        wait_for(lambda: in_the_set(proxy, victim), 5, f"{victim.node} back in {proxy.node}")
        wait_for(lambda: in_set_metric(proxy, victim) == 1, 5, f"{victim.node}'s metric")
    clean_everywhere(nodes)
    assert not sessions(survivor) and not sessions(victim)
