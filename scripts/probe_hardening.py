"""Run every hostile input of issue 16 (tests/hardening_cases.py) as its own `edgeconv`
process; print exit code, the error line, wall time and peak memory (resource.getrusage of
the child) as a Markdown table.

    python scripts/probe_hardening.py [--filter TEXT]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hardening_cases import CASES, make_ctx  # noqa: E402

MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run([sys.executable, "-m", "edgeconv", *sys.argv[1:]], capture_output=True, text=True)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
lines = [l for l in proc.stderr.splitlines() if l.strip()]
print(proc.returncode, f"{wall:.2f}", peak, sum(l.startswith("edgeconv: error:") for l in lines))
print(lines[-1] if lines else "")
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--filter", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeconv-probe-") as tmp:
        ctx = make_ctx(Path(tmp))
        os.chdir(tmp)
        print("| input | exit | error lines | message | time s | peak MB |")
        print("| --- | ---: | ---: | --- | ---: | ---: |")
        for i, (name, make) in enumerate(CASES):
            if args.filter not in name:
                continue
            case_tmp = Path(tmp) / f"case{i}"
            case_tmp.mkdir()
            ctx.tmp = case_tmp
            argv = make(ctx)
            (case_tmp / "x.npy").write_bytes((Path(tmp) / "x.npy").read_bytes())
            os.chdir(case_tmp)
            out = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True)
            head, _, message = out.stdout.partition("\n")
            code, wall, peak_kb, n_errors = head.split()
            message = message.strip().removeprefix("edgeconv: error: ")
            if len(message) > 110:
                message = message[:107] + "..."
            print(
                f"| {name} | {code} | {n_errors} | {message.replace('|', '/')} | {wall} | {int(peak_kb) / 1024:.0f} |"
            )
    _ = resource, time


if __name__ == "__main__":
    main()
