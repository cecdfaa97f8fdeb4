"""Subscriber data for the routing, read without holding a SIP worker for long.

Each Kamailio worker has its own connection (opened lazily after the fork), a statement
timeout, and a cache of subscribers. The database announces every change to subscribers,
statuses and twins on a channel this connection LISTENs to; before each lookup we drain
pending notifications without blocking (a non-blocking read on the socket), and any
notification empties the cache. So a twinctl change applies to the next call, and a cached
lookup costs no round trip.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Callable, Optional, Protocol

import psycopg

from .decisions import Subscriber
from .records import token

log = logging.getLogger("routing.store")

CHANNEL = "twinning_subscriber_changed"
# A safety net only: notifications are what keeps the cache right.
MAX_AGE = 300.0

_SELECT = """
    SELECT s.id, s.extension, s.did, s.display_name, s.license::text, s.voicemail_box,
           s.ring_timeout, st.name, st.send_to::text, st.ring_desk, st.ring_mobile,
           t.number, t.label, s.answer_too_soon_ms, s.mobile_ring_max_s, s.mobile_confirm,
           st.mobile_delay_s
      FROM subscriber s
      JOIN status st ON st.id = s.current_status_id
      LEFT JOIN twin t ON t.subscriber_id = s.id
"""


class StoreUnavailable(Exception):
    """The database cannot be reached; the caller answers 503 rather than guessing."""


class SharedCache(Protocol):
    """A cache every worker sees (Kamailio's shared-memory htable inside Kamailio)."""

    def get(self, key: str) -> Optional[str]: ...
    def put(self, key: str, value: str) -> None: ...
    def clear(self) -> None: ...


def _encode(sub: Optional[Subscriber]) -> str:
    return json.dumps(None if sub is None else dataclasses.astuple(sub))


def _decode(text: str) -> Optional[Subscriber]:
    fields = json.loads(text)
    return None if fields is None else Subscriber(*fields)


class SubscriberStore:
    """Look-ups go: this worker's dict, then the shared cache (filled once for all workers),
    then PostgreSQL. A change notification empties both caches."""

    def __init__(self, dsn: str, statement_timeout_ms: int,
                 clock: Callable[[], float] = time.monotonic,
                 shared: Optional[SharedCache] = None):
        self.shared = shared
        self.dsn = dsn
        self.statement_timeout_ms = statement_timeout_ms
        self.clock = clock
        self.conn: Optional[psycopg.Connection] = None
        self.by_key: dict[str, Optional[Subscriber]] = {}
        self.filled_at = 0.0
        self.changed = False        # a change notification arrived since the last lookup
        self.round_trips = 0        # counted for the benchmarks and the notes

    # ---- connection --------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        self._forget()               # what changed while we were away is unknown
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=2)
            # Notifications that arrive while psycopg runs another query (a call-log write)
            # are consumed by psycopg itself and reach us only through a handler.
            conn.add_notify_handler(self._on_notify)
            conn.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            raise StoreUnavailable(str(exc).strip().splitlines()[0] if str(exc) else "down") \
                from None
        self.round_trips += 3
        self.conn = conn
        self.filled_at = self.clock()
        return conn

    def _on_notify(self, _notify) -> None:
        self.changed = True

    def _drain_notifications(self) -> None:
        """Empty the cache if anything changed; never blocks."""
        conn = self.conn
        if conn is None or conn.closed:
            return
        pgconn = conn.pgconn
        try:
            pgconn.consume_input()
        except psycopg.Error:
            self.close()
            return
        while pgconn.notifies() is not None:
            self.changed = True
        if self.changed or self.clock() - self.filled_at > MAX_AGE:
            self._forget()
            self.filled_at = self.clock()
            self.changed = False

    def _forget(self) -> None:
        self.by_key.clear()
        if self.shared is not None:
            self.shared.clear()

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
        self.conn = None
        self.by_key.clear()

    def _query(self, sql: str, params: tuple):
        for attempt in (1, 2):
            conn = self._connect()
            try:
                self.round_trips += 1
                return conn.execute(sql, params).fetchall()
            except psycopg.OperationalError as exc:
                self.close()          # a dropped connection: reconnect once
                if attempt == 2:
                    raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None
            except psycopg.Error as exc:
                raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None

    # ---- lookups -----------------------------------------------------------------------------
    def _lookup(self, key: str, where: str, value: str) -> Optional[Subscriber]:
        self._connect()
        self._drain_notifications()
        if key in self.by_key:
            return self.by_key[key]
        cached = self.shared.get(key) if self.shared is not None else None
        if cached is not None:
            sub = _decode(cached)
        else:
            rows = self._query(_SELECT + where, (value,))
            sub = Subscriber(*rows[0]) if rows else None
        keys = [key] if sub is None else [f"ext:{sub.extension}", f"did:{sub.did}"]
        for k in keys:           # one row serves both ways of reaching the subscriber
            self.by_key[k] = sub
            if cached is None and self.shared is not None:
                self.shared.put(k, _encode(sub))
        self.by_key[key] = sub
        return sub

    def by_extension(self, ext: str) -> Optional[Subscriber]:
        return self._lookup(f"ext:{ext}", " WHERE s.extension = %s", ext)

    def by_did(self, e164: str) -> Optional[Subscriber]:
        return self._lookup(f"did:{e164}", " WHERE s.did = %s", e164)

    def is_phone_address(self, ip: str) -> bool:
        """Whether a desk phone is registered from this address (rare path: a DID dialled
        without credentials by something that is not a trunk)."""
        return self.registered_from(None, ip)

    def registered_from(self, extension: Optional[str], ip: str) -> bool:
        """Whether the extension's desk (None: any desk) is registered from this address
        (rare paths: a DID dialled without credentials, a REFER whose sender must be the
        desk itself)."""
        rows = self._query(
            "SELECT 1 FROM location WHERE (%s::text IS NULL OR username = %s) AND expires > now()"
            " AND (received LIKE %s OR"
            " split_part(split_part(split_part(contact, '@', 2), ':', 1), ';', 1) = %s) LIMIT 1",
            (extension, extension, f"sip:{ip}:%", ip))
        return bool(rows)

    def is_trunk_address(self, ip: str) -> bool:
        """Whether a trunk has this IP address, at any port (a REGISTER's Contact: rare path).
        Both the trusted addresses and the gateways the calls go out to count."""
        rows = self._query(
            "SELECT 1 FROM address WHERE ip_addr = %s UNION ALL SELECT 1 FROM dispatcher"
            " WHERE substring(destination FROM '^sips?:(?:[^@]*@)?\\[?([^]:;>]+)') = %s"
            " LIMIT 1", (ip, ip))
        return bool(rows)


