"""--tta ten-crop on a run that fine-tuned a tiny open_clip image tower: each view's
pixels go through the run's own tower (the views cut from its evaluation
preprocessing), and the averaged prediction equals the model run by hand on each view."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmtk.backbones.images import open_rgb
from mmtk.data import read_dataset
from mmtk.finetune.settings import FinetuneSettings
from mmtk.predict import predict
from mmtk.runs import load_run
from mmtk.store import FeatureStore
from mmtk.train import train
from mmtk.tta.views import ten_crop
from tiny_models import write_image


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_clip_dir):
    root = tmp_path_factory.mktemp("tta_finetuned")
    rows = []
    for i in range(16):
        write_image(root / "img" / f"{i}.png", seed=200 + i, size=[(48, 40), (40, 60)][i % 2])
        rows.append({"id": f"f{i}", "image": f"img/{i}.png", "label": i % 2})
    (root / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = read_dataset(root / "data.jsonl")
    store = FeatureStore(root / "store")
    feature = f"clip:local-dir:{tiny_clip_dir}"
    train(
        dataset, val_dataset=dataset, features=[feature], model="concat", tasks=["label"], out=root / "run", store=store,
        finetune=FinetuneSettings("image", workers=0), epochs=2, batch_size=8, lr=3e-3, device="cpu", seed=0,
    )
    return root / "run", dataset, store, feature


def test_a_fine_tuned_tower_sees_every_view(finetuned):
    run_dir, dataset, store, feature = finetuned
    run = load_run(run_dir)
    geometry = run.model.tower(feature).loader(False).crop_geometry()
    views = [ten_crop(open_rgb(path, draft_size=geometry.draft_size), geometry) for path in dataset.values("image")]
    with torch.no_grad():
        logits = [run.model({feature: torch.stack([v[k] for v in views])})["label"][:, 0] for k in range(10)]
    z = torch.stack(logits).double()
    # Binary: the geometric means of p and 1 - p over the views, renormalised.
    up, down = torch.exp(torch.nn.functional.logsigmoid(z).mean(0)), torch.exp(torch.nn.functional.logsigmoid(-z).mean(0))
    by_hand = (up / (up + down)).numpy()

    records = predict(run, dataset, store=store, device="cpu", tta="ten-crop")
    np.testing.assert_allclose([record["probs"]["1"] for record in records], by_hand, atol=1e-5)
    plain = predict(run, dataset, store=store, device="cpu")
    assert max(abs(a["probs"]["1"] - b["probs"]["1"]) for a, b in zip(records, plain)) > 1e-4
    assert store.feature_sets() == []  # the tower reads the files: nothing is stored


def test_an_efficientnet_style_loader_cuts_views_from_its_resize_crop():
    from PIL import Image

    from mmtk.finetune.pixels import ImageLoader

    recipe = {"size": 8, "mean": [0.5] * 3, "std": [0.25] * 3, "draft_size": 16, "eval": {"kind": "resize-crop", "resize": 16, "interpolation": "bicubic"}}
    loader = ImageLoader.from_record(recipe, train=False)
    geometry = loader.crop_geometry()
    assert (geometry.size, geometry.draft_size) == (8, 16)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    views = ten_crop(image, geometry)
    assert all(v.shape == (3, 8, 8) and v.dtype == torch.float32 for v in views)
    # 32x24 -> 21x16: the centre view is the loader's own centre crop, normalised alike.
    torch.testing.assert_close(views[4], loader.pixels(image), rtol=0, atol=0)
