"""``python -m benchmarks.soak`` (``./dev soak``): one seeded soak run, its table, its verdict.

The defaults are the full run issue 15 asks for: four kiosks of 560 visits (2,000+ thanked
after the faults) and 12 faults of each of the 18 kinds (216), spread over 10 minutes. The exit
status is 0 only for a clean run: lost, duplicated, uncommitted, period-count gaps, privacy hits,
kiosks ending by themselves and core dumps all 0, every fault applied, everything drained.
"""

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from benchmarks.soak.run import soak


def main(argv=None):
    parser = argparse.ArgumentParser(prog="./dev soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--kiosks-per-lane", type=int, default=2)
    parser.add_argument("--visits", type=int, default=560, help="visits per kiosk")
    parser.add_argument("--faults-each", type=int, default=12, help="faults of every kind")
    parser.add_argument("--duration", type=float, default=600.0,
                        help="seconds over which the faults are spread")
    parser.add_argument("--stores", default="sqlite,postgres",
                        help="one lane per collector store, comma-separated")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the run's files here (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    # SIGTERM ends the run as Ctrl-C does: every process and mount it started is cleaned up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="kiosk-soak-") as tmp:
        result = soak(args.workdir or Path(tmp), seed=args.seed,
                      lanes=tuple(args.stores.split(",")), kiosks_per_lane=args.kiosks_per_lane,
                      visits=args.visits, faults_each=args.faults_each,
                      duration_s=args.duration, progress=lambda text: print(text, flush=True))
    print(result.table())
    for note in [*result.fault_errors, *result.notes, *result.privacy_hits]:
        print(f"  {note}")
    if args.json:
        args.json.write_text(result.as_json(), encoding="utf-8")
    print("soak: clean" if result.clean else "soak: NOT clean", flush=True)
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
