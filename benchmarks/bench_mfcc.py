"""mfcc throughput over the Free Spoken Digit Dataset: seconds of audio per wall-clock
second, through mmtk's extract_features with 1 and 2 workers (mfcc's workers are forked
processes), next to a plain librosa loop (librosa.load + librosa.feature.mfcc + delta
per file, which rebuilds the mel filterbank on every call).

``compute-1`` / ``compute-2`` time the decoding and mfcc alone in 1 or 2 forked
processes (no content hashing, no store), i.e. how the computation itself scales.
``self-commit-2`` tries the design that takes the parent out of the hot path: two forked
workers each hash a block of 375 records, ask the store which are missing, compute them
and commit them themselves; the parent only hands out blocks. It is compared with
``workers-1``.

Each measurement runs in a fresh Python process; modes are interleaved in rounds so
load from other users of the machine hits all alike; the table gives the median over
rounds and the load average at the start. Timed: the extract_features call into a fresh
store (decode, resample 8 -> 16 kHz, features, content hashing, store commits), the
computation alone, or the librosa loop; imports and the first clip's lazy loading are
excluded from all of them.

    .venv/bin/python benchmarks/bench_mfcc.py                      # 3,000 recordings, 3 rounds
    .venv/bin/python benchmarks/bench_mfcc.py --limit 500 --rounds 1
Targets (issue 3): >= 150 s of audio per second in one process, >= 1.9x with 2 workers.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECORDINGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd" / "recordings"
MODES = ("workers-1", "workers-2", "self-commit-2", "compute-1", "compute-2", "halves-2", "librosa-loop")


def write_dataset(recordings: Path, limit: int | None, root: Path) -> tuple[Path, float]:
    """CSV (id, audio) of the recordings in name order; returns it and the audio seconds."""
    import soundfile

    files = sorted(recordings.glob("*.wav"))[:limit]
    if not files:
        raise SystemExit(f"no .wav files in {recordings}")
    seconds = sum(soundfile.info(str(f)).duration for f in files)
    path = root / "fsdd.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "audio"])
        writer.writerows([f.stem, str(f)] for f in files)
    return path, seconds


def measure(mode: str, dataset_csv: Path, store_dir: Path) -> dict:
    """Run one mode in this process; returns seconds and items."""
    if mode == "librosa-loop":
        import librosa
        import numpy as np

        from mmtk.audio.features import delta_width

        paths = audio_paths(dataset_csv)
        librosa.feature.mfcc(y=np.ones(1600, np.float32), sr=16000)  # warm numba/caches
        started = time.perf_counter()
        for path in paths:
            y, sr = librosa.load(path, sr=16000)
            mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_fft=640, hop_length=512, n_mels=40)
            frames = mfcc.shape[1]
            delta = librosa.feature.delta(mfcc, width=delta_width(frames), mode="interp" if frames >= 3 else "nearest")
            np.concatenate([mfcc, delta]).T.astype(np.float32)
        return {"seconds": time.perf_counter() - started, "items": len(paths)}

    if mode.startswith("compute-"):
        return measure_compute(int(mode.split("-")[1]), dataset_csv)
    if mode == "halves-2":
        return measure_compute(2, dataset_csv, halves=True)
    if mode == "self-commit-2":
        return measure_self_commit(dataset_csv, store_dir)

    from mmtk.data import read_dataset
    from mmtk.extract import extract_features
    from mmtk.store import FeatureStore

    dataset = read_dataset(dataset_csv)
    warmed_encoder(audio_paths(dataset_csv)[0])  # extraction builds its own; this loads the decoders

    store = FeatureStore(store_dir)
    started = time.perf_counter()
    report = extract_features(dataset, "mfcc", store=store, num_workers=int(mode.split("-")[1]), device="cpu")
    return {"seconds": time.perf_counter() - started, "items": report.computed}


_ENCODER = None


def audio_paths(dataset_csv: Path) -> list[str]:
    with open(dataset_csv) as handle:
        return [row["audio"] for row in csv.DictReader(handle)]


def warmed_encoder(first_path: str):
    """The mfcc encoder after one clip: the lazily imported decoders and librosa modules
    are loaded before timing starts (forked workers inherit them), so import cost is
    excluded from every mode, as for the librosa loop."""
    from mmtk.backbones import resolve_backbone

    encoder = resolve_backbone("mfcc").build("cpu")
    encoder.encode([encoder.load(first_path)])
    return encoder


def forked_sum(work, tasks: list, processes: int) -> int:
    """``sum(map(work, tasks))`` in ``processes`` forked processes with one BLAS thread
    each, as in extract_features (one process: in this one)."""
    if processes == 1:
        return sum(map(work, tasks))
    import multiprocessing

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # inherited by the forked workers
        pool = multiprocessing.get_context("fork").Pool(processes)
        total = sum(pool.imap_unordered(work, tasks))
        pool.close()
        pool.join()
    return total


def _encode_paths(paths: list[str]) -> int:
    return sum(len(f) for f in _ENCODER.encode([_ENCODER.load(p) for p in paths]))


def _encode_in_batches(paths: list[str]) -> int:
    """One worker's whole share, 32 files at a time as everywhere else (loading a share
    of 1,500 clips at once costs page faults the batched modes never pay)."""
    return sum(_encode_paths(paths[i : i + 32]) for i in range(0, len(paths), 32))


def measure_compute(processes: int, dataset_csv: Path, halves: bool = False) -> dict:
    """Decode + mfcc alone (no hashing, no store) in ``processes`` forked processes
    sharing the parent's built encoder, batches of 32 files: how the computation itself
    scales, without extract_features' serial part (content hashing, store commits).

    ``halves``: each of two processes gets every other file as one task from the start
    and returns one number, so they never exchange anything while they run: the most
    two processes can give on this machine, the ceiling for ``workers-2``."""
    global _ENCODER
    paths = audio_paths(dataset_csv)
    _ENCODER = warmed_encoder(paths[0])
    batches = [paths[0::2], paths[1::2]] if halves else [paths[i : i + 32] for i in range(0, len(paths), 32)]
    work = _encode_in_batches if halves else _encode_paths
    started = time.perf_counter()
    frames = forked_sum(work, batches, processes)
    return {"seconds": time.perf_counter() - started, "items": len(paths), "frames": frames}


_STORE = None
_CONFIG = None
SELF_COMMIT_BLOCK = 375  # 3,000 records in 8 blocks: 4 commits per worker


def _hash_compute_commit(values: list[str]) -> int:
    """One block in a worker: content keys, the store's missing ones, encode, commit."""
    from mmtk.data import content_key
    from mmtk.extract import encode_items
    from mmtk.extract.commit import Committer

    keys = [content_key(value, "audio") for value in values]
    by_key = dict(zip(keys, values))
    todo = _STORE.missing(_CONFIG.fingerprint, keys)
    chunk = encode_items(_ENCODER, [(key, by_key[key]) for key in todo])
    committer = Committer(_STORE, _CONFIG)
    committer.add(chunk.keys, chunk.features)
    committer.flush()
    return committer.committed


