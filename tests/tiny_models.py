"""Tiny random models saved in the layouts real ones use, so backbone and extraction
tests exercise the real loading code in well under a second, offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TINY_CLIP = {
    "model_cfg": {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}

WORDS = ["the", "cat", "dog", "meme", "is", "funny", "not", "a", "sad", "happy", "weather", "sun", "rain"]


def save_tiny_clip(directory: Path, seed: int = 0) -> Path:
    """An open_clip ``local-dir``: open_clip_config.json + random safetensors weights."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "open_clip_config.json").write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP["model_cfg"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "open_clip_model.safetensors"))
    return directory


def save_tiny_bert(directory: Path, seed: int = 0, layers: int = 1) -> Path:
    """A transformers model directory: a ``layers``-layer BERT, WordPiece vocab written by hand."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    vocab += [f"##{letter}" for letter in "abcdefghijklmnopqrstuvwxyz"]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 takes the vocabulary as ``vocab`` (a ``vocab_file`` keyword is ignored,
    # leaving a tokenizer that knows only the special tokens).
    BertTokenizerFast(vocab=str(directory / "vocab.txt")).save_pretrained(directory)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=160,
    )
    BertModel(config).eval().save_pretrained(directory)
    return directory


def save_tiny_gpt2(directory: Path, seed: int = 0) -> Path:
    """A 2-layer GPT-2 from a config, saved with ``save_tiny_bert``'s WordPiece
    tokenizer (a GPT-2 BPE vocabulary cannot be made offline): ``model_type`` is gpt2,
    which is what fine-tuning's pooling by family reads."""
    import torch
    from transformers import GPT2Config, GPT2Model

    save_tiny_bert(directory, seed)
    vocab = len((directory / "vocab.txt").read_text().split())
    for name in ("config.json", "model.safetensors"):
        (directory / name).unlink()
    torch.manual_seed(seed)
    GPT2Model(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=64)).eval().save_pretrained(directory)
    return directory


def write_image(path: Path, seed: int, size: tuple[int, int] = (96, 80), fmt: str | None = None) -> Path:
    """A random-noise RGB picture (distinct per seed), JPEG or PNG by suffix."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def save_tiny_detr(directory: Path, seed: int = 0) -> Path:
    """A transformers DETR directory without timm: a 2-stage ResNet backbone, one encoder
    and one decoder layer 16 wide, 3 classes plus "no object", and a DetrImageProcessor
    resizing to a 48-pixel shortest side (at most 80). Weights are drawn at 50x DETR's
    init scale: at the default the 100 queries' states agree to 1e-5 and their class
    scores tie, where a trained model's differ clearly."""
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    directory.mkdir(parents=True, exist_ok=True)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", out_features=["stage2"])
    config = DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, num_queries=100,
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_labels=3, init_std=1.0,
    )
    torch.manual_seed(seed)
    DetrForObjectDetection(config).eval().save_pretrained(directory)
    DetrImageProcessor(size={"shortest_edge": 48, "longest_edge": 80}).save_pretrained(directory)
    return directory


def save_tiny_visualbert(directory: Path, seed: int = 0, visual_dim: int = 12) -> Path:
    """A transformers VisualBERT directory shaped like ``save_tiny_bert``'s BERT (same
    vocabulary, written beside it), with ``visual_dim``-wide visual embeddings."""
    import torch
    from transformers import VisualBertConfig, VisualBertModel

    save_tiny_bert(directory, seed)  # the tokenizer files, and the vocabulary size
    vocab = len((directory / "vocab.txt").read_text().split())
    for name in ("config.json", "model.safetensors"):
        (directory / name).unlink()
    torch.manual_seed(seed + 1)
    config = VisualBertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=160, visual_embedding_dim=visual_dim, pad_token_id=0,
    )
    VisualBertModel(config).eval().save_pretrained(directory)
    return directory


def memes_like(folder: Path, n: int, seed: int) -> Path:
    """``n`` items whose label is the sign of dimension 0 of a stored 3-step
    ``efficientnet-lite0:seq`` image sequence (texts are noise), features in the store."""
    from mmtk.backbones import resolve_backbone
    from mmtk.data import content_keys, read_dataset
    from mmtk.paths import default_store_dir
    from mmtk.store import FeatureStore

    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows, labels = [], rng.integers(0, 2, n)
    for i in range(n):
        (folder / "img" / f"{i}.png").write_bytes(b"image %d %d" % (seed, i))
        words = " ".join(WORDS[int(k)] for k in rng.integers(0, len(WORDS), 4))
        rows.append({"id": f"m{i}", "img": f"img/{i}.png", "text": words, "label": int(labels[i])})
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = read_dataset(path)
    config = resolve_backbone("efficientnet-lite0", "image", sequence=True)
    store = FeatureStore(default_store_dir())
    store.register(config.fingerprint, {"backbone": config.spec, "modality": "image", "kind": "sequence", "dim": 6})
    steps = rng.normal(size=(n, 3, 6)).astype(np.float32)
    steps[:, :, 0] += 2.0 * labels[:, None] - 1.0
    store.put(config.fingerprint, content_keys(dataset.values("img"), "image"), list(steps))
    return path
