"""Benchmark: start-up time of harmonize against its floor, ``import numpy, scipy.optimize``.

Each command runs in a fresh interpreter; the commands are interleaved round by round
(paired: the same load of the machine for all of them within a round), and the figures are
medians over rounds. The figure that matters is the ratio to the floor in the same round
(absolute times on a shared machine drift by a factor of several):

* ``floor``: ``python -c "import numpy, scipy.optimize"``;
* ``python``: ``python -c "pass"`` (the interpreter alone);
* ``import_lookup``: ``import harmonize`` and the first Lu-177 look-up;
* ``help``: ``harmonize --help``;
* ``workflows``: ``harmonize workflows`` (discovers and loads every installed adapter).

Run ``python benchmarks/bench_startup.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, list[str]] = {
    "python": ["-c", "pass"],
    "floor": ["-c", "import numpy, scipy.optimize"],
    "import_lookup": ["-c", "import harmonize; harmonize.get_nuclide('Lu-177').half_life_h"],
    "help": ["-m", "harmonize.cli", "--help"],
    "workflows": ["-m", "harmonize.cli", "workflows"],
}


def _run_s(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the figures and return them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    args = parser.parse_args(argv)

    for cmd in COMMANDS.values():  # warm the file cache once, not timed
        _run_s(cmd)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    ratios: dict[str, list[float]] = {name: [] for name in COMMANDS}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        this = {name: _run_s(cmd) for name, cmd in COMMANDS.items()}
        for name, seconds in this.items():
            times[name].append(seconds)
            ratios[name].append(seconds / this["floor"])
    figures: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus_available": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
        },
        "rounds": args.rounds,
    }
    print(f"machine: {platform.platform()}, {figures['machine']['cpus_available']} CPUs, "
          f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'command':14s} {'median s':>9s} {'ratio to floor (median of paired)':>34s}")
    for name in COMMANDS:
        med = statistics.median(times[name])
        ratio = statistics.median(ratios[name])
        figures[name] = {"seconds_median": med, "ratio_to_floor_median": ratio}
        print(f"{name:14s} {med:9.3f} {ratio:34.2f}")
    return figures


if __name__ == "__main__":
    main()
