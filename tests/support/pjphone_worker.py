"""One strict SIP phone: a PJSIP (pjsua2) Endpoint in a process of its own, since pjsua2 allows
one Endpoint per process. tests.support.phones starts it and drives it over stdin/stdout, one
JSON object a line: {"op": ..., "args": {...}} in, {"ok": true, "result": ...} or
{"ok": false, "error": ...} out.

Everything pjsua2 runs in this one thread (no SIP worker threads, callbacks from
libHandleEvents), so the callbacks and the commands never race. Every SIP message sent or
received is in the log file (level 5), written through a LogWriter that flushes each line, so
the parent can read it while the phone runs.

    python pjphone_worker.py '{"ip": ..., "port": ..., "rtp_port": ..., "log": ...,
                               "lock_codec": true, "tls": null, "srtp": false}'

tls: {"port": ..., "cert": ..., "key": ...} adds a TLS transport on that port (the pair is
its server certificate, for the connections the proxy opens to it; no side verifies the
other's); srtp: the account's calls require SDES-SRTP (PJMEDIA_SRTP_MANDATORY).
"""
from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import signal
import sys
import time

import pjsua2 as pj

STATES = {pj.PJSIP_INV_STATE_NULL: "null", pj.PJSIP_INV_STATE_CALLING: "calling",
          pj.PJSIP_INV_STATE_INCOMING: "incoming", pj.PJSIP_INV_STATE_EARLY: "early",
          pj.PJSIP_INV_STATE_CONNECTING: "connecting",
          pj.PJSIP_INV_STATE_CONFIRMED: "confirmed",
          pj.PJSIP_INV_STATE_DISCONNECTED: "disconnected"}
CODECS = {"PCMU/8000": 255, "PCMA/8000": 254}  # what carriers and the handoff placeholder offer


class Log(pj.LogWriter):
    def __init__(self, path: str):
        super().__init__()
        self.file = open(path, "a", buffering=1)

    def write(self, entry):
        self.file.write(entry.msg if entry.msg.endswith("\n") else entry.msg + "\n")


