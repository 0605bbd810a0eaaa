"""The ten views of an image: TenCrop's corners, centre and mirror crops, cut from the
image as each backbone resizes it, finished with the rest of its preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmtk.backbones import FeatureOptions, resolve_backbone
from mmtk.backbones.efficientnet_lite import PREPROCESS
from mmtk.backbones.images import CropGeometry, ImageEncoder, crop_geometry
from mmtk.errors import UsageError
from mmtk.tta import TTA, get_tta, parse_view
from mmtk.tta.views import TEN_CROP_VIEWS, ten_crop

RED, GREEN, BLUE, YELLOW, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 255, 255)


def quadrants_image(side: int = 8) -> Image.Image:
    """Top-left red, top-right green, bottom-left blue, bottom-right yellow; the
    image's top-right corner pixel white, to tell a crop from its mirror."""
    half = side // 2
    pixels = np.zeros((side, side, 3), dtype=np.uint8)
    pixels[:half, :half], pixels[:half, half:], pixels[half:, :half], pixels[half:, half:] = RED, GREEN, BLUE, YELLOW
    pixels[0, side - 1] = WHITE
    return Image.fromarray(pixels)


def filled(colour, side=4):
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (side, side, 3))


def test_corners_centre_and_mirrors_of_a_quadrant_image():
    geometry = CropGeometry(size=4, resize=lambda image: image, finish=np.asarray)
    views = dict(zip(TEN_CROP_VIEWS, ten_crop(quadrants_image(), geometry)))
    assert list(views) == list(TEN_CROP_VIEWS) and len(views) == 10
    green_marked = filled(GREEN).copy()
    green_marked[0, 3] = WHITE
    np.testing.assert_array_equal(views["top-left"], filled(RED))
    np.testing.assert_array_equal(views["top-right"], green_marked)
    np.testing.assert_array_equal(views["bottom-left"], filled(BLUE))
    np.testing.assert_array_equal(views["bottom-right"], filled(YELLOW))
    centre = np.zeros((4, 4, 3), dtype=np.uint8)
    centre[:2, :2], centre[:2, 2:], centre[2:, :2], centre[2:, 2:] = RED, GREEN, BLUE, YELLOW
    np.testing.assert_array_equal(views["center"], centre)
    # Crops of the mirrored image: its top-left is the original's top-right, flipped.
    np.testing.assert_array_equal(views["mirror-top-left"], green_marked[:, ::-1])
    np.testing.assert_array_equal(views["mirror-top-right"], filled(RED))
    np.testing.assert_array_equal(views["mirror-bottom-left"], filled(YELLOW))
    np.testing.assert_array_equal(views["mirror-bottom-right"], filled(BLUE))
    np.testing.assert_array_equal(views["mirror-center"], centre[:, ::-1])


def test_efficientnet_views_are_cut_from_its_own_resize_and_the_centre_is_its_crop():
    encoder = ImageEncoder(None, PREPROCESS, 1280, "cpu", draft_size=PREPROCESS.resize, normalize=(PREPROCESS.mean, PREPROCESS.std))
    geometry = encoder.crop_geometry()
    assert (geometry.size, geometry.draft_size) == (224, 256)
    # 600x400 -> 384x256 at the short side: corners 224 px in, centre the plain crop.
    picture = quadrants_image(8).resize((600, 400), Image.NEAREST)
    views = dict(zip(TEN_CROP_VIEWS, ten_crop(picture, geometry)))
    assert all(v.shape == (224, 224, 3) and v.dtype == np.uint8 for v in views.values())
    corners = [views["top-left"][0, 0], views["bottom-left"][-1, 0], views["bottom-right"][-1, -1], views["mirror-bottom-left"][-1, 0]]
    assert [tuple(int(c) for c in pixel) for pixel in corners] == [RED, BLUE, YELLOW, YELLOW]
    assert tuple(int(c) for c in views["top-right"][0, -1]) == WHITE == tuple(int(c) for c in views["mirror-top-left"][0, 0])
    np.testing.assert_array_equal(views["center"], PREPROCESS(picture))
    np.testing.assert_array_equal(views["mirror-center"], PREPROCESS(picture)[:, ::-1])


