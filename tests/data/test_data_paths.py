"""The media-path policy: relative paths must stay inside the dataset's folder unless
allowed; absolute paths are accepted; the CLI's --allow-outside-paths."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from data_files import write_image, write_jsonl
from mmtk.data import read_dataset
from mmtk.errors import DataError

COMMANDS_READING_DATASETS = ("extract-features", "train", "evaluate", "predict", "ocr-subtitles")


@pytest.fixture
def layout(tmp_path):
    """tmp/data/d.jsonl with img/a.png inside its folder, and tmp/outside.png beside it."""
    write_image(tmp_path / "data" / "img" / "a.png")
    write_image(tmp_path / "outside.png")
    return tmp_path


@pytest.mark.parametrize("written", ["../outside.png", "img/../../outside.png", "./img/../../data/../outside.png"])
def test_a_relative_path_leaving_the_folder_is_refused_with_file_line_and_fix(layout, written):
    path = write_jsonl(layout / "data" / "d.jsonl", [{"id": "a", "img": "img/a.png"}, {"id": "b", "img": written}])
    with pytest.raises(DataError) as caught:
        read_dataset(path)  # refused even when no command needs the images yet
    message = str(caught.value)
    assert message.startswith(f"{path}:2 (item 'b'): image path {written} leaves the dataset's folder {layout / 'data'}")
    assert message.endswith("; move the file into that folder, write its absolute path, or pass --allow-outside-paths")
    assert "\n" not in message


def test_allow_outside_paths_accepts_them(layout):
    path = write_jsonl(layout / "data" / "d.jsonl", [{"id": "b", "img": "../outside.png"}])
    dataset = read_dataset(path, require=["image"], allow_outside_paths=True)
    assert dataset.values("image") == [str(layout / "outside.png")]


def test_on_error_skip_lists_them_and_keeps_the_rest(layout):
    path = write_jsonl(layout / "data" / "d.jsonl", [{"id": "a", "img": "img/a.png"}, {"id": "b", "img": "../outside.png"}])
    dataset = read_dataset(path, require=["image"], on_error="skip")
    assert dataset.ids == ["a"]
    assert [bad.item for bad in dataset.skipped] == ["b"] and "leaves the dataset's folder" in dataset.skipped[0].reason


def test_absolute_paths_are_accepted_wherever_they_point(layout):
    outside = str(layout / "outside.png")
    path = write_jsonl(layout / "data" / "d.jsonl", [{"id": "b", "img": outside}])
    assert read_dataset(path, require=["image"]).values("image") == [outside]


def test_relative_paths_that_stay_inside_are_accepted_however_written(layout):
    rows = [{"id": "a", "img": "img/a.png"}, {"id": "b", "img": "img/../img/a.png"}, {"id": "c", "img": "./img/a.png"}]
    write_jsonl(layout / "data" / "d.jsonl", rows)
    # The dataset's own path may climb out and back in: the folder is compared collapsed.
    dataset = read_dataset(layout / "data" / "img" / ".." / "d.jsonl", require=["image"])
    assert dataset.values("image") == [str(layout / "data" / "img" / "a.png")] * 3


def test_root_moves_the_folder_paths_resolve_against_and_must_stay_in(layout):
    media = layout / "data"
    path = write_jsonl(layout / "lists" / "d.jsonl", [{"id": "a", "img": "img/a.png"}])
    assert read_dataset(path, root=media, require=["image"]).values("image") == [str(media / "img" / "a.png")]
    write_jsonl(path, [{"id": "b", "img": "../outside.png"}])
    with pytest.raises(DataError, match=f"leaves the dataset's folder {media} "):
        read_dataset(path, root=media)


def test_media_folders_are_inside_by_construction(layout):
    dataset = read_dataset(layout / "data" / "img")
    assert dataset.ids == ["a.png"]


def _mmtk(*args, cwd):
    env = {**os.environ, "MMTK_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "mmtk", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_cli_refuses_with_exit_2_and_the_flag_lets_it_through(layout):
    path = write_jsonl(layout / "data" / "d.jsonl", [{"id": "b", "img": "../outside.png"}])
    base = ["extract-features", str(path), "--backbone", "pixels:8", "--store", str(layout / "store"), "--json"]
    refused = _mmtk(*base, cwd=layout)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "leaves the dataset's folder" in refused.stderr
    allowed = _mmtk(*base, "--allow-outside-paths", cwd=layout)
    assert allowed.returncode == 0, allowed.stderr


def test_every_command_that_reads_datasets_has_the_flag():
    import typer.main

    from mmtk.cli.app import app

    commands = typer.main.get_command(app).commands
    for name in COMMANDS_READING_DATASETS:
        flags = {flag for param in commands[name].params for flag in getattr(param, "opts", [])}
        assert "--allow-outside-paths" in flags, name
