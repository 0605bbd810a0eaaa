"""Search-space files of `mmtk tune`: what they may say, and the one-line refusals of
what they may not, before any trial runs."""

from __future__ import annotations

import json

import pytest

from mmtk.errors import UsageError
from mmtk.tune.space import load_space


def write(tmp_path, text: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_float_int_and_categorical_ranges(tmp_path):
    path = write(tmp_path, "lr: {type: float, low: 1e-4, high: 1.0e-2, log: true}\nhidden: {type: int, low: 16, high: 64, step: 16}\n"
                           "layers: {type: categorical, choices: [1, 2, 3]}\n")
    space = load_space(path, "concat-mlp")
    assert space.names == ["lr", "hidden", "layers"]
    lr, hidden, layers = space.params
    # PyYAML reads 1e-4 (no dot) as a string: it is taken as the number it means.
    assert (lr.kind, lr.low, lr.high, lr.log, lr.target) == ("float", 1e-4, 1e-2, True, "train")
    assert (hidden.kind, hidden.low, hidden.high, hidden.step, hidden.target) == ("int", 16, 64, 16, "model")
    assert layers.choices == (1, 2, 3)
    assert space.split({"lr": 0.001, "hidden": 32, "layers": 2}) == ({"lr": 0.001}, {"hidden": 32, "layers": 2})
    assert space.flags({"lr": 0.001, "hidden": 32}) == ["--lr", "0.001", "--model-arg", "hidden=32"]


def test_json_space_files_work_too(tmp_path):
    path = write(tmp_path, json.dumps({"dropout": {"type": "float", "low": 0.0, "high": 0.5}}), "space.json")
    assert load_space(path, "gmu").to_json() == {"dropout": {"type": "float", "low": 0.0, "high": 0.5, "log": False, "step": None}}


@pytest.mark.parametrize(
    ("text", "model", "expected"),
    [
        ("hiddn: {type: int, low: 8, high: 64}\n", "gmu", "hiddn: not a training option nor a parameter of model 'gmu'"),
        ("layers: {type: int, low: 1, high: 3}\n", "gmu", "layers: not a training option"),  # concat-mlp has it, gmu not
        ("lr: {type: floaty, low: 0.001, high: 0.1}\n", "gmu", "lr: type 'floaty' is not one of float, int, categorical"),
        ("", "gmu", "is empty"),
        ("# only a comment\n", "gmu", "is empty"),
        ("- lr\n- hidden\n", "gmu", "the top level is a list, not a mapping"),
        ("lr: 0.001\n", "gmu", "lr: the range is 0.001, not a mapping"),
        ("lr: {type: float, low: 0.1, high: 0.001}\n", "gmu", "lr: low 0.1 is above high 0.001"),
        ("lr: {type: float, low: 0, high: 0.1, log: true}\n", "gmu", "lr: a log range needs low > 0"),
        ("lr: {type: float, low: small, high: 0.1}\n", "gmu", "lr: low is 'small', not a number"),
        ("lr: {type: float, lo: 0.001, high: 0.1}\n", "gmu", "lr: float ranges have no field 'lo'"),
        ("hidden: {type: float, low: 8, high: 64}\n", "gmu", "hidden: the parameter takes whole numbers"),
        ("hidden: {type: int, low: 8.5, high: 64}\n", "gmu", "hidden: low 8.5 is not a whole number"),
        ("dropout: {type: float, low: 0.2, high: 1.5}\n", "gmu", "dropout: a rate must lie in [0, 1)"),
        ("hidden: {type: categorical, choices: []}\n", "gmu", "hidden: choices must be a non-empty list"),
        ("hidden: {type: categorical, choices: [64, wide]}\n", "gmu", "hidden: choice 'wide' does not fit the parameter's type (int)"),
        ("encoder: {type: int, low: 1, high: 2}\n", "mm-transformer", "encoder: the parameter takes a str"),
        ("lr: {type: float, low: 0.001, high: 0.1\n", "gmu", "space.yaml:2: not valid YAML"),
    ],
)
def test_bad_space_files_are_refused_in_one_line_naming_file_and_key(tmp_path, text, model, expected):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_space(path, model)
    line = caught.value.one_line()
    assert expected in line and str(tmp_path) in line
    assert "\n" not in line


def test_a_missing_or_unknown_kind_of_file_is_refused(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_space(tmp_path / "nope.yaml", "gmu")
    with pytest.raises(UsageError, match=r"is not \.yaml, \.yml or \.json"):
        load_space(write(tmp_path, "lr: {}", "space.txt"), "gmu")
