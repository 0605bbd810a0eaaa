"""Every refusal of the task layer, with its exact one-line message and hint (the exit-2
contract: name the file, line and item, then say how to fix it), and the edges of
parsing and encoding that the other task tests leave open."""

from __future__ import annotations

import json

import pytest

from mmtk.data import read_dataset
from mmtk.data.tasks import LabelEncoder, TaskSpec, fit_label_encoder, parse_task
from mmtk.errors import DataError, UsageError

SPEC_HINT = (
    "write COLUMN, COLUMN:KIND with KIND one of binary|multiclass|multilabel|regression "
    "(multilabel on one column: a list column), or NAME=COL1,COL2,...[:multilabel] for several 0/1 columns"
)
DAMAGED = "the run's config.json is damaged; retrain"


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("label:ordinal", "unknown kind 'ordinal'"),
        ("=a,b", "no task name before '='"),
        ("hate=a,,b", "an empty column name after '='"),
        ("hate=a,a", "a column is listed twice"),
        ("hate=a,b:binary", "several label columns make a multilabel task, not binary"),
        (":binary", "no label column"),
        ("a,b", "several columns need a task name, as in NAME=COL1,COL2"),
    ],
)
def test_bad_task_specs(spec, reason):
    with pytest.raises(UsageError) as error:
        parse_task(spec)
    assert (error.value.message, error.value.hint) == (f"bad task spec {spec!r}: {reason}", SPEC_HINT)


def test_only_the_last_colon_gives_the_kind_and_the_first_equals_sign_the_name():
    assert parse_task("ns:label:binary") == TaskSpec("ns:label", "binary", ("ns:label",))
    assert parse_task("t=a=1,b") == TaskSpec("t", None, ("a=1", "b"))


