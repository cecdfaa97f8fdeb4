"""Results as markdown (bench/RESULTS.md, committed) and a PNG plot of rate vs. failures and
post-dial delay (bench/RESULTS.png; matplotlib when installed, else bench/png.py)."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from . import figures

BENCH = Path(__file__).resolve().parent
RESULTS_MD = BENCH / "RESULTS.md"
RESULTS_PNG = BENCH / "RESULTS.png"
COLORS = {"python": (31, 119, 180), "native": (255, 127, 14), "direct": (44, 160, 44)}
NAMES = {"python": "(a) Python KEMI", "native": "(b) native cfg", "direct": "(c) no proxy"}


def machine() -> dict:
    def run(cmd):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return res.stdout or res.stderr
        except OSError:
            return ""
    cpu = {}
    for line in run(["lscpu"]).splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("Model name", "CPU(s)", "Hypervisor vendor", "Thread(s) per core"):
            cpu[key.strip()] = value.strip()
    versions = {
        "kamailio": run(["/usr/sbin/kamailio", "-v"]).splitlines()[:1],
        "rtpengine": run(["/usr/bin/rtpengine", "--version"]).strip().splitlines()[:1],
        "sipp": [ln.strip() for ln in run(["/usr/bin/sipp", "-v"]).splitlines() if ln.strip()][:1],
    }
    return {"uname": " ".join(platform.uname()), "lscpu": cpu,
            "versions": {k: (v[0] if v else "") for k, v in versions.items()}}


def tree_state() -> dict:
    """Which routing is measured: the commit, and uncommitted changes under routing/ and
    kamailio/ (the work tree is what Kamailio loads)."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(BENCH.parent), *args], capture_output=True,
                                  text=True, timeout=10).stdout
        except OSError:
            return ""
    dirty = [ln for ln in git("status", "--porcelain", "--", "routing", "kamailio").splitlines()
             if ln.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "subject": git("log", "-1", "--format=%s").strip(),
            "uncommitted": [line[3:] for line in dirty]}


def _fmt(v, unit=""):
    if v is None:
        return "–"
    return f"{v:g}{unit}" if isinstance(v, (int, float)) else str(v)


def _spread(sp: dict | None) -> str:
    if not sp:
        return "–"
    return f"{_fmt(sp.get('min'))} / {_fmt(sp.get('median'))} / {_fmt(sp.get('max'))}"


def _p(d: dict | None, key: str) -> str:
    return _fmt((d or {}).get(key))


