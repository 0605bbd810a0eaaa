"""The encoder shared by transformers text backbones (``minilm``, ``hf:``): tokenise,
run the model, mean-pool the last hidden state over real tokens."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmtk.backbones.base import BadInput, autocast_for


def checked_text(value: Any) -> str:
    """The item's text, or ``BadInput`` when it is missing or blank."""
    if value is None or not str(value).strip():
        raise BadInput("empty text")
    return str(value)


class TransformerTextEncoder:
    """Sentence vectors from a transformers model: the masked mean of the last hidden
    state over real (non-padding) tokens, as sentence-transformers pools, optionally
    L2-normalised. Masking makes a text's vector independent of how much padding its
    batch needed."""

    def __init__(self, model, tokenizer, device: str, max_length: int, normalize: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.normalize = normalize
        self.dim = int(model.config.hidden_size)

    def load(self, value: Any) -> str:
        return checked_text(value)

    def collate(self, items: Sequence[str]):
        return self.tokenizer(
            list(items), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def encode(self, batch) -> np.ndarray:
        import torch

        batch = {name: tensor.to(self.device, non_blocking=True) for name, tensor in batch.items()}
        with torch.inference_mode(), autocast_for(self.device):
            output = self.model(**batch)
            hidden = output.last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu().numpy()


def load_transformer(source: str, device: str, local_only: bool):
    """AutoModel + AutoTokenizer from a directory or hub name, in eval mode on ``device``."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # Its per-load progress bar would interleave with mmtk's own progress on stderr.
    transformers_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    model = AutoModel.from_pretrained(source, local_files_only=local_only)
    return model.eval().to(device), tokenizer
