"""Trainable backbones ("towers") for ``mmtk train --finetune``: what
``BackboneConfig.build_trainable`` returns.

A tower is an ``nn.Module`` that maps raw inputs (word-piece ids, or a batch of
preprocessed pixels) to one vector per item, the width the fusion model reads
(``dim``). Unlike the frozen encoders of ``build`` it keeps batch norms unfolded,
dropout active in train mode, and runs with gradients. Every tower also says how its
inputs are prepared (``TextTower.tokenize``; ``ImageTower.loader(train)``, a picklable
callable that DataLoader workers run), can freeze its embeddings and first layers
(``freeze``), turn on gradient checkpointing (``checkpointing``), write the files that
rebuild it offline into a run directory (``save_files``) and describe itself for the
run's ``config.json`` (``record``). ``rebuild_tower(folder, record)`` is the inverse:
the architecture and tokenizer from the run's files, weights from ``model.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from mmtk.errors import UsageError

from mmtk.finetune.towers_names import TEXT_HEADS, TEXT_POOLS

# Pooling by model family (transformers' ``config.model_type``): encoders trained with a
# sentence-level [CLS] objective read it; decoder-style models see the whole text only at
# the last token (XLNet puts its <cls> there); others get the max over token states.
CLS_FAMILIES = frozenset({
    "bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "camembert", "deberta", "deberta-v2",
    "mpnet", "ernie", "megatron-bert", "rembert", "roformer", "mobilebert", "squeezebert", "luke", "longformer",
    "big_bird", "nezha", "xlm", "flaubert", "funnel", "layoutlm", "data2vec-text", "xmod", "modernbert",
})
LAST_TOKEN_FAMILIES = frozenset({
    "gpt2", "xlnet", "gpt_neo", "gptj", "gpt_neox", "gpt_bigcode", "openai-gpt", "ctrl", "opt", "bloom", "llama",
    "mistral", "qwen2", "phi", "falcon", "codegen",
})

# A text counts as shouted when it has at least this many letters and this share of
# them is upper case (meme captions in Impact capitals); such texts are lower-cased.
SHOUT_MIN_LETTERS = 4
SHOUT_SHARE = 0.7


def pooling_for(model_type: str) -> str:
    """``"cls"``, ``"last"`` or ``"max"`` for a transformers ``model_type``."""
    if model_type in CLS_FAMILIES:
        return "cls"
    if model_type in LAST_TOKEN_FAMILIES:
        return "last"
    return "max"


def unshout(text: str) -> str:
    """``text`` lower-cased when it is mostly upper case (``--lowercase-shouting``);
    unchanged otherwise, so proper nouns and acronyms in normal text keep their case."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= SHOUT_MIN_LETTERS and sum(c.isupper() for c in letters) >= SHOUT_SHARE * len(letters):
        return text.lower()
    return text


