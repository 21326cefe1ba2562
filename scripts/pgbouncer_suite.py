#!/usr/bin/env python3
"""Helper of scripts/pgbouncer-suite.sh: turns pytest results into the
outcome TSV of shared/conformance/baseline-*/ and reports on them.

    pgbouncer_suite.py outcomes FILE --junit X.xml --log L.log [--collected C] [--note N]
        Print FILE's rows (file, test, outcome, message; tab-separated) on
        stdout. The JUnit XML is the source; when pytest wrote none (killed by
        the file timeout), the `-v` log gives the tests that finished and the
        collected node ids the rest, as errors; --note says why there is no
        report. A file where no test ran gives one error row, test "(file)".
    pgbouncer_suite.py report --outcomes TSV --baseline TSV --files F,F,...
                              --min-pass N [--allow-regressions]
        Per-file passed/failed/errors/skipped, the total, every test that did
        not pass or skip, and the comparison with the baseline TSV (restricted
        to the files that ran). Exit 1 when fewer than N passed or a test that
        passed in the baseline does not pass now (unless allowed).

Standard library only. An outcome is one of passed, failed, error, skipped;
when a test has several reports (a failing call and a teardown error), the
worst counts: error, then failed, then skipped. Messages are pytest's JUnit
messages with whitespace collapsed, cut at 300 characters, as in the baseline.
"""

import argparse
import collections
import re
import sys
import xml.etree.ElementTree as ET

OUTCOMES = ("passed", "failed", "error", "skipped")
RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
MESSAGE_MAX = 300


def clean(message):
    return " ".join((message or "").split())[:MESSAGE_MAX]


def from_junit(path):
    """{test name: (outcome, message)} from a JUnit XML file."""
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        # pytest-xdist writes a nameless case for a worker that crashed
        # (pytest's INTERNALERROR): it is kept, under a name of its own.
        name = case.get("name") or "(worker crash)"
        outcome, message = "passed", ""
        for child in case:
            tag = child.tag
            if tag in ("failure", "error", "skipped"):
                kind = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                if RANK[kind] > RANK[outcome]:
                    outcome, message = kind, child.get("message", "")
        prev = results.get(name)
        if prev is None or RANK[outcome] > RANK[prev[0]]:
            results[name] = (outcome, clean(message))
    return results


VERBOSE_LINE = re.compile(
    r"\b(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+\S*?\.py::(\S+)"
)
VERBOSE_OUTCOME = {
    "PASSED": "passed",
    "XPASS": "passed",
    "FAILED": "failed",
    "ERROR": "error",
    "SKIPPED": "skipped",
    "XFAIL": "skipped",
}


def from_log(path):
    """{test name: (outcome, "")} from the `-v` lines of a pytest log."""
    results = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = VERBOSE_LINE.search(line)
                if not m:
                    continue
                outcome = VERBOSE_OUTCOME[m.group(1)]
                name = m.group(2)
                prev = results.get(name)
                if prev is None or RANK[outcome] > RANK[prev[0]]:
                    results[name] = (outcome, "")
    except FileNotFoundError:
        pass
    return results


def cmd_outcomes(args):
    results = {}
    try:
        results = from_junit(args.junit)
        if not results:
            results["(file)"] = ("error", clean(f"no test ran: {args.note}"))
    except (FileNotFoundError, ET.ParseError):
        results = from_log(args.log)
        names = []
        if args.collected:
            try:
                with open(args.collected, encoding="utf-8") as f:
                    names = [
                        line.strip().split("::", 1)[1]
                        for line in f
                        if "::" in line and not line.startswith(" ")
                    ]
            except FileNotFoundError:
                pass
        for name, (outcome, message) in list(results.items()):
            if outcome != "passed" and not message:
                results[name] = (outcome, clean(f"message not recorded: {args.note}"))
        for name in names:
            if name not in results:
                results[name] = ("error", clean(f"no result: {args.note}"))
        if not results:
            results["(file)"] = ("error", clean(f"no result: {args.note}"))
    out = sys.stdout
    for name in sorted(results):
        outcome, message = results[name]
        out.write(f"{args.file}\t{name}\t{outcome}\t{message}\n")


