"""Suite-wide settings: every test gets its own feature store and no network, and torch
runs on one thread (two cores, and pytest may share them with other work)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Model hubs are unreachable in CI; make any accidental download fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MMTK_STORE", str(tmp_path / "store"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (real data made by others); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only on mmtk's development machines and CI)")
    return SHARED_DATA
