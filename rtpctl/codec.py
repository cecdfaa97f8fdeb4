"""ng wire format: ``<cookie> <bencoded dictionary>`` in one datagram.

Encoding uses fastbencode as is. Decoding cannot: fastbencode (like the BitTorrent spec) rejects
dictionaries whose keys are not sorted, and rtpengine 10.5 emits keys in insertion order
(``{"sdp": ..., "result": "ok"}``). We therefore reuse fastbencode's own reference decoder
(``fastbencode._bencode_py.BDecoder``) with the key-order check removed: still the library's
parser, only one rule relaxed. tests/unit/test_rtpctl_codec.py pins this so a fastbencode upgrade
that moves the class fails loudly in tests, not in production.
"""
from __future__ import annotations

from typing import Any, Mapping

import fastbencode
from fastbencode._bencode_py import BDecoder

from .errors import ProtocolError

#: rtpengine nests little; a deeper reply is garbage, and the bound keeps a hostile packet cheap.
MAX_DEPTH = 64


class _UnorderedDecoder(BDecoder):
    """fastbencode's decoder, accepting dictionary keys in any order (as rtpengine sends them)."""

    def decode_dict(self, x: bytes, f: int) -> tuple[dict, int]:  # noqa: D102 (see class doc)
        if self._max_depth is not None and self._depth >= self._max_depth:
            raise RecursionError("maximum bencode nesting depth exceeded")
        self._depth += 1
        result: dict = {}
        f += 1
        while x[f:f + 1] != b"e":
            key, f = self.decode_bytes(x, f)
            result[key], f = self.decode_func[x[f:f + 1]](x, f)
        self._depth -= 1
        return result, f + 1


_decoder = _UnorderedDecoder()


def _keys_to_bytes(value: Any) -> Any:
    """fastbencode wants bytes keys; callers write str keys because ng keys are ASCII words."""
    if isinstance(value, Mapping):
        return {(k.encode() if isinstance(k, str) else k): _keys_to_bytes(v) for k, v in value.items()
                if v is not None}
    if isinstance(value, (list, tuple)):
        return [_keys_to_bytes(v) for v in value]
    return value


def _to_text(value: Any) -> Any:
    """Byte strings to str. surrogateescape keeps odd bytes round-trippable instead of failing."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, dict):
        return {k.decode("utf-8", "surrogateescape"): _to_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_text(v) for v in value]
    return value


def encode_message(cookie: str, message: Mapping[str, Any]) -> bytes:
    """One ng request datagram. ``None`` values are dropped, so option objects can leave gaps."""
    try:
        body = fastbencode.bencode_utf8(_keys_to_bytes(message))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot bencode ng message: {exc}") from exc
    return cookie.encode("ascii") + b" " + body


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode a bencoded ng dictionary; anything else is a ProtocolError."""
    try:
        value = _decoder.bdecode(body, max_depth=MAX_DEPTH)
    except (ValueError, RecursionError, TypeError, IndexError, KeyError) as exc:
        raise ProtocolError(f"malformed bencode in reply: {exc or type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"reply is a bencoded {type(value).__name__}, not a dictionary")
    return _to_text(value)


def split_packet(data: bytes) -> tuple[str, bytes]:
    """Separate cookie and body. Raises ProtocolError when there is no usable cookie."""
    cookie, sep, body = data.partition(b" ")
    if not sep or not cookie:
        raise ProtocolError("reply has no cookie")
    try:
        return cookie.decode("ascii"), body
    except UnicodeDecodeError:
        raise ProtocolError("reply cookie is not ASCII") from None


def decode_message(data: bytes) -> tuple[str, dict[str, Any]]:
    """Whole datagram → (cookie, dictionary)."""
    cookie, body = split_packet(data)
    return cookie, decode_body(body)
