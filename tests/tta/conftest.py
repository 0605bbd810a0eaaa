"""A tiny random open_clip model, saved once per session, for the test-time augmentation tests."""

from __future__ import annotations

import pytest

from tiny_models import save_tiny_clip


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))
