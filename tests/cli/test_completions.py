"""The shipped completion scripts must match the app; regenerate with
`python -m mmtk.cli.completions completions/` when this fails."""

from __future__ import annotations

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


def _bash_complete(line: str) -> list[str]:
    script = COMPLETIONS / "mmtk.bash"
    words = line.split(" ")
    program = (
        f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; _mmtk; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completes_commands_options_and_registry_names():
    assert "extract-features" in _bash_complete("mmtk ext")
    assert _bash_complete("mmtk train --mo") == ["--model"]
    assert {"concat", "gmu"} <= set(_bash_complete("mmtk train --model "))
    assert "efficientnet-lite0" in _bash_complete("mmtk extract-features x --backbone eff")
    assert {"ls", "info", "verify", "repair", "rm", "gc"} == set(_bash_complete("mmtk store "))
