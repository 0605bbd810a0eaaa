"""Training samples/s of mmtk's ``mult`` against the reference MulT implementation
(github.com/yaohungt/Multimodal-Transformer, issue 11), side by side in one process.

Both models get the reference's defaults on CMU-MOSEI aligned shapes: text 50 x 300,
audio 50 x 74, vision 50 x 35; width 30, 5 heads, 5 crossmodal and 5 self-attention
layers (the reference builds its self-attention stacks with max(nlevels, 3) layers),
its dropouts, batch 24, one output (CMU-MOSEI sentiment), L1 loss, gradient clipping at
0.8, Adam at lr 1e-3; one torch thread. mmtk's model gets ``hidden=180`` so that its
concat residual block has the reference's width (the concatenation's), and runs with
masking on: every batch carries key-padding masks whose valid lengths are drawn from
25..50 steps (the reference has no masks and computes over all 50). Data are random;
a step is forward + backward + clipping + Adam step.

Each implementation runs in its own process (spawned; they never run at the same time),
so neither inherits the other's memory-allocator state: run in one process, the
reference's allocations left mmtk 15% slower (62 against 53 samples/s) while mmtk left
the reference within 5%. Repetitions interleave the two (the order alternates), each
timing ``--steps`` steps after ``--warmup`` untimed ones. Reported per model: the median samples/s over
repetitions by the main thread's CPU time (all work runs on it with one torch thread, so
on a busy machine this is closer to the cost on an idle core) and by wall time; the
last line is one JSON object with ``mmtk``, ``reference`` and ``ratio`` (CPU-time
figures) and the wall-time ones beside them.

    .venv/bin/python benchmarks/bench_mult.py --reference /path/to/Multimodal-Transformer

The reference runs unmodified except for the one-line fix it needs on torch 2
(``positions.view(-1)`` -> ``positions.reshape(-1)`` in ``modules/position_embedding.py``);
the benchmark imports it from PATH and never copies it. Without ``--reference`` only
mmtk's figure is measured (``reference`` and ``ratio`` are null).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

SHAPES = {"text": (50, 300), "audio": (50, 74), "vision": (50, 35)}
BATCH = 24
SETTINGS = {"width": 30, "num_heads": 5, "layers": 5, "self_layers": 5}
REFERENCE_DEFAULTS = {  # main.py's argument defaults
    "attn_dropout": 0.1, "attn_dropout_a": 0.0, "attn_dropout_v": 0.0, "relu_dropout": 0.1, "embed_dropout": 0.25,
    "res_dropout": 0.1, "out_dropout": 0.0, "nlevels": 5, "num_heads": 5, "attn_mask": True, "clip": 0.8, "lr": 1e-3,
}


def make_batches(count: int, seed: int):
    """``count`` random batches: per modality a ``(B, T, d)`` tensor and a valid length
    per item, and regression targets."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        features = {name: torch.randn(BATCH, steps, dim, generator=generator) for name, (steps, dim) in SHAPES.items()}
        lengths = {name: torch.randint(25, steps + 1, (BATCH,), generator=generator) for name, (steps, _) in SHAPES.items()}
        batches.append((features, lengths, torch.randn(BATCH, generator=generator)))
    return batches


def mmtk_step_factory():
    import torch

    from mmtk.models import MODELS
    from mmtk.training.batch import Batch
    from mmtk.training.inputs import InputSpec

    inputs = {name: InputSpec(name, dim, "sequence", steps) for name, (steps, dim) in SHAPES.items()}
    # The reference's attention dropout: attn_dropout (0.1) into text, attn_dropout_a and
    # attn_dropout_v (0.0) into audio and vision; self-attention 0.1 everywhere.
    cross = f"audio={REFERENCE_DEFAULTS['attn_dropout_a']},vision={REFERENCE_DEFAULTS['attn_dropout_v']}"
    model = MODELS.get("mult")(inputs, {"y": 1}, hidden=180, cross_attn_dropout=cross, **SETTINGS).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=REFERENCE_DEFAULTS["lr"])

    def step(features, lengths, target):
        masks = {name: torch.arange(x.shape[1])[None, :] < lengths[name][:, None] for name, x in features.items()}
        optimizer.zero_grad()
        loss = torch.nn.functional.l1_loss(model(Batch(features, masks))["y"].squeeze(-1), target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), REFERENCE_DEFAULTS["clip"])
        optimizer.step()

    return model, step