def _dataset(tmp_path, rows, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": str(i), **row}) + "\n" for i, row in enumerate(rows)), encoding="utf-8")
    return read_dataset(path)


CASES = {
    "a missing label column": (
        "genre", [{"label": 1}, {"label": 0}], None, UsageError,
        "task 'genre': no column 'genre' in {d} (columns: id, label)", "name the label column with --task COLUMN[:KIND]",
    ),
    "a regression target that is no number": (
        "y:regression", [{"y": 1.5}, {"y": "high"}], None, DataError,
        "{d}:2 (item '1'): y target 'high' is not a number", "regression targets must be finite numbers",
    ),
    "a multilabel column value other than 0/1": (
        "h=a,b", [{"a": 1, "b": 0}, {"a": 2, "b": 0}], None, DataError,
        "{d}:2 (item '1'): value 2 in label column 'a' is not 0/1", "multilabel columns hold 0 or 1 per label",
    ),
    "a nested list label": (
        "t:multilabel", [{"t": ["a"]}, {"t": [["b"]]}], None, DataError,
        "{d}:2 (item '1'): label ['b'] in column 't' is not a plain value", 'write ["a", "b"] or a|b',
    ),
    "a broken JSON list": (
        "t:multilabel", [{"t": "[a, b"}], None, DataError,
        "{d}:1 (item '0'): labels '[a, b' are not a JSON list", 'write ["a", "b"] or a|b',
    ),
    "no multilabel labels at all": (
        "t:multilabel", [{"t": []}, {"t": ""}], None, DataError,
        "column 't' of {d} holds no labels at all", "check the column and the file",
    ),
    "a blank single label": (
        "label", [{"label": "cat"}, {"label": " "}], None, DataError,
        "{d}:2 (item '1'): missing label in column 'label'", "fill in the label or drop the row",
    ),
    "a list in a single-label task": (
        "label:multiclass", [{"label": "cat"}, {"label": ["dog"]}], None, DataError,
        "{d}:2 (item '1'): label label ['dog'] is not a single value", "declare the task as label:multilabel for list labels",
    ),
    "a single class": (
        "label", [{"label": "cat"}, {"label": "cat"}], None, DataError,
        "column 'label' of {d} has only one label value (cat)", "a classifier needs at least two classes; check the column and the file",
    ),
    "three values in a binary task": (
        "label:binary", [{"label": v} for v in "abc"], None, DataError,
        "task 'label' is binary but column 'label' of {d} has 3 values (a, b, c)", "declare it as label:multiclass",
    ),
    "ten values in a binary task": (
        "label:binary", [{"label": v} for v in "abcdefghij"], None, DataError,
        "task 'label' is binary but column 'label' of {d} has 10 values (a, b, c, d, e, f, g, h, i, j)", "declare it as label:multiclass",
    ),
    "eleven values in a binary task": (
        "label:binary", [{"label": v} for v in "abcdefghijk"], None, DataError,
        "task 'label' is binary but column 'label' of {d} has 11 values (a, b, c, d, e, f, g, h, i, j, ...)", "declare it as label:multiclass",
    ),
    "an unknown class at encode time": (
        "label", [{"label": "cat"}, {"label": "dog"}], [{"label": "cat"}, {"label": "cow"}], DataError,
        "{e}:2 (item '1'): label 'cow' is not a known class of task 'label' (known: cat, dog)", "fix the value, or retrain with data that has this label",
    ),
    "an unknown multilabel class at encode time": (
        "t:multilabel", [{"t": ["a"]}, {"t": ["b"]}], [{"t": ["a", "z"]}], DataError,
        "{e}:1 (item '0'): label 'z' is not a known class of task 't' (known: a, b)", "fix the value, or retrain with data that has this label",
    ),
    "a null multilabel value at encode time": (
        "t:multilabel", [{"t": ["a"]}, {"t": ["b"]}], [{"t": ["a"]}, {"t": None}], DataError,
        "{e}:2 (item '1'): missing labels in column 't'", "write [] for an item with no labels",
    ),
    "a blank target at encode time": (
        "y:regression", [{"y": 1.5}, {"y": 2.5}], [{"y": 1.0}, {"y": ""}], DataError,
        "{e}:2 (item '1'): missing label in column 'y'", "fill in the label or drop the row",
    ),
    "a blank class label at encode time": (
        "label", [{"label": "cat"}, {"label": "dog"}], [{"label": "cat"}, {"label": ""}], DataError,
        "{e}:2 (item '1'): missing label in column 'label'", "fill in the label or drop the row",
    ),
    "a blank cell in a 0/1 label column": (
        "h=a,b", [{"a": 1, "b": 0}, {"a": 0, "b": ""}], None, DataError,
        "{d}:2 (item '1'): missing label in column 'b'", "fill in the label or drop the row",
    ),
    "a true/false regression target": (
        "y:regression", [{"y": 1.5}, {"y": True}], None, DataError,
        "{d}:2 (item '1'): y target True is not a number", "regression targets must be finite numbers",
    ),
    "a list as regression target": (
        "y:regression", [{"y": 1.5}, {"y": [2.5]}], None, DataError,
        "{d}:2 (item '1'): y target [2.5] is not a number", "regression targets must be finite numbers",
    ),
    "a non-finite regression target": (
        "y:regression", [{"y": 1.5}, {"y": "nan"}], None, DataError,
        "{d}:2 (item '1'): y target 'nan' is not a number", "regression targets must be finite numbers",
    ),
    "a missing label column at encode time": (
        "label", [{"label": "cat"}, {"label": "dog"}], [{"text": "x"}], UsageError,
        "task 'label': no column 'label' in {e} (columns: id, text)", "name the label column with --task COLUMN[:KIND]",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_label_refusals_name_file_line_item_and_fix(tmp_path, case):
    spec, rows, encode_rows, error_type, message, hint = CASES[case]
    train = _dataset(tmp_path, rows)
    with pytest.raises(error_type) as error:
        encoder = fit_label_encoder(parse_task(spec), train)
        assert encode_rows is not None, "fitting should have failed"
        encoder.encode(_dataset(tmp_path, encode_rows, "e.jsonl"))
    expected = message.format(d=tmp_path / "d.jsonl", e=tmp_path / "e.jsonl")
    assert (error.value.message, error.value.hint) == (expected, hint)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"task": {"name": "t", "kind": "binary"}, "classes": [0, 1]}, "malformed label encoder (missing 'columns')"),
        ({"task": {"name": "t", "kind": "ordinal", "columns": ["t"]}, "classes": [0, 1]}, "malformed label encoder for task 't'"),
        ({"task": {"name": "t", "kind": "binary", "columns": []}, "classes": [0, 1]}, "malformed label encoder for task 't'"),
    ],
)
def test_a_damaged_encoder_says_to_retrain(data, message):
    with pytest.raises(DataError) as error:
        LabelEncoder.from_json(data)
    assert (error.value.message, error.value.hint) == (message, DAMAGED)


def test_a_csv_multilabel_column_with_empty_cells_is_fitted(tmp_path):
    """An empty cell is an item without labels (README: a list column or a|b text)."""
    path = tmp_path / "d.csv"
    path.write_text("id,tags\n0,a|b\n1,\n2,b\n", encoding="utf-8")
    dataset = read_dataset(path)
    encoder = fit_label_encoder(parse_task("tags:multilabel"), dataset)
    assert encoder.classes == ["a", "b"]
    assert encoder.encode(dataset).tolist() == [[1, 1], [0, 0], [0, 1]]


