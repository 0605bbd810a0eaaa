"""Tables as datasets: a pandas DataFrame and a .parquet file read like CSV/JSONL, with
row numbers in messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_files import hateful_memes, write_image
from mmtk.data import read_dataset
from mmtk.errors import DataError


def memes_frame(root, n: int = 3) -> pd.DataFrame:
    for i in range(n):
        write_image(root / "img" / f"{i}.png", color=(i * 60, 0, 0))
    return pd.DataFrame(
        {
            "id": [f"m{i}" for i in range(n)],
            "img": [f"img/{i}.png" for i in range(n)],
            "text": [f"caption {i}" for i in range(n)],
            "label": np.arange(n, dtype=np.int64) % 2,
            "score": np.linspace(0.0, 1.0, n),
        }
    )


def test_a_dataframe_is_a_dataset_with_paths_relative_to_root(tmp_path):
    frame = memes_frame(tmp_path / "media")
    dataset = read_dataset(frame, root=tmp_path / "media", require=["image", "text", "label"])
    assert str(dataset.source) == "<DataFrame>" and dataset.root == tmp_path / "media"
    assert dataset.ids == ["m0", "m1", "m2"] and [record.line for record in dataset.records] == [1, 2, 3]
    assert dataset.values("image") == [str(tmp_path / "media" / "img" / f"{i}.png") for i in range(3)]
    first = dataset.records[0].values
    # Plain Python values, as a JSONL line would give: labels encode the same either way.
    assert first["label"] == 0 and type(first["label"]) is int and type(first["score"]) is float


def test_a_dataframe_reads_like_the_same_rows_in_jsonl(tmp_path):
    path = hateful_memes(tmp_path)
    from_file = read_dataset(path, require=["image", "text"])
    frame = pd.read_json(path, lines=True)
    from_frame = read_dataset(frame, root=tmp_path, require=["image", "text"])
    assert from_frame.ids == from_file.ids
    assert [r.values for r in from_frame.records] == [r.values for r in from_file.records]


def test_root_defaults_to_the_working_directory(tmp_path, monkeypatch):
    frame = memes_frame(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert read_dataset(frame, require=["image"]).values("image")[0] == str(tmp_path / "img" / "0.png")


def test_messages_name_rows_of_a_dataframe(tmp_path):
    frame = memes_frame(tmp_path)
    frame.loc[1, "img"] = None
    with pytest.raises(DataError, match=r"^<DataFrame> row 2 \(item 'm1'\): missing image; fill it in or drop the row$"):
        read_dataset(frame, root=tmp_path, require=["image"])
    frame.loc[1, "img"] = "../elsewhere.png"
    with pytest.raises(DataError, match=r"^<DataFrame> row 2 \(item 'm1'\): image path \.\./elsewhere\.png leaves the dataset's folder"):
        read_dataset(frame, root=tmp_path)
    skipped = read_dataset(frame, root=tmp_path, on_error="skip").skipped
    assert skipped[0].one_line().startswith("<DataFrame> row 2 (item 'm1'): ")


def test_an_empty_or_ill_formed_dataframe_is_refused(tmp_path):
    with pytest.raises(DataError, match="^<DataFrame> is empty"):
        read_dataset(pd.DataFrame(), require=["image"])
    with pytest.raises(DataError, match="^<DataFrame> holds no records"):
        read_dataset(pd.DataFrame({"id": [], "text": []}))
    twice = pd.DataFrame([[1, "a", "b"]], columns=["id", "text", "text"])
    with pytest.raises(DataError, match="column 'text' appears twice"):
        read_dataset(twice)


def test_a_parquet_file_keeps_lists_and_names_rows(tmp_path):
    frame = memes_frame(tmp_path)
    frame["tags"] = [["funny"], [], ["funny", "dark"]]
    frame.loc[2, "text"] = None
    frame.to_parquet(tmp_path / "memes.parquet")
    dataset = read_dataset(tmp_path / "memes.parquet", require=["image"])
    assert dataset.ids == ["m0", "m1", "m2"]
    assert [record.values["tags"] for record in dataset.records] == [["funny"], [], ["funny", "dark"]]
    assert dataset.values("image")[1] == str(tmp_path / "img" / "1.png")
    with pytest.raises(DataError, match=rf"^{tmp_path / 'memes.parquet'} row 3 \(item 'm2'\): missing text"):
        read_dataset(tmp_path / "memes.parquet", require=["text"])
    # A folder holding one parquet file is that dataset.
    assert read_dataset(tmp_path).ids == ["m0", "m1", "m2"]


def test_a_damaged_parquet_file_is_one_line(tmp_path):
    path = tmp_path / "d.parquet"
    memes_frame(tmp_path).to_parquet(path)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match=f"^{path} is not a readable Parquet file .*; write it again, or use CSV/JSONL$") as caught:
        read_dataset(path)
    assert "\n" not in str(caught.value)
