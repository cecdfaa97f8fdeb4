"""Client for one rtpengine: one ``request()`` that does cookie, encode, send, decode and the
``result`` check; every command below is a thin typed wrapper over it."""
from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Mapping, Sequence

from .errors import CallNotFound, NgError, ProtocolError, RtpctlError, is_not_found
from .options import AnswerOptions, OfferOptions, SubscribeOptions
from .results import (AnswerResult, DeleteResult, NgResult, OfferResult, PlayMediaResult,
                      QueryResult, Statistics, SubscribeResult, parse_delete, parse_query,
                      parse_statistics, sdp_of)
from .transport import DEFAULT_RETRIES, DEFAULT_TIMEOUT, UdpTransport

log = logging.getLogger("rtpctl")

Reply = dict[str, Any]


def check_reply(command: str, reply: Reply) -> tuple[Reply, str | None]:
    """Turn ``result=error`` into an exception and surface ``warning``.

    Returns the reply and its warning (or None). ``result`` other than ok/pong/error is a
    protocol error: we cannot tell whether the command ran.
    """
    result = reply.get("result")
    warning = reply.get("warning")
    if warning is not None:
        warning = str(warning)
        log.warning("rtpengine warning on %r: %s", command, warning)
    if result == "error":
        reason = str(reply.get("error-reason", "unspecified error"))
        cls = CallNotFound if is_not_found(reason) else NgError
        raise cls(command, reason, reply)
    if result not in ("ok", "pong"):
        raise ProtocolError(f"reply to {command!r} has result={result!r}")
    return reply, warning


