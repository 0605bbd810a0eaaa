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


def current_umask() -> int:
    """The process's umask, so files that mmtk creates through ``mkstemp``/``mkdtemp``
    (always 0600/0700) can be given the mode a plain ``open``/``mkdir`` would have.

    Linux reports it in /proc without changing it; elsewhere it is read by setting and
    restoring it, which a thread creating a file at that instant could observe."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