def reference_step_factory(path: Path):
    """The reference's MULTModel with main.py's defaults and src/train.py's step (its
    ``nn.DataParallel`` wrapper is left out: on a CPU it calls the module)."""
    import torch

    sys.path.insert(0, str(path))
    from src.models import MULTModel  # noqa: E402  (the reference checkout)

    hyp = SimpleNamespace(
        **REFERENCE_DEFAULTS, orig_d_l=SHAPES["text"][1], orig_d_a=SHAPES["audio"][1], orig_d_v=SHAPES["vision"][1],
        layers=REFERENCE_DEFAULTS["nlevels"], lonly=True, aonly=True, vonly=True, output_dim=1,
    )
    model = MULTModel(hyp).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=hyp.lr)
    criterion = torch.nn.L1Loss()

    def step(features, lengths, target):
        model.zero_grad()
        preds, _ = model(features["text"], features["audio"], features["vision"])
        criterion(preds.squeeze(-1), target).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), hyp.clip)
        optimizer.step()

    return model, step


def timed(step, batches, steps: int, warmup: int) -> tuple[float, float]:
    """Samples/s of ``steps`` steps by thread CPU time and by wall time."""
    for i in range(warmup):
        step(*batches[i % len(batches)])
    cpu, wall = time.thread_time(), time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    return steps * BATCH / cpu, steps * BATCH / wall


def worker(name: str, reference: Path | None, keep_heap: bool, connection) -> None:
    """One implementation in its own process: builds its model on the shared batches,
    then times ``(steps, warmup)`` each time it is asked, until it gets None."""
    import torch

    if keep_heap:
        from mmtk.training.heap import keep_freed_memory

        keep_freed_memory()

    torch.set_num_threads(1)
    torch.manual_seed(1111)
    batches = make_batches(8, seed=0)
    model, step = mmtk_step_factory() if name == "mmtk" else reference_step_factory(reference)
    connection.send(sum(p.numel() for p in model.parameters()))
    while (request := connection.recv()) is not None:
        connection.send(timed(step, batches, *request))


def main(argv=None) -> int:
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="a checkout of yaohungt/Multimodal-Transformer (with the torch-2 fix)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions per model (default 5)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repetition (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each repetition (default 2)")
    parser.add_argument(
        "--keep-heap", choices=("mmtk", "both", "none"), default="mmtk",
        help="which processes keep freed memory (mmtk.training.heap, what `mmtk train` does): mmtk only "
             "(default: each as its users run it), both, or none",
    )
    args = parser.parse_args(argv)
    if args.reference is not None and not (args.reference / "src" / "models.py").is_file():
        print(f"{args.reference} is not a checkout of yaohungt/Multimodal-Transformer (no src/models.py)", file=sys.stderr)
        return 2

    names = ["mmtk"] + (["reference"] if args.reference is not None else [])
    context = multiprocessing.get_context("spawn")
    workers = {}
    for name in names:
        ours, theirs = context.Pipe()
        keep = args.keep_heap == "both" or args.keep_heap == name
        process = context.Process(target=worker, args=(name, args.reference, keep, theirs), daemon=True)
        process.start()
        workers[name] = (process, ours)
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    try:
        for name, (_, connection) in workers.items():
            print(f"{name}: {connection.recv():,} parameters", file=sys.stderr)
        for repeat in range(args.repeats):
            for name in names if repeat % 2 == 0 else names[::-1]:
                connection = workers[name][1]
                connection.send((args.steps, args.warmup))
                figures[name].append(connection.recv())
                cpu, wall = figures[name][-1]
                print(f"repeat {repeat + 1}: {name:9s} {cpu:7.1f} samples/s (CPU time) {wall:7.1f} samples/s (wall)", file=sys.stderr)
    finally:
        for process, connection in workers.values():
            connection.send(None)
            process.join(timeout=60)
    medians = {name: (statistics.median(f[0] for f in runs), statistics.median(f[1] for f in runs)) for name, runs in figures.items()}
    for name, (cpu, wall) in medians.items():
        print(f"{name:9s} median {cpu:7.1f} samples/s by CPU time, {wall:7.1f} by wall time")
    result = {"mmtk": round(medians["mmtk"][0], 1), "reference": None, "ratio": None,
              "mmtk_wall": round(medians["mmtk"][1], 1), "reference_wall": None, "ratio_wall": None}
    if "reference" in medians:
        result.update(reference=round(medians["reference"][0], 1), ratio=round(medians["mmtk"][0] / medians["reference"][0], 2),
                      reference_wall=round(medians["reference"][1], 1), ratio_wall=round(medians["mmtk"][1] / medians["reference"][1], 2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
