"""Issue 23: every call path across the timings people and carriers really use, on the wire
with PJSIP phones, the subscribers on the product's defaults (an answer to the twin leg within
1500 ms is the carrier's voicemail). A desk that answered quickly while the mobile still rang
was hung up on by the proxy: our other tests answer at 0 ms or after 1.5 s, never between.

The grid: desk answer delay x what the mobile does x confirmation off/on x ring the desk first
(0 / 3 s), and the caller hanging up at chosen moments; on top, a seeded random sample of
timings (the seed is printed; `--timing-seed N` runs the same sample again). Cells run side by
side in waves, one subscriber, desk and caller per lane, one phone behind the trunk for every
mobile (it tells the numbers apart). Invariants, checked in every cell:

- the caller ends connected to exactly one party (or, where nobody could answer, nobody);
- a desk that answers is never hung up on by the proxy (but where the mobile's person
  answered first: then the desk's late answer is ended, "Call completed elsewhere");
- two-way audio between the caller and the one connected;
- after the hang-up nothing is left anywhere (each wave ends with the residue check).
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg.rows import dict_row

from lab.agents import DESK_IPS, TRUNK_IP, VOICEMAIL_IP, add_subscriber
from lab.calls import CALLER_NUM, forget_registrations
from lab.residue import assert_no_residue, clear_residue
from tests.support.phones import Call, Phone, Phones
from tests.support.pjsip_scenarios import proxy
from twinctl.commands import status as status_cmd
from twinctl.commands import subscriber as subscriber_cmd
from twinctl.commands import twin as twin_cmd

pytestmark = pytest.mark.e2e

LANES = 4                           # cells side by side: the pjsua2 wheel's PJSUA_MAX_CALLS is
                                    # 4, and one phone behind the trunk takes every mobile
DESK_MS = (0, 50, 200, 500, 900, 1400, 1600, 3000)
MOBILE = ("rings", "voicemail", "person", "declines", "busy")
CARRIER_VOICEMAIL_MS = 150          # a carrier's voicemail answers the leg this fast
PERSON_MS = 2500                    # a person takes the mobile out of a pocket
PERSON_PRESSES_MS = 150             # ... and presses 1 (confirmation on) this soon after
NEAR_MS = 450                       # answers this close together: either may win
RANDOM_CELLS = 16


@dataclass(frozen=True)
class Cell:
    desk_ms: int | None             # None: the desk never answers
    mobile: str                     # one of MOBILE
    confirm: bool = False
    desk_first_s: int = 0
    caller_hangs_up_ms: int | None = None   # the caller gives up this long after dialling

    def __str__(self) -> str:
        desk = "desk-never" if self.desk_ms is None else f"desk{self.desk_ms}ms"
        caller = "" if self.caller_hangs_up_ms is None else \
            f"-caller-gone{self.caller_hangs_up_ms}ms"
        return (f"{desk}-mobile-{self.mobile}-confirm-{'on' if self.confirm else 'off'}"
                f"-deskfirst{self.desk_first_s}s{caller}")

    def mobile_answers_ms(self) -> int | None:
        """When the mobile's answer reaches the proxy as one the caller may get (None:
        never: it rings on, declines, is busy, or is the carrier's voicemail)."""
        if self.mobile != "person":
            return None
        return self.desk_first_s * 1000 + PERSON_MS + (PERSON_PRESSES_MS + 150
                                                       if self.confirm else 0)

    def winners(self) -> set[str]:
        """Who may end up with the call: {"desk"}, {"mobile"}, both (too close to tell), or
        {"nobody"}: the caller gave up (before an answer: CANCEL; after one: BYE), and then
        nobody may be left connected, whoever answered."""
        if self.caller_hangs_up_ms is not None:
            return {"nobody"}
        return self._first_of(self.desk_ms, self.mobile_answers_ms())

    @staticmethod
    def _first_of(desk: int | None, mobile: int | None) -> set[str]:
        if mobile is None:
            return {"desk"} if desk is not None else {"voicemail"}
        if desk is None or mobile + NEAR_MS < desk:
            return {"mobile"}
        if desk + NEAR_MS < mobile:
            return {"desk"}
        return {"desk", "mobile"}

    def mobile_rule(self) -> dict:
        return {"rings": {},
                "voicemail": {"answer_after_ms": CARRIER_VOICEMAIL_MS},
                "person": {"answer_after_ms": PERSON_MS, "press": "1",
                           "press_after_ms": PERSON_PRESSES_MS},
                "declines": {"answer_after_ms": 400, "reject": 603},
                "busy": {"reject": 486}}[self.mobile]


GRID = [Cell(d, m, c, f) for f in (0, 3) for c in (False, True) for m in MOBILE
        for d in DESK_MS]
CALLER_GONE = [Cell(500, "person", False, 0, t) for t in (0, 100, 300)] + \
    [Cell(1600, "rings", False, 0, t) for t in (1000, 1590, 1610)] + \
    [Cell(PERSON_MS + 10, "person", False, 0, None),             # within 10 ms of each other
     Cell(PERSON_MS - 5, "person", False, 0, None)]


