"""pandas DataFrames of mmtk's results, for notebooks and analysis scripts.

Thin views over what the library functions already return: ``predict``'s records,
``evaluate``'s result, ``load_features``' arrays. (DataFrames as *input* are datasets:
``mmtk.data.read_dataset(frame, root=...)``.) pandas is imported inside each function, so
importing this module costs nothing.
"""

from __future__ import annotations

from typing import Sequence


def predictions_frame(records: Sequence[dict]):
    """``predict``'s records as a DataFrame, one row per item, indexed by ``id``.

    Columns are those of ``predict --format csv`` (``label``; ``labels``, kept as a list
    per row; ``value``; ``prob_<class>``; ``explain_<feature>``; prefixed ``<task>.``
    for several tasks)."""
    import pandas as pd

    from mmtk.predict import flatten_record

    rows = [flatten_record(record, join_labels=False) for record in records]
    return pd.DataFrame(rows, columns=list(dict.fromkeys(key for row in rows for key in row)) or ["id"]).set_index("id")


def metrics_frame(result: dict):
    """``evaluate``'s result as a DataFrame: one row per task (index ``task``), columns
    ``n`` and each metric; a metric a task does not have is NaN."""
    import pandas as pd

    per_task = result["tasks"].values() if "tasks" in result else [result]
    rows = [{"task": entry["task"], "n": entry["n"], **entry["metrics"]} for entry in per_task]
    return pd.DataFrame(rows).set_index("task")


def features_frame(dataset, features: Sequence[str], store, **options):
    """The stored features of ``dataset`` (``load_features``: sequences pooled by their
    masked mean) as one DataFrame indexed by item id, with columns ``<feature>_<i>``
    (``minilm_0`` ... ``minilm_383``), features in the order given. ``options`` go to
    ``load_features`` (``extract_missing=True`` computes what the store lacks)."""
    import numpy as np
    import pandas as pd

    from mmtk.features import load_features

    arrays = load_features(dataset, features, store, **options)
    columns = [f"{name}_{i}" for name, array in arrays.items() for i in range(array.shape[1])]
    block = np.concatenate(list(arrays.values()), axis=1) if arrays else np.zeros((len(dataset), 0), np.float32)
    return pd.DataFrame(block, index=pd.Index(dataset.ids, name="id"), columns=columns)
