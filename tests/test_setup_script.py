"""scripts/torch_index.sh: the choice of PyTorch's wheel index made by scripts/setup.sh,
with the GPU check and the network probe replaced by fakes (no network needed)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "torch_index.sh"
CPU = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def choose(tmp_path, *, os="Linux", gpu=False, answers=True, choice=None, env=None):
    """Run torch_index with fake probes; returns (exit status, stdout, stderr, probed)."""
    marker = tmp_path / "probed"
    marker.unlink(missing_ok=True)
    fakes = (
        f"os_name() {{ echo {os}; }}; "
        f"has_nvidia_gpu() {{ return {0 if gpu else 1}; }}; "
        f"cpu_index_answers() {{ touch {marker}; return {0 if answers else 1}; }}; "
    )
    environment = {"PATH": "/usr/bin:/bin", **(env or {})}
    if choice is not None:
        environment["MMTK_TORCH_INDEX"] = choice
    result = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {SCRIPT}; {fakes} torch_index"],
        capture_output=True, text=True, env=environment, stdin=subprocess.DEVNULL, timeout=30,
    )
    return result.returncode, result.stdout.strip(), result.stderr, marker.exists()


def test_cpu_index_on_a_linux_machine_without_gpu_when_it_answers(tmp_path):
    assert choose(tmp_path) == (0, CPU, "", True)


def test_default_resolution_when_the_cpu_index_does_not_answer(tmp_path):
    assert choose(tmp_path, answers=False) == (0, "", "", True)


def test_a_gpu_machine_or_another_os_keeps_the_default_without_probing(tmp_path):
    assert choose(tmp_path, gpu=True) == (0, "", "", False)
    assert choose(tmp_path, os="Darwin") == (0, "", "", False)


def test_the_choice_can_be_forced(tmp_path):
    assert choose(tmp_path, choice="cpu", gpu=True) == (0, CPU, "", False)
    assert choose(tmp_path, choice="default") == (0, "", "", False)
    cuda = "https://download.pytorch.org/whl/cu124"
    assert choose(tmp_path, choice=cuda) == (0, cuda, "", False)
    status, out, err, _ = choose(tmp_path, choice="cuda")
    assert status == 2 and out == "" and "MMTK_TORCH_INDEX=cuda" in err and err.count("\n") == 1


def test_the_real_probe_gives_up_fast_on_an_index_that_never_answers(tmp_path):
    # A socket that accepts connections (the kernel's backlog) but never replies: the
    # probe must fail within its limit instead of waiting for pip's 180 s timeout.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/whl/cpu"
        result = subprocess.run(
            ["bash", "-c", f"source {SCRIPT}; cpu_index_answers"],
            env={"PATH": "/usr/bin:/bin", "TORCH_CPU_INDEX": url, "TORCH_PROBE_SECONDS": "1", "PYTHON": shutil.which("python3") or "python3"},
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30,  # a hang fails the test here
        )
    assert result.returncode != 0


def _fake_checkout(tmp_path, torch_installed: bool) -> tuple[Path, Path]:
    """scripts/ and a pyproject.toml in a temp folder, with a .venv whose python only
    logs its arguments (`pip show torch` fails when torch is not installed)."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for name in ("setup.sh", "torch_index.sh"):
        shutil.copy(SCRIPT.parent / name, root / "scripts" / name)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    log = tmp_path / "pip.log"
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> {log}\n'
        f'if [ "$*" = "-m pip show -q torch" ]; then exit {0 if torch_installed else 1}; fi\n'
    )
    python.chmod(0o755)
    return root, log


@pytest.mark.parametrize("torch_installed", [False, True])
def test_setup_installs_torch_from_the_chosen_index_only_into_a_venv_without_it(tmp_path, torch_installed):
    root, log = _fake_checkout(tmp_path, torch_installed)
    # tesseract, ffmpeg and chromium "present", so setup goes straight to the virtual environment.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("tesseract", "ffmpeg", "chromium"):
        (bin_dir / program).write_text("#!/bin/sh\n")
        (bin_dir / program).chmod(0o755)
    result = subprocess.run(
        ["bash", str(root / "scripts" / "setup.sh")],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "MMTK_TORCH_INDEX": "cpu"},
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    torch_step = f"-m pip install -q --index-url {CPU} torch torchvision"
    assert (torch_step in calls) is not torch_installed
    assert calls[-1] == "-m pip install -q -e .[test,ocr,ray]"
    if not torch_installed:
        assert calls.index(torch_step) < calls.index("-m pip install -q -e .[test,ocr,ray]")
