"""Run every benchmark and write docs/benchmarks.md, naming the machine it ran on."""

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

AREAS = ("card", "store", "telemetry", "ui", "fleet", "console")
OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine():
    """CPU model, cores and memory: numbers mean nothing without the machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    distro = subprocess.run(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"],
                            capture_output=True, text=True).stdout.strip()
    return (f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {distro}, "
            f"Python {platform.python_version()}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("areas", nargs="*", metavar="AREA",
                        help=f"which of {', '.join(AREAS)} to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, for a smoke run")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    unknown = set(args.areas) - set(AREAS)
    if unknown:
        parser.error(f"unknown area {', '.join(sorted(unknown))}; choose from {', '.join(AREAS)}")
    sections = []
    for area in args.areas or AREAS:
        print(f"benchmarks: running {area} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        sections.append(importlib.import_module(f"benchmarks.{area}").run(quick=args.quick))
        print(f"benchmarks: {area} done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    text = "\n\n".join([
        "# Benchmarks",
        f"Machine: {machine()}.  \nRun: `./dev bench` on {time.strftime('%Y-%m-%d')}"
        + (" (quick)" if args.quick else "") + ". Targets are checked as ratios within this run.",
        *sections,
    ])
    args.out.write_text(text.rstrip() + "\n")
    print(text)


if __name__ == "__main__":
    main()
