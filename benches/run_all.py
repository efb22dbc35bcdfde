"""Runs every benches/bench_*.py one after another and writes benches/README.md from that one
run: a header naming the machine, each script's markdown section, and the criterion medians
that `make bench` saved to out/criterion.txt just before."""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CRITERION_LOG = ROOT / "out" / "criterion.txt"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def criterion_section() -> str:
    if not CRITERION_LOG.exists():
        return ""
    rows, name = [], None
    for line in CRITERION_LOG.read_text().splitlines():
        m = re.match(r"^(\S.*?)\s+time:\s+\[(\S+ \S+) (\S+ \S+) (\S+ \S+)\]", line)
        if m:
            rows.append((m.group(1).strip(), m.group(3)))
            continue
        m = re.match(r"^\s+time:\s+\[(\S+ \S+) (\S+ \S+) (\S+ \S+)\]", line)
        if m and name:
            rows.append((name, m.group(2)))
        elif line and not line[0].isspace() and " " not in line.strip():
            name = line.strip()
    if not rows:
        return ""
    body = "\n".join(f"| {n} | {t} |" for n, t in rows)
    return (
        "## Rust core (criterion)\n\n"
        "Median time per iteration from `cargo bench` in the same `make bench` run "
        "(`perf_record/*` record 1,000 samples per iteration: divide by 1,000 per record).\n\n"
        f"| benchmark | median |\n|---|---:|\n{body}\n"
    )


def main() -> int:
    sections, failed = [], []
    load_before = os.getloadavg()[0]
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT
        )
        sys.stderr.write(proc.stderr[-2000:])
        print(f"{script.name}: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
        if proc.returncode != 0:
            failed.append(script.name)
            sections.append(f"## {script.name}\n\nFailed in this run (exit {proc.returncode}).\n")
        else:
            sections.append(proc.stdout.strip() + "\n")
        print(sections[-1], flush=True)
    header = (
        "# Benchmarks\n\n"
        f"Written by `make bench` on {datetime.date.today().isoformat()}: one run, same machine "
        f"({os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; 1-minute "
        f"load average {load_before:.1f} before the Python benchmarks, "
        f"{os.getloadavg()[0]:.1f} after). Each section states its workload, its repetitions and "
        "what each row measures; ratios compare against the named peer measured in the same run "
        "the same way. Where a section gives best and median, their gap is this run's spread; "
        "absolute numbers move with the machine and its other load.\n"
    )
    crit = criterion_section()
    text = "\n".join([header, *sections, *([crit] if crit else [])])
    (HERE / "README.md").write_text(text)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
