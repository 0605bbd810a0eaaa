"""Tiny random models, saved once per test session, for the backbone tests."""

from __future__ import annotations

import pytest

from tiny_models import save_tiny_bert, save_tiny_clip


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))
