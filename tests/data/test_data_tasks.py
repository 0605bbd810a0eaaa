"""Task specs, kind inference and label encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_files import write_jsonl
from mmtk.data import LabelEncoder, TaskSpec, fit_label_encoder, parse_task, read_dataset
from mmtk.errors import DataError, UsageError


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("label", TaskSpec("label", None, ("label",))),
        ("label:binary", TaskSpec("label", "binary", ("label",))),
        ("sentiment:multiclass", TaskSpec("sentiment", "multiclass", ("sentiment",))),
        ("price:regression", TaskSpec("price", "regression", ("price",))),
        ("labels:multilabel", TaskSpec("labels", "multilabel", ("labels",))),
        ("labels:multi-label", TaskSpec("labels", "multilabel", ("labels",))),
        (
            "hate=shaming, stereotype,violence:multilabel",
            TaskSpec("hate", "multilabel", ("shaming", "stereotype", "violence")),
        ),
        ("hate=shaming,stereotype", TaskSpec("hate", None, ("shaming", "stereotype"))),
        ("humour=humour_level:multiclass", TaskSpec("humour", "multiclass", ("humour_level",))),
    ],
)
def test_parse_task_accepted_forms(spec, expected):
    assert parse_task(spec) == expected


@pytest.mark.parametrize(
    "spec,reason",
    [
        ("", "no label column"),
        ("label:ordinalish", "unknown kind 'ordinalish'"),
        ("=a,b:multilabel", "no task name"),
        ("hate=a,,b", "empty column name"),
        ("hate=a,a", "listed twice"),
        ("hate=a,b:binary", "several label columns make a multilabel task"),
        ("a,b", "need a task name"),
    ],
)
def test_parse_task_rejects_bad_specs_with_the_accepted_forms(spec, reason):
    with pytest.raises(UsageError) as error:
        parse_task(spec)
    assert reason in str(error.value)
    assert "NAME=COL1,COL2" in str(error.value)


def jsonl_dataset(tmp_path, rows, name="d.jsonl"):
    return read_dataset(write_jsonl(tmp_path / name, [{"id": i, **row} for i, row in enumerate(rows)]))


def csv_dataset(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return read_dataset(path)


def test_binary_inferred_from_two_values(tmp_path):
    dataset = jsonl_dataset(tmp_path, [{"label": v} for v in (0, 1, 1, 0)])
    encoder = fit_label_encoder(parse_task("label"), dataset)
    assert encoder.task.kind == "binary" and encoder.classes == [0, 1]
    targets = encoder.encode(dataset)
    assert targets.dtype == np.int64 and targets.tolist() == [0, 1, 1, 0]


def test_binary_string_classes_keep_their_values(tmp_path):
    dataset = csv_dataset(tmp_path, "id,label\n1,yes\n2,no\n3,yes\n")
    encoder = fit_label_encoder(parse_task("label:binary"), dataset)
    assert encoder.classes == ["no", "yes"]
    assert encoder.encode(dataset).tolist() == [1, 0, 1]


def test_declared_binary_with_three_values_is_a_data_error(tmp_path):
    dataset = jsonl_dataset(tmp_path, [{"label": v} for v in ("a", "b", "c")])
    with pytest.raises(DataError) as error:
        fit_label_encoder(parse_task("label:binary"), dataset)
    assert "has 3 values (a, b, c)" in str(error.value) and "label:multiclass" in str(error.value)


def test_multiclass_inferred_and_sorted(tmp_path):
    dataset = jsonl_dataset(tmp_path, [{"s": v} for v in ("positive", "negative", "neutral", "positive")])
    encoder = fit_label_encoder(parse_task("s"), dataset)
    assert encoder.task.kind == "multiclass"
    assert encoder.classes == ["negative", "neutral", "positive"]
    assert encoder.encode(dataset).tolist() == [2, 0, 1, 2]


def test_csv_train_and_jsonl_test_agree_on_integer_labels(tmp_path):
    train = csv_dataset(tmp_path, "id,label\n1,0\n2,2\n3,1\n4,1.0\n")
    test = jsonl_dataset(tmp_path, [{"label": v} for v in (2, 0, 1.0)])
    encoder = fit_label_encoder(parse_task("label"), train)
    assert encoder.classes == [0, 1, 2] and encoder.task.kind == "multiclass"
    assert encoder.encode(test).tolist() == [2, 0, 1]


def test_multilabel_list_column_from_jsonl_and_csv(tmp_path):
    train = jsonl_dataset(tmp_path, [{"tags": ["funny", "sad"]}, {"tags": []}, {"tags": ["angry"]}])
    encoder = fit_label_encoder(parse_task("tags"), train)
    assert encoder.task.kind == "multilabel"
    assert encoder.classes == ["angry", "funny", "sad"]
    targets = encoder.encode(train)
    assert targets.dtype == np.float32
    assert targets.tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 0]]

    test = csv_dataset(tmp_path, 'id,tags\n1,sad|angry\n2,"[""funny""]"\n3,\n')
    assert encoder.encode(test).tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_multilabel_several_zero_one_columns(tmp_path):
    dataset = csv_dataset(tmp_path, "id,shaming,violence\n1,1,0\n2,0,0\n3,1,1\n")
    encoder = fit_label_encoder(parse_task("hate=shaming,violence"), dataset)
    assert encoder.task == TaskSpec("hate", "multilabel", ("shaming", "violence"))
    assert encoder.classes == ["shaming", "violence"]
    assert encoder.encode(dataset).tolist() == [[1, 0], [0, 0], [1, 1]]


def test_multilabel_column_value_that_is_not_zero_one(tmp_path):
    dataset = csv_dataset(tmp_path, "id,shaming,violence\n1,1,0\n2,0,maybe\n")
    with pytest.raises(DataError) as error:
        fit_label_encoder(parse_task("hate=shaming,violence:multilabel"), dataset)
    assert f"{dataset.source}:3 (item '2')" in str(error.value) and "'maybe'" in str(error.value)


def test_regression_inferred_from_fractional_numbers(tmp_path):
    dataset = csv_dataset(tmp_path, "id,score\n1,0.25\n2,3.5\n3,1\n")
    encoder = fit_label_encoder(parse_task("score"), dataset)
    assert encoder.task.kind == "regression" and encoder.classes == []
    targets = encoder.encode(dataset)
    assert targets.dtype == np.float32 and targets.tolist() == [0.25, 3.5, 1.0]


def test_non_numeric_regression_target_names_its_line(tmp_path):
    dataset = csv_dataset(tmp_path, "id,price\n1,10\n2,cheap\n")
    with pytest.raises(DataError) as error:
        fit_label_encoder(parse_task("price:regression"), dataset)
    assert f"{dataset.source}:3 (item '2'): price target 'cheap' is not a number" in str(error.value)


def test_unknown_label_at_encode_time_names_file_line_and_classes(tmp_path):
    train = jsonl_dataset(tmp_path, [{"label": v} for v in ("cat", "dog")], name="train.jsonl")
    test = jsonl_dataset(tmp_path, [{"label": "dog"}, {"label": "cat"}, {"label": "bird"}], name="test.jsonl")
    encoder = fit_label_encoder(parse_task("label"), train)
    with pytest.raises(DataError) as error:
        encoder.encode(test)
    message = str(error.value)
    assert f"{test.source}:3 (item '2')" in message
    assert "label 'bird' is not a known class of task 'label'" in message and "known: cat, dog" in message


def test_missing_label_names_its_line(tmp_path):
    dataset = jsonl_dataset(tmp_path, [{"label": 1}, {"label": 0}, {"other": 1}])
    with pytest.raises(DataError, match=r"d\.jsonl:3 \(item '2'\): missing label"):
        fit_label_encoder(parse_task("label"), dataset)


def test_list_label_in_single_label_task(tmp_path):
    dataset = jsonl_dataset(tmp_path, [{"label": ["a"]}, {"label": "b"}])
    with pytest.raises(DataError, match="label:multilabel"):
        fit_label_encoder(parse_task("label:multiclass"), dataset)


def test_single_class_cannot_train_a_classifier(tmp_path):
    dataset = jsonl_dataset(tmp_path, [{"label": 1}, {"label": 1}])
    with pytest.raises(DataError, match="only one label value"):
        fit_label_encoder(parse_task("label"), dataset)


def test_unknown_label_column_lists_the_columns(tmp_path):
    dataset = jsonl_dataset(tmp_path, [{"label": 1}, {"label": 0}])
    with pytest.raises(UsageError, match=r"no column 'target'.*columns: id, label"):
        fit_label_encoder(parse_task("target"), dataset)


def test_has_labels(tmp_path):
    train = jsonl_dataset(tmp_path, [{"label": 1}, {"label": 0}], name="train.jsonl")
    unlabelled = jsonl_dataset(tmp_path, [{"text": "x"}], name="new.jsonl")
    encoder = fit_label_encoder(parse_task("label"), train)
    assert encoder.has_labels(train) and not encoder.has_labels(unlabelled)


@pytest.mark.parametrize("spec,rows", [
    ("label", [{"label": "no"}, {"label": "yes"}]),
    ("tags", [{"tags": [3, 1]}, {"tags": [2]}]),
    ("hate=a,b", [{"a": 1, "b": 0}, {"a": 0, "b": 1}]),
    ("y:regression", [{"y": 1.5}, {"y": 2}]),
])
def test_encoder_json_round_trip(tmp_path, spec, rows):
    dataset = jsonl_dataset(tmp_path, rows)
    encoder = fit_label_encoder(parse_task(spec), dataset)
    restored = LabelEncoder.from_json(json.loads(json.dumps(encoder.to_json())))
    assert restored == encoder
    np.testing.assert_array_equal(restored.encode(dataset), encoder.encode(dataset))


def test_damaged_encoder_json_is_reported():
    with pytest.raises(DataError, match="malformed label encoder"):
        LabelEncoder.from_json({"classes": [0, 1]})