def pool_states(states: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """``(B, T, d)`` token states to ``(B, d)``: the first token, the last valid one
    (right padding: position ``length - 1``), or the max or mean over valid ones."""
    if how == "cls":
        return states[:, 0]
    if how == "mean":
        weights = mask[:, :, None].to(states.dtype)
        return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
    if how == "last":
        last = mask.long().sum(dim=1).clamp(min=1) - 1
        return states[torch.arange(states.shape[0], device=states.device), last]
    filled = states.masked_fill(~mask[:, :, None], torch.finfo(states.dtype).min)
    return filled.max(dim=1).values


class BiLSTMAttention(nn.Module):
    """A BiLSTM over the token states, then dot-product attention pooling: each step's
    output scored against a learned query, softmax over valid steps, weighted sum.
    Output width ``2 * hidden``."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
        self.query = nn.Parameter(torch.randn(2 * hidden) / (2 * hidden) ** 0.5)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.long().sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(states, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=states.shape[1])
        scores = (out @ self.query) / out.shape[-1] ** 0.5
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1)
        return (weights[:, :, None] * out).sum(dim=1)


class TextTower(nn.Module):
    """A transformers text model with its tokenizer, pooled by family (``pooling_for``)
    or through a ``BiLSTMAttention`` head. ``forward(ids, mask) -> (B, dim)``."""

    kind = "text"

    def __init__(self, model, tokenizer, *, spec: str, max_length: int, head: str = "pool", lowercase_shouting: bool = False,
                 pretrained_pooling: str | None = None):
        super().__init__()
        if head not in TEXT_HEADS:
            raise UsageError(f"unknown text_head {head!r}", f"choose one of: {', '.join(TEXT_HEADS)}")
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = int(max_length)
        self.head_name = head
        self.lowercase_shouting = bool(lowercase_shouting)
        self.model_type = str(model.config.model_type)
        # ``auto`` pooling: the one the checkpoint was trained to be read with where it says
        # (a sentence-transformers model such as minilm: the masked mean, which its frozen
        # features use too), else by family. On Clothing reviews fine-tuned minilm + gmu
        # scored macro-F1 0.833 read at [CLS] against 0.886 mean-pooled (BENCHMARKS.md).
        self.auto_pooling = pretrained_pooling or pooling_for(self.model_type)
        self.pooling = self.auto_pooling
        width = int(model.config.hidden_size)
        self.head = BiLSTMAttention(width, max(1, width // 2)) if head == "bilstm-attention" else None
        self.dim = 2 * max(1, width // 2) if self.head is not None else width

    def with_options(
        self, *, max_length: int | None = None, head: str = "pool", lowercase_shouting: bool = False, pooling: str = "auto",
    ) -> TextTower:
        """Set the run's tokenisation limit (capped at what the model can read), text
        head, pooling (``auto``: by family) and lower-casing of shouted text; returns the
        tower."""
        from mmtk.backbones.text import token_limit

        if head not in TEXT_HEADS:
            raise UsageError(f"unknown text_head {head!r}", f"choose one of: {', '.join(TEXT_HEADS)}")
        if pooling not in TEXT_POOLS:
            raise UsageError(f"unknown text_pool {pooling!r}", f"choose one of: {', '.join(TEXT_POOLS)}")
        self.pooling = self.auto_pooling if pooling == "auto" else pooling
        limit = token_limit(self.model, self.tokenizer)
        if max_length is not None:
            self.max_length = min(int(max_length), limit) if limit else int(max_length)
        self.lowercase_shouting = bool(lowercase_shouting)
        if head != self.head_name:
            width = int(self.model.config.hidden_size)
            self.head_name = head
            self.head = BiLSTMAttention(width, max(1, width // 2)) if head == "bilstm-attention" else None
            self.dim = 2 * max(1, width // 2) if self.head is not None else width
        return self

    def prepare(self, text: str) -> str:
        return unshout(text) if self.lowercase_shouting else text

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Int64 ids ``(N, T)`` padded on the right with 0 (``T``: the longest item) and
        ``lengths`` ``(N,)``, special tokens included, cut to ``max_length``."""
        encoded = self.tokenizer(
            [self.prepare(t) for t in texts], truncation=True, max_length=self.max_length, add_special_tokens=True
        )["input_ids"]
        lengths = np.array([max(len(ids), 1) for ids in encoded], dtype=np.int64)
        ids = np.zeros((len(encoded), int(lengths.max(initial=1))), dtype=np.int64)
        for row, pieces in enumerate(encoded):
            ids[row, : len(pieces)] = pieces
        return ids, lengths

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones_like(ids, dtype=torch.bool)
        states = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        if self.head is not None:
            return self.head(states.float(), mask)
        return pool_states(states, mask, self.pooling)

    def layers(self) -> nn.ModuleList:
        """The transformer's stack of layers (the ModuleList as long as its layer count)."""
        count = getattr(self.model.config, "num_hidden_layers", None)
        for module in self.model.modules():
            if isinstance(module, nn.ModuleList) and len(module) == count:
                return module
        raise UsageError(f"cannot find the layers of {self.spec} ({self.model_type})", "fine-tune it without --freeze-layers")

    def freeze(self, count: int) -> None:
        """Embeddings (every parameter registered before the first layer) and the first
        ``count`` layers stop training."""
        layers = self.layers()
        _check_freeze(count, len(layers), self.spec, "layers")
        first = {id(p) for p in layers[0].parameters()}
        for parameter in self.model.parameters():
            if id(parameter) in first:
                break
            parameter.requires_grad_(False)
        for layer in layers[:count]:
            layer.requires_grad_(False)

    def checkpointing(self) -> None:
        if not getattr(self.model, "supports_gradient_checkpointing", False):
            raise UsageError(f"{self.spec} ({self.model_type}) does not support gradient checkpointing", "drop --grad-checkpoint")
        # transformers 5 renamed it (the old name warns); older releases have only the old one.
        enable = getattr(self.model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if getattr(self.model.config, "use_cache", None):
            self.model.config.use_cache = False  # a key/value cache is for generation, and conflicts with checkpointing

    def save_files(self, folder: Path) -> None:
        """The tokenizer and the model's config (its weights are in the run's safetensors)."""
        self.tokenizer.save_pretrained(str(folder))
        self.model.config.save_pretrained(str(folder))

    def record(self) -> dict:
        return {
            "kind": self.kind, "spec": self.spec, "model_type": self.model_type, "pooling": self.pooling,
            "text_head": self.head_name, "max_length": self.max_length, "lowercase_shouting": self.lowercase_shouting,
            "dim": self.dim,
        }


def _check_freeze(count: int, available: int, spec: str, what: str) -> None:
    if not 0 <= count <= available:
        raise UsageError(f"--freeze-layers {count}: {spec} has {available} {what}", f"give a number from 0 to {available}")


class ImageTower(nn.Module, ABC):
    """An image model's trunk: ``forward(pixels) -> (B, dim)`` for a batch of
    preprocessed images ``(B, 3, H, W)`` (float, normalised as ``loader`` makes them).
    This is the one function that maps pixels to the run's image features: training,
    evaluation, extraction from a fine-tuned run and test-time augmentation all call it.
    Subclasses give ``embeddings()`` and ``stages()`` (what ``freeze`` stops) and run
    their stages through ``_run_stage`` (checkpointed when asked)."""

    kind = "image"

    def __init__(self, spec: str, dim: int, preprocess: dict, architecture: dict):
        super().__init__()
        self.spec = spec
        self.dim = int(dim)
        self.preprocess = dict(preprocess)
        self.architecture = dict(architecture)  # what rebuild_tower builds
        self.checkpoint_stages = False

    def loader(self, train: bool):
        from mmtk.finetune.pixels import ImageLoader

        return ImageLoader.from_record(self.preprocess, train=train)

    @abstractmethod
    def embeddings(self) -> list[nn.Module]:
        """The modules before the first stage (stem, patch and position embeddings)."""

    @abstractmethod
    def stages(self) -> list[nn.Module]:
        """The stages ``--freeze-layers`` counts, input side first."""

    def freeze(self, count: int) -> None:
        stages = self.stages()
        _check_freeze(count, len(stages), self.spec, "stages")
        for module in [*self.embeddings(), *stages[:count]]:
            module.requires_grad_(False)

    def checkpointing(self) -> None:
        self.checkpoint_stages = True

    def _run_stage(self, stage, x, *args):
        if self.checkpoint_stages and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(stage, x, *args, use_reentrant=False)
        return stage(x, *args)

    def save_files(self, folder: Path) -> None:
        (folder / "preprocess.json").write_text(json.dumps(self.preprocess, indent=2) + "\n", encoding="utf-8")

    def record(self) -> dict:
        return {"kind": self.kind, "spec": self.spec, "dim": self.dim, "preprocess": self.preprocess, **self.architecture}


class EfficientNetTower(ImageTower):
    """EfficientNet-Lite's trunk, global-average pooled; batch norms kept (not folded).
    A stage is a run of blocks with the same output width (EfficientNet's seven)."""

    def __init__(self, net, spec: str, dim: int, preprocess: dict, model: str = "efficientnet-lite0"):
        super().__init__(spec, dim, preprocess, {"architecture": "efficientnet-lite", "model": model})
        net._fc = nn.Identity()  # the ImageNet classifier is not part of the features
        self.net = net
        self._stage_slices = _block_stages(net._blocks)

    def embeddings(self) -> list[nn.Module]:
        return [self.net._conv_stem, self.net._bn0]

    def stages(self) -> list[nn.Module]:
        return [nn.ModuleList(self.net._blocks[a:b]) for a, b in self._stage_slices]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixels)))
        rate, count = net._global_params.drop_connect_rate, len(net._blocks)
        for start, stop in self._stage_slices:
            for index in range(start, stop):
                x = self._run_stage(net._blocks[index], x, (rate or 0.0) * index / count)
        x = net._swish(net._bn1(net._conv_head(x)))
        return x.mean(dim=(2, 3))


