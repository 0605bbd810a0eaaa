"""The encoder shared by transformers text backbones (``minilm``, ``hf:``): tokenise,
run the model, then either mean-pool the last hidden state over real tokens (the pooled
vector) or keep those token states (the sequence form, ``--sequence`` / ``BACKBONE:seq``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from mmtk.backbones.base import BackboneConfig, BadInput, FeatureOptions, autocast_for, make_fingerprint

#: What the sequence form stores, for its fingerprint: change it whenever that changes.
TOKEN_STATES = {
    "output": "last_hidden_state",
    "steps": "attended tokens only, special tokens ([CLS], [SEP]) included",
    "truncation": "first max_length tokens",
}

# Tokenizers without a configured limit report a huge sentinel (int(1e30)) instead.
_NO_LIMIT = 1_000_000


def checked_text(value: Any) -> str:
    """The item's text, or ``BadInput`` when it is missing or blank."""
    if value is None or not str(value).strip():
        raise BadInput("empty text")
    return str(value)


def token_states_form(config: BackboneConfig, options: FeatureOptions, *, identity: dict) -> BackboneConfig:
    """The sequence form of a pooled transformers text backbone: the same model storing
    its last hidden state, one row per token the model attended to (padding is never
    stored; the tokenizer's special tokens such as [CLS] and [SEP] are), truncated at
    ``options.max_length`` tokens. ``identity`` is the model's weights identity without
    the pooled form's settings; the fingerprint adds the output form and max_length.
    The spec stays the backbone's own, so ``store ls`` names the model beside the
    variant ``seq max_length=N``."""
    fingerprint = make_fingerprint(config.name, {**identity, **TOKEN_STATES, "max_length": options.max_length})
    return replace(
        config,
        fingerprint=fingerprint,
        settings={**config.settings, "max_length": options.max_length},
        kind="sequence",
        sequence_form=None,
        variant=f"seq max_length={options.max_length}",
    )


def text_encoder(model, tokenizer, config: BackboneConfig, device: str, *, max_length: int, normalize: bool = False):
    """The encoder for ``config``'s form: pooled vectors (``max_length`` tokens, then
    L2-normalised when ``normalize``), or for its sequence form (``token_states_form``)
    the token states up to the sequence form's own max_length."""
    if config.kind == "sequence":
        return TransformerTextEncoder(model, tokenizer, device, config.settings["max_length"], tokens=True, spec=config.spec)
    return TransformerTextEncoder(model, tokenizer, device, max_length, normalize=normalize)


class TransformerTextEncoder:
    """Sentence vectors from a transformers model: the masked mean of the last hidden
    state over real (non-padding) tokens, as sentence-transformers pools, optionally
    L2-normalised. Masking makes a text's vector independent of how much padding its
    batch needed.

    With ``tokens=True`` it returns the token states themselves instead, one
    (attended tokens, hidden size) array per text; the mean of such an array is the
    pooled vector before normalisation (when both keep the same tokens)."""

    def __init__(
        self, model, tokenizer, device: str, max_length: int, normalize: bool = False, *, tokens: bool = False,
        spec: str = "",
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.normalize = normalize
        self.tokens = tokens
        self.dim = int(model.config.hidden_size)
        if tokens:
            limit = token_limit(model, tokenizer)
            if limit is not None and max_length > limit:
                from mmtk.errors import UsageError

                # Past its position table the model fails with an index error mid-run.
                raise UsageError(
                    f"--max-length {max_length} is more than the {limit} tokens {spec or 'this model'} can read",
                    f"pass --max-length {limit} or less",
                )

    def load(self, value: Any) -> str:
        return checked_text(value)

    def collate(self, items: Sequence[str]):
        return self.tokenizer(
            list(items), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def encode(self, batch) -> np.ndarray | list[np.ndarray]:
        import torch

        batch = {name: tensor.to(self.device, non_blocking=True) for name, tensor in batch.items()}
        with torch.inference_mode(), autocast_for(self.device):
            output = self.model(**batch)
            hidden = output.last_hidden_state.float()
            if self.tokens:
                # Select by the mask rather than slicing a prefix: tokenizers that pad on
                # the left keep working.
                attended = batch["attention_mask"].bool().cpu()
                hidden = hidden.cpu()
                return [hidden[i][attended[i]].numpy() for i in range(hidden.shape[0])]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu().numpy()


def token_limit(model, tokenizer) -> int | None:
    """The most tokens the model reads: the smaller of the tokenizer's configured limit
    and the model's position table (RoBERTa's table has two extra rows, its tokenizer
    says 512); None when neither states one."""
    limits = [
        int(value)
        for value in (getattr(tokenizer, "model_max_length", None), getattr(model.config, "max_position_embeddings", None))
        if isinstance(value, int) and 0 < value < _NO_LIMIT
    ]
    return min(limits) if limits else None


def load_transformer(source: str, device: str, local_only: bool):
    """AutoModel + AutoTokenizer from a directory or hub name, in eval mode on ``device``."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # Its per-load progress bar would interleave with mmtk's own progress on stderr.
    transformers_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    model = AutoModel.from_pretrained(source, local_files_only=local_only)
    return model.eval().to(device), tokenizer