def measure_self_commit(dataset_csv: Path, store_dir: Path) -> dict:
    """Two forked workers that plan, compute and commit their own blocks of records."""
    from mmtk.backbones import resolve_backbone
    from mmtk.store import FeatureStore

    global _ENCODER, _STORE, _CONFIG
    values = audio_paths(dataset_csv)
    _CONFIG = resolve_backbone("mfcc")
    _ENCODER = warmed_encoder(values[0])
    _STORE = FeatureStore(store_dir)
    blocks = [values[i : i + SELF_COMMIT_BLOCK] for i in range(0, len(values), SELF_COMMIT_BLOCK)]
    started = time.perf_counter()
    committed = forked_sum(_hash_compute_commit, blocks, 2)
    return {"seconds": time.perf_counter() - started, "items": committed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recordings", type=Path, default=RECORDINGS)
    parser.add_argument("--limit", type=int, default=None, help="first N recordings only")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.csv, args.store)))
        return

    with tempfile.TemporaryDirectory(prefix="bench_mfcc_") as tmp:
        root = Path(tmp)
        dataset_csv, audio_seconds = write_dataset(args.recordings, args.limit, root)
        modes = args.modes.split(",")
        load = os.getloadavg()[0]
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_index in range(args.rounds):
            for mode in modes:
                store = root / f"store-{mode}-{round_index}"
                out = subprocess.run(
                    [sys.executable, __file__, "--one", mode, "--csv", str(dataset_csv), "--store", str(store)],
                    check=True, capture_output=True, text=True,
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                times[mode].append(result["seconds"])
                print(f"round {round_index + 1} {mode:13s} {result['items']} items {result['seconds']:.2f} s", file=sys.stderr)
        items = len(list(csv.DictReader(open(dataset_csv))))
        print(f"{items} recordings, {audio_seconds:.0f} s of audio, median of {args.rounds} round(s), load average {load:.2f} at start")
        print(f"{'mode':14s} {'wall s':>8s} {'audio s/s':>10s} {'vs 1 worker':>13s}")
        for mode in modes:
            median = statistics.median(times[mode])
            # workers-2 and self-commit-2 are compared with workers-1, compute-2 and halves-2 with compute-1.
            single = {"halves-2": "compute-1", "self-commit-2": "workers-1"}.get(mode, mode.rsplit("-", 1)[0] + "-1")
            ratio = f"{statistics.median(times[single]) / median:.2f}x" if single in times else "-"
            print(f"{mode:14s} {median:8.2f} {audio_seconds / median:10.0f} {ratio:>13s}")


if __name__ == "__main__":
    main()
