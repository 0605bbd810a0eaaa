"""The VisualBERT teacher and the TinyBERT student (issue 12): size, CPU inference speed,
and how much of MiniLM a narrower TinyBERT copy keeps.

speed: parameter counts and inference items/s (eval mode, no gradients, 1 torch thread)
of ``visualbert`` on the packaged MiniLM (6 x 384), ``tinybert`` (4 x 312, from MiniLM)
and, for reference, a VisualBERT of the default hub checkpoint's shape (12 x 768,
``uclanlp/visualbert-nlvr2-coco-pre``; random weights, which cost the same arithmetic).
Inputs are shaped like the example memes: the test set's first ``--items`` captions as word pieces
(``--max-length``) and a 7 x 7 grid of 1,280-d ``efficientnet-lite0:seq`` features per
item (values random: they do not change the arithmetic). The models take turns batch by
batch; the student/teacher ratio is taken per round and its median reported.

init: correlation, over pairs of 200 training captions, between the cosine similarities
of MiniLM's masked-mean hidden states and those of a 4 x 312 BERT, after each layer:
the TinyBERT copy ``mmtk.models.bert_weights`` makes, a copy keeping the first 312
residual coordinates instead, and a random BERT.

    .venv/bin/python benchmarks/bench_bert.py [--rounds 5] [--items 48] [--batch 16] [--max-length 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MEMES = ROOT / "examples" / "memes"


def captions(split: str, count: int | None = None) -> list[str]:
    rows = [json.loads(line) for line in (MEMES / f"{split}.jsonl").read_text().splitlines()]
    return [row["text"] for row in rows][:count]


def batches(texts: list[str], max_length: int, batch: int, grid: int = 49, dim: int = 1280):
    from mmtk.tokens import TOKENS, tokenize
    from mmtk.training import Batch

    ids, lengths = tokenize(texts, TOKENS, max_length)
    generator = torch.Generator().manual_seed(0)
    out = []
    for start in range(0, len(texts), batch):
        part = torch.as_tensor(ids[start:start + batch])
        steps = int(lengths[start:start + batch].max())
        mask = torch.arange(steps)[None, :] < torch.as_tensor(lengths[start:start + batch])[:, None]
        image = torch.randn(len(part), grid, dim, generator=generator)
        out.append(Batch({"tokens@text": part[:, :steps], "img:seq": image}, masks={"tokens@text": mask, "img:seq": torch.ones(len(part), grid, dtype=torch.bool)}))
    return out


def models(max_len: int) -> dict:
    from transformers import VisualBertConfig

    from mmtk.models import MODELS
    from mmtk.models.bert import VisualBertFusion
    from mmtk.training import InputSpec

    inputs = {"tokens@text": InputSpec("tokens@text", 30522, "tokens", max_len), "img:seq": InputSpec("img:seq", 1280, "sequence", 49)}
    heads = {"label": 2}
    base = VisualBertConfig(  # uclanlp/visualbert-nlvr2-coco-pre's shape
        vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        visual_embedding_dim=1024, pad_token_id=0,
    )
    return {
        "visualbert (minilm, 6 x 384)": MODELS.get("visualbert")(inputs, heads, weights="minilm").eval(),
        "tinybert (minilm, 4 x 312)": MODELS.get("tinybert")(inputs, heads, weights="minilm").eval(),
        "visualbert (hub shape, 12 x 768)": VisualBertFusion(inputs, heads, base).eval(),
    }


def count(model, skip_embeddings: bool = False) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not (skip_embeddings and "word_embeddings" in n))


@torch.no_grad()
def round_rates(built: dict, data) -> dict:
    """Items/s of each model over ``data``, the models taking turns batch by batch, so
    that load from other work on the machine falls on all of them alike."""
    seconds = {name: 0.0 for name in built}
    for batch in data:
        for name, model in built.items():
            started = time.perf_counter()
            model(batch)
            seconds[name] += time.perf_counter() - started
    items = sum(len(batch) for batch in data)
    return {name: items / spent for name, spent in seconds.items()}


def speed(args) -> dict:
    data = batches(captions("test", args.items), args.max_length, args.batch)
    built = models(args.max_length)
    round_rates(built, data[:1])  # warm-up
    rates = {name: [] for name in built}
    for _ in range(args.rounds):
        for name, rate in round_rates(built, data).items():
            rates[name].append(rate)
    teacher, student = list(built)[:2]
    ratios = [s / t for s, t in zip(rates[student], rates[teacher])]
    base_ratios = [s / t for s, t in zip(rates[student], rates[list(built)[2]])]
    return {
        "models": {
            name: {
                "parameters": count(model), "parameters_without_word_embeddings": count(model, True),
                "items_per_s_median": statistics.median(rates[name]), "items_per_s": rates[name],
            }
            for name, model in built.items()
        },
        "student_over_minilm_teacher": {"median": statistics.median(ratios), "rounds": ratios},
        "student_over_hub_shape_teacher": {"median": statistics.median(base_ratios), "rounds": base_ratios},
    }


def init() -> dict:
    import torch.nn.functional as F
    from transformers import BertConfig, BertModel

    import mmtk.models.bert_weights as weights
    from mmtk.tokens import TOKENS, tokenize

    source = weights.load_source("minilm", allow_visual=False, hub_hint="")
    ids, lengths = tokenize(captions("train", 200), TOKENS, 64)
    ids = torch.as_tensor(ids)
    mask = (torch.arange(ids.shape[1])[None, :] < torch.as_tensor(lengths)[:, None]).long()
    pairs = torch.triu_indices(len(ids), len(ids), 1)

    def similarities(states):
        pooled = F.normalize((states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=1)
        return (pooled @ pooled.T)[pairs[0], pairs[1]]

    def states(model):
        with torch.no_grad():
            return model.eval()(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states

    teacher = states(source.model)
    config = BertConfig(vocab_size=30522, hidden_size=312, num_hidden_layers=4, num_attention_heads=12, intermediate_size=1200)
    variants = {}
    torch.manual_seed(0)
    copy = BertModel(config)
    weights.project_bert(source, copy, 4)
    variants["mmtk copy (largest gain x spread coordinates)"] = copy
    chosen = weights.residual_coordinates
    weights.residual_coordinates = lambda state, width: torch.arange(width)
    try:
        first = BertModel(config)
        weights.project_bert(source, first, 4)
    finally:
        weights.residual_coordinates = chosen
    variants["first 312 coordinates"] = first
    torch.manual_seed(0)
    variants["random BERT"] = BertModel(config)
    out = {}
    for name, model in variants.items():
        mine = states(model)
        out[name] = [
            round(float(torch.corrcoef(torch.stack([similarities(teacher[layer]), similarities(mine[layer])]))[0, 1]), 3)
            for layer in range(5)
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--items", type=int, default=48, help="test captions per round (at most 120)")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--skip", choices=["speed", "init"], action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {"threads": torch.get_num_threads()}
    if "speed" not in args.skip:
        report["speed"] = speed(args)
    if "init" not in args.skip:
        report["init"] = init()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
