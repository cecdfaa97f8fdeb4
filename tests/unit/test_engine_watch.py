"""The rtpengine watch of a cluster's proxy (routing.engines): a dead engine is taken out of
the module's set after two missed pings in a row, once; it is put back when it answers
again; pings are spaced by the interval, however often the timer calls."""
from __future__ import annotations

import json

import pytest

from routing.engines import Engine, EngineWatch, rpc_enable_request
from rtpctl import NgTimeout

pytestmark = pytest.mark.unit


class FakeClient:
    def __init__(self):
        self.up, self.pings = True, 0

    def ping(self, timeout=None, retries=None):
        self.pings += 1
        if not self.up:
            raise NgTimeout("127.0.7.1", 2233, 1)
        return 0.001


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def watch():
    clients = [FakeClient(), FakeClient()]
    told, logged, clock = [], [], Clock()
    w = EngineWatch([Engine(f"udp:127.0.7.{i + 1}:2233", c) for i, c in enumerate(clients)],
                    lambda url, on: told.append((url, on)) or True, logged.append, clock,
                    show=lambda url, in_set: shown.append((url, in_set)))
    return w, clients, told, logged, clock


shown: list = []


@pytest.fixture(autouse=True)
def nothing_shown_yet():
    shown.clear()


def rounds(w, clock, count):
    for _ in range(count):
        w.tick()
        clock.now += w.interval


def test_given_two_live_engines_when_the_timer_ticks_then_nothing_is_told_to_the_module(watch):
    w, clients, told, logged, clock = watch
    rounds(w, clock, 5)
    assert told == [] and logged == []
    assert [c.pings for c in clients] == [5, 5]


def test_given_an_engine_that_stops_answering_then_it_is_taken_out_after_two_misses_once(watch):
    w, clients, told, logged, clock = watch
    clients[0].up = False
    rounds(w, clock, 1)
    assert told == []                                   # one miss: a lost packet, maybe
    rounds(w, clock, 4)
    assert told == [("udp:127.0.7.1:2233", False)]      # once, not every round
    assert "taken out of the set" in logged[0]


def test_given_an_engine_taken_out_when_it_answers_again_then_it_is_put_back(watch):
    w, clients, told, logged, clock = watch
    clients[0].up = False
    rounds(w, clock, 3)
    clients[0].up = True
    rounds(w, clock, 2)
    assert told == [("udp:127.0.7.1:2233", False), ("udp:127.0.7.1:2233", True)]
    assert "back in the set" in logged[-1]


def test_given_the_module_refuses_to_enable_when_the_engine_answers_then_it_is_asked_again(
        watch):
    w, clients, _, _, clock = watch
    answers = iter([True, False, True])
    told = []
    w.enable = lambda url, on: told.append(on) or next(answers)
    clients[0].up = False
    rounds(w, clock, 2)
    clients[0].up = True
    rounds(w, clock, 2)
    assert told == [False, True, True]
    assert w.engines[0].enabled


def test_given_the_timer_calls_more_often_than_the_interval_then_pings_are_spaced(watch):
    w, clients, _, _, clock = watch
    for _ in range(10):                                 # the rtimer's 100 ms ticks
        w.tick()
        clock.now += w.interval / 5
    assert clients[0].pings == 2


def test_given_an_engine_url_then_the_rpc_request_is_rtpengine_enable():
    request = json.loads(rpc_enable_request("udp:127.0.7.1:2233", False))
    assert request["method"] == "rtpengine.enable"
    assert request["params"] == ["udp:127.0.7.1:2233", 0]


def test_given_the_watch_starts_then_every_engine_is_shown_in_the_set_then_each_change(watch):
    w, clients, _, _, clock = watch
    assert shown == [("udp:127.0.7.1:2233", True), ("udp:127.0.7.2:2233", True)]
    clients[1].up = False
    rounds(w, clock, 3)
    clients[1].up = True
    rounds(w, clock, 3)
    assert shown[2:] == [("udp:127.0.7.2:2233", False), ("udp:127.0.7.2:2233", True)]
