"""Feature-store benchmarks for `mmtk extract-features`, each measured side by side in one run:

1. warm re-run over a fully cached dataset, as a fraction of the cold run's time
   (target <= 5%, 1,000 items);
2. reading the cached features back (``FeatureStore.gather`` of every item, in a fresh
   process as `train`/`evaluate` do) with the checksum check on each shard's first map
   and without it (``verify_reads=False``), alternating, median of ``--rounds``: the
   check's cost as a ratio, and the checked read as a fraction of the cold run (it
   must stay within the warm re-run target);
3. peak memory (summed RSS of the whole process tree, sampled every 20 ms) of a cold
   run over 2,000 items against one over 200 items (target: within 15%).

    python benchmarks/bench_cache.py [--items 1000] [--backbone efficientnet-lite0] [--rounds 5] [--no-memory]

Runs the real command line in subprocesses against a fresh store in benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "cache"


def make_dataset(count: int) -> Path:
    """Meme-like images from the example generator; reused between runs."""
    folder = OUT / f"memes{count}"
    data = folder / "train.jsonl"
    if not data.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "make_memes.py"), str(folder), "--train", str(count), "--test", "1", "--seed", str(count)],
            check=True, stdout=subprocess.DEVNULL,
        )
    return data


def tree_rss_bytes(pid: int) -> int:
    """RSS of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack += children.get(current, [])
    return total


def run_extract(data: Path, store: Path, backbone: str) -> tuple[float, int, dict]:
    """Wall seconds, peak tree RSS and the --json report of one extract-features run."""
    env = dict(os.environ, MMTK_STORE=str(store))
    cmd = [sys.executable, "-m", "mmtk", "extract-features", str(data), "--backbone", backbone, "--json", "--quiet"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"extract-features failed ({proc.returncode}): {stderr}")
    return seconds, peak, json.loads(stdout)


# Times one gather of every stored item in a fresh process, after the store is opened
# and the keys listed, so only the read (and the first-map checksum) is measured.
_GATHER = """
import json, sys, time
from mmtk.store import FeatureStore
store = FeatureStore(sys.argv[1], verify_reads=sys.argv[2] == "checked")
fingerprint = store.feature_sets()[0]["fingerprint"]
keys = [k for entries in store.index.items_by_shard(fingerprint).values() for k, _, _ in entries]
start = time.perf_counter()
features = store.gather(fingerprint, keys)
print(json.dumps({"seconds": time.perf_counter() - start, "items": len(keys), "mib": features.nbytes / 2**20}))
"""


def time_gather(store: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _GATHER, str(store), mode], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="items for the warm/cold comparison")
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--rounds", type=int, default=5, help="alternating checked/unchecked gathers")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory comparison")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    rows = []
    data = make_dataset(args.items)
    store = OUT / "store-warm"
    shutil.rmtree(store, ignore_errors=True)
    cold_s, _, cold = run_extract(data, store, args.backbone)
    warm_s, _, warm = run_extract(data, store, args.backbone)
    computed_cold = cold["backbones"][0]["computed"]
    computed_warm = warm["backbones"][0]["computed"]
    rows.append(("cold run, items/s", f"{computed_cold / cold_s:.1f}", f"{args.items} items in {cold_s:.1f} s"))
    rows.append(("warm run / cold run (target <= 0.05)", f"{warm_s / cold_s:.3f}", f"warm {warm_s:.2f} s, computed {computed_warm}"))

    times: dict[str, list[float]] = {"checked": [], "unchecked": []}
    for _ in range(args.rounds):
        for mode in times:
            result = time_gather(store, mode)
            times[mode].append(result["seconds"])
    checked, unchecked = (sorted(times[m])[len(times[m]) // 2] for m in ("checked", "unchecked"))
    read = f"{result['items']} items, {result['mib']:.1f} MiB"
    rows.append(("gather, checksum checked / unchecked", f"{checked / unchecked:.2f}", f"{checked * 1e3:.1f} ms vs {unchecked * 1e3:.1f} ms ({read})"))
    rows.append(("checked gather / cold run (target <= 0.05)", f"{checked / cold_s:.4f}", f"median of {args.rounds}"))
    rows.append(("warm run + checked gather / cold run", f"{(warm_s + checked) / cold_s:.3f}", ""))
    if args.no_memory:
        print_rows(args, rows)
        return

    peaks = {}
    for count in (args.small, args.large):
        store = OUT / f"store-mem-{count}"
        shutil.rmtree(store, ignore_errors=True)
        _, peaks[count], _ = run_extract(make_dataset(count), store, args.backbone)
    ratio = peaks[args.large] / peaks[args.small]
    rows.append(
        (f"peak RSS {args.large} / {args.small} items (target <= 1.15)", f"{ratio:.3f}",
         f"{peaks[args.small] / 2**20:.0f} MiB vs {peaks[args.large] / 2**20:.0f} MiB")
    )

    print_rows(args, rows)


def print_rows(args, rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"backbone {args.backbone}, {os.cpu_count()} CPUs")
    for name, value, detail in rows:
        print(f"{name:<{width}}  {value:>8}  {detail}")


if __name__ == "__main__":
    main()