def markdown(res: dict, json_path: Path | None = None) -> str:
    m = res.get("machine", {})
    cpu = m.get("lscpu", {})
    f1 = res.get("fig1", {})
    lines = ["# Benchmark results (latest run)", "",
             f"Run {res.get('started', '?')}, {res.get('elapsed_s', '?')} s, "
             f"`.venv/bin/python -m bench run`"
             f"{' --quick' if res.get('config', {}).get('quick') else ''}; "
             f"raw numbers in `{json_path.name if json_path else 'bench/results/*.json'}` "
             "(bench/results/, not committed). What each figure means: bench/README.md.", "",
             f"Machine: {cpu.get('CPU(s)', '?')} × {cpu.get('Model name', '?')} "
             f"({cpu.get('Hypervisor vendor', 'bare metal')} VM), `{m.get('uname', '?')}`; "
             f"{m.get('versions', {}).get('kamailio', '')}; "
             f"{m.get('versions', {}).get('rtpengine', '')}; "
             f"{m.get('versions', {}).get('sipp', '')}. Everything (SIPp agents, Kamailio, "
             "rtpengine, PostgreSQL) shares the same cores on loopback.", ""]
    tree = res.get("routing_tree", {})
    if tree:
        lines += [f"Routing measured: commit `{tree.get('commit')}` ({tree.get('subject')})"
                  + (f", with uncommitted changes in {', '.join(tree['uncommitted'])}"
                     if tree.get("uncommitted") else ", clean tree") + ".", ""]
    notes = sorted({s.get("note", "").split("also running: ")[1]
                    for f in res.get("fig1", {}).values() for s in f.get("steps", [])
                    if "also running: " in s.get("note", "")})
    if notes:
        lines += [f"**Other load on the machine during some steps: {'; '.join(notes)}** "
                  "(the numbers of those steps are lower than on an idle machine).", ""]
    conf = res.get("config", {})
    lines += [f"Load steps: {conf.get('step_seconds')} s each; desk answers after "
              f"{conf.get('ring_ms')} ms (the mobile rings meanwhile, then gets CANCEL); calls "
              f"held {conf.get('hold_ms')} ms, then BYE; {conf.get('subscribers')} subscribers "
              f"dialled in turn; Kamailio {conf.get('kamailio_children')} UDP workers.", ""]

    lines += ["## 1. Max sustainable calls per second (< 0.1 % failed)", "",
              "| target | max cps | first failing cps | 180 p50 / p99 at max (ms) | "
              "CPU ms per call at max: kamailio / rtpengine / postgres / sipp |",
              "|---|---|---|---|---|"]
    for key in ("python", "native", "direct"):
        f = f1.get(key)
        if not f:
            continue
        at = f.get("at_max") or {}
        c = at.get("cpu") or {}
        cpu_cells = " / ".join(_p(c.get(g), "ms_per_call")
                               for g in ("kamailio", "rtpengine", "postgres", "sipp"))
        first = "not reached (cap)" if f.get("capped") else _fmt(f.get("first_failed_cps"))
        max_cell = f"≥ {_fmt(f['max_cps'])}" if f.get("capped") else _fmt(f["max_cps"])
        lines.append(f"| {NAMES[key]} | {max_cell} | {first} | "
                     f"{_p(at.get('ring_ms'), 'p50')} / {_p(at.get('ring_ms'), 'p99')} | "
                     f"{cpu_cells} |")
    a, b, c = (f1.get(k, {}).get("max_cps") for k in ("python", "native", "direct"))
    ratios = []
    if a and b:
        ratios.append(f"**a/b = {a / b:.2f}** (target ≥ 0.9: {'met' if a / b >= 0.9 else 'MISSED'})")
    if a and c:
        capped = f1.get("direct", {}).get("capped")
        ratios.append(f"**a/c = {a / c:.2f}**{' (c capped: an upper bound)' if capped else ''}")
    if ratios:
        lines += ["", "; ".join(ratios) + "."]
    conf = res.get("config", {})
    if conf.get("repeats", 1) > 1:
        lines += ["", f"Method: each rate run {conf['repeats']} times for {conf.get('step_seconds')} s "
                  f"after a {conf.get('warmup_s')} s warm-up; sustained when every run had < 0.1 % "
                  f"calls not served (failed or refused) and a 180 p99 under "
                  f"{_fmt(conf.get('p99_limit_ms'))} ms. Spread of the runs at the max "
                  "(min / median / max):", "",
                  "| target | placed cps | 180 p99 ms | kamailio CPU ms/call | rtpengine CPU ms/call |",
                  "|---|---|---|---|---|"]
        for key in ("python", "native", "direct"):
            sp = (f1.get(key) or {}).get("spread_at_max") or {}
            if not sp:
                continue
            cpu_sp = sp.get("cpu_ms_per_call", {})
            lines.append(f"| {NAMES[key]} | {_spread(sp.get('achieved_cps'))} | "
                         f"{_spread(sp.get('ring_p99_ms'))} | {_spread(cpu_sp.get('kamailio'))} | "
                         f"{_spread(cpu_sp.get('rtpengine'))} |")
    eff = res.get("fig1b")
    if eff:
        lines += ["", f"### 1b. CPU per call at the same rate ({_fmt(eff['rate'])} cps, "
                  "min / median / max of the runs)", "",
                  "| routing | kamailio ms | rtpengine ms | postgres ms | sipp ms |",
                  "|---|---|---|---|---|"]
        for key in ("python", "native"):
            c = eff.get(key, {}).get("cpu_ms_per_call", {})
            lines.append(f"| {NAMES[key]} | " + " | ".join(
                _spread(c.get(g)) for g in ("kamailio", "rtpengine", "postgres", "sipp")) + " |")
        ratio = eff.get("kamailio_ratio")
        if ratio:
            lines += ["", f"**Kamailio CPU per call, python / native = {ratio:.2f}** (target ≤ 1.15: "
                      f"{'met' if ratio <= 1.15 else 'MISSED'})."]
    lines += ["", "Every step of the search:", "",
              "| target | asked cps | placed cps | calls | failed | retrans | 180 p99 ms | sustained |",
              "|---|---|---|---|---|---|---|---|"]
    for key in ("python", "native", "direct"):
        for s in (f1.get(key) or {}).get("steps", []):
            lines.append(f"| {key} | {_fmt(s['rate'])} | {_fmt(s['achieved_cps'])} | "
                         f"{s['created']} | {s['failed']} | {s['retransmissions']} | "
                         f"{_p(s.get('ring_ms'), 'p99')} | {'yes' if s['sustained'] else 'no'} |")

    f7 = res.get("fig7") or {}
    if f7:
        lines += ["", "## 7. Goodput against offered load (overload control's ceiling at the max)", "",
                  "Completed calls per second (min / median / max of the runs); the excess gets 503 "
                  "with Retry-After (docs/overload.md); 'left' is what remained 60 s after the load "
                  "stopped, without restarting anything.", "",
                  "| routing | offered | goodput cps | share of max | refused | failed | left (sessions/dialogs) |",
                  "|---|---|---|---|---|---|---|"]
        for key, f in f7.items():
            for pt in f.get("points", []):
                left = ", ".join(f"{e.get('rtpengine_sessions')}/{e.get('dialogs')}"
                                 for e in pt.get("left_after", []))
                lines.append(f"| {key} | {pt['multiple']}× = {_fmt(pt['offered_cps'])} | "
                             f"{_spread(pt['goodput_cps'])} | {_spread(pt['goodput_share_of_max'])} | "
                             f"{_spread(pt['refused'])} | {_spread(pt['failed'])} | {left} |")
    f8 = res.get("fig8") or {}
    if f8:
        lines += ["", "## 8. Cold start under load", "",
                  "Kamailio restarted while half of the max is offered; the subscriber cache starts "
                  "empty. 'Served again after': from the restart to the first second in which calls "
                  "rang at 90 % of the offered rate (target ≤ 5 s). 'Last failure after': the last "
                  "second SIPp counted a failed call, which it does only when its 8 s reply timeout "
                  "runs out (the outage plus that timeout).", "",
                  "| routing | offered cps | restart s | served again after s | last failure after s | "
                  "failed calls | DB xact/s before / first 5 s after |",
                  "|---|---|---|---|---|---|---|"]
        for key, f in f8.items():
            lines.append(f"| {key} | {_fmt(f['rate'])} | {_fmt(f['restart_s'])} | "
                         f"{_fmt(f.get('service_back_after_s'))} | "
                         f"{_fmt(f['failures_stop_after_s'])} | {f['failed']} | "
                         f"{_fmt(f['db_xact_per_s_before'])} / {_fmt(f['db_xact_per_s_first_5s_after'])} |")

    lines += ["", "## 2. Delay the proxy adds (INVITE in → INVITE out, per branch)", "",
              "From packet timestamps on lo (dumpcap). Rates are 25 % and 75 % of (1a) for both "
              "routings. 'rtpengine' is the time the worker waited for the two per-branch offers "
              "(ng round trips seen on the wire); 'rest' is everything else.", "",
              "| routing | load | cps | desk p50 / p99 ms | mobile p50 / p99 ms | "
              "rtpengine p50 / p99 ms | rest p50 / p99 ms | failed |",
              "|---|---|---|---|---|---|---|---|"]
    for d in res.get("fig2", []):
        dm = d["delay_ms"]
        lines.append(
            f"| {d['routing']} | {d['load']} | {_fmt(d['rate'])} | "
            f"{_p(dm.get('desk'), 'p50')} / {_p(dm.get('desk'), 'p99')} | "
            f"{_p(dm.get('mobile'), 'p50')} / {_p(dm.get('mobile'), 'p99')} | "
            f"{_p(dm.get('rtpengine_wait'), 'p50')} / {_p(dm.get('rtpengine_wait'), 'p99')} | "
            f"{_p(dm.get('proxy_rest'), 'p50')} / {_p(dm.get('proxy_rest'), 'p99')} | "
            f"{d['step']['failed']} |")
    py75 = [d for d in res.get("fig2", []) if d["routing"] == "python" and d["load"] == "75%"]
    if py75:
        worst = max(_num(py75[0]["delay_ms"].get(k, {}).get("p99")) for k in ("desk", "mobile"))
        lines += ["", f"Target: p99 ≤ 5 ms at 75 % load (python): **{worst:g} ms, "
                      f"{'met' if worst <= 5 else 'MISSED'}**."]

    lines += ["", "## 3. Handoff", ""]
    fig3 = res.get("fig3")
    if not isinstance(fig3, dict) or "desk_to_mobile" not in fig3:
        fig3 = figures.handoff_figures()
    if isinstance(fig3, dict) and "desk_to_mobile" in fig3:
        lines += [f"From `python -m bench.handoff_bench` ({fig3.get('machine', {}).get('when', '?')}); "
                  "see docs/handoff.md for what each column means.", "",
                  "| direction | handoffs | failed | far-end gap ms (median / p99 / max) | "
                  "lost packets | answer → media ms (median / p99) | "
                  "proxy switch ms (median / p99) |", "|---|---|---|---|---|---|---|"]
        for name in ("desk_to_mobile", "mobile_to_desk"):
            r = fig3[name]
            g, a, sw = r["gap_ms"], r["answer_to_media_ms"], r.get("proxy_switch_ms") or {}
            lines.append(f"| {name.replace('_', ' ')} | {r['handoffs']} | {r['failed']} | "
                         f"{g['median']:.1f} / {g['p99']:.1f} / {g['max']:.1f} | "
                         f"{r['lost_packets_total']} | {a['median']:.1f} / {a['p99']:.1f} | "
                         f"{_fmt(sw.get('median'))} / {_fmt(sw.get('p99'))} |")
    else:
        lines.append(f"**{fig3}**")

    lines += ["", "## 4. Memory per concurrent twinned call", "",
              "| routing | concurrent calls (active dialogs) | Kamailio shm at 0 / at N (MB) | "
              "shm per call | rtpengine RSS at 0 / at N (MB) | RSS per call | rtpengine sessions at N |",
              "|---|---|---|---|---|---|---|"]
    for key, f in res.get("fig4", {}).items():
        lines.append(
            f"| {key} | {f['at_n']['active_dialogs']} | "
            f"{f['at_0']['shm_bytes'] / 2**20:.2f} / {f['at_n']['shm_bytes'] / 2**20:.2f} | "
            f"{f['kamailio_shm_per_call_bytes'] / 1024:.1f} kB | "
            f"{f['at_0']['rtpengine_rss_kb'] / 1024:.1f} / {f['at_n']['rtpengine_rss_kb'] / 1024:.1f} | "
            f"{f['rtpengine_rss_per_call_kb']:g} kB | {f['at_n']['rtpengine_sessions']} |")

    lines += ["", "rtpengine keeps memory it once allocated: its RSS per call is meaningful only for "
              "the first series after rtpengine started (python, measured first); later rows "
              "reuse that memory and show ~0. Kamailio shm is exact (real_used).", "",
              "## 5. Database round trips per twinned INVITE", ""]
    for key, f in res.get("fig5", {}).items():
        lines.append(f"- **{key}** ({f['method']}, {f['calls_per_pass']} calls per pass to "
                     "distinct subscribers):")
        for phase in ("cold", "warm"):
            e = f.get(phase, {})
            kinds = ", ".join(f"{k} {v:g}" for k, v in sorted(e.get("per_invite", {}).items()))
            lines.append(f"  - {phase}: routing's own statements (in SIP workers) "
                         f"**{_fmt(e.get('hot_path_per_invite'))}** per INVITE; all statements "
                         f"by kind: {kinds or '–'}; xact_commit per INVITE "
                         f"{_fmt(e.get('xact_commit_per_invite'))}")
    lines += ["", "Cold = first call to each subscriber after the cache was emptied (Python: "
              "the NOTIFY a twinctl change sends; native: htable.flush). Warm = the same "
              "subscribers again after three passes (the Python cache is per worker, so a "
              "subscriber is cached once per worker). Dialog writes come from the dialog "
              "module's db_mode=2 timer, off the SIP hot path."]

    lines += ["", "## 6. Leaks after every run", "",
              f"Checked after each run: rtpengine `list` empty, `dlg.list` empty (waited up to "
              f"12 s: tm and the dialog module keep ended calls ~5 s), Kamailio shm growth ≤ "
              f"{figures.SHM_GROWTH_BOUND // 1024} kB over the level before the run series.", "",
              "| run | sustained | rtpengine sessions left | dialogs left | shm growth kB | ok |",
              "|---|---|---|---|---|---|"]
    for e in res.get("fig6", []):
        lines.append(f"| {e['run']} | {'yes' if e['sustained'] else 'no (overload)'} | "
                     f"{e['rtpengine_sessions']} | {e['dialogs']} | "
                     f"{e['shm_growth_bytes'] / 1024:.0f} | {'yes' if e['ok'] else 'NO'} |")
    sustained = [e for e in res.get("fig6", []) if e["sustained"]]
    bad = [e for e in sustained if not e["ok"]]
    lines += ["", f"Sustained runs with something left: **{len(bad)} of {len(sustained)}**. "
              "Overloaded runs (calls the caller gave up on) are listed for what they left, then "
              "cleared before the next run."]
    lines += ["", f"![rate vs failures and post-dial delay]({RESULTS_PNG.name})", ""]
    return "\n".join(lines)


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) else float("nan")


