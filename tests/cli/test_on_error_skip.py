"""``--on-error skip`` through train, evaluate and predict: items that cannot be encoded
are left out, listed one warning line each, and the rest is trained, evaluated or
predicted (issue 16 item 5)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from mmtk.backbones import BACKBONES
from mmtk.backbones.clip import resolve_clip
from mmtk.cli.app import app
from tiny_models import save_tiny_clip, write_image

runner = CliRunner()
BAD = {3: "i3.jpg", 7: "i7.jpg"}  # rows (0-based) whose image cannot be decoded


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))
    BACKBONES.add("skip-clip", lambda arg, modality: dataclasses.replace(
        resolve_clip(f"local-dir:{directory}", modality), spec="skip-clip", name="skip-clip"))
    yield "skip-clip"
    BACKBONES.remove("skip-clip")


@pytest.fixture
def data(tmp_path):
    rows = []
    for index in range(12):
        name = f"i{index}.jpg"
        if index in BAD:
            (tmp_path / name).write_text(f"not an image {index}")
        else:
            write_image(tmp_path / name, seed=index)
        rows.append(json.dumps({"id": f"i{index}", "image": name, "label": index % 2}))
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def skipped_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: skipped")]


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def test_train_evaluate_and_predict_skip_the_items_extraction_skipped(tiny, data, tmp_path):
    store = tmp_path / "store"
    extracted = invoke("extract-features", data, "--backbone", tiny, "--store", store, "--on-error", "skip")
    assert extracted.exit_code == 0, extracted.output
    train = ["train", data, "--features", tiny, "--model", "concat", "--task", "label:binary", "--epochs", "2", "--store", store]

    refused = invoke(*train, "--out", tmp_path / "run0")
    assert refused.exit_code == 2 and "2 of 12" in refused.stderr  # without skip: the items are named as missing
    trained = invoke(*train, "--out", tmp_path / "run", "--on-error", "skip", "--json")
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["train_items"] + json.loads(trained.stdout)["val_items"] == 10
    lines = skipped_lines(trained.stderr)
    assert len(lines) == 2 and "data.jsonl:4 (item 'i3')" in lines[0] and "data.jsonl:8 (item 'i7')" in lines[1]

    fresh = tmp_path / "fresh"  # evaluate and predict extract what this store lacks
    refused = invoke("evaluate", tmp_path / "run", data, "--store", fresh)
    assert refused.exit_code == 2 and "data.jsonl:4 (item 'i3')" in refused.stderr and refused.stderr.count("\n") == 1
    evaluated = invoke("evaluate", tmp_path / "run", data, "--store", fresh, "--on-error", "skip", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["n"] == 10
    lines = skipped_lines(evaluated.stderr)
    assert len(lines) == 2 and all("cannot decode image" in line for line in lines)
    assert "i3.jpg" in lines[0] and "i7.jpg" in lines[1]

    predicted = invoke("predict", tmp_path / "run", data, "--store", fresh, "--on-error", "skip")
    assert predicted.exit_code == 0, predicted.output
    ids = [json.loads(line)["id"] for line in predicted.stdout.splitlines()]
    assert ids == [f"i{index}" for index in range(12) if index not in BAD]
    assert len(skipped_lines(predicted.stderr)) == 2


def test_skip_with_nothing_left_fails_naming_the_first_item(tiny, data, tmp_path):
    for index in range(12):
        (tmp_path / f"i{index}.jpg").write_text(f"not an image {index}")
    store = tmp_path / "store"
    write_image(tmp_path / "ok.jpg", seed=1)
    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps({"id": f"t{i}", "image": "ok.jpg", "label": i % 2}) + "\n" for i in range(4))
    )
    trained = invoke("train", tmp_path / "train.jsonl", "--features", tiny, "--model", "concat", "--task", "label:binary",
                     "--epochs", "1", "--store", store, "--out", tmp_path / "run", "--val", tmp_path / "train.jsonl")
    assert trained.exit_code == 2 and "extract-features" in trained.stderr  # never extracted: says how to
    assert invoke("extract-features", tmp_path / "train.jsonl", "--backbone", tiny, "--store", store).exit_code == 0
    trained = invoke("train", tmp_path / "train.jsonl", "--features", tiny, "--model", "concat", "--task", "label:binary",
                     "--epochs", "1", "--store", store, "--out", tmp_path / "run", "--val", tmp_path / "train.jsonl")
    assert trained.exit_code == 0, trained.output
    evaluated = invoke("evaluate", tmp_path / "run", data, "--store", store, "--on-error", "skip")
    assert evaluated.exit_code == 2
    assert "every item of" in evaluated.stderr and "data.jsonl:1 (item 'i0')" in evaluated.stderr
    assert evaluated.stderr.count("\n") == 1 + len(skipped_lines(evaluated.stderr))
