"""The shipped completion scripts must match the app; regenerate with
`python -m mmtk.cli.completions completions/` when this fails."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from mmtk.cli.completions import render_all

COMPLETIONS = Path(__file__).resolve().parents[2] / "completions"


@pytest.mark.parametrize("name", sorted(render_all()))
def test_completion_script_is_up_to_date(name):
    shipped = COMPLETIONS / name
    assert shipped.exists(), f"{shipped} missing: run python -m mmtk.cli.completions completions/"
    assert shipped.read_text() == render_all()[name], (
        f"{shipped} is stale: run python -m mmtk.cli.completions completions/"
    )


def _bash_complete(line: str, cwd: Path | None = None) -> list[str]:
    """The candidates the shipped bash script offers for ``line`` (the cursor at its
    end), computed by bash itself with COMP_WORDS/COMP_CWORD as bash sets them."""
    script = COMPLETIONS / "mmtk.bash"
    words = line.split(" ")
    program = (
        f"source {script}; COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; _mmtk; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True, cwd=cwd)
    return out.stdout.split()


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")


@needs_bash
def test_bash_completes_commands_options_and_registry_names():
    assert "extract-features" in _bash_complete("mmtk ext")
    assert _bash_complete("mmtk train --mode") == ["--model", "--model-arg"]
    assert {"concat", "gmu"} <= set(_bash_complete("mmtk train --model "))
    assert "efficientnet-lite0" in _bash_complete("mmtk extract-features x --backbone eff")
    assert {"ls", "info", "verify", "gc", "repair", "rm"} == set(_bash_complete("mmtk store "))
    assert _bash_complete("mmtk store ls --j") == ["--json"]


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "memes.jsonl").write_text("")
    (tmp_path / "column_info.json").write_text("{}")
    (tmp_path / "runs").mkdir()
    return tmp_path


@needs_bash
@pytest.mark.parametrize(
    "line",
    [
        "mmtk train data.jsonl --out ",
        "mmtk train data.jsonl --columns ",
        "mmtk train data.jsonl --val ",
        "mmtk train data.jsonl --store ",
        "mmtk evaluate runs/gmu test.jsonl --plots ",
        "mmtk evaluate runs/gmu test.jsonl --store ",
        "mmtk predict runs/gmu new.jsonl --out ",
        "mmtk ocr-subtitles clip.mp4 --out ",
        "mmtk extract-features --store ",
        "mmtk store ls --store ",
        # Positional paths: the dataset, the run.
        "mmtk train ",
        "mmtk evaluate ",
        "mmtk evaluate runs ",
        "mmtk extract-features ",
    ],
)
def test_bash_offers_files_for_paths(folder, line):
    assert set(_bash_complete(line, cwd=folder)) == {"memes.jsonl", "column_info.json", "runs"}
    assert _bash_complete(line + "col", cwd=folder) == ["column_info.json"]


@needs_bash
def test_bash_offers_registry_names_for_list():
    assert _bash_complete("mmtk list ") == ["backbones", "models", "ocr-engines", "suites"]
    assert _bash_complete("mmtk list m") == ["models"]
    assert _bash_complete("mmtk list --") == ["--json"]


@needs_bash
def test_bash_offers_no_option_names_as_an_option_value(folder):
    assert _bash_complete("mmtk train data.jsonl --epochs ", cwd=folder) == []
    assert _bash_complete("mmtk evaluate runs/gmu test.jsonl --fail-under ", cwd=folder) == []
