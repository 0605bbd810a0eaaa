"""The `[ocr]` extra must not bring a second OpenCV build: opencv-python and
opencv-python-headless both install `cv2/`, overwrite each other's files, and removing
either breaks the other."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
OPENCV_BUILDS = {"opencv-python", "opencv-contrib-python", "opencv-python-headless", "opencv-contrib-python-headless"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _extra(name: str) -> list[str]:
    return tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"][name]


def _opencv_builds(requirements) -> set[str]:
    return {_name(r) for r in requirements or [] if "extra ==" not in r} & OPENCV_BUILDS


def test_mmtk_depends_on_the_headless_opencv_build_only():
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert _opencv_builds(dependencies) == {"opencv-python-headless"}


@pytest.mark.parametrize("requirement", _extra("ocr"))
def test_each_ocr_extra_package_uses_the_same_opencv_build(requirement):
    try:
        requires = metadata.requires(_name(requirement))
    except metadata.PackageNotFoundError:
        pytest.skip(f"{_name(requirement)} is not installed (pip install 'mmtk[ocr]')")
    assert _opencv_builds(requires) <= {"opencv-python-headless"}