def test_a_label_column_that_is_all_blank_carries_no_labels(tmp_path):
    train = _dataset(tmp_path, [{"label": "cat"}, {"label": "dog"}])
    encoder = fit_label_encoder(parse_task("label"), train)
    assert encoder.has_labels(train)
    assert not encoder.has_labels(_dataset(tmp_path, [{"label": ""}, {"label": None}], "blank.jsonl"))
    assert not encoder.has_labels(_dataset(tmp_path, [{"text": "x"}], "none.jsonl"))


# --- kind inference ----------------------------------------------------------------------


def test_two_fractional_values_make_a_binary_task_not_a_regression(tmp_path):
    dataset = _dataset(tmp_path, [{"label": v} for v in (0.5, 1.5, 1.5, 0.5)])
    encoder = fit_label_encoder(parse_task("label"), dataset)
    assert encoder.task.kind == "binary"
    assert encoder.classes == ["0.5", "1.5"]
    assert encoder.encode(dataset).tolist() == [0, 1, 1, 0]


def test_three_fractional_values_make_a_regression(tmp_path):
    dataset = _dataset(tmp_path, [{"label": v} for v in (0.5, 1.5, 2.5)])
    assert fit_label_encoder(parse_task("label"), dataset).task.kind == "regression"


def test_integer_like_floats_are_integer_classes_shared_with_csv(tmp_path):
    jsonl = _dataset(tmp_path, [{"label": v} for v in (0.0, 1.0, 2.0, 1.0)])
    encoder = fit_label_encoder(parse_task("label"), jsonl)
    assert encoder.task.kind == "multiclass"
    assert encoder.classes == [0, 1, 2] and all(type(c) is int for c in encoder.classes)
    # A CSV spells the same labels "1" and "1.0"; both map to the classes fitted above.
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("id,label\na,1\nb,2.0\nc,0\n", encoding="utf-8")
    assert encoder.encode(read_dataset(csv_path)).tolist() == [1, 2, 0]
    # and the encoder survives its JSON round trip as ints.
    restored = type(encoder).from_json(json.loads(json.dumps(encoder.to_json())))
    assert restored.classes == [0, 1, 2] and restored.encode(jsonl).tolist() == [0, 1, 2, 1]


def test_integer_like_float_labels_of_a_binary_task(tmp_path):
    dataset = _dataset(tmp_path, [{"label": v} for v in (1.0, 0.0, 1.0)])
    encoder = fit_label_encoder(parse_task("label"), dataset)
    assert encoder.task.kind == "binary" and encoder.classes == [0, 1]
    assert encoder.encode(dataset).tolist() == [1, 0, 1]


def test_label_spellings_that_mean_the_same_class(tmp_path):
    # JSON booleans are the classes 0 and 1, in single-label and in 0/1 label columns.
    flags = _dataset(tmp_path, [{"label": True, "a": True, "b": False}, {"label": False, "a": False, "b": True}])
    encoder = fit_label_encoder(parse_task("label"), flags)
    assert encoder.classes == [0, 1] and encoder.encode(flags).tolist() == [1, 0]
    assert fit_label_encoder(parse_task("h=a,b"), flags).encode(flags).tolist() == [[1, 0], [0, 1]]
    # Text classes ignore surrounding spaces; a whole float among words is its integer's text.
    mixed = _dataset(tmp_path, [{"label": " cat "}, {"label": "cat"}, {"label": 1.0}, {"label": "1"}], "mixed.jsonl")
    encoder = fit_label_encoder(parse_task("label"), mixed)
    assert encoder.classes == ["1", "cat"] and encoder.encode(mixed).tolist() == [1, 1, 0, 0]


def test_a_scalar_in_a_list_column_is_a_one_label_list(tmp_path):
    dataset = _dataset(tmp_path, [{"tags": ["x", "y"]}, {"tags": 7}, {"tags": "y"}])
    encoder = fit_label_encoder(parse_task("tags:multilabel"), dataset)
    assert encoder.classes == ["7", "x", "y"]
    assert encoder.encode(dataset).tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 1]]


def test_json_list_strings_in_a_csv_make_a_multilabel_task(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('id,tags\n0,"[""a"", ""b""]"\n1," [""b""]"\n', encoding="utf-8")
    dataset = read_dataset(path)
    encoder = fit_label_encoder(parse_task("tags"), dataset)
    assert encoder.task.kind == "multilabel" and encoder.classes == ["a", "b"]
    assert encoder.encode(dataset).tolist() == [[1, 1], [0, 1]]