def _block_stages(blocks) -> list[tuple[int, int]]:
    slices, start = [], 0
    for index in range(1, len(blocks) + 1):
        if index == len(blocks) or blocks[index]._block_args.output_filters != blocks[start]._block_args.output_filters:
            slices.append((start, index))
            start = index
    return slices


class ClipImageTower(ImageTower):
    """open_clip's image tower (a ViT): the L2-normalised joint-space embedding, as the
    frozen ``clip`` features are."""

    def __init__(self, visual, spec: str, dim: int, preprocess: dict, model_cfg: dict):
        super().__init__(spec, dim, preprocess, {"architecture": "open_clip"})
        self.visual = visual
        self.model_cfg = model_cfg

    def embeddings(self) -> list[nn.Module]:
        visual = self.visual
        return [m for m in (visual.conv1, visual.ln_pre) if m is not None] + [_Params(visual, ("class_embedding", "positional_embedding"))]

    def stages(self) -> list[nn.Module]:
        blocks = getattr(getattr(self.visual, "transformer", None), "resblocks", None)
        if blocks is None:
            raise UsageError(f"{self.spec}: only ViT image towers can freeze layers", "drop --freeze-layers")
        return list(blocks)

    def checkpointing(self) -> None:
        # open_clip's transformer runs each block through torch.utils.checkpoint itself.
        self.visual.set_grad_checkpointing(True)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.visual(pixels), dim=-1)

    def save_files(self, folder: Path) -> None:
        super().save_files(folder)
        (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": self.model_cfg}, indent=2) + "\n", encoding="utf-8")


class _Params(nn.Module):
    """Stand-in module over bare parameters of ``owner`` (a ViT's class and position
    embeddings), so ``requires_grad_`` reaches them like any module's."""

    def __init__(self, owner: nn.Module, names: Sequence[str]):
        super().__init__()
        self._owner = [owner]  # a list: not registered as a submodule
        self._names = tuple(names)

    def requires_grad_(self, requires_grad: bool = True):
        for name in self._names:
            parameter = getattr(self._owner[0], name, None)
            if isinstance(parameter, nn.Parameter):
                parameter.requires_grad_(requires_grad)
        return self


def configure(tower: nn.Module, *, freeze_layers: int = 0, grad_checkpoint: bool = False) -> nn.Module:
    """Apply ``--freeze-layers`` and ``--grad-checkpoint`` to a freshly built tower."""
    if freeze_layers:
        tower.freeze(freeze_layers)
    if grad_checkpoint:
        tower.checkpointing()
    return tower.train()


def weights_digest(tower: nn.Module) -> str:
    """SHA-256 over the tower's tensors (names, shapes, dtypes, bytes): the identity of
    fine-tuned weights in the fingerprint of features extracted from them."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tower.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def rebuild_tower(folder: Path, record: dict) -> nn.Module:
    """A tower of ``record``'s architecture (weights random until the run's state is
    loaded), from the files ``save_files`` wrote into ``folder``; nothing is downloaded."""
    kind = record.get("kind")
    if kind == "text":
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_config(config)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        tower = TextTower(
            model, tokenizer, spec=record["spec"], max_length=record["max_length"], head=record["text_head"],
            lowercase_shouting=record["lowercase_shouting"],
        )
        tower.pooling = record["pooling"]
        return tower.eval()
    if kind == "image" and record.get("architecture") == "efficientnet-lite":
        from efficientnet_lite_pytorch import EfficientNet

        return EfficientNetTower(EfficientNet.from_name(record["model"]), record["spec"], record["dim"], record["preprocess"], record["model"]).eval()
    if kind == "image" and record.get("architecture") == "open_clip":
        from open_clip.model import _build_vision_tower

        model_cfg = json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))["model_cfg"]
        visual = _build_vision_tower(model_cfg["embed_dim"], model_cfg["vision_cfg"], bool(model_cfg.get("quick_gelu", False)))
        return ClipImageTower(visual, record["spec"], record["dim"], record["preprocess"], model_cfg).eval()
    raise UsageError(f"{folder}: unknown fine-tuned tower {json.dumps(record)[:120]}", "retrain the run with this mmtk version")
