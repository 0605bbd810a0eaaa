"""``mmtk train`` in one process against two under torchrun (gloo, CPU), side by side.

Builds a labelled dataset of ``--items`` items (default 12,500: the 20 % validation
split leaves 10,000 to train on) whose efficientnet-lite0 (1280-d) and minilm (384-d)
vectors are random but for one dimension each carrying a hidden bit, with
``label = p XOR q`` (fusion needed, as in tests/synthetic_features.py), puts them into a
fresh feature store, and runs the real CLI for ``--epochs`` epochs (no early stop) as:

- ``1 process``: ``python -m mmtk train ...`` (one torch thread, mmtk's default);
- ``1 process, 2 threads``: the same with ``MMTK_TORCH_THREADS=2`` (both cores, one process);
- ``2 processes``: ``python -m torch.distributed.run --standalone --nproc-per-node 2 -m mmtk train ...``.

The variants alternate within each of ``--rounds`` rounds, so a busy neighbour slows
them alike. Reported per variant (medians over rounds): epochs/s (epochs over the sum
of the epochs' seconds in train_log.jsonl: training and validation, rank 0's clock),
training samples/s (the report's, items of all ranks), the command's wall seconds
(process start, torch import, process group, data loading included), the final
epoch's validation loss and accuracy, and ratios to ``1 process``.

    .venv/bin/python benchmarks/bench_ddp.py [--items 12500] [--epochs 5] [--rounds 2]
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

import numpy as np

IMAGE_DIM, TEXT_DIM = 1280, 384
VARIANTS = ("1 process", "1 process, 2 threads", "2 processes")


def make_data(folder: Path, n: int, seed: int = 0) -> Path:
    """``folder/data.jsonl`` and its features in ``folder/store``."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys, read_dataset
    from mmtk.store import FeatureStore

    rng = np.random.default_rng(seed)
    p, q = rng.integers(0, 2, n), rng.integers(0, 2, n)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        (folder / "img" / f"{i}.png").write_bytes(f"image {i}".encode())
        rows.append(json.dumps({"id": str(i), "img": f"img/{i}.png", "text": f"caption {i}", "label": int(p[i] ^ q[i])}))
    path = folder / "data.jsonl"
    path.write_text("\n".join(rows) + "\n")
    dataset = read_dataset(path)
    store = FeatureStore(folder / "store")
    image = rng.normal(size=(n, IMAGE_DIM)).astype(np.float32)
    text = rng.normal(size=(n, TEXT_DIM)).astype(np.float32)
    image[:, 0] = (2 * p - 1) + 0.5 * rng.normal(size=n)
    text[:, 3] = (2 * q - 1) + 0.5 * rng.normal(size=n)
    for backbone, modality, column, arrays in (("efficientnet-lite0", "image", "img", image), ("minilm", "text", "text", text)):
        config = resolve_backbone(backbone, modality)
        store.register(config.fingerprint, {"backbone": config.spec, "modality": modality, "kind": "vector", "dim": arrays.shape[1]})
        store.put(config.fingerprint, content_keys(dataset.values(column), modality), list(arrays))
    return path


def run_variant(variant: str, data: Path, out: Path, args) -> dict:
    env = {**os.environ, "MMTK_STORE": str(data.parent / "store"), "OMP_NUM_THREADS": "1"}
    env["MMTK_TORCH_THREADS"] = "2" if variant == "1 process, 2 threads" else "1"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] if variant == "2 processes" else [sys.executable]
    command = [
        *launch, "-m", "mmtk", "train", str(data), "--features", "efficientnet-lite0,minilm", "--model", args.model, "--task", "label:binary",
        "--epochs", str(args.epochs), "--patience", str(args.epochs), "--batch-size", str(args.batch_size), "--device", "cpu",
        "--quiet", "--json", "--out", str(out),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{variant} failed ({done.returncode}):\n{done.stderr}")
    report = json.loads(done.stdout)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {
        "epochs_per_s": len(log) / sum(entry["seconds"] for entry in log), "samples_per_s": report["samples_per_second"],
        "wall_s": wall, "val_loss": log[-1]["val_loss"], "accuracy": log[-1]["val_metrics"]["metrics"]["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12500)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="gmu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        folder = Path(tmp)
        data = make_data(folder, args.items)
        results = {variant: [] for variant in VARIANTS}
        for r in range(args.rounds):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                results[variant].append(run_variant(variant, data, folder / f"run-{r}-{VARIANTS.index(variant)}", args))
                print(f"round {r + 1} {variant}: {json.dumps(results[variant][-1])}", file=sys.stderr)
    base = {key: statistics.median(m[key] for m in results["1 process"]) for key in results["1 process"][0]}
    print(f"{args.items} items ({round(args.items * 0.8)} trained per epoch), {args.model}, {args.epochs} epochs, batch {args.batch_size}, {args.rounds} rounds")
    print("| variant | epochs/s | x 1 process | train samples/s | wall s (whole command) | final val loss | final val accuracy |")
    print("|---|---|---|---|---|---|---|")
    for variant, measured in results.items():
        median = {key: statistics.median(m[key] for m in measured) for key in measured[0]}
        print(
            f"| {variant} | {median['epochs_per_s']:.2f} | {median['epochs_per_s'] / base['epochs_per_s']:.2f} | {median['samples_per_s']:,.0f} | "
            f"{median['wall_s']:.1f} | {median['val_loss']:.4f} | {median['accuracy']:.4f} |"
        )


if __name__ == "__main__":
    main()
