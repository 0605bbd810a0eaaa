"""Where mmtk keeps things by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_store_dir() -> Path:
    """``$MMTK_STORE``, else the platform cache dir (``~/.cache/mmtk`` on Linux)."""
    env = os.environ.get("MMTK_STORE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mmtk"))
