"""Sequence forms from the shell: extract-features --sequence [--max-length N], then
train/evaluate/predict on BACKBONE:seq features, with the real offline backbones."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app
from tiny_models import WORDS, write_image

runner = CliRunner()


def mmtk(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def extract_report(result) -> dict:
    assert result.exit_code == 0, result.output
    (backbone,) = json.loads(result.stdout)["backbones"]
    return backbone


@pytest.fixture
def data(tmp_path):
    rows = []
    for i in range(16):
        image = write_image(tmp_path / "img" / f"{i}.png", seed=i, size=(64, 48))
        words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(3 + i % 5))
        rows.append({"id": f"m{i}", "img": str(image.relative_to(tmp_path)), "text": words, "label": i % 2})
    path = tmp_path / "memes.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.slow  # both real backbones, a training run, evaluation and prediction
def test_sequence_features_from_extraction_to_prediction(tmp_path, data):
    tokens = extract_report(mmtk("extract-features", data, "--backbone", "minilm", "--sequence", "--json"))
    assert (tokens["computed"], tokens["cached"]) == (16, 0)
    extract_report(mmtk("extract-features", data, "--backbone", "efficientnet-lite0", "--json"))

    run = tmp_path / "run"
    result = mmtk(
        "train", data, "--features", "minilm:seq,efficientnet-lite0", "--model", "gmu", "--task", "label:binary",
        "--out", run, "--epochs", "3", "--json",
    )
    assert result.exit_code == 0, result.output
    features = json.loads((run / "config.json").read_text())["features"]
    assert [(f["ref"], f["sequence"]) for f in features] == [("minilm:seq", True), ("efficientnet-lite0", False)]

    result = mmtk("evaluate", run, data, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] == 16
    result = mmtk("predict", run, data)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [f"m{i}" for i in range(16)]

    listing = json.loads(mmtk("store", "ls", "--json").stdout)["feature_sets"]
    assert sorted((s["backbone"], s["variant"], s["kind"], s["dim"], s["items"]) for s in listing) == [
        ("efficientnet-lite0", "", "vector", 1280, 16), ("minilm", "seq max_length=128", "sequence", 384, 16),
    ]


def test_max_length_is_part_of_the_sequence_feature(tmp_path, data):
    extract_report(mmtk("extract-features", data, "--backbone", "minilm", "--sequence", "--json"))
    # Another max_length is another feature: everything is computed again.
    short = extract_report(mmtk("extract-features", data, "--backbone", "minilm", "--sequence", "--max-length", "4", "--json"))
    assert (short["computed"], short["cached"]) == (16, 0)
    listing = json.loads(mmtk("store", "ls", "--json").stdout)["feature_sets"]
    assert sorted((s["backbone"], s["variant"]) for s in listing) == [
        ("minilm", "seq max_length=128"), ("minilm", "seq max_length=4"),
    ]
    # The backbone's name alone is ambiguous now; the error tells the two apart.
    result = mmtk("store", "info", "minilm")
    assert result.exit_code == 2
    assert "(minilm seq max_length=128)" in result.stderr and "(minilm seq max_length=4)" in result.stderr

    run = tmp_path / "run"
    result = mmtk(
        "train", data, "--features", "minilm:seq", "--max-length", "4", "--model", "concat", "--task", "label:binary",
        "--out", run, "--epochs", "2", "--json",
    )
    assert result.exit_code == 0, result.output
    (feature,) = json.loads((run / "config.json").read_text())["features"]
    assert feature["options"] == {"max_length": 4}
    # Evaluation reads the run's max_length: the 4-token features, nothing extracted.
    result = mmtk("evaluate", run, data, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(mmtk("store", "ls", "--json").stdout)["feature_sets"]) == 2

    result = mmtk(
        "train", data, "--features", "minilm:seq", "--max-length", "8", "--model", "concat", "--task", "label:binary",
        "--out", tmp_path / "run8",
    )
    assert result.exit_code == 2
    assert "--backbone minilm --column text --sequence --max-length 8" in result.stderr


def test_a_backbone_without_a_sequence_form_exits_2(tmp_path, data):
    result = mmtk(
        "train", data, "--features", "pixels:seq", "--model", "concat", "--task", "label:binary", "--out", tmp_path / "run",
    )
    assert result.exit_code == 2
    assert "backbone 'pixels' has no sequence form, only its pooled vector" in result.stderr
    assert "Traceback" not in result.output
    result = mmtk("extract-features", data, "--backbone", "pixels", "--sequence")
    assert result.exit_code == 2
    assert "has no sequence form" in result.stderr
