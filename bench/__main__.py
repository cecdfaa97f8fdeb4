"""The twinning benchmark, end to end: `.venv/bin/python -m bench run`.

Starts the benchmark's private stack (bench/site-bench.toml, 127.0.3.x), seeds its subscribers,
measures figures 1-6 (see bench/README.md) for the Python KEMI routing, the native-cfg baseline
and SIPp without a proxy, writes bench/results/bench-<time>.json, bench/RESULTS.md and a PNG
plot, and stops the stack again (unless --keep-up).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from twinning import config as site_config

from . import capture, dbstats, figures, report
from . import testbed as tb

RESULTS = Path(__file__).resolve().parent / "results"
LOGS = Path("/tmp/twinning-bench-logs")


def run(quick: bool = False, keep_up: bool = False, step_seconds: float | None = None,
        only: set[str] | None = None, repeats: int | None = None) -> dict:
    started = time.monotonic()
    cfg = tb.load_config()
    only = only or {"python", "native", "direct"}

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", flush=True)

    LOGS.mkdir(parents=True, exist_ok=True)
    # The full method: 30 s steps after a 5 s warm-up, each rate three times, the p99
    # post-dial delay bounded; --quick: one short run per rate, for a rough look.
    repeats = repeats or (1 if quick else 3)
    warmup_s = 0.0 if quick else 5.0
    p99_ms = None if quick else figures.P99_LIMIT_MS
    r = figures.Run(cfg, LOGS, step_seconds=step_seconds or (5.0 if quick else 30.0), log=log)
    out: dict = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "machine": report.machine(), "config": {
                     "site": str(tb.SITE.relative_to(tb.BENCH.parent)),
                     "kamailio_children": cfg.children, "subscribers": tb.SUBSCRIBERS,
                     "step_seconds": r.step_seconds, "hold_ms": r.hold_ms,
                     "ring_ms": r.ring_ms, "quick": quick, "repeats": repeats,
                     "warmup_s": warmup_s, "p99_limit_ms": p99_ms}}
    out["routing_tree"] = report.tree_state()
    log("bench stack up (127.0.3.x)")
    tb.up(cfg, "python", log=log)
    use_statements = dbstats.enable(cfg, log=log)
    tb.seed(cfg, log=log)
    out["fig1"], out["fig2"], out["fig4"], out["fig5"] = {}, [], {}, {}
    out["fig7"], out["fig8"] = {}, {}
    out["fig3"] = figures.handoff_figures()
    try:
        for routing in ("python", "native"):
            if routing not in only:
                continue
            log(f"== {routing} routing")
            r.routing_up(routing)
            out["fig1"][routing] = figures.max_rate(r, routing, start=60 if quick else 50,
                                                    cap=2000, repeats=repeats,
                                                    warmup_s=warmup_s, p99_ms=p99_ms)
            log(f"   figure 1: {routing} sustains {out['fig1'][routing]['max_cps']:g} cps")
            basis = out["fig1"].get("python", out["fig1"][routing])["max_cps"]
            for label, share in (("25%", 0.25), ("75%", 0.75)):
                if basis and not capture.available():
                    log("   figure 2 skipped: dumpcap is missing (apt-get install tshark)")
                    break
                if basis:
                    out["fig2"].append(figures.proxy_delay(r, routing, round(basis * share),
                                                           label))
            out["fig4"][routing] = figures.memory(r, routing, calls=200 if quick else 500,
                                                  hold_s=15 if quick else 30)
            log(f"   figure 4: {out['fig4'][routing]['kamailio_shm_per_call_bytes']} B shm, "
                f"{out['fig4'][routing]['rtpengine_rss_per_call_kb']} kB rtpengine RSS per call")
            out["fig5"][routing] = figures.db_round_trips(r, routing, use_statements,
                                                          n=50 if quick else 100)
        maxes = {k: out["fig1"][k]["max_cps"] for k in ("python", "native")
                 if k in out["fig1"] and out["fig1"][k]["max_cps"]}
        if len(maxes) == 2:
            rate = round(0.75 * min(maxes.values()))
            log(f"== figure 1b: CPU per call, python and native at {rate} cps")
            out["fig1b"] = figures.efficiency(r, rate, repeats)
        for routing, best in maxes.items():
            log(f"== figure 7: {routing} goodput up to 4x {best:g} cps")
            r.routing_up(routing)
            out["fig7"][routing] = figures.goodput(r, routing, best, repeats=repeats)
            log(f"== figure 8: {routing} cold start under {round(best / 2)} cps")
            out["fig8"][routing] = figures.cold_start(r, routing, round(best / 2),
                                                      duration=25 if quick else 40)
        if "direct" in only:
            log("== SIPp caller -> answering agent, no proxy")
            out["fig1"]["direct"] = figures.max_rate(r, "direct", start=400, cap=6400,
                                                     warmup_s=warmup_s)
    finally:
        out["fig6"] = r.checks
        out["elapsed_s"] = round(time.monotonic() - started, 1)
        if not keep_up:
            log("bench stack down")
            tb.down(cfg, log=log)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"bench-{stamp}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "latest.json").write_text(json.dumps(out, indent=2) + "\n")
    report.write(out, json_path=path, log=log)
    log(f"done in {out['elapsed_s']:.0f}s: {path}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run every figure end to end (about 12 minutes)")
    p_run.add_argument("--quick", action="store_true",
                       help="shorter steps and fewer calls (a few minutes; rougher numbers)")
    p_run.add_argument("--keep-up", action="store_true", help="leave the bench stack running")
    p_run.add_argument("--step-seconds", type=float, help="length of one load step")
    p_run.add_argument("--repeats", type=int, help="runs per rate (default 3; --quick 1)")
    p_run.add_argument("--only", choices=("python", "native", "direct"), action="append",
                       help="measure only these targets (repeatable)")
    p_report = sub.add_parser("report", help="rewrite RESULTS.md and the plot from a JSON file")
    p_report.add_argument("json", nargs="?", default=str(RESULTS / "latest.json"))
    sub.add_parser("down", help="stop the bench stack")
    p_smoke = sub.add_parser("smoke", help="one low-rate load step against the stack of "
                                           "$TWIN_CONFIG, correctness only (the test suite's)")
    p_smoke.add_argument("--logdir", required=True, help="where the agents' logs go")
    p_smoke.add_argument("--rate", type=float, default=5, help="calls per second")
    p_smoke.add_argument("--seconds", type=float, default=5, help="length of the step")
    p_smoke.add_argument("--subscribers", type=int, default=10, help="subscribers dialled")
    p_native = sub.add_parser("check-native", help="kamailio -c on the native-cfg baseline, "
                                                   "rendered for the stack of $TWIN_CONFIG")
    p_native.add_argument("--scratch", required=True, help="folder to render the cfg into")
    args = parser.parse_args(argv)
    if args.command == "run":
        if args.repeats is not None and args.repeats < 1:
            parser.error("--repeats must be 1 or more")
        run(args.quick, args.keep_up, args.step_seconds, set(args.only) if args.only else None,
            args.repeats)
    elif args.command == "report":
        report.write(json.loads(Path(args.json).read_text()), json_path=Path(args.json))
    elif args.command == "down":
        tb.down(tb.load_config())
    elif args.command in ("smoke", "check-native"):
        # Here, not at the top: the lab's roles are read from $TWIN_CONFIG's stack on import.
        from . import smoke
        if args.command == "check-native":
            return smoke.check_native_cli(site_config.load(), args.scratch)
        return smoke.smoke_cli(site_config.load(), args.logdir, args.rate, args.seconds,
                               args.subscribers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