def test_open_clip_views_finish_with_its_transform(tiny_clip_dir):
    import torch

    encoder = resolve_backbone(f"clip:local-dir:{tiny_clip_dir}").build("cpu")
    geometry = encoder.crop_geometry()
    assert geometry.size == 32
    picture = quadrants_image(8).resize((48, 32), Image.NEAREST)
    views = ten_crop(picture, geometry)
    assert all(v.shape == (3, 32, 32) for v in views)
    # The short side is already 32: the centre view is exactly what clip feeds the model.
    torch.testing.assert_close(views[TEN_CROP_VIEWS.index("center")], encoder.load_image(picture), rtol=0, atol=0)


def test_a_transform_without_a_short_side_resize_and_square_crop_is_refused():
    from torchvision.transforms import CenterCrop, Compose, Resize, ToTensor

    encoder = ImageEncoder(None, lambda image: image, 4, "cpu")
    with pytest.raises(UsageError, match="no short-side resize and square crop"):
        encoder.crop_geometry()
    # open_clip's "squash" mode resizes both sides: a corner crop would be the whole image.
    with pytest.raises(UsageError, match="Compose has no short-side resize"):
        crop_geometry(Compose([Resize((32, 32)), CenterCrop(32), ToTensor()]))
    geometry = crop_geometry(Compose([Resize(32), CenterCrop(32), ToTensor()]), draft_size=32)
    assert (geometry.size, geometry.draft_size) == (32, 32)
    assert ten_crop(quadrants_image(64), geometry)[0].shape == (3, 32, 32)


def test_registry_and_view_names():
    assert TTA.names() == ["none", "ten-crop"]
    assert get_tta("none").views == () and get_tta("ten-crop").views == TEN_CROP_VIEWS
    assert parse_view("ten-crop:mirror-center") == (get_tta("ten-crop"), "mirror-center")
    with pytest.raises(UsageError, match="unknown test-time augmentation 'five-crop'") as error:
        get_tta("five-crop")
    assert "none, ten-crop" in error.value.hint
    with pytest.raises(UsageError, match="unknown test-time view 'ten-crop:middle'"):
        FeatureOptions(view="ten-crop:middle")


def test_each_view_is_its_own_feature_set(tiny_clip_dir):
    plain = resolve_backbone("efficientnet-lite0", "image")
    views = [resolve_backbone("efficientnet-lite0", "image", options=FeatureOptions(view=f"ten-crop:{v}")) for v in TEN_CROP_VIEWS]
    prints = {config.fingerprint for config in views}
    assert len(prints) == 10 and plain.fingerprint not in prints
    # Each view's companions are the other nine, so extracting one stores all ten.
    assert set(views[0].companions) == prints - {views[0].fingerprint}
    assert views[3].variant == "ten-crop bottom-right" and views[3].spec == plain.spec and views[3].kind == "vector"
    grid = resolve_backbone("efficientnet-lite0", "image", sequence=True, options=FeatureOptions(view="ten-crop:center"))
    assert grid.kind == "sequence" and grid.variant == "seq 7x7 grid, ten-crop center"
    assert grid.fingerprint not in prints
    patches = resolve_backbone(f"clip-patches:local-dir:{tiny_clip_dir}", "image", options=FeatureOptions(view="ten-crop:center"))
    assert patches.kind == "sequence"


@pytest.mark.parametrize(
    "spec, modality, message",
    [
        ("pixels:8", "image", "backbone 'pixels:8' \\(image\\) has no crop"),
        ("minilm", "text", "backbone 'minilm' \\(text\\) has no crop"),
        ("efficientnet-lite0", "video", "over a video column: views are cut from still images"),
    ],
)
def test_views_of_what_cannot_be_cropped_are_refused(spec, modality, message):
    with pytest.raises(UsageError, match=message):
        resolve_backbone(spec, modality, options=FeatureOptions(view="ten-crop:center"))
