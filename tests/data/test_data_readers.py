"""read_dataset: formats, column conventions, media resolution and validation messages."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

from data_files import hateful_memes, write_image, write_jsonl
from mmtk.data import read_dataset
from mmtk.errors import DataError, UsageError


def test_hateful_memes_jsonl_needs_no_flags(tmp_path):
    path = hateful_memes(tmp_path)
    dataset = read_dataset(path, require=["image", "text"])

    assert dataset.columns.id == "id" and dataset.columns.image == "img" and dataset.columns.text == "text"
    assert dataset.ids == ["40", "41", "42", "43"]
    assert [record.line for record in dataset.records] == [1, 2, 3, 4]
    first = dataset.records[0]
    assert first.values["img"] == str((tmp_path / "img" / "40.png").absolute())
    assert first.values["label"] == 0
    assert dataset.values("image") == [str((tmp_path / "img" / f"{i}.png").absolute()) for i in range(40, 44)]
    assert dataset.values("text")[2] == "meme number 2"
    assert dataset.root == tmp_path.absolute()
    assert dataset.skipped == []


def test_relative_paths_resolve_against_the_dataset_file_not_the_cwd(tmp_path, monkeypatch):
    path = hateful_memes(tmp_path / "memes")
    monkeypatch.chdir(tmp_path)
    dataset = read_dataset(Path("memes") / "train.jsonl", require=["image"])
    assert all(os.path.isfile(p) and os.path.isabs(p) for p in dataset.values("image"))
    assert str(dataset.source) == str(Path("memes") / "train.jsonl")
    assert path.parent.absolute() == dataset.root


def test_absolute_media_paths_are_kept(tmp_path):
    image = write_image(tmp_path / "elsewhere" / "a.png")
    path = write_jsonl(tmp_path / "data" / "d.jsonl", [{"id": "a", "image": str(image), "text": "x"}])
    assert read_dataset(path, require=["image"]).values("image") == [str(image)]


def test_csv_with_multiline_quoted_text_keeps_physical_line_numbers(tmp_path):
    write_image(tmp_path / "a.png")
    path = tmp_path / "data.csv"
    path.write_text(
        'id,image,text,label\n'
        '1,a.png,"first line\nsecond line",yes\n'   # lines 2-3
        '2,a.png,"one\ntwo\nthree",no\n'           # lines 4-6
        '3,missing.png,plain,no\n',                # line 7
        encoding="utf-8",
    )
    dataset = read_dataset(path, require=["text"])
    assert [r.line for r in dataset.records] == [2, 4, 7]
    assert dataset.records[0].values["text"] == "first line\nsecond line"
    assert dataset.ids == ["1", "2", "3"]

    with pytest.raises(DataError) as error:
        read_dataset(path, require=["image"])
    message = str(error.value)
    assert f"{path}:7 (item '3')" in message
    assert "missing.png not found" in message and str(tmp_path / "missing.png") in message


def test_csv_row_with_wrong_field_count_is_reported_at_its_first_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('id,text,label\n1,"multi\nline",a\n2,"multi\nline",a,extra\n', encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_dataset(path)
    assert f"{path}:4:" in str(error.value)
    assert "4 fields, the header has 3" in str(error.value)


def test_csv_stray_quote_is_a_malformed_row_not_a_swallowed_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('id,text\n1,"quoted"junk\n2,fine\n3,also fine\n', encoding="utf-8")
    dataset = read_dataset(path, on_error="skip")
    assert dataset.ids == ["2", "3"]
    assert [(bad.line, bad.item) for bad in dataset.skipped] == [(2, None)]
    assert "malformed CSV row" in dataset.skipped[0].reason


def test_tsv_bom_and_case_insensitive_conventions(tmp_path):
    write_image(tmp_path / "p.png")
    path = tmp_path / "d.tsv"
    path.write_bytes("\ufeffID\tImage\tText\n7\tp.png\thello, world\n".encode("utf-8"))
    dataset = read_dataset(path, require=["image", "text"])
    assert dataset.columns.id == "ID" and dataset.columns.image == "Image"
    assert dataset.ids == ["7"] and dataset.values("text") == ["hello, world"]


def test_json_array_file_keeps_element_lines(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"id": 1, "text": "a"},\n  {"id": 2,\n   "text": ""}\n]\n', encoding="utf-8")
    assert read_dataset(path).ids == ["1", "2"]
    with pytest.raises(DataError) as error:
        read_dataset(path, require=["text"])
    assert f"{path}:3 (item '2'): empty text" in str(error.value)


def test_json_file_holding_json_lines_is_read_as_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "d.json", [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}])
    assert read_dataset(path).ids == ["1", "2"]


def test_without_id_column_ids_are_row_positions(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}, "", {"text": "b"}, {"text": "c"}])
    dataset = read_dataset(path)
    assert dataset.columns.id is None
    assert dataset.ids == ["0", "1", "2"]
    assert [r.line for r in dataset.records] == [1, 3, 4]


def test_csv_and_jsonl_ids_agree(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("id,text\n42,a\n", encoding="utf-8")
    jsonl_path = write_jsonl(tmp_path / "d.jsonl", [{"id": 42, "text": "a"}])
    assert read_dataset(csv_path).ids == read_dataset(jsonl_path).ids == ["42"]


def test_dash_reads_jsonl_from_stdin_with_media_relative_to_cwd(tmp_path, monkeypatch):
    write_image(tmp_path / "img" / "1.png")
    monkeypatch.chdir(tmp_path)
    rows = [{"id": 1, "img": "img/1.png", "text": "hi"}, {"id": 2, "img": "img/2.png", "text": "there"}]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(json.dumps(r) for r in rows) + "\n"))
    with pytest.raises(DataError) as error:
        read_dataset("-", require=["image"])
    assert "<stdin>:2 (item '2'): image img/2.png not found" in str(error.value)

    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(rows[0]) + "\n"))
    dataset = read_dataset("-", require=["image"])
    assert dataset.values("image") == [str(tmp_path / "img" / "1.png")]


def test_folder_of_media_with_text_sidecars(tmp_path):
    folder = tmp_path / "memes"
    write_image(folder / "b.png")
    (folder / "b.txt").write_text("  caption of b\n", encoding="utf-8")
    write_image(folder / "sub" / "a.jpg")
    (folder / "sub" / "clip.wav").write_bytes(b"RIFF")
    (folder / "notes.md").write_text("not media", encoding="utf-8")
    write_image(folder / ".hidden" / "x.png")

    dataset = read_dataset(folder)
    assert dataset.ids == ["b.png", "sub/a.jpg", "sub/clip.wav"]
    assert dataset.columns.image == "image" and dataset.columns.audio == "audio" and dataset.columns.text == "text"
    assert dataset.records[0].values == {"image": str((folder / "b.png").absolute()), "text": "caption of b"}
    assert dataset.records[2].values == {"audio": str((folder / "sub" / "clip.wav").absolute())}
    assert dataset.role_of("audio") == "audio"

    skipped = read_dataset(folder, require=["text"], on_error="skip")
    assert skipped.ids == ["b.png"]
    assert [bad.item for bad in skipped.skipped] == ["sub/a.jpg", "sub/clip.wav"]
    with pytest.raises(DataError) as error:
        read_dataset(folder, require=["text"])
    assert "(item 'sub/a.jpg'): missing text" in str(error.value)
    assert "add sub/a.txt next to it" in str(error.value)


def test_folder_with_a_single_csv_reads_it(tmp_path):
    write_image(tmp_path / "pics" / "a.png")
    (tmp_path / "data.csv").write_text("id,image,text\nx,pics/a.png,hello\n", encoding="utf-8")
    dataset = read_dataset(tmp_path, require=["image"])
    assert dataset.source == tmp_path / "data.csv"
    assert dataset.values("image") == [str((tmp_path / "pics" / "a.png").absolute())]


def test_folder_with_several_data_files_asks_for_one(tmp_path):
    (tmp_path / "train.csv").write_text("id,text\n1,a\n", encoding="utf-8")
    write_jsonl(tmp_path / "test.jsonl", [{"id": 1, "text": "a"}])
    with pytest.raises(UsageError) as error:
        read_dataset(tmp_path)
    assert "test.jsonl" in str(error.value) and "train.csv" in str(error.value)
    assert "pass one of them" in str(error.value)


def test_folder_without_data_or_media_is_a_data_error(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here", encoding="utf-8")
    with pytest.raises(DataError, match="no dataset file and no media"):
        read_dataset(tmp_path)


BAD_LINES = [
    ("malformed-json", ['{"id": 1, "text": "a"}', '{"id": 2, "text": '], [], ":2:", "malformed JSON"),
    ("not-an-object", ['{"id": 1, "text": "a"}', '[1, 2]'], [], ":2:", "expected a JSON object, got a list"),
    ("empty-text", ['{"id": 1, "text": "a"}', '{"id": 2, "text": "  "}'], ["text"], ":2 (item '2')", "empty text; fill it in or drop the row"),
    ("missing-text", ['{"id": 1, "text": "a"}', '{"id": 2}'], ["text"], ":2 (item '2')", "missing text"),
    ("missing-image", ['{"id": 1, "text": "a", "img": "nope.png"}'], ["image"], ":1 (item '1')", "image nope.png not found"),
    ("duplicate-id", ['{"id": 1, "text": "a"}', '{"id": 3, "text": "b"}', '{"id": 1, "text": "c"}'], [], ":3 (item '1')", "duplicate id '1' (first on line 1)"),
    ("missing-id", ['{"id": 1, "text": "a"}', '{"id": null, "text": "b"}'], [], ":2:", "missing id"),
    ("required-column", ['{"id": 1, "price": 3}', '{"id": 2, "price": ""}'], ["price"], ":2 (item '2')", "empty column 'price'"),
]


@pytest.mark.parametrize("lines,require,location,reason", [case[1:] for case in BAD_LINES], ids=[c[0] for c in BAD_LINES])
def test_each_problem_names_file_line_and_item(tmp_path, lines, require, location, reason):
    path = write_jsonl(tmp_path / "memes.jsonl", lines)
    with pytest.raises(DataError) as error:
        read_dataset(path, require=require)
    message = str(error.value)
    assert f"{path}{location}" in message
    assert reason in message
    assert "\n" not in message


def test_skip_mode_lists_every_bad_item_and_keeps_the_good(tmp_path):
    write_image(tmp_path / "img" / "ok.png")
    path = write_jsonl(
        tmp_path / "memes.jsonl",
        [
            {"id": 1, "img": "img/ok.png", "text": "good"},
            "{broken",
            {"id": 2, "img": "img/gone.png", "text": "missing picture"},
            {"id": 3, "img": "img/ok.png", "text": ""},
            {"id": 1, "img": "img/ok.png", "text": "duplicate"},
            {"id": 4, "img": "img/ok.png", "text": "also good"},
        ],
    )
    dataset = read_dataset(path, require=["image", "text"], on_error="skip")
    assert dataset.ids == ["1", "4"]
    assert [(bad.line, bad.item) for bad in dataset.skipped] == [(2, None), (3, "2"), (4, "3"), (5, "1")]
    assert dataset.skipped[1].one_line() == (
        f"{path}:3 (item '2'): image img/gone.png not found (looked for {(tmp_path / 'img' / 'gone.png').absolute()})"
    )


def test_all_items_skipped_is_still_an_error(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "text": ""}, {"id": 2}])
    with pytest.raises(DataError, match="all 2 were skipped"):
        read_dataset(path, require=["text"], on_error="skip")


def test_empty_dataset_is_a_data_error(tmp_path):
    (tmp_path / "d.csv").write_text("id,text\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no records"):
        read_dataset(tmp_path / "d.csv")


@pytest.mark.parametrize("name, content", [("e.jsonl", ""), ("blank.jsonl", "\n \n"), ("e.csv", ""), ("e.json", "[]")])
def test_an_empty_file_is_called_empty_even_when_columns_are_required(tmp_path, name, content):
    # Not "has no image column (columns: (none))": the file has nothing at all.
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / name))} is empty; "):
        read_dataset(tmp_path / name, require=["image", "text"])


def test_a_file_of_malformed_lines_reports_the_first_one_not_a_missing_column(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ["{oops", "[1, 2]"])
    with pytest.raises(DataError, match="d.jsonl:1: malformed JSON"):
        read_dataset(path, require=["image"])
    with pytest.raises(DataError, match="no usable records .*all 2 were skipped; first problem: .*d.jsonl:1: malformed JSON"):
        read_dataset(path, require=["image"], on_error="skip")


def test_usage_problems(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "caption": "a"}])
    with pytest.raises(UsageError, match="unknown on_error 'ignore'"):
        read_dataset(path, on_error="ignore")
    with pytest.raises(UsageError) as error:
        read_dataset(path, text_column="body")
    assert "text column 'body' not found" in str(error.value) and "id, caption" in str(error.value)
    with pytest.raises(UsageError, match="has no image column"):
        read_dataset(path, require=["image"])
    with pytest.raises(DataError, match="nope.jsonl not found"):
        read_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "d.xlsx").write_bytes(b"")
    with pytest.raises(UsageError, match="unknown dataset format"):
        read_dataset(tmp_path / "d.xlsx")


def test_given_column_overrides_convention(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "text": "raw", "caption": "clean"}])
    dataset = read_dataset(path, text_column="caption", require=["text"])
    assert dataset.columns.text == "caption"
    assert dataset.values("text") == ["clean"]
    assert dataset.column_for("caption") == "caption"


def test_non_utf8_file_names_its_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"id,text\n1,ok\n2,caf\xe9\n")
    with pytest.raises(DataError, match=r"d\.csv:3: not UTF-8"):
        read_dataset(path)


def test_example_memes_read_with_no_flags():
    example = Path(__file__).resolve().parents[2] / "examples" / "memes" / "train.jsonl"
    if not example.is_file():
        pytest.skip("the bundled example dataset is not generated in this checkout")
    dataset = read_dataset(example, require=["image", "text"])
    assert len(dataset) > 0 and dataset.columns.image == "img"


def test_real_reviews_csv_with_multiline_text_has_exact_lines(shared_data):
    path = shared_data / "tabular" / "Womens_Clothing_E-Commerce_Reviews" / "val.csv"
    dataset = read_dataset(path, text_column="Review Text")
    assert len(dataset) == 2349
    physical = path.read_text(encoding="utf-8").split("\n")
    # Reviews span several lines, so rows sit further down than their position; each
    # reported line must be where that row's first field (a pandas index) starts.
    assert dataset.records[-1].line > 2350
    assert all(physical[r.line - 1].startswith(r.values[""] + ",") for r in dataset.records)
