"""A `KSR` stand-in for unit tests, built from tests/support/ksr_api.json: the list of KEMI
functions the real Kamailio exports with this project's module set (scripts/gen_ksr_api.py
writes it; tests/e2e/test_ksr_api.py fails when the installed Kamailio disagrees).

Calling a function the real KSR does not have raises AttributeError, so a typo in the adapter
is caught here, not in production. Every call is recorded; return values can be scripted.
"""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, Callable

API_FILE = Path(__file__).resolve().parent / "ksr_api.json"
_DEFAULTS = {"int": 1, "bool": True, "xval": None, "none": None}
# KSR.is_INVITE() and its kin answer from the request's method, as Kamailio's do: a test sets
# "$rm" once and the routing may ask either way.
METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "UPDATE", "PRACK",
           "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "INFO", "PUBLISH", "KDMQ")


def load_api() -> list[dict]:
    return json.loads(API_FILE.read_text())


class _Module(types.SimpleNamespace):
    def __getattr__(self, name: str):
        raise AttributeError(f"KSR{'.' + self._name if self._name else ''} has no {name}()")


class KsrStub:
    def __init__(self, api: list[dict] | None = None):
        self.api = api or load_api()
        self.calls: list[tuple[str, tuple]] = []
        self.returns: dict[str, Any] = {}
        self.pv: dict[str, Any] = {}
        self.module = types.ModuleType("KSR")
        groups: dict[str, _Module] = {}
        for func in self.api:
            target = self.module if not func["module"] else groups.setdefault(
                func["module"], _Module(_name=func["module"]))
            setattr(target, func["name"], self._function(func))
        for name, group in groups.items():
            setattr(self.module, name, group)
        # KSR.pv reads pseudo-variables from a dict the test fills in.
        groups["pv"].get = lambda key: self.pv.get(key)
        groups["pv"].gete = lambda key: self.pv.get(key, "")
        groups["pv"].sets = lambda key, value: self.pv.__setitem__(key, value)
        groups["pv"].seti = lambda key, value: self.pv.__setitem__(key, value)
        unset = groups["pv"].unset                    # recorded as called, and the value goes
        groups["pv"].unset = lambda key: (unset(key), self.pv.pop(key, None))[0]

    def _function(self, func: dict) -> Callable:
        qualified = f"{func['module']}.{func['name']}" if func["module"] else func["name"]
        arity = 0 if func["params"] == "none" else len(func["params"].split(","))

        def call(*args):
            if len(args) != arity:
                raise TypeError(f"KSR.{qualified}() takes {arity} arguments, got {len(args)}")
            self.calls.append((qualified, args))
            if qualified not in self.returns and qualified[3:] in METHODS and \
                    qualified.startswith("is_"):
                return self.pv.get("$rm") == qualified[3:]
            value = self.returns.get(qualified, _DEFAULTS.get(func["ret"]))
            return value(*args) if callable(value) else value

        call.__name__ = func["name"]
        return call

    def called(self, qualified: str) -> list[tuple]:
        return [args for name, args in self.calls if name == qualified]

    def install(self) -> "KsrStub":
        sys.modules["KSR"] = self.module
        return self
