"""Strict SIP phones for call tests: PJSIP (pjsua2), where SIPp accepts whatever it is sent.

Each Phone is a pjsua2 Endpoint in a worker process of its own (tests.support.pjphone_worker),
bound to one role's loopback address, with a null audio device and its log (level 5: every SIP
message) in the test's logdir. What a test asserts on is what the phone saw: call states and
final codes, transfer NOTIFYs, RTP packet counts of the call's stream, and the SIP messages in
the log.
"""
from __future__ import annotations

import itertools
import json
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab.rtp import wait_for

WORKER = Path(__file__).with_name("pjphone_worker.py")
_rtp_ports = itertools.count(50000, 100)         # each phone gets 100 ports for its calls


class PhoneError(AssertionError):
    """The phone refused a command (pjsua2's error), or its worker died."""


@dataclass(frozen=True)
class SipMessage:
    direction: str              # "sent" | "received"
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]

    def header(self, name: str) -> str:
        m = re.search(rf"^{name}:\s*(.*)$", self.text, re.M | re.I)
        return m.group(1).strip() if m else ""

    def is_(self, method_or_code: str) -> bool:
        """A request of that method, or a reply with that status code (or "500 Invalid CSeq")."""
        first = self.first_line
        return first.startswith(method_or_code + " ") or \
            first.startswith("SIP/2.0 " + method_or_code)


@dataclass(frozen=True)
class Rtp:
    rx: int                     # packets received on the call's audio stream(s)
    tx: int