def read_tsv(path):
    """{(file, test): (outcome, message)}"""
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            while len(parts) < 4:
                parts.append("")
            rows[(parts[0], parts[1])] = (parts[2], parts[3])
    return rows


def counts(rows):
    c = collections.Counter(outcome for outcome, _ in rows)
    return "/".join(str(c[o]) for o in OUTCOMES)


def cmd_report(args):
    files = [f for f in args.files.split(",") if f]
    now = {k: v for k, v in read_tsv(args.outcomes).items() if k[0] in files}
    base_all = read_tsv(args.baseline) if args.baseline else {}
    base = {k: v for k, v in base_all.items() if k[0] in files}

    print("Per file (passed/failed/errors/skipped):")
    print()
    print("| file | baseline | now |")
    print("|---|---|---|")
    for f in files:
        rows_now = [v for k, v in now.items() if k[0] == f]
        rows_base = [v for k, v in base.items() if k[0] == f]
        b = counts(rows_base) if rows_base else "-"
        print(f"| {f} | {b} | {counts(rows_now)} |")
    total_now = collections.Counter(o for o, _ in now.values())
    total_base = collections.Counter(o for o, _ in base.values())
    print(
        f"| **total ({len(now)})** | "
        + (f"**{counts(base.values())}**" if base else "-")
        + f" | **{counts(now.values())}** |"
    )
    print()

    failing = sorted(k for k, (o, _) in now.items() if o in ("failed", "error"))
    print(f"Not passing ({len(failing)} failed or errors):")
    for k in failing:
        o, m = now[k]
        print(f"  {o:6} {k[0]}::{k[1]}  {m[:160]}")
    print()

    regressions, newly, other = [], [], []
    if base:
        for k in sorted(set(now) | set(base)):
            b = base.get(k, ("missing", ""))[0]
            n = now.get(k, ("missing", ""))[0]
            if b == n:
                continue
            if b == "passed":
                regressions.append((k, b, n))
            elif n == "passed":
                newly.append((k, b, n))
            else:
                other.append((k, b, n))
        print(f"Compared with {args.baseline}"
              + (f" (files run: {len(files)})" if len(files) != len({k[0] for k in base_all}) else "")
              + ":")
        print(f"  passed: baseline {total_base['passed']}, now {total_now['passed']}")
        for title, items in (
            ("Regressions (passed in the baseline, not now)", regressions),
            ("Newly passing", newly),
            ("Other outcome changes", other),
        ):
            print(f"  {title}: {len(items)}")
            for k, b, n in items:
                print(f"    {k[0]}::{k[1]}  {b} -> {n}")
        print()
    else:
        print("No baseline to compare with.")
        print()

    passed = total_now["passed"]
    status = 0
    if passed < args.min_pass:
        print(f"FAIL: {passed} passed, below the threshold SUITE_MIN_PASS={args.min_pass}")
        status = 1
    if regressions:
        if args.allow_regressions:
            print(f"note: {len(regressions)} regressions allowed (SUITE_ALLOW_REGRESSIONS=1)")
        else:
            print(f"FAIL: {len(regressions)} tests that passed in the baseline do not pass now")
            status = 1
    if status == 0:
        print(
            f"OK: {passed} passed (threshold {args.min_pass}), "
            + (f"{len(regressions)} regressions (allowed)" if regressions else "no regressions")
        )
    print(
        f"{total_now['passed']} passed, {total_now['failed']} failed, "
        f"{total_now['error']} errors, {total_now['skipped']} skipped"
    )
    return status


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("outcomes")
    o.add_argument("file")
    o.add_argument("--junit", required=True)
    o.add_argument("--log", required=True)
    o.add_argument("--collected")
    o.add_argument("--note", default="no JUnit report")
    r = sub.add_parser("report")
    r.add_argument("--outcomes", required=True)
    r.add_argument("--baseline", default="")
    r.add_argument("--files", required=True)
    r.add_argument("--min-pass", type=int, default=94)
    r.add_argument("--allow-regressions", action="store_true")
    args = p.parse_args()
    if args.cmd == "outcomes":
        cmd_outcomes(args)
        return 0
    return cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
