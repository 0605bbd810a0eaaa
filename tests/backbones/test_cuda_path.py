"""The CUDA path of extraction: fp16 autocast, DataLoader decode workers, pinned
batches. These run where a GPU is present (``pytest -m gpu``) and skip elsewhere; the
CPU-only suite covers the same loader code run on the CPU (tests/test_extract.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmtk.backbones import resolve_backbone
from mmtk.data import content_keys, read_dataset
from mmtk.extract import extract_features
from mmtk.store import FeatureStore
from tiny_models import write_image


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device: fp16 autocast, DataLoader workers and pinned memory run only there"),
]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture
def images(tmp_path):
    rows = []
    for i in range(7):
        path = write_image(tmp_path / f"p{i}.jpg", seed=i, size=(60 + 11 * i, 50 + 7 * i))
        rows.append({"id": f"p{i}", "img": path.name, "text": f"a funny cat number {i}" if i % 2 else "sad rain"})
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    rows.append({"id": "broken", "img": "broken.jpg", "text": "the sun"})
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return read_dataset(data)


def test_autocast_is_fp16_on_cuda_and_features_come_back_float32(tiny_clip_dir, images):
    import torch

    from mmtk.backbones.base import autocast_for

    with autocast_for("cuda"):
        assert torch.is_autocast_enabled("cuda") and torch.get_autocast_dtype("cuda") == torch.float16
    config = resolve_backbone(f"clip:local-dir:{tiny_clip_dir}")
    values = images.values("img")[:7]
    cpu, gpu = config.build("cpu"), config.build("cuda")
    on_cpu = cpu.encode(cpu.collate([cpu.load(v) for v in values]))
    on_gpu = gpu.encode(gpu.collate([gpu.load(v) for v in values]))
    assert on_gpu.dtype == np.float32 and on_gpu.shape == on_cpu.shape
    # fp16 agrees with fp32 to about 1e-3 relative (base.autocast_for), not exactly.
    assert _cosines(on_cpu, on_gpu).min() > 0.999


@pytest.mark.parametrize("backbone, column", [("clip", "img"), ("hf", "text"), ("pixels:8", "img")])
def test_cuda_extraction_with_loader_workers_matches_the_cpu(request, tmp_path, images, backbone, column):
    """Decoding in 2 DataLoader workers, batches pinned, fp16 forward: the same items
    are stored (the broken picture skipped and named) with the CPU path's features."""
    spec = {
        "clip": lambda: f"clip:local-dir:{request.getfixturevalue('tiny_clip_dir')}",
        "hf": lambda: f"hf:{request.getfixturevalue('tiny_bert_dir')}",
    }.get(backbone, lambda: backbone)()
    gpu_store, cpu_store = FeatureStore(tmp_path / "gpu"), FeatureStore(tmp_path / "cpu")
    on_gpu = extract_features(images, spec, store=gpu_store, column=column, device="cuda", num_workers=2, batch_size=3, on_error="skip")
    on_cpu = extract_features(images, spec, store=cpu_store, column=column, device="cpu", on_error="skip")
    assert on_gpu.fingerprint == on_cpu.fingerprint
    assert (on_gpu.computed, [b.item for b in on_gpu.skipped]) == (on_cpu.computed, [b.item for b in on_cpu.skipped])
    modality = "image" if column == "img" else "text"
    keys = [k for k in content_keys(images.values(column), modality) if not cpu_store.missing(on_cpu.fingerprint, [k])]
    a, b = gpu_store.gather(on_gpu.fingerprint, keys), cpu_store.gather(on_cpu.fingerprint, keys)
    assert _cosines(a, b).min() > 0.999


def test_batches_reach_the_gpu_from_pinned_memory(tiny_clip_dir, images, monkeypatch, tmp_path):
    from mmtk.backbones import images as image_module

    pinned = []
    real_encode = image_module.ImageEncoder.encode

    def spy(self, batch):
        pinned.append(batch.is_pinned())
        return real_encode(self, batch)

    monkeypatch.setattr(image_module.ImageEncoder, "encode", spy)
    report = extract_features(
        images, f"clip:local-dir:{tiny_clip_dir}", store=FeatureStore(tmp_path / "s"), device="cuda", num_workers=2, batch_size=2, on_error="skip"
    )
    assert report.computed == 7 and pinned and all(pinned)


def test_sequences_extracted_on_cuda_keep_their_lengths(tiny_bert_dir, images, tmp_path):
    spec = f"hf:{tiny_bert_dir}"
    gpu_store, cpu_store = FeatureStore(tmp_path / "gpu"), FeatureStore(tmp_path / "cpu")
    on_gpu = extract_features(images, spec, store=gpu_store, sequence=True, device="cuda", num_workers=2)
    extract_features(images, spec, store=cpu_store, sequence=True, device="cpu")
    keys = content_keys(images.values("text"), "text")
    (a, la), (b, lb) = gpu_store.gather_sequences(on_gpu.fingerprint, keys), cpu_store.gather_sequences(on_gpu.fingerprint, keys)
    assert la.tolist() == lb.tolist()
    mask = np.arange(a.shape[1])[None, :] < la[:, None]
    assert _cosines(a[mask], b[mask]).min() > 0.999
