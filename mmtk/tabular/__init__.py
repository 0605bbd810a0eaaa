"""Tabular columns as a model input: column roles, fitted preprocessors, their JSON form.

``train --features minilm,tabular --cat-cols a,b --num-cols c,d`` (or ``--columns
column_info.json``) builds the ``tabular`` feature: unlike backbone features it is not
extracted into the feature store, because its scalers and category lists must be fitted
on the training split; the fitted ``TabularPreprocessor`` is saved in the run directory.

Text columns stay with the text backbones, one column per feature reference: the
``text_cols`` of a columns file are recorded but not read automatically, so a listing
with a title and a description trains with ``--features "minilm@Title,minilm@Review
Text,tabular"`` (each column extracted with ``extract-features --column``).
"""

from __future__ import annotations

from mmtk.errors import UsageError
from mmtk.features import TABULAR
from mmtk.tabular.preprocessor import TabularPreprocessor, fit_tabular
from mmtk.tabular.spec import SCALINGS, TabularSpec, column_spec, parse_scaling, read_columns_file


def not_extracted_error() -> UsageError:
    """What ``extract-features --backbone tabular`` answers: there is nothing to store."""
    return UsageError(
        "tabular features are not extracted into the store: their scalers and categories are fitted on the "
        "training split when you train, and saved in the run",
        "train with --features BACKBONE,tabular --cat-cols A,B --num-cols C,D (or --columns column_info.json)",
    )


__all__ = [
    "SCALINGS",
    "TABULAR",
    "TabularPreprocessor",
    "TabularSpec",
    "column_spec",
    "fit_tabular",
    "not_extracted_error",
    "parse_scaling",
    "read_columns_file",
]
