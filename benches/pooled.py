#!/usr/bin/env python3
"""Pool the paired rounds of several compare.sh runs: pgsluice/PgBouncer.

Usage: benches/pooled.py benches/results/A.json benches/results/B.json ...

One run of ten rounds cannot settle a difference of a few per cent at one
client (the scheduler's placement moves a run by 5-15%), so this takes the
rounds of every run given, scenario by scenario (matched by label), and prints
the geometric mean of pgsluice's value over PgBouncer's in the same round with
a 90% bootstrap interval, for latency (p50, p99), tps and the pooler's user
and system CPU per transaction. Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import geo_interval, paired_ratios  # noqa: E402

ATTRS = [
    ("lat_p50_ms", "p50", False),
    ("lat_p99_ms", "p99", False),
    ("tps", "tps", True),
    ("cpu_user_us_per_txn", "user CPU", False),
    ("cpu_sys_us_per_txn", "sys CPU", False),
]


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    pooled: dict[str, dict[str, list]] = {}
    for path in sys.argv[1:]:
        data = json.loads(Path(path).read_text())
        for sc in data["scenarios"]:
            per = pooled.setdefault(sc["label"], {"pgbouncer": [], "pgsluice": []})
            runs = sc["runs"]
            # Pair within a file only: a round's two runs ran next to each other.
            n = min(len(runs.get("pgbouncer", [])), len(runs.get("pgsluice", [])))
            for name in ("pgbouncer", "pgsluice"):
                per[name] += [SimpleNamespace(**r) for r in runs[name][:n]]
    print(f"{len(sys.argv) - 1} runs; pgsluice/PgBouncer, geometric mean of paired rounds "
          "(90% bootstrap interval; rounds where pgsluice was at least as good)\n")
    print("| scenario | rounds | " + " | ".join(a[1] for a in ATTRS) + " |")
    print("| --- | ---: |" + " ---: |" * len(ATTRS))
    for label, per in pooled.items():
        cells = []
        rounds = 0
        for attr, _, higher_better in ATTRS:
            rs = paired_ratios(per, attr)
            rounds = max(rounds, len(rs))
            if len(rs) < 2:
                cells.append("—")
                continue
            g, lo, hi = geo_interval(rs)
            good = sum(1 for r in rs if (r >= 1.0 if higher_better else r <= 1.0))
            cells.append(f"{g:.3f} ({lo:.3f}–{hi:.3f}; {good}/{len(rs)})")
        print(f"| {label} | {rounds} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
