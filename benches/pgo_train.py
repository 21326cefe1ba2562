#!/usr/bin/env python3
"""Training run for the profile-guided build (scripts/build-pgo.sh).

Runs an instrumented pgsluice in front of a throwaway PostgreSQL and drives the
paths a pooler lives on: short transactions with each query protocol, one and
many clients, TPC-B, a connection per transaction and clients queueing for a
small pool. The admin console and the error paths stay untrained: PGO lays them
out as cold code, which is what they are. The pooler then stops cleanly
(SIGINT), which is when the instrumented binary writes its profile (to the
directory given to -Cprofile-generate at build time).

Usage: pgo_train.py PGSLUICE_BIN   (TRAIN_SECONDS: seconds per workload, default 3)
Standard library only; shares the benchmark's process plumbing (pybench).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pybench import pgbench  # noqa: E402
from pybench.procs import Session, log  # noqa: E402

# Weighted like the traffic a pooler sees: mostly short read transactions.
WORKLOADS = [
    ["-S", "-M", "simple", "-c", "1", "-j", "1"],
    ["-S", "-M", "extended", "-c", "1", "-j", "1"],
    ["-S", "-M", "prepared", "-c", "1", "-j", "1"],
    ["-S", "-M", "simple", "-c", "50", "-j", "2"],
    ["-S", "-M", "extended", "-c", "50", "-j", "2"],
    ["-S", "-M", "prepared", "-c", "50", "-j", "2"],
    ["-M", "simple", "-c", "20", "-j", "2"],
    ["-S", "-C", "-M", "simple", "-c", "20", "-j", "2"],
    ["-S", "-M", "simple", "-c", "200", "-j", "2"],
]

# Then with read/write splitting on (one host: the standby pool's servers are
# the primary's), so that the classifier and its cache are laid out as hot
# code too.
SPLIT_WORKLOADS = [
    ["-S", "-M", "simple", "-c", "1", "-j", "1"],
    ["-S", "-M", "extended", "-c", "1", "-j", "1"],
    ["-S", "-M", "prepared", "-c", "1", "-j", "1"],
    ["-M", "simple", "-c", "20", "-j", "2"],
]

def main() -> int:
    if len(sys.argv) != 2 or not os.access(sys.argv[1], os.X_OK):
        print(__doc__, file=sys.stderr)
        return 2
    binary = sys.argv[1]
    seconds = int(os.environ.get("TRAIN_SECONDS") or 3)
    with Session() as session:
        session.start_postgres(scale=1)
        t = session.start_pooler("pgsluice", binary)
        if not t.ok:
            log(f"the instrumented pgsluice did not start: {t.why_down()}")
            return 1
        for options, workloads in (("", WORKLOADS), ("read_write_split=1", SPLIT_WORKLOADS)):
            if options:
                # A new pooler (the first writes its profile as it stops).
                os.environ["PGSLUICE_DB_OPTIONS"] = options
                t = session.start_pooler("pgsluice", binary)
                if not t.ok:
                    log(f"the instrumented pgsluice did not start: {t.why_down()}")
                    return 1
            for args in workloads:
                r = pgbench.run(session, t, args, seconds, "pgo")
                if not r.ok:
                    log(f"training run pgbench {' '.join(args)} failed: {r.error}")
                    return 1
                log(f"trained {options or 'plain'}: pgbench {' '.join(args)}: {r.tps:,.0f} tps")
        # Session.close stops the pooler with SIGINT and waits: the profile is
        # written as it exits.
    return 0


if __name__ == "__main__":
    sys.exit(main())
