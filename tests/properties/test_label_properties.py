"""Label encoders and validation splits on random data (Hypothesis): encoding inverts to
the labels, a CSV and a JSONL spelling of one dataset agree, the JSON round trip keeps
the mapping, and a split partitions the items with the sizes its docstring promises."""

from __future__ import annotations

import csv
import json
from collections import Counter

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mmtk.data import read_dataset
from mmtk.data.tasks import LabelEncoder, fit_label_encoder, parse_task
from mmtk.errors import DataError
from mmtk.train import split_indices

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
WORDS = st.text(alphabet="abcxyz_-", min_size=1, max_size=6)
LABELS = st.one_of(
    st.lists(st.integers(-3, 3), min_size=2, max_size=25),
    st.lists(WORDS, min_size=2, max_size=25),
)


def _write(folder, labels, suffix: str):
    path = folder / f"data{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"id": str(i), "label": v}) + "\n" for i, v in enumerate(labels)), encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "label"])
            writer.writerows([str(i), v] for i, v in enumerate(labels))
    return read_dataset(path)


@SETTINGS
@given(labels=LABELS)
def test_encoding_inverts_to_the_labels_and_csv_agrees_with_jsonl(tmp_path_factory, labels):
    assume(len(set(labels)) >= 2)  # one class is refused; that has its own test
    folder = tmp_path_factory.mktemp("labels")
    jsonl, table = _write(folder, labels, ".jsonl"), _write(folder, labels, ".csv")
    encoder = fit_label_encoder(parse_task("label"), jsonl)
    assert encoder.task.kind == ("binary" if len(set(labels)) == 2 else "multiclass")
    assert encoder.classes == sorted(set(labels))
    targets = encoder.encode(jsonl)
    assert [encoder.classes[t] for t in targets] == labels
    # CSV spells every label as text; the classes and targets are the same.
    assert fit_label_encoder(parse_task("label"), table).classes == encoder.classes
    assert encoder.encode(table).tolist() == targets.tolist()
    restored = LabelEncoder.from_json(json.loads(json.dumps(encoder.to_json())))
    assert restored == encoder and restored.encode(jsonl).tolist() == targets.tolist()


@SETTINGS
@given(rows=st.lists(st.lists(st.sampled_from(["x", "y", "z", "w"]), max_size=4, unique=True), min_size=1, max_size=20))
def test_multilabel_lists_round_trip_through_the_encoder(tmp_path_factory, rows):
    assume(any(rows))  # no labels at all is refused; that has its own test
    folder = tmp_path_factory.mktemp("multilabel")
    path = folder / "d.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "tags": r}) + "\n" for i, r in enumerate(rows)), encoding="utf-8")
    dataset = read_dataset(path)
    encoder = fit_label_encoder(parse_task("tags:multilabel"), dataset)
    assert encoder.classes == sorted({label for r in rows for label in r})
    matrix = encoder.encode(dataset)
    assert [sorted(c for c, bit in zip(encoder.classes, row) if bit) for row in matrix] == [sorted(r) for r in rows]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**16),
)
def test_a_stratified_split_partitions_with_the_promised_sizes(counts, fraction, seed):
    strata = [f"class{c}" for c, count in enumerate(counts) for _ in range(count)]
    try:
        train_idx, val_idx = split_indices(strata, fraction, seed)
    except DataError as error:  # an empty validation split is refused, never returned
        assert all(min(round(n * fraction), n - 1) == 0 for n in counts), error
        return
    assert sorted(train_idx + val_idx) == list(range(len(strata)))
    assert train_idx == sorted(train_idx) and val_idx == sorted(val_idx)
    in_val = Counter(strata[i] for i in val_idx)
    for c, count in enumerate(counts):
        # round(n * fraction) per class, but never the class's last item.
        assert in_val[f"class{c}"] == min(round(count * fraction), count - 1)
    assert {strata[i] for i in train_idx} == set(strata)
    assert split_indices(strata, fraction, seed) == (train_idx, val_idx)
