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
    "args",
    [
        ["distill", "x"],
        ["distill"],
        # The form users type (and the help's own example): options the planned command
        # does not declare must still get the one line, not click's "No such option" box.
        ["distill", "--teacher", "visualbert", "--student", "tinybert", "--msd", "meta"],
        ["distill", "memes.jsonl", "--teacher", "visualbert", "--student", "tinybert", "--msd", "meta", "--out", "runs/s", "-q"],
    ],
)
def test_planned_commands_exit_2_with_one_line(args):
    result = mmtk(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "not built yet" in result.stderr


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
