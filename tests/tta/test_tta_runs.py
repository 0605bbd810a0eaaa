"""--tta ten-crop on a run over tiny open_clip image features (a pooled vector and the
clip-patches sequence) and a text feature: the result equals the run's model averaged by
hand over views encoded by hand; the store only gains the views; the command line's
exit codes and records."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmtk.backbones import resolve_backbone
from mmtk.backbones.images import open_rgb
from mmtk.cli.app import app
from mmtk.data import read_dataset
from mmtk.evaluate import evaluate
from mmtk.extract import extract_features
from mmtk.features import Gathered, load_features, pool_steps
from mmtk.inference import forward_source, source_of
from mmtk.predict import predict
from mmtk.runs import load_run
from mmtk.store import FeatureStore
from mmtk.train import train
from mmtk.tta.views import ten_crop
from tiny_models import WORDS, write_image

N = 12
runner = CliRunner()


def write_data(folder):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N):
        size = [(48, 40), (40, 60), (64, 48)][i % 3]
        write_image(folder / "img" / f"{i}.png", seed=100 + i, size=size)
        text = " ".join(WORDS[int(k)] for k in rng.integers(0, len(WORDS), 3))
        rows.append({"id": f"m{i}", "img": f"img/{i}.png", "text": text, "label": "abc"[i % 3]})
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def features_of(clip_dir):
    return {"image": f"clip:local-dir:{clip_dir}", "patches": f"clip-patches:local-dir:{clip_dir}", "text": f"clip:local-dir:{clip_dir}@text"}


def extract_plain(dataset, store, clip_dir, which=("image", "patches", "text")):
    specs = features_of(clip_dir)
    for name in which:
        spec, _, column = specs[name].partition("@")
        extract_features(dataset, spec, store=store, column=column or "img", device="cpu")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_clip_dir):
    """A run over both image features and the text, and one over the text alone."""
    folder = tmp_path_factory.mktemp("tta_runs")
    dataset = read_dataset(write_data(folder))
    store = FeatureStore(folder / "store")
    extract_plain(dataset, store, tiny_clip_dir)
    specs = features_of(tiny_clip_dir)
    fast = dict(store=store, val_dataset=dataset, epochs=30, hidden=16, lr=1e-2, patience=30, device="cpu", seed=0)
    train(dataset, features=list(specs.values()), model="concat", tasks=["label"], out=folder / "both", **fast)
    train(dataset, features=[specs["text"]], model="concat", tasks=["label"], out=folder / "text", **fast)
    return folder, dataset


@pytest.fixture
def store(runs, tmp_path, tiny_clip_dir):
    """A store of this test's own with the plain features (the runs' store stays as trained)."""
    store = FeatureStore(tmp_path / "store")
    extract_plain(runs[1], store, tiny_clip_dir)
    return store


def probs_of(records, classes="abc"):
    return np.array([[record["probs"][c] for c in classes] for record in records])


def views_by_hand(encoder, paths):
    """Per view, one row per image (a vector, or clip-patches' five rows): the encoder
    over each image's ten crops."""
    geometry = encoder.crop_geometry()
    rows = [[] for _ in range(10)]
    for path in paths:
        encoded = encoder.encode(encoder.collate(ten_crop(open_rgb(path, draft_size=geometry.draft_size), geometry)))
        for view in range(10):
            rows[view].append(np.asarray(encoded[view]))
    return [np.stack(view_rows).astype(np.float32) for view_rows in rows]


def test_tta_equals_the_model_averaged_by_hand_over_hand_made_views(runs, store, tiny_clip_dir):
    folder, dataset = runs
    run = load_run(folder / "both")
    specs = features_of(tiny_clip_dir)
    paths = dataset.values("img")
    image = views_by_hand(resolve_backbone(specs["image"], "image").build("cpu"), paths)
    patches = views_by_hand(resolve_backbone(specs["patches"], "image").build("cpu"), paths)
    text = load_features(dataset, [specs["text"]], store)[specs["text"]]
    log_probs = []
    for view in range(10):
        pooled = pool_steps(patches[view], np.full(N, 5), run.preprocessing["pool"])  # as the run pools sequences
        inputs = {specs["image"]: Gathered(image[view]), specs["patches"]: Gathered(pooled), specs["text"]: Gathered(text)}
        logits, _ = forward_source(run, source_of(run, inputs, dataset, "cpu"), device="cpu")
        log_probs.append(torch.log_softmax(logits["label"], dim=1).numpy())
    mean = np.mean(log_probs, axis=0)
    by_hand = np.exp(mean) / np.exp(mean).sum(axis=1, keepdims=True)

    records = predict(run, dataset, store=store, device="cpu", tta="ten-crop")
    np.testing.assert_allclose(probs_of(records), by_hand, atol=1e-5)
    assert all(record["tta"] == "ten-crop" for record in records)
    plain = predict(run, dataset, store=store, device="cpu")
    assert "tta" not in plain[0] and np.abs(probs_of(plain) - by_hand).max() > 1e-3

    result = evaluate(run, dataset, store=store, device="cpu", tta="ten-crop")
    labels = np.array(["abc".index(v) for v in dataset.values("label")])
    assert result["tta"] == "ten-crop" and "tta" not in evaluate(run, dataset, store=store, device="cpu")
    assert result["metrics"]["accuracy"] == pytest.approx(float(np.mean(by_hand.argmax(axis=1) == labels)))


def test_the_store_only_gains_the_views_and_a_rerun_computes_nothing(runs, store, monkeypatch):
    folder, dataset = runs
    before = {s["fingerprint"]: store.info(s["fingerprint"])["digest"] for s in store.feature_sets()}
    first = evaluate(folder / "both", dataset, store=store, device="cpu", tta="ten-crop")

    after = {s["fingerprint"]: s for s in store.feature_sets()}
    assert {fp: store.info(fp)["digest"] for fp in before} == before
    added = [after[fp] for fp in after if fp not in before]
    assert len(added) == 20 and all(s["items"] == N and "ten-crop" in s["variant"] for s in added)
    assert sorted(s["kind"] for s in added) == ["sequence"] * 10 + ["vector"] * 10
    assert store.verify()["ok"]

    def no_compute(*args, **kwargs):
        raise AssertionError("a rerun extracted features again")

    monkeypatch.setattr("mmtk.extract.pipeline._compute", no_compute)
    assert evaluate(folder / "both", dataset, store=store, device="cpu", tta="ten-crop") == first
    assert len(store.feature_sets()) == len(after)


def cli(*args):
    result = runner.invoke(app, [*args])
    return result.exit_code, result.stdout, result.stderr


def test_command_line_records_tta_and_refuses_what_it_cannot_augment(runs, store, monkeypatch, tiny_clip_dir):
    folder, dataset = runs
    monkeypatch.setenv("MMTK_STORE", str(store.root))
    data = str(dataset.source)

    code, out, err = cli("evaluate", str(folder / "both"), data, "--tta", "ten-crop", "--json")
    assert code == 0, err
    assert json.loads(out)["tta"] == "ten-crop"
    code, out, err = cli("predict", str(folder / "both"), data, "--tta", "ten-crop")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == N and {record["tta"] for record in records} == {"ten-crop"}
    code, out, _ = cli("predict", str(folder / "both"), data, "--tta", "ten-crop", "--format", "csv")
    assert code == 0 and {row["tta"] for row in csv.DictReader(io.StringIO(out))} == {"ten-crop"}

    code, out, err = cli("evaluate", str(folder / "both"), data, "--tta", "five-crop")
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == ["error: unknown test-time augmentation 'five-crop'; choose one of: none, ten-crop"]
    code, out, err = cli("predict", str(folder / "text"), data, "--tta", "ten-crop")
    assert (code, out) == (2, "")
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: --tta ten-crop: run {folder / 'text'} has no image feature to augment")
    assert cli("predict", str(folder / "text"), data, "--tta", "none")[0] == 0


def test_on_error_skip_leaves_out_an_image_no_view_can_be_cut_from(runs, store, monkeypatch):
    folder, dataset = runs
    lines = dataset.source.read_text().splitlines()
    (dataset.source.parent / "img" / "broken.png").write_bytes(b"not an image")
    broken = json.loads(lines[0]) | {"id": "broken", "img": "img/broken.png"}
    data = dataset.source.parent / "with_broken.jsonl"
    data.write_text("\n".join([*lines, json.dumps(broken)]) + "\n")
    monkeypatch.setenv("MMTK_STORE", str(store.root))

    code, out, err = cli("predict", str(folder / "both"), str(data), "--tta", "ten-crop", "--on-error", "skip")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [f"m{i}" for i in range(N)]
    assert f"{data}:{N + 1}" in err and "broken" in err and "cannot decode image" in err
    code, _, err = cli("predict", str(folder / "both"), str(data), "--tta", "ten-crop")
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{data}:{N + 1}" in err


def test_items_without_an_image_get_the_plain_prediction(runs, tmp_path, tiny_clip_dir):
    """A run trained with --missing-modality mask: an item with no image has the same
    inputs in every view, so its averaged prediction is its plain one."""
    folder, dataset = runs
    rows = [json.loads(line) for line in dataset.source.read_text().splitlines()]
    for row in rows[:3]:
        row["img"] = ""
    data = dataset.source.parent / "some_blank.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    specs = features_of(tiny_clip_dir)
    store = FeatureStore(tmp_path / "store")
    blanks = read_dataset(data, optional=["image"])
    for spec, column in ((specs["image"], "img"), (specs["text"].partition("@")[0], "text")):
        present = [i for i, value in enumerate(blanks.values(column)) if value]
        extract_features(blanks.subset(present), spec, store=store, column=column, device="cpu")
    run = tmp_path / "masked"
    train(
        blanks, features=[specs["image"], specs["text"]], model="concat", tasks=["label"], out=run, store=store,
        val_dataset=blanks, epochs=10, hidden=8, device="cpu", seed=0, missing_modality="mask",
    )
    plain = probs_of(predict(run, blanks, store=store, device="cpu"))
    tta = probs_of(predict(run, blanks, store=store, device="cpu", tta="ten-crop"))
    np.testing.assert_allclose(tta[:3], plain[:3], atol=1e-6)
    assert np.abs(tta[3:] - plain[3:]).max() > 1e-4


def test_a_comparison_averages_every_run_and_refuses_one_without_images(runs, store, tmp_path, monkeypatch):
    import shutil

    from mmtk.comparison import compare_runs

    folder, dataset = runs
    shutil.copytree(folder / "both", tmp_path / "again")
    result = compare_runs([folder / "both", tmp_path / "again"], dataset, store=store, device="cpu", bootstrap=20, tta="ten-crop")
    assert [entry["result"]["tta"] for entry in result["runs"]] == ["ten-crop", "ten-crop"]
    assert result["runs"][1]["vs_first"]["label"]["accuracy"]["difference"] == 0
    assert result["runs"][0]["result"]["metrics"] == evaluate(folder / "both", dataset, store=store, device="cpu", tta="ten-crop")["metrics"]

    monkeypatch.setenv("MMTK_STORE", str(store.root))
    code, out, err = cli("evaluate", str(folder / "both"), str(folder / "text"), str(dataset.source), "--tta", "ten-crop")
    assert (code, out) == (2, "") and f"run {folder / 'text'} has no image feature" in err
