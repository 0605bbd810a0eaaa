"""The command-line contract that scripts rely on: fast help, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmtk.cli.app import app

runner = CliRunner()


def mmtk(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmtk", *args], capture_output=True, text=True, env=env)


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys\n"
        "from mmtk.cli.app import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'cv2', 'sklearn', 'pandas', 'librosa') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("command", ["extract-features", "train", "evaluate", "predict", "distill", "ocr-subtitles", "list"])
def test_every_command_help_shows_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "mmtk " + command in result.output


def test_version_and_python_m_entry_point():
    result = mmtk("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("mmtk ")


@pytest.mark.parametrize(
    "args, says",
    [
        (["--msd", "nope"], "unknown --msd 'nope'"),
        (["--teacher", "no-such-model"], "unknown model 'no-such-model'"),
        (["--lambda", "1.5"], "--lambda 1.5 is not in [0, 1]"),
        (["--hidden-loss", "fitnet=x"], "--hidden-loss fitnet=x: the value is not a number"),
        (["--msd-weight", "only:text=0.5"], "--msd-weight sets population weights"),
    ],
)
def test_distill_refuses_bad_options_with_one_line(tmp_path, args, says):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "text": "hi", "label": 0}\n')
    base = ["distill", str(data), "--teacher", "gmu", "--student", "concat", "--features", "minilm", "--task", "label", "--out", str(tmp_path / "s")]
    values = dict(zip(base[2::2], base[3::2]))
    values.update(zip(args[::2], args[1::2]))
    result = mmtk("distill", str(data), *[word for pair in values.items() for word in pair])
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert not (tmp_path / "s").exists()


def test_unknown_backbone_lists_valid_names(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "text": "hi", "label": 0}\n')
    result = mmtk("extract-features", str(data), "--backbone", "nope")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown backbone 'nope'" in result.stderr
    assert "minilm" in result.stderr and "efficientnet-lite0" in result.stderr


def test_unknown_model_lists_valid_names(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "text": "hi", "label": 0}\n')
    result = mmtk("train", str(data), "--features", "minilm", "--model", "nope", "--task", "label", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "unknown model 'nope'" in result.stderr
    assert "gmu" in result.stderr and "concat" in result.stderr


def test_an_unknown_monitor_is_one_line_naming_the_valid_ones(tmp_path, trained_run):
    out = tmp_path / "run"
    result = mmtk("train", *trained_run["train"], "--monitor", "macro-f1", "--out", str(out), env=trained_run["env"])
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--monitor 'macro-f1' is no validation metric" in result.stderr, result.stderr
    assert "macro_f1" in result.stderr and "auto" in result.stderr
    assert not out.exists()


def test_not_a_run_directory(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "text": "hi", "label": 0}\n')
    result = mmtk("predict", str(tmp_path / "missing-run"), str(data))
    assert result.returncode == 2
    assert "not an mmtk run directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_traceback(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "text": "hi", "label": 0}\n')
    result = mmtk("--debug", "extract-features", str(data), "--backbone", "nope")
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_list_json_is_clean():
    import json

    result = mmtk("list", "--json")
    assert result.returncode == 0
    registries = json.loads(result.stdout)
    assert {"efficientnet-lite0", "minilm", "clip", "hf"} <= set(registries["backbones"])
    assert {"concat", "gmu"} <= set(registries["models"])
