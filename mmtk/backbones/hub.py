"""Loading from the Hugging Face hub without hanging when it cannot be reached.

Every hub load tries the local cache first (no network at all); only when that misses
does it go online, with short timeouts, and an unreachable hub becomes one clear
``UsageError`` instead of a hang or a stack of HTTP tracebacks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

from mmtk.errors import UsageError, first_line

T = TypeVar("T")

# Seconds to wait for the hub before concluding it is unreachable.
HUB_TIMEOUT_S = "10"

#: What works without any network, for every hint that says the hub is out of reach.
OFFLINE_DEFAULTS = "efficientnet-lite0 (images) and minilm (text), whose weights come with mmtk's packages"


def unreachable_hint(local_form: str) -> str:
    """How to go on without the hub: ``local_form`` is the spec that loads a copy of the
    model from a folder for THIS backbone (``hf:/path/to/model``,
    ``clip:local-dir:/path/to/model``), or an offline default."""
    return f"download the model where there is network and pass {local_form}, or use an offline default: {OFFLINE_DEFAULTS}"

#: Files that identify a local transformers model directory: configs and weights.
TRANSFORMERS_FILES = ("*.json", "*.safetensors", "*.bin")

_NETWORK_WORDS = ("connect", "offline", "resolve", "timed out", "timeout", "network", "cannot find the requested files")


def limit_hub_waits() -> None:
    """Cap huggingface_hub's metadata and download timeouts unless the user set them.
    Call before the first import of huggingface_hub/transformers (it reads them once)."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", HUB_TIMEOUT_S)
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", HUB_TIMEOUT_S)


def hub_answers(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint (``HF_ENDPOINT``) opens. Checked
    before going online because huggingface_hub retries a failed request five times
    with backoff, printing each retry: about 25 s per file, 50 s for a clip model, on a
    machine without network. Behind a proxy the endpoint is not reached directly, so
    the libraries are left to try."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def hub_unreachable(what: str, local_form: str) -> UsageError:
    return UsageError(
        f"could not load {what}: the model hub is unreachable and no local copy exists", unreachable_hint(local_form)
    )


def load_cached_first(what: str, load: Callable[[bool], T], *, local_form: str) -> T:
    """Call ``load(local_only=True)``; if nothing is cached, ``load(local_only=False)``.
    Failures become a ``UsageError`` naming ``what`` (the hub message when unreachable)
    whose hint names ``local_form``, the spec that loads the model from a folder."""
    limit_hub_waits()
    try:
        return load(True)
    except Exception:  # not cached (each library raises its own type); try the network
        pass
    if not hub_answers():
        raise hub_unreachable(what, local_form)
    try:
        return load(False)
    except UsageError:
        raise
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}".lower()
        if any(word in text for word in _NETWORK_WORDS):
            raise hub_unreachable(what, local_form) from exc
        raise UsageError(f"could not load {what}: {first_line(exc)}", f"check the name, or pass {local_form}") from exc


def hub_file(repo_id: str, filename: str, *, local_form: str) -> str:
    """Path of ``filename`` from hub repo ``repo_id``: the cached copy, else downloaded."""

    def fetch(local_only: bool) -> str:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id, filename, local_files_only=local_only)

    return load_cached_first(f"{filename} from hub repo {repo_id}", fetch, local_form=local_form)


def cached_revision(repo_id: str, revision: str = "main") -> str | None:
    """Commit hash of the locally cached ``revision`` (a branch or tag; ``main`` unless
    a spec names another) of a hub model repo, if any. It names the weights a hub spec
    resolves to without contacting the hub."""
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub"
    )
    ref = Path(cache) / f"models--{repo_id.replace('/', '--')}" / "refs" / revision
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


def model_source(arg: str, what: str, model_files: tuple[str, ...]) -> tuple[str, dict, Path | None]:
    """Where a transformers model comes from, without loading it: ``(source, weights
    identity for the fingerprint, local directory or None)``. A directory (``PATH`` or
    ``local-dir:PATH``) is identified by its files' contents; a hub name by the revision
    in the local cache. A path that looks local but does not exist is a ``UsageError``
    rather than a hub lookup."""
    from mmtk.backbones.base import directory_identity

    # open_clip's spelling of a folder (clip:local-dir:PATH) names the same folder here.
    arg = arg.removeprefix("local-dir:")
    local = Path(arg).expanduser()
    if local.is_dir():
        return str(local.resolve()), {"local": directory_identity(local, model_files)}, local
    if arg.startswith((".", "/", "~")) or local.exists():
        raise UsageError(f"{what} model directory not found: {arg}", "pass a directory holding config.json and the weights")
    return arg, {"hub": arg, "revision": cached_revision(arg)}, None


def transformers_identity(weights) -> dict:
    """The identity of a transformers model for fingerprints: its weights (from
    ``model_source``) and the transformers major version, whose modelling code turns
    those weights into features."""
    from mmtk.backbones.base import package_version

    return {"weights": weights, "transformers": package_version("transformers").split(".")[0]}


def json_field(path: Path, field: str) -> int | None:
    """An integer field of a model's JSON config file, or None when it is not there."""
    import json

    try:
        return int(json.loads(path.read_text())[field])
    except (OSError, ValueError, KeyError, TypeError):
        return None