# The writes the routing makes besides subscriber look-ups: the call log and the durable copy
# of call state. SIP workers only queue them (CallLog); one background process runs them
# (BatchWriter), a tick's worth in one round trip.
STATEMENTS = {
    "answered": "SELECT twinning_call_answered(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
    "ended": "SELECT twinning_call_ended(%s, %s, %s)",
    "state": "SELECT twinning_save_state(%s, %s, %s)",
    "handoff_started": "INSERT INTO handoff (handoff_key, call_id, from_device, to_device)"
                       " SELECT %s, %s, %s, %s WHERE EXISTS"
                       " (SELECT 1 FROM call WHERE call_id = %s)"
                       " ON CONFLICT (handoff_key) DO NOTHING",
    "handoff_finished": "UPDATE handoff SET outcome = %s, switch_ms = %s,"
                        " completed_at = now(),"
                        " answered_at = CASE WHEN %s THEN now() ELSE answered_at END"
                        " WHERE handoff_key = %s",
    "avoided": "INSERT INTO twin_leg_avoided (call_id, subscriber_id, leg, reason, after_ms)"
               " SELECT %s, %s, %s, %s, %s WHERE EXISTS"
               " (SELECT 1 FROM subscriber WHERE id = %s)",
}


class CallLog:
    """What the routing records of calls and handoffs. `submit(op, params)` queues one write
    of STATEMENTS[op]; nothing here waits for the database."""

    def __init__(self, submit):
        self.submit = submit

    def answered(self, call_id: str, sub_id: int | None, direction: str, caller: str,
                 callee: str, rang: list[str], answered_by: str,
                 state: dict[str, str]) -> None:
        self.submit("answered", [call_id, sub_id, direction, caller, callee, rang, answered_by,
                                 list(state), list(state.values())])

    def ended(self, call_id: str, outcome: str, gone_state: list[str]) -> None:
        self.submit("ended", [call_id, outcome, gone_state])

    def state(self, values: dict[str, str], gone: list[str]) -> None:
        self.submit("state", [list(values), list(values.values()), gone])

    def handoff_started(self, call_id: str, from_device: str, to_device: str) -> str:
        key = token()
        self.submit("handoff_started", [key, call_id, from_device, to_device, call_id])
        return key

    def handoff_finished(self, handoff_key: str | None, outcome: str,
                         switch_ms: float | None = None, answered: bool = False) -> None:
        if handoff_key:
            self.submit("handoff_finished", [outcome, switch_ms, answered, handoff_key])


    def avoided(self, call_id: str, sub_id: int, leg: str, reason: str, after_ms: int) -> None:
        """A twin leg the proxy kept from the caller (routing.twinleg)."""
        self.submit("avoided", [call_id, sub_id, leg, reason, int(after_ms), sub_id])


class BatchWriter:
    """Runs queued writes on the store's connection, a batch in one round trip (pipeline)."""

    def __init__(self, store: SubscriberStore):
        self.store = store

    def write(self, items: list[tuple[str, list]]) -> None:
        """All in one transaction; if one item is refused (a bug, not an outage), the rest are
        written one by one and only the refused one is dropped, with a log line."""
        conn = self.store._connect()
        try:
            with conn.transaction(), conn.pipeline():
                for op, params in items:
                    conn.execute(STATEMENTS[op], params)
            self.store.round_trips += 1
        except psycopg.OperationalError as exc:
            self.store.close()
            raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None
        except psycopg.Error:
            for op, params in items:
                try:
                    with conn.transaction():
                        conn.execute(STATEMENTS[op], params)
                except psycopg.OperationalError as exc:
                    self.store.close()
                    raise StoreUnavailable(str(exc).strip().splitlines()[0]) from None
                except psycopg.Error as exc:
                    log.error("dropped call-log write %s %r: %s", op, params, exc)
