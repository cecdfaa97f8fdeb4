"""Where the stitched calls live: the shared-memory htable `call` (every worker sees it at
once), written through to PostgreSQL by the background writer so a restarted proxy loads it
back. The keys come from routing.handoff.state."""
from __future__ import annotations

from typing import Optional

import KSR

from .handoff.state import StitchedCall, all_keys, call_key, leg_key, state_of
from .kemi import Htable
from .store import CallLog


class CallStore:
    def __init__(self, table: Htable, call_log: CallLog):
        self.table = table
        self.call_log = call_log

    def load(self, call_id: str) -> Optional[StitchedCall]:
        """The call of D1 `call_id`, or of a leg or code call that belongs to one."""
        raw = self.table.get(call_key(call_id))
        if raw is None:
            d1 = self.table.get(leg_key(call_id))
            raw = self.table.get(call_key(d1)) if d1 else None
        if not raw:
            return None
        try:
            return StitchedCall.from_json(raw)
        except (KeyError, TypeError, ValueError) as exc:
            # State written by an older release (or damaged): the call is routed as a plain
            # dialog rather than failing every request of it.
            KSR.warn(f"call state of {call_id} unreadable ({exc!r}): routed as a plain call\n")
            return None

    def known(self, call_id: str) -> bool:
        return self.table.get(call_key(call_id)) is not None

    def _apply(self, call: StitchedCall) -> tuple[dict[str, str], list[str]]:
        values, maybe_gone = state_of(call)
        gone = [k for k in maybe_gone if self.table.get(k) == call.call_id]
        for key, value in values.items():
            self.table.put(key, value)
        for key in gone:
            self.table.remove(key)
        return values, gone

    def remember(self, call: StitchedCall) -> dict[str, str]:
        """A new call: shared memory now; the call log writes it through with its answer."""
        return self._apply(call)[0]

    def save(self, call: StitchedCall) -> None:
        values, gone = self._apply(call)
        self.call_log.state(values, gone)

    def drop(self, call: StitchedCall, reason: str) -> None:
        gone = [k for k in all_keys(call)
                if not k.startswith("s:") or self.table.get(k) == call.call_id]
        for key in gone:
            self.table.remove(key)
        self.call_log.ended(call.call_id, reason, gone)
