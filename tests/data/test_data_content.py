"""Content keys: same bytes -> same key whatever the name; changed bytes -> new key."""

from __future__ import annotations

import os

import pytest

from data_files import write_image
from mmtk.data import content_key
from mmtk.data.content import content_keys
from mmtk.errors import DataError


def test_same_picture_under_two_names_has_one_key(tmp_path):
    first = write_image(tmp_path / "a.png", color=(10, 20, 30))
    second = tmp_path / "copies" / "b.png"
    second.parent.mkdir()
    second.write_bytes(first.read_bytes())
    other = write_image(tmp_path / "c.png", color=(30, 20, 10))

    keys = content_keys([str(first), str(second), str(other)], "image")
    assert keys[0] == keys[1] != keys[2]
    assert keys[0].startswith("f:") and len(keys[0]) == 2 + 40


def test_changed_file_gets_a_new_key(tmp_path):
    path = write_image(tmp_path / "a.png", color=(0, 0, 0))
    before = content_key(str(path), "image")
    stat = path.stat()
    write_image(path, color=(255, 255, 255))
    # Pin the new mtime past the old one: on coarse-timestamp filesystems a rewrite
    # within the same tick would otherwise keep it, which is not what this tests.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    after = content_key(str(path), "image")
    assert after != before
    assert after == content_key(str(path), "image")


def test_relative_and_absolute_paths_agree(tmp_path, monkeypatch):
    path = write_image(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    assert content_key("a.png", "image") == content_key(str(path), "image")


def test_text_keys_depend_on_text_only_and_never_collide_with_files(tmp_path):
    assert content_key("a cat", "text") == content_key("a cat", "text")
    assert content_key("a cat", "text") != content_key("a cat ", "text")
    assert content_key("a cat", "text").startswith("t:")
    path = tmp_path / "same.txt"
    path.write_text("a cat", encoding="utf-8")
    assert content_key(str(path), "image") != content_key("a cat", "text")


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="gone.png"):
        content_key(str(tmp_path / "gone.png"), "image")


def test_absent_value_is_a_data_error():
    with pytest.raises(DataError, match="no text value"):
        content_key(None, "text")
