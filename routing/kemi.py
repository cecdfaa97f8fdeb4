"""The few KSR helpers every route module shares: reading a pseudo-variable, answering
statelessly, the NEXT/DONE convention, and the guard that keeps a bug from costing the proxy."""
from __future__ import annotations

import functools
import traceback

import KSR  # provided by app_python3 inside Kamailio

NEXT = True                 # a step let the request go on
DONE = False                # a step finished the request


def pv(name: str) -> str:
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
        try:
            return route(self, *args)
        except Exception:  # noqa: BLE001 - the last line of defence of a SIP worker
            KSR.err(f"{route.__name__}: {traceback.format_exc()}\n")
            if route.__name__ == "ksr_request_route" and not KSR.is_ACK():
                KSR.sl.sl_send_reply(500, "Server Internal Error")
            return 1
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