def series(res: dict) -> dict[str, list[tuple[float, float, float]]]:
    """routing -> [(asked cps, failed %, 180 p99 ms)] over every figure-1 step."""
    out = {}
    for key, f in res.get("fig1", {}).items():
        pts = sorted((s["rate"], 100 * s["failure_ratio"], _num(s.get("ring_ms", {}).get("p99")))
                     for s in f.get("steps", []))
        out[key] = pts
    return out


def plot(res: dict, path: Path, log=print) -> bool:
    data = series(res)
    if not data:
        return False
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from . import png
        png.plot(data, COLORS, path)
        log(f"matplotlib not installed: wrote {path.name} with the built-in PNG writer "
            "(no text; colours: blue python, orange native, green no proxy; top failed %, "
            "bottom 180 p99 ms, both against asked cps)")
        return True
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for key, pts in data.items():
        color = tuple(c / 255 for c in COLORS[key])
        ax1.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=NAMES[key])
        ax2.plot([p[0] for p in pts], [p[2] for p in pts], "o-", color=color, label=NAMES[key])
    ax1.axhline(0.1, color="grey", linestyle=":", label="0.1 % limit")
    ax1.set_ylabel("failed calls (%)")
    ax1.set_yscale("symlog", linthresh=0.1)
    ax2.set_ylabel("INVITE → 180 p99 (ms)")
    ax2.set_yscale("log")
    ax2.set_xlabel("asked rate (calls per second)")
    ax1.legend()
    ax1.set_title("Twin ring: rate vs. failures and post-dial delay")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(res: dict, json_path: Path | None = None, log=print) -> None:
    RESULTS_MD.write_text(markdown(res, json_path) + "\n")
    if plot(res, RESULTS_PNG, log):
        (BENCH / "results").mkdir(exist_ok=True)
        (BENCH / "results" / RESULTS_PNG.name).write_bytes(RESULTS_PNG.read_bytes())
    log(f"wrote {RESULTS_MD.relative_to(BENCH.parent)} and {RESULTS_PNG.name}")