class Call(pj.Call):
    def __init__(self, phone: "Phone", index: int, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(phone.account, call_id)
        self.phone, self.index = phone, index
        self.incoming = call_id != pj.PJSUA_INVALID_ID
        self.state, self.code, self.reason = "null", 0, ""
        self.transfer: list[int] = []
        self.past_rtp = {"rx": 0, "tx": 0}      # what the streams already gone counted
        self.call_id = ""
        self.called_user = ""                   # an incoming call's request URI user part
        self.press: tuple[str, int] | None = None   # keys to press once confirmed (digits, ms)
        self.media_up = False

    def onCallState(self, prm):
        info = self.getInfo()
        self.state = STATES.get(info.state, str(info.state))
        self.code, self.reason = info.lastStatusCode, info.lastReason
        self.call_id = info.callIdString or self.call_id

    def media_protocol(self) -> str:
        """The profile of the call's audio stream as negotiated: RTP/AVP, RTP/SAVP, ..."""
        names = {pj.PJMEDIA_TP_PROTO_RTP_AVP: "RTP/AVP", pj.PJMEDIA_TP_PROTO_RTP_SAVP: "RTP/SAVP",
                 pj.PJMEDIA_TP_PROTO_RTP_AVPF: "RTP/AVPF",
                 pj.PJMEDIA_TP_PROTO_RTP_SAVPF: "RTP/SAVPF"}
        try:
            info = self.getInfo()         # held: its media vector dies with it
            for i, media in enumerate(info.media):
                if media.type == pj.PJMEDIA_TYPE_AUDIO:
                    proto = self.getStreamInfo(i).proto
                    return names.get(proto, str(proto))
        except pj.Error as exc:
            return f"error: {exc.reason}"
        return ""

    def onCallMediaState(self, prm):
        info = self.getInfo()
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and \
                    media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.media_up = True
                audio = self.getAudioMedia(i)
                devices = self.phone.endpoint.audDevManager()
                devices.getCaptureDevMedia().startTransmit(audio)
                audio.startTransmit(devices.getPlaybackDevMedia())

    def onStreamDestroyed(self, prm):
        """pjsua replaces the stream at each re-INVITE, and its counts with it: keep them."""
        now = self.stream_counts()
        if now:
            self.past_rtp = {k: self.past_rtp[k] + now[k] for k in now}

    def onCallTransferStatus(self, prm):
        self.transfer.append(prm.statusCode)

    def stream_counts(self) -> dict | None:
        try:
            info = self.getInfo()
            for i, media in enumerate(info.media):
                if media.type == pj.PJMEDIA_TYPE_AUDIO:
                    stat = self.getStreamStat(i).rtcp
                    return {"rx": stat.rxStat.pkt, "tx": stat.txStat.pkt}
        except pj.Error:
            pass
        return None

    def counts(self) -> dict:
        now = self.stream_counts() or {"rx": 0, "tx": 0}
        return {k: self.past_rtp[k] + now[k] for k in now}

    def summary(self) -> dict:
        return {"incoming": self.incoming, "state": self.state, "code": self.code,
                "reason": self.reason, "transfer": self.transfer, "rtp": self.counts(),
                "call_id": self.call_id, "media": self.media_protocol(),
                "called_user": self.called_user}


class Account(pj.Account):
    def __init__(self, phone: "Phone"):
        super().__init__()
        self.phone = phone
        self.reg_code = 0

    def onRegState(self, prm):
        self.reg_code = prm.code

    def onIncomingCall(self, prm):
        self.phone.incoming(prm.callId, called_user(prm.rdata.wholeMsg))


def called_user(invite: str) -> str:
    """The user part of the request URI of an INVITE's text ("" when it has none)."""
    first = invite.split("\n", 1)[0]
    uri = first.split(" ")[1] if first.count(" ") >= 2 else ""
    rest = uri.split(":", 1)[-1]
    return rest.split("@", 1)[0] if "@" in rest else ""


class Phone:
    def __init__(self, conf: dict):
        self.conf = conf
        self.calls: list[Call] = []
        self.answer_after_ms: int | None = None      # how incoming calls are taken: rung
        self.reject: int | None = None               # (180) and then answered, or refused
        self.due: list[tuple[float, Call, int]] = []  # final answers to send later
        # Per called number (the request URI's user part): how a call to it is taken, which
        # overrides the phone's own way: {"answer_after_ms", "reject", "press", "press_after_ms"}
        # (press: keys pressed that long after the call is confirmed).
        self.by_user: dict[str, dict] = {}
        self.presses: list[tuple[float, Call, str]] = []  # keys to press once confirmed
        self.log = Log(conf["log"])
        ep = self.endpoint = pj.Endpoint()
        ep.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = True
        ep_cfg.uaConfig.userAgent = f"pjsua2-test {conf['name']}"
        ep_cfg.logConfig.level = 5
        ep_cfg.logConfig.consoleLevel = 5      # what the writer gets
        ep_cfg.logConfig.msgLogging = 1
        ep_cfg.logConfig.writer = self.log
        ep_cfg.logConfig.decor = pj.PJ_LOG_HAS_TIME | pj.PJ_LOG_HAS_MICRO_SEC | \
            pj.PJ_LOG_HAS_SENDER | pj.PJ_LOG_HAS_NEWLINE | pj.PJ_LOG_HAS_INDENT
        ep_cfg.medConfig.noVad = True          # silence is sent too: RTP flows all the time
        ep_cfg.medConfig.ecTailLen = 0
        ep.libInit(ep_cfg)
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():
            ep.codecSetPriority(codec.codecId, CODECS.get(codec.codecId.rsplit("/", 1)[0], 0))
        tp = pj.TransportConfig()
        tp.boundAddress = tp.publicAddress = conf["ip"]
        tp.port = conf["port"]
        ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tp)
        self.tls_transport = None
        if conf.get("tls"):
            tls = pj.TransportConfig()
            tls.boundAddress = tls.publicAddress = conf["ip"]
            tls.port = conf["tls"]["port"]
            tls.tlsConfig.certFile = conf["tls"]["cert"]
            tls.tlsConfig.privKeyFile = conf["tls"]["key"]
            tls.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            tls.tlsConfig.verifyServer = False
            tls.tlsConfig.verifyClient = False
            self.tls_transport = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls)
        ep.libStart()
        self.account = self.make_account(conf.get("uri") or f"sip:{conf['ip']}:{conf['port']}")

    def make_account(self, uri: str, registrar: str = "", user: str = "",
                     password: str = "") -> Account:
        cfg = pj.AccountConfig()
        cfg.idUri = uri
        cfg.natConfig.contactRewriteUse = 0
        cfg.natConfig.viaRewriteUse = 0
        cfg.natConfig.sdpNatRewriteUse = 0
        cfg.natConfig.sipOutboundUse = 0
        cfg.mediaConfig.transportConfig.boundAddress = self.conf["ip"]
        cfg.mediaConfig.transportConfig.publicAddress = self.conf["ip"]
        cfg.mediaConfig.transportConfig.port = self.conf["rtp_port"]
        cfg.mediaConfig.transportConfig.portRange = 98
        # pjsua's default: an answer with several codecs is followed at once by a re-INVITE
        # offering only the one chosen ("lock codec"). Tests may turn it off.
        cfg.mediaConfig.lockCodecEnabled = self.conf.get("lock_codec", True)
        if self.conf.get("srtp"):
            cfg.mediaConfig.srtpUse = pj.PJMEDIA_SRTP_MANDATORY
            cfg.mediaConfig.srtpSecureSignaling = 1      # SRTP keys only over TLS
        if self.tls_transport is not None:
            cfg.sipConfig.transportId = self.tls_transport
        if registrar:
            cfg.regConfig.registrarUri = registrar
            cfg.regConfig.timeoutSec = 600
            cfg.regConfig.retryIntervalSec = 0
            cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        account = Account(self)
        account.create(cfg, True)
        return account

    # ---- commands ------------------------------------------------------------------------
    def register(self, uri: str, registrar: str, user: str, password: str,
                 timeout: float = 5.0) -> int:
        old = self.account
        self.account = self.make_account(uri, registrar, user, password)
        old.shutdown()
        self.pump_until(lambda: self.account.reg_code >= 200, timeout)
        return self.account.reg_code

    def on_incoming(self, answer_after_ms: int | None = None, reject: int | None = None,
                    by_user: dict | None = None):
        self.answer_after_ms, self.reject = answer_after_ms, reject
        self.by_user = by_user or {}

    def incoming(self, call_id: int, user: str = "") -> None:
        call = Call(self, len(self.calls), call_id)
        call.called_user = user
        self.calls.append(call)
        rule = self.by_user.get(user) or {"answer_after_ms": self.answer_after_ms,
                                          "reject": self.reject}
        answer_after_ms, reject = rule.get("answer_after_ms"), rule.get("reject")
        if rule.get("press"):
            call.press = (rule["press"], rule.get("press_after_ms", 0))
        if reject and answer_after_ms is None:
            self.answer(call.index, reject)
            return
        self.answer(call.index, 180)
        if answer_after_ms is not None:
            self.due.append((time.monotonic() + answer_after_ms / 1000, call, reject or 200))

    def make_call(self, uri: str) -> int:
        call = Call(self, len(self.calls))
        self.calls.append(call)
        call.makeCall(uri, pj.CallOpParam(True))
        return call.index

    def answer(self, call: int, code: int = 200) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        self.calls[call].answer(prm)

    def hangup(self, call: int, code: int = 0) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        self.calls[call].hangup(prm)

    def dtmf(self, call: int, digits: str) -> None:
        """RFC 4733 telephone-events in the call's RTP (pjsua2's default DTMF method)."""
        self.calls[call].dialDtmf(digits)

    def hold(self, call: int) -> None:
        self.calls[call].setHold(pj.CallOpParam(True))

    def unhold(self, call: int) -> None:
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        self.calls[call].reinvite(prm)

    def xfer(self, call: int, uri: str) -> None:
        self.calls[call].xfer(uri, pj.CallOpParam(True))

    def calls_summary(self) -> list[dict]:
        return [c.summary() for c in self.calls]

    # ---- running -----------------------------------------------------------------------
    def pump(self, ms: int = 10) -> None:
        self.endpoint.libHandleEvents(ms)
        now = time.monotonic()
        for item in [d for d in self.due if d[0] <= now]:
            self.due.remove(item)
            if item[1].state in ("incoming", "early"):
                self.answer(item[1].index, item[2])
        for call in self.calls:
            if call.press and call.state == "confirmed" and call.media_up:
                digits, after_ms = call.press
                call.press = None
                self.presses.append((now + after_ms / 1000, call, digits))
        for item in [p for p in self.presses if p[0] <= now]:
            self.presses.remove(item)
            if item[1].state == "confirmed":
                self.dtmf(item[1].index, item[2])

    def pump_until(self, done, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.pump()

    def close(self) -> None:
        """End every call the way a phone would (BYE, CANCEL, or a final reply), unregister,
        and give the answers a moment to arrive."""
        self.endpoint.hangupAllCalls()
        self.pump_until(lambda: all(c.state in ("null", "disconnected") for c in self.calls),
                        3.0)
        self.account.shutdown()
        self.pump_until(lambda: False, 0.3)
        # pjsua2 objects must go before the library does, or their destructors assert.
        self.calls.clear()
        self.due.clear()
        self.presses.clear()
        self.account = None
        gc.collect()
        # Everything is sent; without this flag pjsua sleeps a second for unregistrations.
        self.endpoint.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)


def run(phone: Phone, request: dict) -> dict:
    try:
        return {"ok": True, "result": getattr(phone, request["op"])(**request["args"])}
    except pj.Error as exc:
        return {"ok": False, "error": f"{exc.title}: {exc.reason} ({exc.status})"}
    except Exception as exc:  # noqa: BLE001 - reported to the test, which then fails
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def serve(phone: Phone, replies) -> None:
    """Commands until "close" or the end of stdin (the parent went away); pjsua2's events
    in between."""
    pending = b""
    while True:
        if not select.select([sys.stdin], [], [], 0)[0]:
            phone.pump()
            continue
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            if request["op"] == "close":
                return
            replies.write(json.dumps(run(phone, request)) + "\n")


def main() -> None:
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG: never an orphan
    conf = json.loads(sys.argv[1])
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                     # anything else that writes to stdout goes to stderr
    phone = Phone(conf)
    replies.write(json.dumps({"ok": True, "result": "ready"}) + "\n")
    serve(phone, replies)
    phone.close()
    replies.write(json.dumps({"ok": True, "result": None}) + "\n")
    os._exit(0)               # nothing of pjsua2 may run after libDestroy


if __name__ == "__main__":
    main()
