"""evaluate's plots from what the model computed besides its outputs: collect_predictions
keeps modality weights (models with gates) and class-query decoder outputs from the same
pass, and evaluate --plots draws them; evaluate --report from the command line."""

from __future__ import annotations

import html
import json
import shlex
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmtk.cli.app import app
from mmtk.errors import UsageError
from mmtk.evaluate import collect_predictions, evaluate
from mmtk.predict import predict
from mmtk.store import FeatureStore
from mmtk.train import train
from synthetic_features import FEATURES, xor_split

QUICK = {"epochs": 3, "hidden": 16, "lr": 1e-2, "device": "cpu"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A GMU run (gates) and an mm-transformer run with class queries, on the XOR data."""
    folder = tmp_path_factory.mktemp("runs")
    store = FeatureStore(folder / "store")
    train_ds, test_ds = xor_split(folder, store, n_train=120, n_test=40)
    train(train_ds, features=FEATURES, model="gmu", tasks=["label"], out=folder / "gmu", store=store, **QUICK)
    train(
        train_ds, features=FEATURES, model="mm-transformer", tasks=["label", "bits=p,q:multilabel"], out=folder / "query", store=store,
        model_args={"classifier": "class-query", "num_heads": 2, "feedforward": 32, "layers": 1}, **QUICK,
    )
    return folder, store, test_ds


def test_explain_keeps_the_modality_weights_predict_gives(runs):
    folder, store, test_ds = runs
    predictions = collect_predictions(folder / "gmu", test_ds, store=store, device="cpu", explain=True)
    weights = predictions.extras["explain"]
    assert set(weights) == set(FEATURES) and all(w.shape == (40,) for w in weights.values())
    records = predict(folder / "gmu", test_ds, store=store, device="cpu", explain=True)
    for name in FEATURES:
        np.testing.assert_allclose(weights[name], [r["explain"][name] for r in records], rtol=1e-5)
    assert "explain" not in collect_predictions(folder / "gmu", test_ds, store=store, device="cpu").extras


def test_class_queries_are_the_decoder_outputs_the_logits_come_from(runs):
    folder, store, test_ds = runs
    predictions = collect_predictions(folder / "query", test_ds, store=store, device="cpu", class_queries=True)
    kept = predictions.extras["class_queries"]
    assert {task: out.shape for task, out in kept["outputs"].items()} == {"label": (40, 1, 16), "bits": (40, 2, 16)}
    assert {task: q.shape for task, q in kept["queries"].items()} == {"label": (1, 16), "bits": (2, 16)}
    model = predictions.run.model
    for task, outputs in kept["outputs"].items():
        with torch.no_grad():
            logits = model.class_mlp(torch.as_tensor(outputs)).squeeze(-1)
        torch.testing.assert_close(logits, predictions.extras["logits"][task].float(), rtol=1e-4, atol=1e-5)


def test_extras_a_model_lacks_are_refused(runs):
    folder, store, test_ds = runs
    with pytest.raises(UsageError, match="has no class-query decoder"):
        collect_predictions(folder / "gmu", test_ds, store=store, class_queries=True)
    with pytest.raises(UsageError, match="no per-modality weights"):
        collect_predictions(folder / "query", test_ds, store=store, explain=True)


def test_evaluate_plots_draw_gates_and_class_queries(runs, tmp_path):
    folder, store, test_ds = runs
    gates = evaluate(folder / "gmu", test_ds, store=store, device="cpu", plots_dir=tmp_path / "gmu")
    assert [p.rsplit("/", 1)[-1] for p in gates["plots"]] == [
        "confusion_matrix.png", "confusion_matrix_normalized.png", "roc_curve.png", "pr_curve.png", "reliability.png",
        "per_class_f1.png", "modality_weights.png",
    ]
    queried = evaluate(folder / "query", test_ds, store=store, device="cpu", plots_dir=tmp_path / "query", projection="tsne")
    names = [p.rsplit("/", 1)[-1] for p in queried["plots"]]
    assert "label_class_queries.png" in names and "bits_class_queries.png" in names
    assert "label_modality_weights.png" not in names
    for path in gates["plots"] + queried["plots"]:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="projection 'umap'"):
        evaluate(folder / "query", test_ds, store=store, plots_dir=tmp_path / "x", projection="umap")


def test_evaluate_report_from_the_command_line(runs, tmp_path, monkeypatch):
    folder, store, test_ds = runs
    monkeypatch.setenv("MMTK_STORE", str(folder / "store"))
    report = tmp_path / "report.html"
    argv = ["evaluate", str(folder / "gmu"), str(test_ds.source), "--report", str(report), "--json", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", ["/usr/bin/mmtk", *argv])  # as the shell starts it
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert "plots" not in printed  # drawn for the report only
    page = report.read_text()
    for value in printed["metrics"].values():
        assert f"{value:.4f}" in page
    assert page.count("data:image/png;base64,") == 7  # six task plots and the modality weights
    assert "&quot;name&quot;: &quot;gmu&quot;" in page  # the run's config
    assert f"<dd>{html.escape(shlex.join(['mmtk', *argv]))}</dd>" in page  # the command line
    with_plots = CliRunner().invoke(
        app, ["evaluate", str(folder / "gmu"), str(test_ds.source), "--plots", str(tmp_path / "plots"), "--report", str(report), "--device", "cpu"]
    )
    assert with_plots.exit_code == 0, with_plots.output
    assert f"report: {report}" in with_plots.output and len(list((tmp_path / "plots").glob("*.png"))) == 7
    missing = CliRunner().invoke(app, ["evaluate", str(folder / "gmu"), str(test_ds.source), "--report", str(tmp_path / "no" / "r.html")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    bad = CliRunner().invoke(app, ["evaluate", str(folder / "gmu"), str(test_ds.source), "--projection", "umap"])
    assert bad.exit_code == 2 and "umap" in bad.output and "pca" in bad.output


def test_the_cli_offers_every_projection_the_library_draws():
    from mmtk.cli.evaluate_cmd import Projection
    from mmtk.plots.models import PROJECTIONS

    assert [p.value for p in Projection] == list(PROJECTIONS)
