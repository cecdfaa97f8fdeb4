"""The few KSR helpers every route module shares: reading a pseudo-variable, answering
statelessly, the NEXT/DONE convention, and the guard that keeps a bug from costing the proxy."""
from __future__ import annotations

import functools
import traceback

import KSR  # provided by app_python3 inside Kamailio

NEXT = True                 # a step let the request go on
DONE = False                # a step finished the request


# The fields of the message a route runs for that no route changes: read from Kamailio once
# per route run (a route asks for the Call-ID or the reply code several times, each a KSR
# crossing). Kept for the route being run only: `guarded` gives each run its own, and gives
# the outer run's back when a nested one (a branch route inside t_relay) ends. Outside a
# route nothing is kept.
MESSAGE_FIELDS = frozenset(("$rm", "$ci", "$ft", "$tt", "$fu", "$tu", "$fU", "$tU", "$fn",
                            "$cs", "$si", "$sp", "$rs", "$(ct{tobody.uri})"))
_fields: dict[str, str] | None = None


def pv(name: str) -> str:
    if _fields is not None and name in MESSAGE_FIELDS:
        value = _fields.get(name)
        if value is None:
            value = _fields[name] = _read(name)
        return value
    return _read(name)


def _read(name: str) -> str:
    value = KSR.pv.get(name)
    return "" if value is None else str(value)


def reply(code: int, reason: str) -> bool:
    KSR.sl.sl_send_reply(code, reason)
    return DONE


def guarded(route):
    """A bug in a route must cost one request, never the proxy: log it, answer 500 where a
    request can still be answered, and carry on."""
    @functools.wraps(route)
    def run(self, *args):
        global _fields
        outer, _fields = _fields, {}
        try:
            return route(self, *args)
        except Exception:  # noqa: BLE001 - the last line of defence of a SIP worker
            KSR.err(f"{route.__name__}: {traceback.format_exc()}\n")
            if route.__name__ == "ksr_request_route" and not KSR.is_ACK():
                KSR.sl.sl_send_reply(500, "Server Internal Error")
            return 1
        finally:
            _fields = outer
    return run


class Htable:
    """One Kamailio htable (shared memory, every worker)."""

    def __init__(self, table: str):
        self.table = table

    def get(self, key: str):
        value = KSR.htable.sht_get(self.table, key)
        return str(value) if value else None

    def put(self, key: str, value: str) -> None:
        KSR.htable.sht_sets(self.table, key, value)

    def remove(self, key: str) -> None:
        KSR.htable.sht_rm(self.table, key)

    def clear(self) -> None:
        KSR.htable.sht_reset(self.table)
