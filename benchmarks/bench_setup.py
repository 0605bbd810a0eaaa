"""What the benchmarks on ../shared/data share before they start: skip when the data
folder is absent (it is only on mmtk's development machines), keep their features in a
store of their own under benchmarks/out unless MMTK_STORE names one, and say which store
and how loaded the machine is, since that is what their timings are read against."""

from __future__ import annotations

import os
from pathlib import Path


def bench_store(data: Path, out: Path, settings: str = ""):
    """The ``FeatureStore`` the benchmark writes, or ``None`` (after saying why) when
    ``data`` is absent. ``settings`` goes on the first line, before the load average."""
    if not data.is_dir():
        print(f"skipped: the real data folder {data} is absent (it is only on mmtk's development machines)")
        return None
    os.environ.setdefault("MMTK_STORE", str(out / "store"))
    from mmtk.store import FeatureStore

    store = FeatureStore(os.environ["MMTK_STORE"])
    print(f"store {store.root}; {settings + '; ' if settings else ''}load average {os.getloadavg()[0]:.1f}", flush=True)
    return store
