"""Typed exceptions: callers (Kamailio routes, the CLI) branch on the kind of failure, never on text."""
from __future__ import annotations


class RtpctlError(Exception):
    """Base of every error rtpctl raises; catch this to never let an ng problem escape a route."""


class NgError(RtpctlError):
    """rtpengine answered ``result=error``: the request reached it and was refused.

    ``reason`` is rtpengine's ``error-reason`` verbatim, so logs show what the daemon said.
    """

    def __init__(self, command: str, reason: str, reply: dict | None = None) -> None:
        super().__init__(f"rtpengine refused {command!r}: {reason}")
        self.command = command
        self.reason = reason
        self.reply = reply or {}


class CallNotFound(NgError):
    """The call (or the tag in it) is unknown to this rtpengine.

    Its own class because it is an expected outcome, not a fault: a delete racing a timeout, or a
    node set probing every node for a call.
    """


class NgTimeout(RtpctlError):
    """No reply after every retransmission: the daemon is down, overloaded or unreachable."""

    def __init__(self, host: str, port: int, tries: int, detail: str = "") -> None:
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"no reply from rtpengine at {host}:{port} after {tries} "
                         f"{'try' if tries == 1 else 'tries'}{suffix}")
        self.host = host
        self.port = port
        self.tries = tries


class ProtocolError(RtpctlError):
    """A reply that is not a well-formed ng message (garbage, truncated bencode, not a dict).

    Raised instead of whatever the decoder threw, so a broken reply never crashes a caller with
    an unexpected exception type.
    """


def is_not_found(reason: str) -> bool:
    """rtpengine words 'no such call' a few ways across versions ("Unknown call-id",
    "Unknown call-ID", "Unknown from-tag"...); match them all in one place."""
    text = reason.lower()
    return text.startswith("unknown call") or text.startswith("unknown from-tag") or \
        text.startswith("unknown to-tag") or "call not found" in text


class NoNodeAvailable(RtpctlError):
    """Every rtpengine of a node set is marked down: nothing can take a new call."""
