"""Images over the pixel limit are refused before decoding, in mmtk's own words."""

from __future__ import annotations

import struct
import warnings
import zlib

import pytest
from PIL import Image

from mmtk.backbones import BadInput
from mmtk.backbones.images import open_rgb


def png_header(path, width: int, height: int):
    """A PNG that declares ``width`` x ``height`` pixels in a few bytes (no pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    ("side", "expected"),
    [
        (12000, r"is 12000x12000 \(144,000,000 pixels\), over the 89,478,485-pixel limit"),  # PIL only warns
        (20000, r"has more than 178,956,970 pixels, over the 89,478,485-pixel limit"),  # PIL raises
    ],
)
def test_an_image_over_the_limit_is_a_bad_item_and_pil_stays_quiet(tmp_path, side, expected):
    bomb = png_header(tmp_path / "bomb.png", side, side)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BadInput, match=expected) as info:
            open_rgb(str(bomb))
    assert str(bomb) in str(info.value) and "\n" not in str(info.value)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_the_limit_is_pils_own_setting(tmp_path, monkeypatch):
    image = tmp_path / "small.png"
    Image.new("RGB", (120, 100)).save(image)
    assert open_rgb(str(image)).size == (120, 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 120 * 100 - 1)
    with pytest.raises(BadInput, match=r"120x100 \(12,000 pixels\), over the 11,999-pixel limit"):
        open_rgb(str(image))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # switched off by the caller: no limit
    assert open_rgb(str(image)).size == (120, 100)