class Call:
    """One call on a phone (placed or received), by its index in that phone's calls."""

    def __init__(self, phone: "Phone", index: int):
        self.phone, self.index = phone, index

    def _do(self, op: str, **args):
        return self.phone.command(op, call=self.index, **args)

    def answer(self, code: int = 200) -> None:
        self._do("answer", code=code)

    def hangup(self, code: int = 0) -> None:
        """BYE when confirmed, CANCEL when calling, a final reply (code) when ringing."""
        self._do("hangup", code=code)

    def dtmf(self, digits: str) -> None:
        """Press keys: RFC 4733 events in the call's RTP."""
        self._do("dtmf", digits=digits)

    def hold(self) -> None:
        """re-INVITE with a=sendonly (pjsua2 setHold)."""
        self._do("hold")

    def unhold(self) -> None:
        self._do("unhold")

    def xfer(self, uri: str) -> None:
        """Blind transfer: REFER with Refer-To: uri."""
        self._do("xfer", uri=uri)

    def info(self) -> dict:
        return self.phone.command("calls_summary")[self.index]

    @property
    def state(self) -> str:
        return self.info()["state"]

    @property
    def call_id(self) -> str:
        return self.info()["call_id"]

    @property
    def media_protocol(self) -> str:
        """The negotiated profile of the call's audio: RTP/AVP, or RTP/SAVP for SRTP."""
        return self.info()["media"]

    def messages(self) -> list["SipMessage"]:
        """The SIP messages of this call's dialog (its Call-ID) the phone sent or received."""
        call_id = self.call_id
        return [m for m in self.phone.messages() if m.header("Call-ID") == call_id]

    def requests_received(self) -> list[str]:
        """First lines of the requests of this call's dialog the phone received."""
        return [m.first_line for m in self.messages()
                if m.direction == "received" and not m.first_line.startswith("SIP/")]

    @property
    def transfer_codes(self) -> list[int]:
        """Status codes of the transfer NOTIFYs received (sipfrag), in order."""
        return self.info()["transfer"]

    def rtp(self) -> Rtp:
        return Rtp(**self.info()["rtp"])

    def wait(self, state: str, timeout: float = 10.0) -> tuple[int, str]:
        """Wait until the call is in `state` (early, confirmed, disconnected …); return its
        last status code and reason."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.info()
            if info["state"] == state:
                return info["code"], info["reason"]
            if info["state"] == "disconnected" or time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.phone.name}'s call #{self.index} did not become {state}: it is "
                    f"{info['state']} (last {info['code']} {info['reason']})")
            time.sleep(0.02)

    def wait_transfer(self, timeout: float = 15.0) -> int:
        """The status code of the first final (≥ 200) transfer NOTIFY."""
        codes = wait_for(lambda: [c for c in self.transfer_codes if c >= 200], timeout,
                         f"a final transfer NOTIFY at {self.phone.name}", poll=0.02)
        return codes[0]


class Phone:
    """A PJSIP phone on ip:port; `uri` is who it says it is when it calls. `lock_codec`:
    whether an answer with several codecs is followed at once by a re-INVITE offering only
    the chosen one (pjsua's default, as many phones do). `tls`: {"port", "cert", "key"} for a
    TLS transport its account then uses for everything (register and call with
    `;transport=tls` URIs); `srtp`: its calls require SDES-SRTP."""

    def __init__(self, name: str, ip: str, port: int, logdir: Path, uri: str = "",
                 lock_codec: bool = True, tls: dict | None = None, srtp: bool = False):
        self.name, self.ip, self.port = name, ip, port
        self.log = logdir / f"{name}.pjsip.log"
        conf = {"name": name, "ip": ip, "port": port, "rtp_port": next(_rtp_ports),
                "log": str(self.log), "uri": uri, "lock_codec": lock_codec, "tls": tls,
                "srtp": srtp}
        self._stderr = open(logdir / f"{name}.stderr", "w")
        self.proc = subprocess.Popen([sys.executable, str(WORKER), json.dumps(conf)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        self._reply("start")

    def _reply(self, op: str, timeout: float = 30.0):
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            self.proc.kill()
            raise PhoneError(f"{self.name}'s worker did not answer {op} in {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise PhoneError(f"{self.name}'s worker died during {op} (see {self._stderr.name})")
        reply = json.loads(line)
        if not reply["ok"]:
            raise PhoneError(f"{self.name}: {op} refused: {reply['error']}")
        return reply["result"]

    def command(self, op: str, **args):
        if self.proc.poll() is not None:
            raise PhoneError(f"{self.name}'s worker has exited ({self.proc.returncode})")
        self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.proc.stdin.flush()
        return self._reply(op)

    # ---- what the phone does ---------------------------------------------------------------
    def register(self, user: str, password: str, proxy: str, timeout: float = 5.0) -> None:
        """REGISTER user@proxy with digest auth; the phone then takes calls for it. proxy is
        host:port, with `;transport=tls` for a phone on TLS."""
        code = self.command("register", uri=f"sip:{user}@{proxy.split(':')[0]}",
                            registrar=f"sip:{proxy}", user=user, password=password,
                            timeout=timeout)
        if code != 200:
            raise PhoneError(f"{self.name}: registration of {user} answered {code}")

    def on_incoming(self, answer_after_ms: int | None = None, reject: int | None = None,
                    by_user: dict[str, dict] | None = None) -> None:
        """How the phone takes calls from now on: ring (180) and answer after the given time,
        reject with the given code (at once, or after ringing that time if both are given),
        or (neither) ring until the caller gives up. `by_user`: the same per called number
        (the request URI's user part), for a phone that stands for many (the mobiles behind
        the trunk): {"answer_after_ms", "reject", "press", "press_after_ms"}, where `press`
        are keys pressed (RFC 4733) `press_after_ms` after the call is confirmed."""
        self.command("on_incoming", answer_after_ms=answer_after_ms, reject=reject,
                     by_user=by_user)

    def calls_to(self, user: str) -> list["Call"]:
        """The calls this phone received for that called number, oldest first."""
        return [Call(self, i) for i, c in enumerate(self.command("calls_summary"))
                if c["incoming"] and c["called_user"] == user]

    def make_call(self, uri: str) -> Call:
        return Call(self, self.command("make_call", uri=uri))

    def incoming(self, nth: int = 1, timeout: float = 10.0) -> Call:
        """The nth call this phone received, once it has arrived."""
        def nth_received() -> list[int]:
            calls = self.command("calls_summary")
            return [i for i, c in enumerate(calls) if c["incoming"]][nth - 1:nth]
        [index] = wait_for(nth_received, timeout, f"call #{nth} to reach {self.name}", poll=0.02)
        return Call(self, index)

    # ---- what the phone saw (its log) --------------------------------------------------------
    def messages(self) -> list[SipMessage]:
        """Every SIP message the phone sent or received, in order."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        out = []
        for m in re.finditer(r"\b(TX|RX) \d+ bytes .*?:\n(.*?)\n--end msg--", text, re.S):
            out.append(SipMessage("sent" if m.group(1) == "TX" else "received",
                                  m.group(2).replace("\r\n", "\n").strip("\n")))
        return out

    def received(self, method_or_code: str = "") -> list[SipMessage]:
        return [m for m in self.messages() if m.direction == "received" and
                (not method_or_code or m.is_(method_or_code))]

    def sent(self, method_or_code: str = "") -> list[SipMessage]:
        return [m for m in self.messages() if m.direction == "sent" and
                (not method_or_code or m.is_(method_or_code))]

    def requests_received(self) -> list[str]:
        """First lines of the requests the phone received (not replies)."""
        return [m.first_line for m in self.received() if not m.first_line.startswith("SIP/")]

    # ---- end -----------------------------------------------------------------------------
    def close(self) -> None:
        """Ends the phone's calls as a phone would, unregisters, stops the worker (killed if it
        does not stop in time). Safe to call twice."""
        if self.proc.poll() is None:
            try:
                self.command("close")
            except (PhoneError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


class Phones:
    """The phones of one test, all closed at its end (fixture `phones`)."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.all: list[Phone] = []

    def __call__(self, name: str, ip: str, port: int, uri: str = "",
                 lock_codec: bool = True, tls: dict | None = None, srtp: bool = False) -> Phone:
        phone = Phone(name, ip, port, self.logdir, uri, lock_codec, tls, srtp)
        self.all.append(phone)
        return phone

    def close(self) -> None:
        for phone in self.all:
            phone.close()


def assert_two_way(a: Call, b: Call, seconds: float = 1.0, minimum: int = 35) -> None:
    """Over the next `seconds`, each call's stream sent and received at least `minimum` RTP
    packets (50 a second at 20 ms)."""
    before = a.rtp(), b.rtp()
    time.sleep(seconds)
    after = a.rtp(), b.rtp()
    counts = {f"{c.phone.name} {way}": getattr(now, way) - getattr(then, way)
              for c, then, now in zip((a, b), before, after) for way in ("rx", "tx")}
    assert min(counts.values()) >= minimum, f"media not two-way over {seconds} s: {counts}"
