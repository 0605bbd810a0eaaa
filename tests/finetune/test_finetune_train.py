"""Fine-tuning tiny encoders inside the training loop: the loss falls, frozen layers stay
put, the backbone has its own learning rate, the run predicts from raw media what it
validated, and features extracted from the fine-tuned tower are a new feature set."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmtk.backbones import resolve_backbone
from mmtk.data import read_dataset
from mmtk.errors import UsageError
from mmtk.finetune.settings import FinetuneSettings
from mmtk.store import FeatureStore
from mmtk.train import train
from tiny_models import WORDS, save_tiny_bert, save_tiny_clip, write_image


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """40 items whose label is in the text (happy sun / sad rain) and in the image's
    brightness; a 2-layer tiny BERT and a tiny CLIP."""
    root = tmp_path_factory.mktemp("finetune")
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    rows = []
    for i in range(40):
        label = i % 2
        words = ["happy", "sun"] if label else ["sad", "rain"]
        text = " ".join(words + [WORDS[int(k)] for k in rng.integers(0, len(WORDS), 3)])
        write_image(root / "img" / f"{i}.png", seed=i, size=(40, 36))
        rows.append({"id": f"x{i}", "text": text, "image": f"img/{i}.png", "label": label})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
    (root / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[32:]))
    return {
        "root": root, "bert": save_tiny_bert(root / "bert", layers=2), "clip": save_tiny_clip(root / "clip"),
        "train": read_dataset(root / "train.jsonl"), "val": read_dataset(root / "val.jsonl"),
    }


def _train(world, tmp_path, features, finetune, **options):
    settings = {"epochs": 6, "batch_size": 8, "lr": 3e-3, "device": "cpu", "seed": 0, "patience": 50, **options}
    return train(
        world["train"], val_dataset=world["val"], features=features, model="concat", tasks=["label"], out=tmp_path / "run",
        store=FeatureStore(tmp_path / "store"), finetune=finetune, **settings,
    )


def _predicted_loss(run, data, store) -> float:
    """Cross-entropy of the saved run's predictions from the raw data."""
    from mmtk.predict import predict

    records = predict(run, data, store=store, device="cpu")
    labels = [json.loads(line)["label"] for line in data.read_text().splitlines()]
    return -float(np.mean([math.log(r["probs"][str(y)]) for r, y in zip(records, labels)]))


def test_text_finetuning_learns_freezes_and_round_trips(world, tmp_path):
    settings = FinetuneSettings("text", backbone_lr=1e-3, freeze_layers=1)
    report = _train(world, tmp_path, [f"hf:{world['bert']}@text"], settings)
    losses = [entry["train_loss"] for entry in report.log]
    assert losses[-1] < losses[0]

    saved = load_file(str(report.run / "model.safetensors"))
    base = load_file(str(world["bert"] / "model.safetensors"))
    for name, before in base.items():
        after = saved[f"towers.0.model.{name}"]
        frozen = name.startswith(("embeddings.", "encoder.layer.0."))
        if frozen:
            assert torch.equal(after, before), f"{name} is frozen but changed"
    changed = [n for n in base if n.startswith("encoder.layer.1.") and not torch.equal(saved[f"towers.0.model.{n}"], base[n])]
    assert changed, "the unfrozen layer did not train"

    # Predicting from the raw texts with the saved run gives the validation loss of the
    # best epoch, as measured on the in-memory model at the end of training.
    best = report.log[report.best_epoch - 1]["val_loss"]
    assert _predicted_loss(report.run, world["root"] / "val.jsonl", FeatureStore(tmp_path / "store")) == pytest.approx(best, abs=1e-5)
    config = json.loads((report.run / "config.json").read_text())
    assert config["finetune"]["settings"]["freeze_layers"] == 1
    assert (report.run / "towers" / "0" / "tokenizer.json").is_file()


def test_backbone_lr_sets_the_parameter_groups(world):
    from mmtk.finetune.model import FinetunedModel, param_groups
    from mmtk.models import MODELS
    from mmtk.training import adamw
    from mmtk.training.inputs import InputSpec

    tower = resolve_backbone(f"hf:{world['bert']}", "text").build_trainable("cpu")
    tower.freeze(1)
    net = FinetunedModel({"t": tower}, MODELS.get("concat")({"t": InputSpec("t", tower.dim)}, {"label": 2}))
    optimizer = adamw(param_groups(net, 1e-3, 2e-5), lr=1e-3, weight_decay=0.0)
    head, backbone = optimizer.param_groups
    assert (head["lr"], backbone["lr"]) == (1e-3, 2e-5)
    assert {id(p) for p in backbone["params"]} == {id(p) for p in tower.parameters() if p.requires_grad}
    assert {id(p) for p in head["params"]} == {id(p) for p in net.fusion.parameters()}


def test_image_finetuning_with_workers_round_trips_from_raw_images(world, tmp_path):
    from mmtk.extract import extract_features

    for split in ("train", "val"):
        extract_features(world[split], f"hf:{world['bert']}", store=FeatureStore(tmp_path / "store"), column="text", device="cpu")
    settings = FinetuneSettings("image", backbone_lr=1e-3, workers=1, grad_checkpoint=True)
    report = _train(world, tmp_path, [f"clip:local-dir:{world['clip']}", f"hf:{world['bert']}@text"], settings, epochs=3)
    config = json.loads((report.run / "config.json").read_text())
    assert [entry.get("finetune", False) for entry in config["features"]] == [True, False]
    assert (report.run / "towers" / "0" / "open_clip_config.json").is_file()
    best = report.log[report.best_epoch - 1]["val_loss"]
    # The text feature is stored: the fine-tuned run reads it from the store, the image raw.
    assert _predicted_loss(report.run, world["root"] / "val.jsonl", FeatureStore(tmp_path / "store")) == pytest.approx(best, abs=1e-5)


