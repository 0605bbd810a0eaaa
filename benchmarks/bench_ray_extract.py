"""`mmtk extract-features --engine local` against `--engine ray` (1 and 2 actors), side by
side in one run, and Ray's fixed cost, from which the dataset size where Ray pays off.

Every measurement is the whole command as a user runs it (a fresh process: interpreter,
imports, Ray's start-up for the Ray engine, model load, extraction, commits), into a
fresh store, over the same generated meme-like JPEGs (``bench_extract.make_images``).
Each engine runs at two sizes, ``--small`` and ``--items``; a straight line through
the two gives its fixed cost (seconds at zero items) and its marginal rate
(items/s once running). Runs are interleaved round by round (local, ray x1, ray x2,
at each size) so that drift on a shared machine moves them alike; the table shows
medians over rounds. Ray pays off from ``n = (fixed_ray - fixed_local) /
(1/rate_local - 1/rate_ray)`` items, where its rate is higher; where it is not (one
machine whose cores the local engine already uses), it never does there, and the
figure to read is what a second machine must add.

    .venv/bin/python benchmarks/bench_ray_extract.py                      # 400 and 40 images, 2 rounds
    .venv/bin/python benchmarks/bench_ray_extract.py --items 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import make_images  # noqa: E402

ENGINES = {  # label -> extra extract-features arguments
    "local": ["--engine", "local"],
    "ray x1": ["--engine", "ray", "--workers", "1"],
    "ray x2": ["--engine", "ray", "--workers", "2"],
}


def run_once(data: Path, backbone: str, extra: list[str], store: Path) -> tuple[float, int]:
    """Wall seconds of one extract-features process, and the items it computed."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    command = [sys.executable, "-m", "mmtk", "extract-features", str(data), "--backbone", backbone,
               "--store", str(store), "--device", "cpu", "--quiet", "--json", *extra]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-2000:]}")
    return seconds, json.loads(result.stdout)["backbones"][0]["computed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--small", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backbone", default="efficientnet-lite0")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sets = {}
        for size in (args.small, args.items):
            (root / f"n{size}").mkdir()
            sets[size] = make_images(root / f"n{size}", size)
        times: dict[tuple[str, int], list[float]] = {}
        for round_ in range(args.rounds):
            for size in (args.small, args.items):
                for label, extra in ENGINES.items():
                    store = root / f"store-{label.replace(' ', '')}-{size}-{round_}"
                    seconds, computed = run_once(sets[size], args.backbone, extra, store)
                    assert computed == size, (label, size, computed)
                    times.setdefault((label, size), []).append(seconds)
                    print(f"round {round_ + 1} {label:7s} {size:6d} items {seconds:7.2f} s", file=sys.stderr)

    fits = {}
    print(f"\n{args.backbone}, {args.small} and {args.items} JPEGs, {args.rounds} rounds (medians), {os.cpu_count()} CPUs\n")
    print(f"| engine | {args.small} items (s) | {args.items} items (s) | items/s at {args.items} | vs local | fixed cost (s) | marginal items/s |")
    print("|---|---|---|---|---|---|---|")
    local_at_n = statistics.median(times[("local", args.items)])
    for label in ENGINES:
        small, large = statistics.median(times[(label, args.small)]), statistics.median(times[(label, args.items)])
        rate = (args.items - args.small) / (large - small)
        fixed = small - args.small / rate
        fits[label] = (fixed, rate)
        print(f"| {label} | {small:.1f} | {large:.1f} | {args.items / large:.1f} | {local_at_n / large:.2f}x | {fixed:.1f} | {rate:.1f} |")
    local_fixed, local_rate = fits["local"]
    print()
    for label in ("ray x1", "ray x2"):
        fixed, rate = fits[label]
        print(f"{label}: fixed cost {fixed - local_fixed:+.1f} s over local; ", end="")
        if rate > local_rate:
            print(f"pays off from {(fixed - local_fixed) / (1 / local_rate - 1 / rate):.0f} items")
        else:
            print(f"marginal rate {rate / local_rate:.2f}x local's: never pays off on this machine alone")


if __name__ == "__main__":
    main()
