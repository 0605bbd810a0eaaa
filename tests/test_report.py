"""mmtk.report: the HTML page holds every table value (an evaluate result, bootstrap
intervals, a multi-run comparison with differences and p-values), embeds every plot as
a data: URI, escapes user strings, needs nothing from the network, and is written whole
or not at all."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timezone

import numpy as np
import pytest

import mmtk
from mmtk.errors import DataError, UsageError
from mmtk.plots import plot_task
from mmtk.report import render_report, write_report
from mmtk.report.tables import number

SINGLE = {
    "task": "label", "n": 120,
    "metrics": {"accuracy": 0.8125, "macro_f1": 0.80357, "roc_auc": 0.91234},
    "intervals": {"accuracy": [0.7412, 0.8803], "macro_f1": [0.7301, 0.8699], "roc_auc": [0.8612, 0.9555]},
}
SEVERAL = {
    "n": 50,
    "tasks": {
        "task_a": {"task": "task_a", "n": 50, "metrics": {"macro_f1": 0.4567, "accuracy": 0.62}},
        "task_c/humour": {"task": "task_c/humour", "n": 50, "metrics": {"macro_f1": 0.3333, "weighted_f1": 0.41}},
    },
}
COMPARISON = {
    "data": "test.jsonl", "n": 120, "bootstrap": 1000, "seed": 0, "confidence": 0.95, "suite": None,
    "runs": [
        {"run": "runs/cmp/concat", "result": {"task": "label", "n": 120, "metrics": {"accuracy": 0.575, "macro_f1": 0.5601}},
         "intervals": {"label": {"accuracy": [0.4917, 0.6583], "macro_f1": [0.4702, 0.6455]}}},
        {"run": "runs/cmp/gmu", "result": {"task": "label", "n": 120, "metrics": {"accuracy": 0.9833, "macro_f1": 0.98321}},
         "intervals": {"label": {"accuracy": [0.9583, 1.0], "macro_f1": [0.9579, 1.0]}},
         "vs_first": {"label": {"accuracy": {"difference": 0.4083, "p_value": 0.0}, "macro_f1": {"difference": 0.42311, "p_value": 0.0123}}}},
    ],
}


def cells(page: str) -> list[str]:
    """The text of every table cell, notes included."""
    return [re.sub(r"<[^>]+>", " ", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", page)]


def test_evaluate_result_values_and_intervals(tmp_path):
    page = render_report(SINGLE)
    found = " | ".join(cells(page))
    for metric, value in SINGLE["metrics"].items():
        assert metric in found and f"{value:.4f}" in found
        low, high = SINGLE["intervals"][metric]
        assert f"[{low:.4f}, {high:.4f}]" in found
    assert "label (n = 120)" in page


def test_several_tasks_each_get_a_table():
    page = render_report(SEVERAL)
    found = " | ".join(cells(page))
    for name, entry in SEVERAL["tasks"].items():
        assert f"{name} (n = 50)" in page
        for value in entry["metrics"].values():
            assert number(value) in found
    assert "interval" not in page  # no bootstrap, no interval column


def test_comparison_shows_every_run_interval_difference_and_p_value():
    page = render_report(COMPARISON)
    found = " | ".join(cells(page))
    for run in COMPARISON["runs"]:
        assert run["run"] in found
        for metric, value in run["result"]["metrics"].items():
            assert f"{value:.4f}" in found
            low, high = run["intervals"]["label"][metric]
            assert f"95% interval [{low:.4f}, {high:.4f}]" in found
    assert "vs first +0.4083, p &lt; 0.0001" in found
    assert "vs first +0.4231, p = 0.0123" in found
    for key in ("data", "bootstrap", "seed", "confidence"):
        assert f"<td>{key}</td>" in page
    assert "mmtk comparison report" in page


def test_every_plot_is_embedded_as_a_data_uri(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 30)
    plots = plot_task("multiclass", y, rng.dirichlet([1, 1, 1], 30), ["a", "b", "c"], tmp_path)
    page = render_report(SINGLE, plots=plots[:-1] + [("F1 of each class", plots[-1])])
    sources = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert sorted(sources) == sorted(base64.b64encode(path.read_bytes()).decode() for path in plots)
    assert "<figcaption>F1 of each class</figcaption>" in page and "<figcaption>reliability.png</figcaption>" in page


def test_user_strings_are_escaped_and_nothing_is_fetched(tmp_path):
    nasty = '<script>alert("x")</script>'
    result = {"task": nasty, "n": 2, "metrics": {"accuracy": 0.5}}
    page = render_report(result, runs=[(nasty, {"model": {"name": nasty}})], command=f"mmtk evaluate '{nasty}' d.jsonl", title=nasty)
    assert nasty not in page and "&lt;script&gt;" in page
    assert "<script" not in page  # the report runs no script at all
    assert not re.search(r'(src|href)="(?!data:)', page)  # every resource is inline
    assert "@media print" in page


def test_header_has_command_version_date_and_run_configs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"name": "gmu", "params": {"hidden": 64}}}))
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    page = render_report(SINGLE, runs=[run], command="mmtk evaluate run test.jsonl --report r.html", created=created)
    assert "<dd>mmtk evaluate run test.jsonl --report r.html</dd>" in page
    assert f"<dd>{mmtk.__version__}</dd>" in page and "<dd>2026-01-02T03:04:05+00:00</dd>" in page
    assert f"<h3>{run}</h3>" in page and "&quot;hidden&quot;: 64" in page
    assert f"<dt>run</dt><dd>{run}</dd>" in page

    several = render_report(SINGLE, runs=[{"model": {"name": "concat"}}, ("b", {"model": {"name": "gmu"}})])
    assert "<h3>run 1</h3>" in several and "<h3>b</h3>" in several and "<dt>runs</dt><dd>run 1, b</dd>" in several
    loaded = type("Run", (), {"path": run, "config": {"model": {"name": "mult"}}})()  # what load_run returns, as far as the report reads
    assert "&quot;mult&quot;" in render_report(SINGLE, runs=[loaded])


def test_bad_inputs_are_refused_and_nothing_is_written(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("previous report")
    with pytest.raises(DataError, match="plot .*missing.png does not exist"):
        write_report(target, SINGLE, plots=[tmp_path / "missing.png"])
    (tmp_path / "notes.txt").write_text("text")
    with pytest.raises(DataError, match="not an image"):
        write_report(target, SINGLE, plots=[tmp_path / "notes.txt"])
    with pytest.raises(DataError, match="has no config.json"):
        write_report(target, SINGLE, runs=[tmp_path])
    assert target.read_text() == "previous report"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    with pytest.raises(UsageError, match="does not exist"):
        write_report(tmp_path / "no" / "r.html", SINGLE)
    with pytest.raises(UsageError, match="is a folder"):
        write_report(tmp_path, SINGLE)
    assert write_report(target, SINGLE) == target and target.read_text().startswith("<!DOCTYPE html>")
