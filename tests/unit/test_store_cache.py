"""The subscriber store's caches, with the database and the shared htable stood in for."""
from __future__ import annotations

import pytest

from routing.store import SubscriberStore
from tests.unit.test_decisions import subscriber

pytestmark = pytest.mark.unit


class DictCache:
    def __init__(self):
        self.data = {}
        self.clears = 0

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value

    def clear(self):
        self.data.clear()
        self.clears += 1


class FakeStore(SubscriberStore):
    """Only the database side is faked: rows come from a list, notifications are set by hand."""

    def __init__(self, shared, rows):
        super().__init__("", 100, shared=shared)
        self.rows = rows
        self.queries = 0

    def _connect(self):
        return None

    def _drain_notifications(self):
        if self.changed:
            self._forget()
            self.changed = False

    def _query(self, sql, params):
        self.queries += 1
        sub = self.rows[0]
        return [tuple(sub.__dict__.values())] if params[0] in (sub.did, sub.extension) else []


def test_given_two_workers_then_one_database_lookup_serves_both():
    shared = DictCache()
    sub = subscriber()
    a, b = FakeStore(shared, [sub]), FakeStore(shared, [sub])
    assert a.by_did(sub.did) == sub
    assert b.by_did(sub.did) == sub and b.by_extension("1001") == sub
    assert a.queries + b.queries == 1


def test_given_an_unknown_number_then_the_miss_is_cached_too():
    shared = DictCache()
    a, b = FakeStore(shared, [subscriber()]), FakeStore(shared, [subscriber()])
    assert a.by_did("+12125550199") is None and b.by_did("+12125550199") is None
    assert a.queries + b.queries == 1


def test_given_a_change_notification_then_both_caches_are_emptied():
    shared = DictCache()
    a = FakeStore(shared, [subscriber()])
    a.by_did("+12125550101")
    a.changed = True
    a.by_did("+12125550101")
    assert a.queries == 2 and shared.clears == 1
