"""How long a user waits: wall time of the commands people type, as subprocesses.

Usage: python scripts/bench_user_wait.py [--runs 3] [--work DIR]

Each command runs --runs times (median reported, min and max beside it) as a fresh process of
the `edgeconv` console script (its import time included), in a scratch folder:

  edgeconv --help
  edgeconv build --budget 1MB                       (the README's first command, default output)
  edgeconv build --recipe resnet8 --out r8
  edgeconv parity r8 --targets cpu,arm,mcu --json
  edgeconv parity r8 --targets npu --json           (the HTP emulator)
  edgeconv report r8 --parity P --bench B -o r8/report.html

The report gets the two parity runs' targets in one document and a bench run (untimed,
--repeat 10). Then the report.html sizes: resnet8 (above) and the 1MB plan (its own untimed
parity on cpu,arm,mcu and bench). The load average before and after is printed: on a shared
machine the wall times include the other jobs' share of the CPUs; the CPU seconds (user + system
of the process and its children) do not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESNET8 = "r8"


def edgeconv_command() -> list[str]:
    exe = shutil.which("edgeconv")
    return [exe] if exe else [sys.executable, "-m", "edgeconv"]


CPU: list[float] = []  # CPU seconds (user + system) of each timed command, in order


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], cwd: Path, ok: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of one edgeconv process (its CPU seconds appended to CPU)."""
    cpu, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run([*edgeconv_command(), *args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    CPU.append(_children_cpu() - cpu)
    if proc.returncode not in ok:
        sys.exit(f"edgeconv {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return seconds, proc


def merge_parity(docs: list[dict]) -> dict:
    """One parity document with every run's targets (verdicts: FAIL if any run failed a kind)."""
    merged = dict(docs[0])
    merged["targets"] = [t for d in docs for t in d["targets"]]
    verdicts = {}
    for kind in docs[0]["verdicts"]:
        values = [d["verdicts"].get(kind) for d in docs if d["verdicts"].get(kind) is not None]
        verdicts[kind] = None if not values else all(values)
    merged["verdicts"] = verdicts
    merged["passed"] = all(d["passed"] for d in docs)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", help="Scratch folder (default: a temporary one, removed after).")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="edgeconv-wait-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    print(f"edgeconv: {' '.join(edgeconv_command())}; {os.cpu_count()} CPUs; load average {load_before[0]:.1f}")

    parity_docs: dict[str, dict] = {}

    def parity(targets: str):
        def call():
            seconds, proc = run(["parity", RESNET8, "--targets", targets, "--json"], work, ok=(0, 1, 4, 5))
            parity_docs[targets] = json.loads(proc.stdout)
            return seconds

        return call

    def report():
        return run(
            ["report", RESNET8, "--parity", "parity.json", "--bench", "bench.json", "-o", f"{RESNET8}/report.html"],
            work,
        )[0]

    def prepare_report():
        (work / "parity.json").write_text(json.dumps(merge_parity(list(parity_docs.values()))))
        bench = ["bench", RESNET8, "--targets", "cpu,arm,npu,mcu", "--repeat", "10", "--warmup", "2", "--json"]
        (work / "bench.json").write_text(run(bench, work)[1].stdout)

    steps = [
        ("edgeconv --help", lambda: run(["--help"], work)[0], None),
        ("edgeconv build --budget 1MB", lambda: run(["build", "--budget", "1MB"], work)[0], None),
        (
            "edgeconv build --recipe resnet8",
            lambda: run(["build", "--recipe", "resnet8", "--out", RESNET8], work)[0],
            None,
        ),
        ("edgeconv parity resnet8 --targets cpu,arm,mcu", parity("cpu,arm,mcu"), None),
        ("edgeconv parity resnet8 --targets npu", parity("npu"), prepare_report),
        ("edgeconv report resnet8 (parity + bench)", report, None),
    ]
    rows = []
    for label, call, after in steps:
        times, cpu = [], []
        for _ in range(args.runs):
            times.append(call())
            cpu.append(CPU[-1])
        rows.append((label, statistics.median(times), min(times), max(times), statistics.median(cpu)))
        print(f"  {label}: {', '.join(f'{t:.2f}' for t in times)} s", flush=True)
        if after:
            after()

    # the 1MB plan's page: its own parity (cpu,arm,mcu) and bench, untimed
    (plan,) = list((work / "edgeconv-out").iterdir())
    _, proc = run(["parity", str(plan), "--targets", "cpu,arm,mcu", "--json"], work, ok=(0, 1, 4, 5))
    (work / "plan_parity.json").write_text(proc.stdout)
    bench = ["bench", str(plan), "--targets", "cpu,arm,mcu", "--repeat", "10", "--warmup", "2", "--json"]
    (work / "plan_bench.json").write_text(run(bench, work)[1].stdout)
    page = plan / "report.html"
    run(["report", str(plan), "--parity", "plan_parity.json", "--bench", "plan_bench.json", "-o", str(page)], work)
    load_after = os.getloadavg()

    print()
    print(f"| command | wall s, median | min–max (of {args.runs}) | CPU s, median |")
    print("|---|---:|---:|---:|")
    for label, med, lo, hi, cpu_s in rows:
        print(f"| `{label}` | {med:.2f} | {lo:.2f}–{hi:.2f} | {cpu_s:.2f} |")
    print()
    r8_page = work / RESNET8 / "report.html"
    print(f"report.html: resnet8 {r8_page.stat().st_size:,} B (cpu, arm, mcu, npu parity + bench);")
    print(f"             1MB plan {plan.name} {page.stat().st_size:,} B (cpu, arm, mcu parity + bench)")
    verdicts = merge_parity(list(parity_docs.values()))["verdicts"]
    print(f"resnet8 parity verdicts: {verdicts}")
    print(f"load average: {load_before[0]:.1f} before, {load_after[0]:.1f} after ({os.cpu_count()} CPUs)")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
