"""detr with a tiny random DETR (no timm) saved to a directory: which decoder states are
kept, batch independence, and extract-features -> train through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmtk.backbones import BadInput, resolve_backbone
from mmtk.backbones.detr import kept_queries
from mmtk.cli.app import app
from mmtk.errors import UsageError
from tiny_models import save_tiny_detr, write_image

NO_OBJECT = 3  # the tiny model has 3 classes; index 3 is "no object"


@pytest.fixture(scope="module")
def tiny_detr_dir(tmp_path_factory):
    return save_tiny_detr(tmp_path_factory.mktemp("tiny_detr"))


@pytest.fixture
def encoder(tiny_detr_dir):
    return resolve_backbone(f"detr:{tiny_detr_dir}").build("cpu")


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    return str(write_image(tmp_path_factory.mktemp("detr_images") / "photo.png", seed=5))


def forward(encoder, path):
    """Decoder states (100, 16) and class log-probabilities (100, 4) of one image."""
    with torch.inference_mode():
        outputs = encoder.model(pixel_values=encoder.load(path)[None])
    logits = outputs.logits[0].double().numpy()
    return outputs.last_hidden_state[0].numpy(), logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)


def encode_one(encoder, path):
    return encoder.encode(encoder.collate([encoder.load(path)]))[0]


def test_resolves_without_loading(tiny_detr_dir):
    config = resolve_backbone(f"detr:{tiny_detr_dir}")
    assert (config.spec, config.kind, config.modality, config.dim) == (f"detr:{tiny_detr_dir.resolve()}", "sequence", "image", 16)
    assert resolve_backbone("detr").spec == "detr:facebook/detr-resnet-50"
    assert resolve_backbone("detr").settings["revision"] == "no_timm"
    with pytest.raises(UsageError, match="encodes images, not text"):
        resolve_backbone(f"detr:{tiny_detr_dir}", "text")
    with pytest.raises(UsageError, match="not found"):
        resolve_backbone("detr:./no-such-detr")


def test_keeps_the_queries_that_predict_an_object_in_query_order(encoder, picture):
    # Random weights put every query in one class; move the no-object bias to the median
    # margin so that about half the queries predict an object.
    hidden, log_probs = forward(encoder, picture)
    margin = log_probs[:, :NO_OBJECT].max(axis=1) - log_probs[:, NO_OBJECT]
    with torch.no_grad():
        encoder.model.class_labels_classifier.bias[NO_OBJECT] += float(np.median(margin))
    hidden, log_probs = forward(encoder, picture)
    objects = np.flatnonzero(log_probs.argmax(axis=1) != NO_OBJECT)
    assert 10 < len(objects) < 90

    rows = encode_one(encoder, picture)
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, hidden[objects], atol=1e-5)


def test_no_object_everywhere_keeps_the_four_likeliest_objects(encoder, picture):
    with torch.no_grad():
        encoder.model.class_labels_classifier.bias[NO_OBJECT] += 100.0
    hidden, log_probs = forward(encoder, picture)
    assert (log_probs.argmax(axis=1) == NO_OBJECT).all()
    likeliest = np.sort(np.argsort(-log_probs[:, :NO_OBJECT].max(axis=1))[:4])

    rows = encode_one(encoder, picture)
    assert rows.shape == (4, 16)
    np.testing.assert_allclose(rows, hidden[likeliest], atol=1e-5)


def test_an_object_everywhere_keeps_all_queries(encoder, picture):
    with torch.no_grad():
        encoder.model.class_labels_classifier.bias[NO_OBJECT] -= 100.0
    hidden, _ = forward(encoder, picture)
    rows = encode_one(encoder, picture)
    assert rows.shape == (100, 16)
    np.testing.assert_allclose(rows, hidden, atol=1e-5)


def test_kept_queries_rule():
    hidden = torch.arange(6, dtype=torch.float32)[:, None].repeat(1, 2)
    # Columns: two classes, then no-object. Queries 1 and 4 predict an object.
    logits = torch.tensor([[0, 1, 5], [4, 1, 0], [2, 0, 3], [0, 0, 9], [1, 3, 2], [0, 3, 4.0]])
    assert kept_queries(hidden, logits)[:, 0].tolist() == [1, 4]
    # All no-object: the likeliest objects are queries 1, 5, 4, 2; kept in query order.
    logits = torch.tensor([[1, 0, 20], [4, 1, 20], [2, 0, 20], [0, 0, 20], [1, 3, 20], [0, 3.5, 20]])
    assert kept_queries(hidden, logits)[:, 0].tolist() == [1, 2, 4, 5]
    assert kept_queries(hidden[:3], logits[:3])[:, 0].tolist() == [0, 1, 2]  # fewer than 4 queries


def test_features_do_not_depend_on_the_batch(encoder, tmp_path):
    # Two aspect ratios, so two input sizes: each is run without padding.
    paths = [str(write_image(tmp_path / f"{i}.png", seed=i, size=size)) for i, size in enumerate([(96, 80), (40, 120), (96, 80)])]
    batch = encoder.encode(encoder.collate([encoder.load(p) for p in paths]))
    assert encoder.load(paths[0]).shape != encoder.load(paths[1]).shape
    for path, rows in zip(paths, batch):
        # Float noise of batched convolutions only: zero padding moved states by ~0.1.
        np.testing.assert_allclose(rows, encode_one(encoder, path), atol=1e-4)


def test_not_a_detr_checkpoint(tiny_bert_dir):
    with pytest.raises(UsageError, match="is a bert model, not DETR"):
        resolve_backbone(f"detr:{tiny_bert_dir}").build("cpu")


def test_unreadable_image_is_a_bad_input(encoder, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not a picture")
    with pytest.raises(BadInput, match="cannot decode image"):
        encoder.load(str(broken))


def test_extract_then_train_from_the_command_line(tiny_detr_dir, tmp_path):
    runner = CliRunner()
    rows = []
    for i in range(8):
        write_image(tmp_path / f"p{i}.png", seed=20 + i, size=(64 + 8 * (i % 3), 56))
        rows.append({"id": f"p{i}", "img": f"p{i}.png", "label": i % 2})
    rows.insert(3, {"id": "broken", "img": "broken.jpg", "label": 0})
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    data = tmp_path / "photos.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    spec, store = f"detr:{tiny_detr_dir}", str(tmp_path / "store")

    failed = runner.invoke(app, ["extract-features", str(data), "--backbone", spec, "--store", store])
    assert failed.exit_code == 2
    assert f"{data}:4" in failed.stderr and "'broken'" in failed.stderr and "cannot decode image" in failed.stderr

    result = runner.invoke(app, ["extract-features", str(data), "--backbone", spec, "--store", store, "--on-error", "skip", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(b["computed"] + b["cached"], b["skipped"]) for b in report["backbones"]] == [(8, 1)]
    assert len(report["skipped"]) == 1 and "'broken'" in report["skipped"][0]

    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps(row) + "\n" for row in rows if row["id"] != "broken"))
    run = tmp_path / "run"
    result = runner.invoke(app, [
        "train", str(clean), "--features", spec, "--model", "concat", "--task", "label:binary",
        "--out", str(run), "--epochs", "2", "--val-split", "0.25", "--store", store, "--json",
    ])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert [f["backbone_spec"] for f in config["features"]] == [f"detr:{tiny_detr_dir.resolve()}"]


def test_timm_checkpoint_without_timm_says_what_to_do(tmp_path, monkeypatch):
    from transformers import DetrConfig

    import mmtk.backbones.detr as detr

    DetrConfig(use_timm_backbone=True).save_pretrained(tmp_path)  # the layout of facebook/detr-resnet-50's main
    real_find_spec = detr.find_spec
    monkeypatch.setattr(detr, "find_spec", lambda name: None if name == "timm" else real_find_spec(name))
    with pytest.raises(UsageError, match="builds its ResNet backbone with timm, which is not installed") as error:
        resolve_backbone(f"detr:{tmp_path}").build("cpu")
    assert "pip install timm" in error.value.hint