class Client:
    """One rtpengine ng endpoint.

    Construction is free: no socket is opened until the first request, so a Client can be made
    at module import in Kamailio's main process and used in the forked workers.

    ``timeout`` is the wait per try (seconds), ``retries`` the number of tries in all; a request
    therefore blocks at most ``timeout * retries``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 2223, *,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
                 transport: UdpTransport | None = None) -> None:
        self.transport = transport or UdpTransport(host, port, timeout, retries)
        self.host, self.port = self.transport.host, self.transport.port

    def __repr__(self) -> str:
        return f"Client({self.host!r}, {self.port})"

    @property
    def address(self) -> str:
        return self.transport.address

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the one request path --------------------------------------------------------------

    def request(self, command: str, params: Mapping[str, Any] | None = None, *,
                timeout: float | None = None, retries: int | None = None) -> Reply:
        """Send one command and return the reply dictionary.

        Raises NgError (CallNotFound) on ``result=error``, NgTimeout when no reply came after
        every try, ProtocolError on a malformed reply. A ``warning`` is logged and stays in the
        returned dictionary.
        """
        message = {"command": command, **(params or {})}
        outcome = self.transport.exchange([message], timeout, retries)[0]
        if isinstance(outcome, RtpctlError):
            raise outcome
        return check_reply(command, outcome)[0]

    def send_many(self, requests: Iterable[Mapping[str, Any]], *, timeout: float | None = None,
                  retries: int | None = None) -> list[Reply | RtpctlError]:
        """Pipelined: every request in flight at once, replies matched by cookie.

        Each request is a full ng dictionary including ``command``. Returns, in order, the reply
        or the exception for that request (errors are returned, not raised, so one failure does
        not discard the other answers).
        """
        messages: Sequence[Mapping[str, Any]] = list(requests)
        outcomes = self.transport.exchange(messages, timeout, retries)
        results: list[Reply | RtpctlError] = []
        for message, outcome in zip(messages, outcomes):
            if isinstance(outcome, RtpctlError):
                results.append(outcome)
                continue
            try:
                results.append(check_reply(str(message.get("command")), outcome)[0])
            except RtpctlError as exc:
                results.append(exc)
        return results

    def _call(self, command: str, params: Mapping[str, Any]) -> tuple[Reply, str | None]:
        reply = self.request(command, {k: v for k, v in params.items() if v is not None})
        warning = reply.get("warning")
        return reply, (str(warning) if warning is not None else None)

    # --- commands ----------------------------------------------------------------------------

    def ping(self, *, timeout: float | None = None, retries: int | None = None) -> float:
        """Round trip of an ng ``ping`` in seconds; raises if rtpengine does not say pong."""
        start = time.perf_counter()
        reply = self.request("ping", timeout=timeout, retries=retries)
        if reply.get("result") != "pong":
            raise ProtocolError(f"ping answered with result={reply.get('result')!r}")
        return time.perf_counter() - start

    def offer(self, call_id: str, from_tag: str, sdp: str,
              options: OfferOptions | None = None) -> OfferResult:
        reply, warning = self._call("offer", {"call-id": call_id, "from-tag": from_tag, "sdp": sdp,
                                              **(options.to_ng() if options else {})})
        return OfferResult(sdp_of(reply), warning=warning, raw=reply)

    def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str,
               options: AnswerOptions | None = None) -> AnswerResult:
        reply, warning = self._call("answer", {"call-id": call_id, "from-tag": from_tag,
                                               "to-tag": to_tag, "sdp": sdp,
                                               **(options.to_ng() if options else {})})
        return AnswerResult(sdp_of(reply), warning=warning, raw=reply)

    def delete(self, call_id: str, from_tag: str | None = None, to_tag: str | None = None,
               via_branch: str | None = None, delete_delay: int | None = None,
               flags: Sequence[str] | None = None) -> DeleteResult:
        """Delete a call, or only part of it.

        With ``from_tag`` (+ ``to_tag``) only that dialogue goes; with ``via_branch`` only that
        forked branch. ``delete_delay`` (seconds, 0 = now) overrides the daemon's default
        (30 s in Debian's config) for this request.
        """
        reply, warning = self._call("delete", {
            "call-id": call_id, "from-tag": from_tag, "to-tag": to_tag, "via-branch": via_branch,
            "delete-delay": delete_delay, "flags": list(flags) if flags else None})
        return parse_delete(reply, warning)

    def query(self, call_id: str, from_tag: str | None = None) -> QueryResult:
        reply, warning = self._call("query", {"call-id": call_id, "from-tag": from_tag})
        return parse_query(call_id, reply, warning)

    def list(self, limit: int | None = None) -> list[str]:
        """Call-IDs rtpengine holds (including ones waiting out their delete-delay)."""
        reply, _ = self._call("list", {"limit": limit})
        calls = reply.get("calls", [])
        if not isinstance(calls, list):
            raise ProtocolError("'calls' in list reply is not a list")
        return [str(c) for c in calls]

    def statistics(self) -> Statistics:
        reply, warning = self._call("statistics", {})
        return parse_statistics(reply, warning)

    # media control: from_tag selects whose media (media *from* that participant); all_ = every
    # participant of the call.

    def _media_op(self, command: str, call_id: str, from_tag: str | None, to_tag: str | None,
                  label: str | None, all_: bool, extra: Mapping[str, Any] | None = None
                  ) -> NgResult:
        flags = ["all"] if all_ else None
        reply, warning = self._call(command, {"call-id": call_id, "from-tag": from_tag,
                                              "to-tag": to_tag, "label": label, "flags": flags,
                                              **(extra or {})})
        return NgResult(warning=warning, raw=reply)

    def block_media(self, call_id: str, from_tag: str | None = None, to_tag: str | None = None,
                    *, label: str | None = None, all_: bool = False) -> NgResult:
        return self._media_op("block media", call_id, from_tag, to_tag, label, all_)

    def unblock_media(self, call_id: str, from_tag: str | None = None, to_tag: str | None = None,
                      *, label: str | None = None, all_: bool = False) -> NgResult:
        return self._media_op("unblock media", call_id, from_tag, to_tag, label, all_)

    def block_dtmf(self, call_id: str, from_tag: str | None = None, to_tag: str | None = None,
                   *, label: str | None = None, all_: bool = False) -> NgResult:
        """Stop forwarding that party's DTMF; rtpengine still sees (and logs) it."""
        return self._media_op("block DTMF", call_id, from_tag, to_tag, label, all_)

    def unblock_dtmf(self, call_id: str, from_tag: str | None = None, to_tag: str | None = None,
                     *, label: str | None = None, all_: bool = False) -> NgResult:
        return self._media_op("unblock DTMF", call_id, from_tag, to_tag, label, all_)

    def silence_media(self, call_id: str, from_tag: str | None = None, to_tag: str | None = None,
                      *, label: str | None = None, all_: bool = False) -> NgResult:
        return self._media_op("silence media", call_id, from_tag, to_tag, label, all_)

    def unsilence_media(self, call_id: str, from_tag: str | None = None,
                        to_tag: str | None = None, *, label: str | None = None,
                        all_: bool = False) -> NgResult:
        return self._media_op("unsilence media", call_id, from_tag, to_tag, label, all_)

    def start_forwarding(self, call_id: str, from_tag: str | None = None,
                         to_tag: str | None = None, *, all_: bool = False) -> NgResult:
        return self._media_op("start forwarding", call_id, from_tag, to_tag, None, all_)

    def stop_forwarding(self, call_id: str, from_tag: str | None = None,
                        to_tag: str | None = None, *, all_: bool = False) -> NgResult:
        return self._media_op("stop forwarding", call_id, from_tag, to_tag, None, all_)

    def play_media(self, call_id: str, from_tag: str, *, file: str | None = None,
                   blob: bytes | None = None, db_id: int | None = None,
                   repeat_times: int | None = None, to_tag: str | None = None) -> PlayMediaResult:
        """Play a file/blob/database prompt to ``from_tag``'s peers (rtpengine replaces that
        participant's outgoing audio while it plays)."""
        if sum(x is not None for x in (file, blob, db_id)) != 1:
            raise ValueError("play_media needs exactly one of file, blob, db_id")
        reply, warning = self._call("play media", {
            "call-id": call_id, "from-tag": from_tag, "to-tag": to_tag, "file": file,
            "blob": blob, "db-id": db_id, "repeat-times": repeat_times})
        duration = reply.get("duration")
        return PlayMediaResult(duration_ms=duration if isinstance(duration, int) else None,
                               warning=warning, raw=reply)

    def stop_media(self, call_id: str, from_tag: str, to_tag: str | None = None) -> NgResult:
        reply, warning = self._call("stop media", {"call-id": call_id, "from-tag": from_tag,
                                                   "to-tag": to_tag})
        return NgResult(warning=warning, raw=reply)

    def play_dtmf(self, call_id: str, from_tag: str, code: str, *, duration_ms: int | None = None,
                  volume: int | None = None, pause_ms: int | None = None,
                  to_tag: str | None = None) -> NgResult:
        """Inject DTMF as if ``from_tag`` had pressed it: its peers receive RFC 4733 events
        (with the telephone-event payload type negotiated in the SDP) or in-band tones."""
        reply, warning = self._call("play DTMF", {
            "call-id": call_id, "from-tag": from_tag, "to-tag": to_tag, "code": code,
            "duration": duration_ms, "volume": volume, "pause": pause_ms})
        return NgResult(warning=warning, raw=reply)

    def subscribe_request(self, call_id: str, from_tags: Sequence[str] | None = None, *,
                          to_tag: str | None = None,
                          options: SubscribeOptions | None = None) -> SubscribeResult:
        """Fork the media of ``from_tags`` (or every tag with flag "all") to a new listener;
        returns the SDP to send it and the to-tag naming the subscription."""
        params: dict[str, Any] = {"call-id": call_id, "to-tag": to_tag,
                                  **(options.to_ng() if options else {})}
        if from_tags:
            if len(from_tags) == 1:
                params["from-tag"] = from_tags[0]
            else:
                params["from-tags"] = list(from_tags)
        reply, warning = self._call("subscribe request", params)
        tags = reply.get("from-tags")
        return SubscribeResult(sdp_of(reply), to_tag=reply.get("to-tag"),
                               from_tags=tuple(tags) if isinstance(tags, list) else (),
                               warning=warning, raw=reply)

    def subscribe_answer(self, call_id: str, to_tag: str, sdp: str,
                         flags: Sequence[str] | None = None) -> NgResult:
        reply, warning = self._call("subscribe answer", {
            "call-id": call_id, "to-tag": to_tag, "sdp": sdp,
            "flags": list(flags) if flags else None})
        return NgResult(warning=warning, raw=reply)

    def unsubscribe(self, call_id: str, to_tag: str) -> NgResult:
        reply, warning = self._call("unsubscribe", {"call-id": call_id, "to-tag": to_tag})
        return NgResult(warning=warning, raw=reply)