def test_extracting_a_fine_tuned_tower_is_a_new_feature_set(world, tmp_path, monkeypatch):
    report = _train(world, tmp_path, [f"hf:{world['bert']}@text"], FinetuneSettings("text", backbone_lr=1e-3), epochs=2)
    base = resolve_backbone(f"hf:{world['bert']}", "text")
    tuned = resolve_backbone(f"run:{report.run}", "text")
    assert tuned.fingerprint != base.fingerprint
    assert tuned.spec == f"finetuned:{report.run.resolve()}" and tuned.dim == base.dim
    assert resolve_backbone(f"finetuned:{report.run}", "text").fingerprint == tuned.fingerprint

    store = tmp_path / "store"
    monkeypatch.setenv("MMTK_STORE", str(store))
    data = world["root"] / "train.jsonl"
    done = subprocess.run([sys.executable, "-m", "mmtk", "extract-features", str(data), "--backbone", f"run:{report.run}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # The extracted features train a model like any stored feature (finetuned:RUN@COLUMN).
    plain = train(
        world["train"], val_dataset=world["train"], features=[f"finetuned:{report.run}@text"], model="logreg", tasks=["label"],
        out=tmp_path / "on-tuned", store=FeatureStore(store), device="cpu",
    )
    assert plain.train_items == 32


def test_gpt2_style_text_tower_fine_tunes(world, tmp_path):
    from tiny_models import save_tiny_gpt2

    gpt2 = save_tiny_gpt2(tmp_path / "gpt2")
    report = _train(world, tmp_path, [f"hf:{gpt2}@text"], FinetuneSettings("text", backbone_lr=1e-3, text_head="bilstm-attention"), epochs=4)
    config = json.loads((report.run / "config.json").read_text())
    tower = config["finetune"]["towers"][0]["tower"]
    assert (tower["model_type"], tower["pooling"], tower["text_head"]) == ("gpt2", "last", "bilstm-attention")
    assert report.log[-1]["train_loss"] < report.log[0]["train_loss"]


def test_refusals_name_the_fix(world, tmp_path):
    with pytest.raises(UsageError, match="no feature in --features encodes image"):
        _train(world, tmp_path, [f"hf:{world['bert']}@text"], "image")
    with pytest.raises(UsageError, match="fitted whole"):
        train(world["train"], features=[f"hf:{world['bert']}@text"], model="logreg", tasks=["label"], out=tmp_path / "r",
              store=FeatureStore(tmp_path / "store"), finetune="text")
    with pytest.raises(UsageError, match="add --finetune text"):
        _train(world, tmp_path, [f"hf:{world['bert']}@text"], None, model_args={"text_head": "bilstm-attention"})
    with pytest.raises(UsageError, match="text_pool=mean applies to a fine-tuned text backbone"):
        _train(world, tmp_path, [f"clip:local-dir:{world['clip']}"], "image", model_args={"text_pool": "mean"})
    with pytest.raises(UsageError, match="one vector per item"):
        _train(world, tmp_path, [f"hf:{world['bert']}:seq@text"], "text")


def test_cli_trains_with_finetune_and_refuses_bad_options(world, tmp_path, monkeypatch):
    monkeypatch.setenv("MMTK_STORE", str(tmp_path / "store"))
    base = [sys.executable, "-m", "mmtk", "train", str(world["root"] / "train.jsonl"), "--val", str(world["root"] / "val.jsonl"),
            "--features", f"hf:{world['bert']}@text", "--model", "concat", "--task", "label", "--device", "cpu"]
    done = subprocess.run(base + ["--out", str(tmp_path / "run"), "--finetune", "text", "--epochs", "1", "--batch-size", "16",
                                  "--backbone-lr", "1e-4", "--freeze-layers", "1", "--lowercase-shouting", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["batch_source"] == "media"
    settings = json.loads((tmp_path / "run" / "config.json").read_text())["finetune"]["settings"]
    assert (settings["backbone_lr"], settings["freeze_layers"], settings["lowercase_shouting"]) == (1e-4, 1, True)
    bad = subprocess.run(base + ["--out", str(tmp_path / "bad"), "--finetune", "audio"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--finetune 'audio' is not one of" in bad.stderr


def test_all_modalities_with_absent_images_train_and_predict(world, tmp_path):
    """--finetune all over text and images where some images are missing
    (--missing-modality mask): absent items get a blank input and are masked out."""
    from mmtk.predict import predict

    rows = [json.loads(line) for line in (world["root"] / "train.jsonl").read_text().splitlines()]
    for row in rows[::4]:
        row["image"] = ""
    for row in rows:
        row["image"] = row["image"] and str(world["root"] / row["image"])
    data = tmp_path / "holes.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = read_dataset(data, optional=["image", "text"])
    report = train(
        dataset, features=[f"clip:local-dir:{world['clip']}", f"hf:{world['bert']}@text"], model="gmu", tasks=["label"],
        out=tmp_path / "run", store=FeatureStore(tmp_path / "store"), epochs=2, batch_size=8, device="cpu",
        missing_modality="mask", finetune=FinetuneSettings("all", workers=0),
    )
    records = predict(report.run, data, store=FeatureStore(tmp_path / "store"), device="cpu")
    assert len(records) == len(rows) and all(abs(sum(r["probs"].values()) - 1) < 1e-5 for r in records)
    assert sorted(t["modality"] for t in json.loads((report.run / "config.json").read_text())["finetune"]["towers"]) == ["image", "text"]
