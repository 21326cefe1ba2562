#!/usr/bin/env python3
"""Side-by-side benchmark: direct PostgreSQL, PgBouncer and pgsluice.

Called by benches/compare.sh (which installs packages and builds pgsluice);
see benches/README.md. Standard library only (Python >= 3.9).

Environment:
  PGSLUICE_BIN  pgsluice binary (unset or missing: its column reads 'failed')
  DURATION      seconds per pgbench run (default 5)
  ROUNDS        times each scenario is run per target, alternating (default 2)
  SCALE         pgbench scale (default 10)
  IDLE_CLIENTS  idle clients for S6 (default 5000)
  SCENARIOS     comma list of scenario ids to run, e.g. S1,S2 (default all)
  OUT           markdown output (default benches/results/latest.md)
  KEEP_TMP=1    keep the temp dir (logs, configs, pgbench outputs)
  MAX_SECONDS   skip the remaining runs after this many seconds (default 1200)
  WAIT_QUIET    wait up to N seconds for the 1-minute load average to fall below 0.7
  TLS=1         clients reach both poolers over TLS (see pybench/procs.py); S6 too
  PGBOUNCER_BIN PgBouncer binary (compare.sh builds 1.25.2 and sets it)
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybench import pgbench, pgwire  # noqa: E402
from pybench.procs import Session, log, pgbouncer_bin, rss_bytes  # noqa: E402

TARGETS = ("direct", "pgbouncer", "pgsluice")
POOLERS = ("pgbouncer", "pgsluice")


@dataclass
class Scenario:
    sid: str
    label: str
    args: list
    latency_log: bool = False
    extra_s: int = 0   # added to DURATION: pgbench's -T clock includes connecting


SCENARIOS = [
    Scenario("S1", "S1 `-S -M simple -c 1`", ["-S", "-M", "simple", "-c", "1", "-j", "1"], True),
    Scenario("S1", "S1 `-S -M extended -c 1`", ["-S", "-M", "extended", "-c", "1", "-j", "1"], True),
    Scenario("S1", "S1 `-S -M prepared -c 1`", ["-S", "-M", "prepared", "-c", "1", "-j", "1"], True),
    Scenario("S2", "S2 `-S -M simple -c 50 -j 2`", ["-S", "-M", "simple", "-c", "50", "-j", "2"]),
    Scenario("S2", "S2 `-S -M extended -c 50 -j 2`", ["-S", "-M", "extended", "-c", "50", "-j", "2"]),
    Scenario("S2", "S2 `-S -M prepared -c 50 -j 2`", ["-S", "-M", "prepared", "-c", "50", "-j", "2"]),
    Scenario("S3", "S3 TPC-B `-c 20 -j 2`", ["-M", "simple", "-c", "20", "-j", "2"]),
    Scenario("S4", "S4 `-S -C -c 20 -j 2` (connect per txn)", ["-S", "-C", "-M", "simple", "-c", "20", "-j", "2"]),
    Scenario("S5", "S5 `-S -c 1000 -j 2` (pool 20)", ["-S", "-M", "simple", "-c", "1000", "-j", "2"], True,
             extra_s=5),  # 1000 direct backends take ~2.5 s to connect here
]


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def aggregate(results: list[pgbench.Result]) -> pgbench.Result:
    """Mean over rounds; failed if any round failed."""
    r0 = results[0]
    bad = [r for r in results if not r.ok]
    out = pgbench.Result(r0.target, not bad)
    if bad:
        out.error = bad[0].error
    def mean(attr):
        vals = [getattr(r, attr) for r in results if getattr(r, attr) is not None]
        return statistics.fmean(vals) if vals else None
    out.tps = mean("tps")
    out.lat_avg_ms = mean("lat_avg_ms")
    out.lat_p50_ms = mean("lat_p50_ms")
    out.lat_p99_ms = mean("lat_p99_ms")
    out.cpu_us_per_txn = mean("cpu_us_per_txn")
    out.cpu_user_us_per_txn = mean("cpu_user_us_per_txn")
    out.cpu_sys_us_per_txn = mean("cpu_sys_us_per_txn")
    out.machine_us_per_txn = mean("machine_us_per_txn")
    out.sleeps_per_txn = mean("sleeps_per_txn")
    fails = [r.failed for r in results if r.failed is not None]
    out.failed = sum(fails) if fails else None
    txns = [r.txns for r in results if r.txns is not None]
    out.txns = sum(txns) if txns else None
    return out


def warm_up(session: Session, names) -> None:
    for name in names:
        t = session.targets.get(name)
        if t is not None and t.ok:
            r = pgbench.run(session, t, ["-S", "-c", "20", "-j", "2"], 1, "warmup")
            if not r.ok:
                log(f"warm-up of {name} failed: {r.error}")


def s6_idle(session: Session, pgsluice_bin: str | None, n: int) -> dict:
    """Fresh poolers; RSS before/after N idle logged-in clients."""
    out = {}
    session.ensure_postgres()
    for name in POOLERS:
        binary = pgbouncer_bin() if name == "pgbouncer" else pgsluice_bin
        t = session.start_pooler(name, binary)
        if not t.ok:
            out[name] = {"error": t.why_down()}
            continue
        warm_up(session, [name])
        time.sleep(1.0)
        before = rss_bytes(t.pid)
        socks, errors = pgwire.open_idle("127.0.0.1", t.port, session.user, session.dbname, n,
                                         tls=session.tls)
        time.sleep(2.0)
        alive = t.ok
        after = rss_bytes(t.pid) if alive else None
        # Does the pooler still serve while holding them?
        check = pgbench.run(session, t, ["-S", "-c", "2", "-j", "1"], 1, "s6check") if alive else None
        pgwire.close_all(socks)
        res = {"before": before, "after": after, "ok_clients": len(socks), "errors": len(errors),
               "first_error": errors[0] if errors else None,
               "serves": bool(check and check.ok)}
        if after is not None and socks:
            res["per_client"] = (after - before) / len(socks)
        if not alive:
            res["error"] = "pooler exited: " + t.why_down()
        out[name] = res
        log(f"S6 {name}: {len(socks)} idle clients, {len(errors)} errors, "
            f"RSS {before/1024:.0f} kB -> {(after or 0)/1024:.0f} kB")
        session.stop(t.proc)
    return out


# -- formatting ------------------------------------------------------------

def f_tps(r) -> str:
    if r is None:
        return "—"
    if not r.ok:
        return "failed"
    return f"{r.tps:,.0f}"


def f_ratio(a, b) -> str:
    if a is None or b is None or not a.ok or not b.ok or not b.tps:
        return "—"
    return f"{a.tps / b.tps:.2f}"


def f_us(v) -> str:
    return "—" if v is None else f"{v:.1f}"


def cpu_budget(rows) -> list[str]:
    """Where each transaction's CPU goes: the pooler's user and system time,
    and the whole machine's (PostgreSQL, pgbench, pooler, kernel). On a
    machine whose cores are all busy, tps = cores / machine CPU per txn, so
    this says how far a pooler's own cost can move the tps."""
    out = ["## CPU per transaction (µs): pooler user + system, and the whole machine", "",
           "| scenario | machine direct | machine PgBouncer | machine pgsluice "
           "| PgBouncer user | PgBouncer sys | pgsluice user | pgsluice sys "
           "| tps ceiling for a free pooler | pooler budget for 1.25x PgBouncer |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    cores = os.cpu_count() or 1
    for sc, agg in rows:
        d, b, s = (agg.get(t) for t in TARGETS)
        def m(r):
            return r.machine_us_per_txn if r is not None and r.ok else None
        def u(r, attr):
            return getattr(r, attr) if r is not None and r.ok else None
        # Everything but the pooler, as measured with PgBouncer in the path:
        # the tps with a pooler that cost nothing at all.
        ceiling, budget = "—", "—"
        if m(b) and u(b, "cpu_us_per_txn") is not None and m(b) > u(b, "cpu_us_per_txn"):
            rest = m(b) - u(b, "cpu_us_per_txn")
            ceiling = f"{cores * 1e6 / rest:,.0f}"
            # 1.25x PgBouncer's tps means m(b) / 1.25 machine µs per txn,
            # of which everything but the pooler takes `rest`.
            budget = f"{m(b) / 1.25 - rest:.1f}"
        out.append(f"| {sc.label} | {f_us(m(d))} | {f_us(m(b))} | {f_us(m(s))} "
                   f"| {f_us(u(b, 'cpu_user_us_per_txn'))} | {f_us(u(b, 'cpu_sys_us_per_txn'))} "
                   f"| {f_us(u(s, 'cpu_user_us_per_txn'))} | {f_us(u(s, 'cpu_sys_us_per_txn'))} "
                   f"| {ceiling} | {budget} |")
    out += ["", "Machine: busy CPU of all cores from /proc/stat (user, nice, system, irq, softirq, "
            "steal) over the run per transaction; when the cores are saturated, tps = cores x 10^6 / "
            "machine µs per txn. Ceiling: that tps if the pooler itself cost nothing, everything else "
            "as measured with PgBouncer in the path (its own utime+stime taken out). Budget: the "
            "pooler CPU per transaction (µs) at which tps would be 1.25 x PgBouncer's, the rest as "
            "measured; zero or less means no pooler can get there on this machine.", ""]
    return out


def f_cpu(r) -> str:
    if r is None or not r.ok or r.cpu_us_per_txn is None:
        return "—"
    return f"{r.cpu_us_per_txn:.1f}"


def f_lat(r) -> str:
    if r is None or not r.ok or r.lat_avg_ms is None:
        return "—"
    if r.lat_p99_ms is not None:
        return f"{r.lat_avg_ms:.3f}/{r.lat_p50_ms:.3f}/{r.lat_p99_ms:.3f}"
    return f"{r.lat_avg_ms:.3f}"


def f_failed(r) -> str:
    if r is None:
        return "—"
    return "?" if r.failed is None else str(r.failed)


def render(rows, s6, meta) -> str:
    lines = [
        "# pgsluice vs PgBouncer vs PostgreSQL",
        "",
        meta,
        "",
        "| scenario | direct tps | PgBouncer tps | pgsluice tps | pgsluice/PgBouncer | pgsluice/direct "
        "| CPU µs/txn PgBouncer | CPU µs/txn pgsluice | latency ms direct | latency ms PgBouncer "
        "| latency ms pgsluice | failed txns d/b/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    # A target that failed every scenario with one and the same error gets one line.
    down_throughout = set()
    for t in TARGETS:
        errs = {agg[t].error if not agg[t].ok else None for _, agg in rows if t in agg}
        if rows and len(errs) == 1 and None not in errs:
            down_throughout.add(t)
            notes.append(f"- {t}, every scenario: {errs.pop()}")
    for sc, agg in rows:
        d, b, s = (agg.get(t) for t in TARGETS)
        lines.append(
            f"| {sc.label} | {f_tps(d)} | {f_tps(b)} | {f_tps(s)} | {f_ratio(s, b)} | {f_ratio(s, d)} "
            f"| {f_cpu(b)} | {f_cpu(s)} | {f_lat(d)} | {f_lat(b)} | {f_lat(s)} "
            f"| {f_failed(d)}/{f_failed(b)}/{f_failed(s)} |")
        for t in TARGETS:
            r = agg.get(t)
            if r is not None and not r.ok and t not in down_throughout:
                notes.append(f"- {sc.label}, {t}: {r.error}")
    lines += ["", "Latency: avg/p50/p99 from pgbench's per-transaction log (`-l`) where "
              "logged (S1, S5), else pgbench's `latency average`. CPU: the pooler's utime+stime "
              "from /proc/PID/stat over the run, divided by the transactions pgbench counted.", ""]
    lines += cpu_budget(rows)
    if s6:
        lines += [f"## S6: RSS growth per idle client ({meta_idle(s6)})", "",
                  "| pooler | RSS before | RSS after | idle clients logged in | login errors "
                  "| bytes per idle client | still serves |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for name in POOLERS:
            r = s6.get(name, {})
            if "per_client" not in r:
                lines.append(f"| {name} | failed | | | | | |")
                notes.append(f"- S6, {name}: {r.get('error') or r.get('first_error') or 'no client logged in'}")
                continue
            lines.append(f"| {name} | {r['before']/1024:,.0f} kB | {r['after']/1024:,.0f} kB "
                         f"| {r['ok_clients']} | {r['errors']} | {r['per_client']:,.0f} "
                         f"| {'yes' if r['serves'] else 'NO'} |")
            if r["errors"]:
                notes.append(f"- S6, {name}: {r['errors']} login errors, first: {r['first_error']}")
        b, s = s6.get("pgbouncer", {}), s6.get("pgsluice", {})
        if "per_client" in b and "per_client" in s and b["per_client"] > 0:
            lines += ["", f"pgsluice/PgBouncer bytes per idle client: {s['per_client'] / b['per_client']:.2f}"]
        lines.append("")
    if notes:
        lines += ["## Failures", ""] + notes + [""]
    return "\n".join(lines)


def render_runs(raw) -> str:
    """Appendix: every run's tps, to judge the noise behind the means."""
    if not raw:
        return ""
    n = max(len(v) for _, per in raw for v in per.values())
    lines = ["", "## Every run (tps; rounds in the order they ran)", "",
             "| scenario | target | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |",
             "| --- | --- |" + " ---: |" * n]
    for sc, per in raw:
        for t in TARGETS:
            cells = [f_tps(r) for r in per.get(t, [])]
            if all(c == "failed" for c in cells):
                continue
            lines.append(f"| {sc.label} | {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_ratios(per, attr) -> list[float]:
    """pgsluice/PgBouncer of ATTR round by round (the two ran next to each
    other, so slow drift of the machine cancels out)."""
    out = []
    for b, s in zip(per.get("pgbouncer", []), per.get("pgsluice", [])):
        vb, vs = getattr(b, attr), getattr(s, attr)
        if b.ok and s.ok and vb and vs:
            out.append(vs / vb)
    return out


def geo_interval(ratios: list[float], level: float = 0.90) -> tuple[float, float, float]:
    """Geometric mean of RATIOS and a bootstrap interval for it (fixed seed:
    the same runs give the same interval)."""
    import math
    import random
    logs = [math.log(r) for r in ratios]
    rng = random.Random(12345)
    means = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(4000))
    lo = means[int((1 - level) / 2 * len(means))]
    hi = means[int((1 + level) / 2 * len(means)) - 1]
    return math.exp(statistics.fmean(logs)), math.exp(lo), math.exp(hi)


def render_paired(raw) -> str:
    """Latency of pgsluice over PgBouncer's, paired by round: how sure the
    comparison is, not only its mean (this VM's run-to-run noise is several
    per cent, more than the difference between the poolers at -c 1)."""
    rows = []
    for sc, per in raw:
        if not sc.latency_log:
            continue
        cells = []
        for attr in ("lat_p50_ms", "lat_p99_ms", "tps"):
            rs = paired_ratios(per, attr)
            if len(rs) < 2:
                cells.append("—")
                continue
            g, lo, hi = geo_interval(rs)
            better = sum(1 for r in rs if (r >= 1.0 if attr == "tps" else r <= 1.0))
            cells.append(f"{g:.3f} ({lo:.3f}–{hi:.3f}; {better}/{len(rs)})")
        for name in ("pgbouncer", "pgsluice"):
            vals = [f"{r.sleeps_per_txn:.2f}" for r in per.get(name, []) if r.sleeps_per_txn is not None]
            cells.append(" ".join(vals) or "—")
        rows.append(f"| {sc.label} | " + " | ".join(cells) + " |")
    if not rows:
        return ""
    return "\n".join([
        "", "## pgsluice/PgBouncer paired by round", "",
        "Geometric mean of the per-round ratios (each pgsluice run is compared with the "
        "PgBouncer run next to it; the two swap places every other round), a 90% bootstrap "
        "interval, and in how many rounds pgsluice was at least as good (latency <=, tps >=). "
        "Sleeps: each round's voluntary context switches of the pooler per transaction. With one "
        "client a pooler sleeps twice per transaction when every hop wakes a sleeping CPU, and "
        "about 1.5 times when the scheduler puts it on pgbench's CPU; which of the two a run gets "
        "is the scheduler's choice, and it moves latency by 5-15% for either pooler.",
        "",
        "| scenario | p50 latency | p99 latency | tps | sleeps/txn PgBouncer | sleeps/txn pgsluice |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        *rows, ""])


def meta_idle(s6) -> str:
    n = max((r.get("ok_clients", 0) for r in s6.values()), default=0)
    return f"{n} clients"


def version(argv) -> str:
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
        lines = [l.strip() for l in out.splitlines()]
        # pgsluice prints PgBouncer's form first, then its own with the build.
        own = [l for l in lines if l.startswith("pgsluice ")]
        return own[0] if own else lines[0]
    except (OSError, IndexError):
        return "?"


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    except OSError:
        return "?"


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main() -> int:
    t_start = time.monotonic()
    wait_quiet = env_int("WAIT_QUIET", 0)
    if wait_quiet and loadavg() > 0.7:
        log(f"waiting up to {wait_quiet} s for the load average to fall below 0.7")
        deadline = time.monotonic() + wait_quiet
        while loadavg() > 0.7 and time.monotonic() < deadline:
            time.sleep(5)
    load_start = loadavg()
    if load_start > 0.7:
        log(f"warning: load average {load_start:.2f} before the run: something else is using "
            f"the CPU, timing figures will be noisy (cost.sh is not affected)")
    duration = env_int("DURATION", 5)
    rounds = env_int("ROUNDS", 2)
    scale = env_int("SCALE", 10)
    idle_n = env_int("IDLE_CLIENTS", 5000)
    max_s = env_int("MAX_SECONDS", 1200)  # a hung target cannot keep the harness forever
    wanted = {s.strip().upper() for s in os.environ.get("SCENARIOS", "").split(",") if s.strip()}
    out_path = Path(os.environ.get("OUT") or Path(__file__).resolve().parent / "results" / "latest.md")
    pgsluice_bin = os.environ.get("PGSLUICE_BIN") or None
    if pgsluice_bin and not os.access(pgsluice_bin, os.X_OK):
        pgsluice_bin = None

    # SIGTERM/SIGHUP -> SystemExit, so the finally below cleans up.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))

    scenarios = [s for s in SCENARIOS if not wanted or s.sid in wanted]
    rows = []
    raw = []  # per-round results, for the appendix and the JSON file
    s6 = {}
    with Session() as session:
        session.start_postgres(scale)
        session.start_pooler("pgbouncer", pgbouncer_bin())
        sl = session.start_pooler("pgsluice", pgsluice_bin)
        if not pgsluice_bin:
            sl.error = "no pgsluice binary (build failed or not built)"
        warm_up(session, TARGETS)
        for idx, sc in enumerate(scenarios):
            per_target: dict = {t: [] for t in TARGETS}
            for rnd in range(rounds):
                # The poolers swap places every other round, so that neither
                # always runs right after the other (or after direct).
                order = TARGETS if rnd % 2 == 0 else ("direct", "pgsluice", "pgbouncer")
                for name in order:
                    if session.ensure_postgres():
                        time.sleep(2.0)
                        warm_up(session, TARGETS)
                    t = session.targets[name]
                    if name in POOLERS and t.proc is not None and not t.ok and t.error is None:
                        # A pooler that died in an earlier scenario: restart it
                        # so one crash does not fail every later scenario.
                        msg = f"{name} exited ({t.why_down()}) before {sc.label} round {rnd + 1}; restarted it"
                        log(msg)
                        session.incidents.append(msg)
                        t = session.start_pooler(name, pgbouncer_bin() if name == "pgbouncer" else pgsluice_bin)
                        warm_up(session, [name])
                    if time.monotonic() - t_start > max_s:
                        r = pgbench.Result(name, False, error=f"skipped: MAX_SECONDS={max_s} reached")
                        per_target[name].append(r)
                        continue
                    r = pgbench.run(session, t, sc.args, duration + sc.extra_s, f"{sc.sid}.{idx}.{rnd}",
                                    latency_log=sc.latency_log)
                    per_target[name].append(r)
                    status = f"{r.tps:,.0f} tps" if r.ok else f"FAILED: {r.error}"
                    cpu = f", {r.cpu_us_per_txn:.1f} µs CPU/txn" if r.cpu_us_per_txn else ""
                    log(f"{sc.label} round {rnd + 1}/{rounds} {name}: {status}{cpu}")
            rows.append((sc, {t: aggregate(v) for t, v in per_target.items()}))
            raw.append((sc, per_target))
        if (not wanted or "S6" in wanted) and time.monotonic() - t_start <= max_s:
            s6 = s6_idle(session, pgsluice_bin, idle_n)
        pg_version = version([str(session.bindir / "postgres"), "--version"])

    elapsed = time.monotonic() - t_start
    meta = (f"{time.strftime('%Y-%m-%d %H:%M')} · commit {git_rev()} · {os.cpu_count()} cores · "
            f"{platform.release()} · {pg_version} · {version([pgbouncer_bin(), '--version'])} · "
            f"{version([pgsluice_bin, '--version']) if pgsluice_bin else 'pgsluice not built'} · "
            f"pool_mode=transaction, default_pool_size=20"
            f"{' · clients over TLS (client_tls_sslmode=require, pgbench sslmode=prefer)' if session.tls else ''}"
            f" · DURATION={duration}s × ROUNDS={rounds} "
            f"(targets alternated run by run; figures are means) · scale {scale} · "
            f"run took {elapsed:.0f} s · load average {load_start:.2f} at start, {loadavg():.2f} at end")
    if load_start > 0.7:
        meta += ("\n\n**Warning: the machine was busy before the run started (load average "
                 f"{load_start:.2f}); timing figures are unreliable.**")
    if session.incidents:
        meta += ("\n\n**Interrupted: " + "; ".join(session.incidents) + ". Figures next to these "
                 "events are suspect.**")
    text = render(rows, s6, meta) + render_paired(raw) + render_runs(raw)
    json_path = out_path.with_suffix(".json")
    json_path.write_text(json.dumps({
        "meta": meta,
        "scenarios": [{"label": sc.label, "args": sc.args,
                       "runs": {t: [asdict(r) for r in v] for t, v in per.items()}}
                      for sc, per in raw],
        "s6": s6}, indent=1))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    print()
    print(text)
    log(f"wrote {out_path}")
    if os.environ.get("BENCH_START", "").isdigit():
        log(f"total including install and build: {time.time() - int(os.environ['BENCH_START']):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
