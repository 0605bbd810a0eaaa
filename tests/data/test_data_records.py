"""Dataset accessors: roles vs literal columns, values, subsets, bad-item lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmtk.data import BadItem, Columns, Dataset, Record
from mmtk.errors import UsageError


def make_dataset() -> Dataset:
    records = [
        Record("a", 1, {"id": "a", "img": "/x/a.png", "text": "hi", "price": 3}),
        Record("b", 2, {"id": "b", "img": "/x/b.png", "text": "yo"}),
        Record("c", 4, {"id": "c", "img": "/x/c.png", "text": "ok", "price": 5}),
    ]
    return Dataset(Path("d.jsonl"), Path("/x"), records, Columns(id="id", image="img", text="text"), [])


def test_column_for_roles_and_literal_names():
    dataset = make_dataset()
    assert dataset.column_for("image") == "img"
    assert dataset.column_for("img") == "img"
    assert dataset.column_for("price") == "price"
    assert dataset.column_names == ["id", "img", "text", "price"]
    assert dataset.role_of("img") == "image" and dataset.role_of("price") is None


def test_column_for_unknown_lists_the_columns():
    dataset = make_dataset()
    with pytest.raises(UsageError) as error:
        dataset.column_for("audio")
    assert "no audio column" in str(error.value) and "id, img, text, price" in str(error.value)
    assert "--audio-column" in str(error.value)
    with pytest.raises(UsageError, match="no column 'colour'"):
        dataset.column_for("colour")


def test_values_and_missing_values():
    dataset = make_dataset()
    assert dataset.values("text") == ["hi", "yo", "ok"]
    assert dataset.values("price") == [3, None, 5]


def test_subset_keeps_order_and_columns_but_not_skipped():
    dataset = Dataset(
        Path("d.jsonl"), Path("/x"), make_dataset().records, Columns(id="id"), [BadItem("d.jsonl", 3, None, "bad")]
    )
    part = dataset.subset([2, 0])
    assert part.ids == ["c", "a"] and len(part) == 2
    assert part.columns == dataset.columns and part.source == dataset.source
    assert part.skipped == [] and len(dataset) == 3


def test_bad_item_one_line():
    assert BadItem("memes.jsonl", 12, "42", "image img/42.png not found").one_line() == (
        "memes.jsonl:12 (item '42'): image img/42.png not found"
    )
    assert BadItem("folder", 0, "a.png", "missing text").one_line() == "folder (item 'a.png'): missing text"
    assert BadItem("d.csv", 5, None, "malformed CSV row").one_line() == "d.csv:5: malformed CSV row"
