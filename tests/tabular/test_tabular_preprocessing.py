"""The tabular preprocessors on their own: cells, scalers, one-hot with unknowns,
imputation flags, the JSON form, column roles and columns files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmtk.data import read_dataset
from mmtk.errors import DataError, UsageError
from mmtk.features import FeatureRef, required_columns
from mmtk.tabular import TabularPreprocessor, TabularSpec, column_spec, fit_tabular, read_columns_file
from mmtk.tabular.encoders import NumberScaler
from mmtk.tabular.values import MISSING_CATEGORY, NotANumber, category_key, number_or_missing
from tabular_listings import listing_rows, write_column_info, write_csv


def test_cells_read_the_same_from_csv_strings_and_json_values():
    assert [number_or_missing(v) for v in ("3", " 2.5 ", 7, 1e3, "-1e-2")] == [3.0, 2.5, 7.0, 1000.0, -0.01]
    assert [number_or_missing(v) for v in (None, "", "  ", "NaN", "NA", "n/a", "null", float("nan"))] == [None] * 8
    for bad in ("abc", "1,5", "inf", "1_000", [1], {"a": 1}):
        with pytest.raises(NotANumber):
            number_or_missing(bad)
    assert {category_key(v) for v in (3, 3.0, "3", " 3 ", "3.0")} == {"3"}
    assert [category_key(v) for v in (None, "", " ", float("nan"))] == [MISSING_CATEGORY] * 4
    assert category_key(" Dresses ") == "Dresses" and category_key(2.5) == "2.5"


@pytest.mark.parametrize(
    ("method", "expected"),
    [("standard", (np.array([0.0, 1.0, 2.0, 3.0]) - 1.5) / np.std([0.0, 1.0, 2.0, 3.0])), ("minmax", [0.0, 1 / 3, 2 / 3, 1.0])],
)
def test_standard_and_minmax_scaling(method, expected):
    scaler = NumberScaler.fit("x", np.array([0.0, 1.0, 2.0, 3.0]), method)
    np.testing.assert_allclose(scaler.scale(np.array([0.0, 1.0, 2.0, 3.0])), expected, rtol=1e-12)
    # Constant columns neither divide by zero nor produce NaN.
    assert np.isfinite(NumberScaler.fit("x", np.array([5.0, 5.0]), method).scale(np.array([5.0, 6.0]))).all()


def test_quantile_scaling_matches_scikit_learn():
    from sklearn.preprocessing import QuantileTransformer

    rng = np.random.default_rng(0)
    train = np.concatenate([rng.exponential(3.0, 700), np.zeros(300)])  # a heavy tie at 0, like a fee
    new = np.concatenate([rng.exponential(3.0, 200), [-1.0, 1e6]])
    ours = NumberScaler.fit("fee", train, "quantile")
    reference = QuantileTransformer(n_quantiles=1000).fit(train[:, None])
    inside = new > 0  # scikit-learn pins values equal to the lowest quantile to 0; ours ranks ties mid-way
    np.testing.assert_allclose(ours.scale(new)[inside], reference.transform(new[:, None])[inside, 0], atol=1e-9)
    assert ours.scale(np.array([-1.0]))[0] == 0.0 and ours.scale(np.array([1e6]))[0] == 1.0
    assert len(ours.params["quantiles"]) == 1000


def _dataset(tmp_path, name, rows):
    return read_dataset(write_csv(tmp_path / f"{name}.csv", rows))


def test_unknown_category_is_all_zeros_with_the_unknown_flag(tmp_path):
    train = _dataset(tmp_path, "train", listing_rows(30, seed=1))
    new = _dataset(tmp_path, "new", listing_rows(5, seed=2, kinds=("castle",)))
    pre = fit_tabular(TabularSpec(cat_cols=("kind",)), train)
    assert pre.output_names == ["kind=flat", "kind=house", "kind=loft", "kind=<unknown>"]
    np.testing.assert_array_equal(pre.transform(new), np.tile([0, 0, 0, 1], (5, 1)))
    known = pre.transform(train)
    assert known[:, 3].sum() == 0 and (known[:, :3].sum(axis=1) == 1).all()


def test_missing_numbers_take_the_training_median_and_are_flagged(tmp_path):
    rows = listing_rows(21, seed=1, missing_every=4)
    train = _dataset(tmp_path, "train", rows)
    pre = fit_tabular(TabularSpec(num_cols=("age",), scaling="minmax"), train)
    present = np.array([float(r["age"]) for r in rows if r["age"]])
    assert pre.numerical[0].median == float(np.median(present))
    assert pre.numerical[0].params == {"min": present.min(), "max": present.max()}
    vectors = pre.transform(train)
    flagged = np.array([r["age"] == "" for r in rows])
    np.testing.assert_array_equal(vectors[:, 1], flagged.astype(np.float32))
    median_scaled = (np.median(present) - present.min()) / (present.max() - present.min())
    np.testing.assert_allclose(vectors[flagged, 0], median_scaled, rtol=1e-6)
    assert not np.isnan(vectors).any()


def test_a_cell_that_is_not_a_number_names_file_line_and_item(tmp_path):
    rows = listing_rows(6, seed=1)
    rows[3]["age"] = "ten years"
    data = _dataset(tmp_path, "train", rows)
    with pytest.raises(DataError, match=r"train\.csv:5 \(item 's1-3'\): numerical column 'age' holds 'ten years'"):
        fit_tabular(TabularSpec(num_cols=("age",)), data)


def test_columns_absent_from_the_data_are_reported(tmp_path):
    data = _dataset(tmp_path, "train", listing_rows(6, seed=1))
    with pytest.raises(DataError, match="has no column 'rooms'"):
        fit_tabular(TabularSpec(num_cols=("rooms",)), data)


def test_json_round_trip_rebuilds_identical_vectors(tmp_path):
    train = _dataset(tmp_path, "train", listing_rows(40, seed=1, missing_every=5))
    new = _dataset(tmp_path, "new", listing_rows(15, seed=2, kinds=("flat", "castle"), missing_every=3))
    for scaling in ("standard", "minmax", "quantile"):
        pre = fit_tabular(TabularSpec(cat_cols=("kind",), num_cols=("age", "fee"), scaling=scaling), train)
        again = TabularPreprocessor.from_json(json.loads(json.dumps(pre.to_json())))
        assert again == pre
        np.testing.assert_array_equal(again.transform(new), pre.transform(new))
        assert pre.transform(new).shape == (15, pre.dim) == (15, 2 + 2 + 4)
    damaged = pre.to_json() | {"dim": 99}
    with pytest.raises(DataError, match="malformed tabular preprocessor"):
        TabularPreprocessor.from_json(damaged)


def test_columns_file_and_flags(tmp_path):
    info = write_column_info(tmp_path / "column_info.json")
    spec = read_columns_file(info)
    assert spec == TabularSpec(cat_cols=("kind",), num_cols=("age", "fee"), text_cols=("text",), label_col="label")
    merged = column_spec(columns_file=info, num_cols="age", scaling="min-max")
    assert merged.num_cols == ("age",) and merged.cat_cols == ("kind",) and merged.scaling == "minmax"
    assert column_spec() is None
    assert column_spec(cat_cols="a, b").cat_cols == ("a", "b")
    (tmp_path / "bad.json").write_text('{"cat_cols": "kind"}')
    with pytest.raises(DataError, match="cat_cols must be a list"):
        read_columns_file(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match="broken.json: not a JSON columns file"):
        read_columns_file(tmp_path / "broken.json")
    with pytest.raises(UsageError, match="unknown scaling"):
        column_spec(scaling="log")


def test_spec_checks_refuse_ambiguous_roles_and_label_leaks():
    with pytest.raises(UsageError, match="both cat_cols and num_cols"):
        TabularSpec(cat_cols=("age",), num_cols=("age",)).check()
    with pytest.raises(UsageError, match="no columns"):
        TabularSpec(text_cols=("text",)).check()
    with pytest.raises(UsageError, match="both a tabular input and a label"):
        TabularSpec(num_cols=("price",)).check_not_labels(["price"])


def test_tabular_feature_reference():
    ref = FeatureRef.parse("tabular")
    assert ref.is_tabular and ref.name == "tabular"
    assert not FeatureRef.parse("minilm").is_tabular
    for bad in ("tabular:seq", "tabular@age"):
        with pytest.raises(UsageError, match="tabular takes no"):
            FeatureRef.parse(bad)
    # Tabular cells may be empty, so the tabular feature requires no column up front.
    assert required_columns(["minilm", "tabular"]) == ["text"]
