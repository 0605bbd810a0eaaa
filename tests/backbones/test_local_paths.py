"""Local model paths are recorded and looked up in their absolute form (issue 16 item
17): a run made with ``hf:./tinybert`` evaluates from another folder, and ``store info
hf:./tinybert`` finds what ``store ls`` shows."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from mmtk.backbones import resolve_backbone
from mmtk.backbones.registry import absolute_spec
from mmtk.cli.app import app
from mmtk.features import FeatureRef

runner = CliRunner()


def test_relative_paths_become_absolute_and_nothing_else_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "bert").mkdir(parents=True)
    (tmp_path / "weights.pt").write_bytes(b"")
    bert = str(tmp_path / "models" / "bert")
    assert absolute_spec("hf:./models/bert") == f"hf:{bert}"
    assert absolute_spec("hf:models/bert/") == f"hf:{bert}"  # an existing folder written bare
    assert absolute_spec("detr:models/../models/bert") == f"detr:{bert}"
    assert absolute_spec("clip:local-dir:models/bert") == f"clip:local-dir:{bert}"
    assert absolute_spec("clip:ViT-B-32@weights.pt") == f"clip:ViT-B-32@{tmp_path / 'weights.pt'}"
    assert absolute_spec("hf:./not/there") == f"hf:{tmp_path / 'not' / 'there'}"  # refused later, by name
    for unchanged in ("minilm", "efficientnet-lite0", "pixels:8:rgb", "hf:bert-base-uncased", "clip:ViT-B-32@laion2b_s34b_b79k",
                      "clip:hf-hub:org/name", "hf:" + bert):
        assert absolute_spec(unchanged) == unchanged
    ref = FeatureRef.parse("hf:./models/bert:seq@title")
    assert (ref.backbone, ref.sequence, ref.column) == (f"hf:{bert}", True, "title")


def test_a_run_with_a_relative_model_path_works_from_another_folder(tmp_path, monkeypatch, tiny_bert_dir):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(tiny_bert_dir, work / "tinybert")
    rows = [{"id": str(i), "text": f"word{i % 3} item {i}", "label": i % 2} for i in range(12)]
    (work / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    store = str(tmp_path / "store")
    monkeypatch.chdir(work)
    assert runner.invoke(app, ["extract-features", "data.jsonl", "--backbone", "hf:./tinybert", "--store", store]).exit_code == 0
    trained = runner.invoke(app, ["train", "data.jsonl", "--features", "hf:./tinybert", "--model", "concat", "--task", "label:binary",
                                  "--epochs", "2", "--out", "run", "--store", store])
    assert trained.exit_code == 0, trained.output
    absolute = f"hf:{work / 'tinybert'}"
    assert [entry["backbone"] for entry in json.loads((work / "run" / "config.json").read_text())["features"]] == [absolute]
    assert resolve_backbone("hf:./tinybert").spec == absolute  # what the store lists

    info = runner.invoke(app, ["store", "info", "hf:./tinybert", "--store", store, "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["backbone"] == absolute and json.loads(info.stdout)["items"] == 12

    monkeypatch.chdir(tmp_path)  # elsewhere: the recorded path still names the model
    evaluated = runner.invoke(app, ["evaluate", str(work / "run"), str(work / "data.jsonl"), "--store", store, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["n"] == 12


def test_hf_backbones_take_local_dir_as_clip_does(tiny_bert_dir):
    """``hf:local-dir:PATH`` (clip's spelling) names the folder, not a hub repo."""
    import pytest

    from mmtk.errors import UsageError

    plain, spelled = resolve_backbone(f"hf:{tiny_bert_dir}"), resolve_backbone(f"hf:local-dir:{tiny_bert_dir}")
    assert spelled.spec == plain.spec == f"hf:{tiny_bert_dir.resolve()}" and spelled.fingerprint == plain.fingerprint
    with pytest.raises(UsageError, match="hf model directory not found: /no/such/model"):
        resolve_backbone("hf:local-dir:/no/such/model")