def random_cells(seed: int, n: int = RANDOM_CELLS) -> list[Cell]:
    rnd = random.Random(seed)
    cells = []
    for _ in range(n):
        hang = rnd.choice([None, None, None, rnd.randint(0, 3500)])
        cells.append(Cell(rnd.randint(0, 3500), rnd.choice(MOBILE), rnd.random() < 0.3,
                          rnd.choice((0, 0, 3)), hang))
    return cells


def waves(cells: list[Cell]) -> list[list[Cell]]:
    return [cells[i:i + LANES] for i in range(0, len(cells), LANES)]


# ---- the lanes: a subscriber, its desk and a caller each; one mobile phone for all ----------
@dataclass
class Lane:
    ext: str
    did: str
    twin: str
    desk: Phone
    far: Phone


@dataclass
class Lab:
    cfg: object
    conn: psycopg.Connection
    lanes: list[Lane]
    mobile: Phone
    voicemail: Phone
    phones: Phones
    seen: dict[str, int] = field(default_factory=dict)   # calls each phone had before a wave


@pytest.fixture(scope="module")
def lab(stack, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("timing-matrix")
    phones = Phones(logdir)
    with psycopg.connect(stack.dsn(), row_factory=dict_row, autocommit=True) as conn:
        forget_registrations(stack, conn)
        conn.execute("DELETE FROM subscriber")
        lanes = []
        for i in range(LANES):
            ext, did, twin = f"11{i:02d}", f"+1212555{1100 + i:04d}", f"+1917555{1100 + i:04d}"
            add_subscriber(conn, stack, ext, did, license="entry-ucc", answer_too_soon_ms=None)
            twin_cmd.set_twin(conn, ext, twin, None)
            status_cmd.edit_status(conn, ext, "In Office", "ring-group", "desk,mobile")
            status_cmd.set_current(conn, ext, "In Office")
            desk = phones(f"desk{i}", DESK_IPS[i % len(DESK_IPS)], 5161 + i // len(DESK_IPS))
            desk.register(ext, "secret1", proxy(stack))
            far = phones(f"far{i}", TRUNK_IP, 5180 + i,
                         uri=f'"Caller {i}" <sip:{CALLER_NUM}@{TRUNK_IP}>')
            lanes.append(Lane(ext, did, twin, desk, far))
        row = subscriber_cmd.show_subscriber(conn, lanes[0].ext)
        assert row["answer_too_soon_ms"] == 1500, "the product's default, not the lab's 0"
        mobile = phones("mobile", TRUNK_IP, 5060)
        voicemail = phones("voicemail", VOICEMAIL_IP, 5060)
        voicemail.on_incoming(answer_after_ms=200)
        yield Lab(stack, conn, lanes, mobile, voicemail, phones)
        phones.close()
        clear_residue(stack)


@pytest.fixture(scope="session")
def timing_seed(request) -> int:
    seed = request.config.getoption("--timing-seed", None)
    seed = int(seed) if seed not in (None, "") else int.from_bytes(os.urandom(4), "big")
    print(f"\ntiming matrix: random cells from seed {seed} (--timing-seed {seed} repeats them)")
    return seed


# ---- one wave of cells --------------------------------------------------------------------
def new_call(phone: Phone, before: int) -> Call | None:
    """The first call the phone received in this wave, if any."""
    for index, c in enumerate(phone.command("calls_summary")):
        if index >= before and c["incoming"]:
            return Call(phone, index)
    return None


def run_wave(lab: Lab, cells: list[Cell]) -> None:
    lanes = lab.lanes[:len(cells)]
    for lane, cell in zip(lanes, cells):
        subscriber_cmd.set_twin_leg(lab.conn, lane.ext, confirm=cell.confirm)
        status_cmd.edit_status(lab.conn, lane.ext, "In Office", "ring-group", "desk,mobile",
                               cell.desk_first_s)
        lane.desk.on_incoming(answer_after_ms=cell.desk_ms)
    lab.mobile.on_incoming(by_user={lane.twin: cell.mobile_rule()
                                    for lane, cell in zip(lanes, cells)})
    before = {p.name: len(p.command("calls_summary")) for p in lab.phones.all}
    started = time.monotonic()
    far_calls = [lane.far.make_call(f"sip:{lane.did.removeprefix('+1')}@{proxy(lab.cfg)}")
                 for lane in lanes]
    hangups = sorted((cell.caller_hangs_up_ms, i) for i, cell in enumerate(cells)
                     if cell.caller_hangs_up_ms is not None)
    for at_ms, i in hangups:
        time.sleep(max(0.0, started + at_ms / 1000 - time.monotonic()))
        if far_calls[i].state != "disconnected":
            far_calls[i].hangup()
    # Long enough for every answer of the wave, and a second more for a wrong one to show.
    settle = max(max(c.desk_first_s * 1000 + 500, c.desk_ms or 0, c.mobile_answers_ms() or 0)
                 for c in cells) / 1000 + 1.2
    time.sleep(max(0.0, started + settle - time.monotonic()))
    outcomes = [judge(lab, lane, cell, far, before) for lane, cell, far
                in zip(lanes, cells, far_calls)]
    problems = [f"{cell}: {problem}" for cell, (problem, _) in zip(cells, outcomes) if problem]
    connected = [(far, near) for far, (problem, near) in zip(far_calls, outcomes)
                 if not problem and near is not None]
    problems += two_way(connected)
    for far in far_calls:
        if far.state != "disconnected":
            far.hangup()
    for far, (_, near) in zip(far_calls, outcomes):
        if near is not None:
            try:
                near.wait("disconnected", timeout=5)
            except AssertionError as exc:
                problems.append(f"after the caller's BYE: {exc}")
    try:
        assert_no_residue(lab.cfg, timeout=10)
    except AssertionError as exc:
        problems.append(str(exc))
        clear_residue(lab.cfg)
    assert not problems, "\n".join(problems)


def judge(lab: Lab, lane: Lane, cell: Cell, far: Call, before: dict) -> tuple[str, Call | None]:
    """What went wrong in the cell ("" if nothing), and the call connected to the caller."""
    desk = new_call(lane.desk, before[lane.desk.name])
    mobiles = [Call(lab.mobile, i) for i, c in enumerate(lab.mobile.command("calls_summary"))
               if i >= before[lab.mobile.name] and c["called_user"] == lane.twin]
    vm = [Call(lab.voicemail, i) for i, c in enumerate(lab.voicemail.command("calls_summary"))
          if i >= before[lab.voicemail.name] and c["incoming"]]
    vm_ours = [c for c in vm if lane.ext in " ".join(
        m.first_line for m in c.messages() if m.is_("INVITE"))]
    live = {"desk": [desk] if desk is not None and desk.state == "confirmed" else [],
            "mobile": [m for m in mobiles if m.state == "confirmed"],
            "voicemail": [v for v in vm_ours if v.state == "confirmed"]}
    who = [name for name, calls in live.items() for _ in calls]
    if far.state == "confirmed":
        if len(who) != 1:
            return f"the caller is connected, the subscriber's side has {who or 'nobody'}", None
        winner, near = who[0], live[who[0]][0]
    else:
        if who:
            return f"the caller is {far.state}, yet {who} still connected", None
        winner, near = "nobody", None
    if winner not in cell.winners():
        return f"connected to {winner}, expected {sorted(cell.winners())}", None
    if desk is not None and desk_answered(desk) and winner != "desk" \
            and not ({"desk", "mobile"} <= cell.winners() or cell.caller_hangs_up_ms is not None):
        return f"the desk answered and was hung up on ({desk.state}, {hung_up_by(desk)})", None
    return "", near


def desk_answered(desk: Call) -> bool:
    return any(m.direction == "sent" and m.is_("200") and m.header("CSeq").endswith("INVITE")
               for m in desk.messages())


def hung_up_by(call: Call) -> str:
    byes = [m for m in call.messages() if m.direction == "received" and m.is_("BYE")]
    return f"BYE with Reason {byes[0].header('Reason')!r}" if byes else "no BYE"


def two_way(pairs: list[tuple[Call, Call]], seconds: float = 1.0, minimum: int = 35) -> list[str]:
    """Every pair's audio both ways at once over `seconds`."""
    before = [(a.rtp(), b.rtp()) for a, b in pairs]
    time.sleep(seconds)
    problems = []
    for (a, b), (ra, rb) in zip(pairs, before):
        na, nb = a.rtp(), b.rtp()
        counts = {f"{a.phone.name} rx": na.rx - ra.rx, f"{a.phone.name} tx": na.tx - ra.tx,
                  f"{b.phone.name} rx": nb.rx - rb.rx, f"{b.phone.name} tx": nb.tx - rb.tx}
        if min(counts.values()) < minimum:
            problems.append(f"media not two-way: {counts}")
    return problems


# ---- the tests -------------------------------------------------------------------------
@pytest.mark.parametrize("cells", waves(GRID), ids=lambda cells: f"{cells[0]}+{len(cells) - 1}")
def test_the_grid(lab, cells):
    run_wave(lab, cells)


@pytest.mark.parametrize("cells", waves(CALLER_GONE), ids=lambda cells: f"{cells[0]}+")
def test_the_caller_hangs_up_and_answers_at_once(lab, cells):
    run_wave(lab, cells)


@pytest.mark.parametrize("wave", range(len(waves(random_cells(0)))))
def test_random_timings(lab, timing_seed, wave):
    cells = waves(random_cells(timing_seed))[wave]
    print(f"seed {timing_seed}, wave {wave}: " + ", ".join(map(str, cells)))
    run_wave(lab, cells)
