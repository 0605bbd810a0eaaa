"""Word-piece inputs for the zoo contract, for models whose registry entry says
``tokens=True`` (they read ``tokens@COLUMN``, ``mmtk.tokens``): such a model is built on
the tiny BERT of ``tests/tiny_models.py`` (``weights=`` its directory, its shape
parameters set to the checkpoint's), and reads ids of that checkpoint's vocabulary.

Every item's ids start with [CLS] (the data layer's contract, an absent text included),
so what may vary in an absent or padded item is the pieces after it."""

from __future__ import annotations

import atexit
import inspect
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from mmtk.models import MODELS
from mmtk.training import InputSpec

NAME = "tokens@text"
#: A model's shape parameters and the checkpoint config field each must equal.
SHAPE = {"layers": "num_hidden_layers", "hidden": "hidden_size", "attention_heads": "num_attention_heads", "intermediate": "intermediate_size"}


@lru_cache(maxsize=1)
def tiny_checkpoint() -> Path:
    """A tiny BERT directory (model and tokenizer), made once per test process."""
    from tiny_models import save_tiny_bert

    folder = Path(tempfile.mkdtemp(prefix="mmtk-tiny-bert-"))
    atexit.register(shutil.rmtree, folder, True)
    return save_tiny_bert(folder / "bert")


def checkpoint_config() -> dict:
    return json.loads((tiny_checkpoint() / "config.json").read_text())


def token_spec(max_len: int) -> InputSpec:
    return InputSpec(NAME, checkpoint_config()["vocab_size"], "tokens", max_len)


def build_args(name: str) -> dict:
    """``weights=`` the tiny checkpoint, and every shape parameter the builder has set to it."""
    params = inspect.signature(MODELS.get(name)).parameters
    config = checkpoint_config()
    return {"weights": str(tiny_checkpoint()), **{p: config[field] for p, field in SHAPE.items() if p in params}}


def feature_ref() -> str:
    """The reference training uses: the text column through the checkpoint's tokenizer."""
    return f"tokens:{tiny_checkpoint()}@text"


def random_ids(batch: int, steps: int, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Ids padded with 0 past ``mask``; position 0 is [CLS]."""
    vocab = checkpoint_config()["vocab_size"]
    ids = torch.randint(5, vocab, (batch, steps), generator=generator) * mask
    ids[:, 0] = 2  # [CLS] in tiny_models' vocabulary
    return ids


def vary_pieces(ids: torch.Tensor, where: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``ids`` with other random pieces after [CLS] wherever ``where`` (``(B, T)`` or
    ``(B, 1)``) holds."""
    vocab = checkpoint_config()["vocab_size"]
    other = torch.randint(1, vocab, ids.shape, generator=generator)
    where = where.expand_as(ids).clone()
    where[:, 0] = False
    return torch.where(where, other, ids)
