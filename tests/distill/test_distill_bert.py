"""The issue's headline shape on tiny checkpoints: a VisualBERT teacher fine-tuned by
distill, a TinyBERT-shaped student distilled with MSD meta, both over word pieces and a
stored image sequence, from the shell; then evaluate's distillation report."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tiny_models import memes_like, save_tiny_bert, save_tiny_visualbert

TINY = {"layers": 1, "hidden": 32, "attention_heads": 2, "intermediate": 64}  # save_tiny_bert's shape


def mmtk(*args):
    from mmtk.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_distill_a_visualbert_teacher_into_a_tinybert_student_with_msd_meta(tmp_path):
    bert = save_tiny_bert(tmp_path / "tiny-bert")
    visualbert = save_tiny_visualbert(tmp_path / "tiny-visualbert", visual_dim=12)
    data = memes_like(tmp_path, 96, seed=0)
    out = tmp_path / "student"
    student_args = [arg for key, value in {"weights": bert, **TINY}.items() for arg in ("--student-arg", f"{key}={value}")]
    result = mmtk(
        "distill", data, "--teacher", "visualbert", "--teacher-weights", visualbert, "--student", "tinybert", *student_args,
        "--msd", "meta", "--features", f"tokens:{bert}@text,efficientnet-lite0:seq", "--task", "label:binary",
        "--max-length", "8", "--epochs", "6", "--lr", "3e-3", "--out", out, "--json",
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["teacher_trained"] and summary["teacher"] == str(out / "teacher")
    assert summary["speed"]["teacher"]["parameters"] > 0 and summary["speed"]["student"]["parameters"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == "tinybert" and config["distillation"]["msd"] == "meta"
    assert config["distillation"]["views"] == ["full", "only:text", "only:image"]
    assert json.loads((out / "teacher" / "config.json").read_text())["model"]["name"] == "visualbert"
    first = json.loads((out / "train_log.jsonl").read_text().splitlines()[0])["train_terms"]
    assert {"kd", "msd.text", "msd.image", "meta", "ce"} <= set(first)

    result = mmtk("evaluate", out, data, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["distillation"]
    assert set(report["tasks"]["label"]["consistency"]) == {"text", "image"}
    assert 0 <= report["agreement"] <= 1 and report["kl_to_teacher"] >= 0
