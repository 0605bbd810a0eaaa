"""Find caption text pixels in a crop and turn them into a clean image for OCR.

Burned-in subtitles and meme captions are light letters with a dark outline (or dark
letters on a light box). A morphological top-hat (bright detail narrower than the
kernel) keeps thin bright strokes that have something darker right next to them and
drops wide bright areas such as walls and sky; a black-hat does the same for dark text.
Candidate pixels are then grouped into text lines, and lines that do not look like
captions (wrong height, too sparse, off-centre) are dropped, which removes most in-scene
text. The kept pixels serve twice: as the cheap change signature between frames
(``mmtk.ocr.change``) and as the mask that cleans the binarised OCR input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LIGHT = "light"
DARK = "dark"
# Tesseract reads best when capital letters are roughly 30-40 px tall.
TARGET_LETTER_PX = 36
MAX_UPSCALE = 6.0
# An island of the binarised caption is a letter only if its brightest pixel gets this
# far from the stroke/outline threshold towards the letters' fill level (0.3 measured
# best of 0.15-0.6 on the default-style benchmark's cue frames: mean CER 0.039 -> 0.035).
FILL_SHARE = 0.3
# How far from the found strokes (in letter heights) pixels may still be text: mean CER
# on the 186 cue frames of both benchmark sets (seed 4) 0.025, 0.023, 0.017 and 0.020
# at 0.4, 0.6, 0.8 and 1.0 (benchmarks/bench_ocr_cap_height.py --targets 36 --reach ...).
REACH = 0.8


@dataclass(frozen=True)
class TextSettings:
    """How text lines are recognised; fractions are of the frame height unless noted."""

    polarities: tuple[str, ...] = (LIGHT, DARK)
    centered: bool = True  # keep only lines centred horizontally (subtitles); memes: off too
    center_tolerance: float = 0.12  # of the crop width
    min_line_height: float = 1 / 28
    max_line_height: float = 1 / 5
    contrast: int = 60  # grey levels between a stroke and its outline
    stroke_kernel: float = 1 / 45  # top-hat kernel; must be wider than a letter's stroke
    edge_lines: bool = False  # keep lines cut by the crop's edge (video: those are scenery)
    min_letters: int = 2  # a line has at least this many letter-sized parts...
    min_aspect: float = 2.0  # ...and is at least this many times wider than tall


# Meme captions: big letters anywhere (top and bottom), not necessarily centred.
IMAGE_TEXT = TextSettings(
    centered=False, min_line_height=1 / 40, max_line_height=1 / 3, stroke_kernel=1 / 14, edge_lines=True,
    min_letters=2, min_aspect=2.0,
)


@dataclass
class TextLayer:
    """The caption text found in one crop."""

    mask: np.ndarray  # bool (h, w): kept text pixels of the crop
    letter_height: float = 0.0  # typical height of a capital letter or ascender, pixels
    lines: list[tuple[int, int, int, int]] = field(default_factory=list)  # (x0, y0, x1, y1)
    polarity: str = LIGHT

    @property
    def empty(self) -> bool:
        return not self.lines


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 else n + 1


def _light_floor(frame_height: int) -> int:
    """Grey level a light caption stroke reaches at least. Subtitles scale with the frame
    (about 1/16 of its height per em), so below ~250 lines their strokes are under
    1.5 px wide and video compression blurs them into the dark outline: white strokes
    read 140-160 at 240 lines. Measured on one 240-line and a few 270-360 line clips;
    a lower floor everywhere lets mid-grey texture of larger footage into the lines."""
    return 170 if frame_height >= 250 else 140


def _candidates(
    gray: np.ndarray, spread: np.ndarray, polarity: str, kernel: int, contrast: int, floor: int = 170
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels that are thin strokes of the given polarity, and the stroke strength;
    light strokes are at least ``floor`` bright."""
    import cv2

    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel))
    if polarity == LIGHT:
        strength = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, element)
        # Subtitles are white or pale: bright and unsaturated (spread = max-min channel).
        mask = (strength > contrast) & (gray > floor) & (spread < 90)
    else:
        strength = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, element)
        mask = (strength > contrast) & (gray < 110)
    return mask, strength


def channel_spread(image: np.ndarray) -> np.ndarray:
    """max - min over the colour channels: 0 for greys, large for saturated colours
    (OpenCV's per-channel ops are ~10x faster than numpy reductions over the last axis)."""
    import cv2

    blue, green, red = cv2.split(image)
    return cv2.subtract(cv2.max(cv2.max(blue, green), red), cv2.min(cv2.min(blue, green), red))


def components(mask: np.ndarray, connectivity: int):
    """``cv2.connectedComponentsWithStats`` of a mask (count, labels, stats, centroids).
    16-bit labels run about 3x faster here than the default 32-bit ones; they are safe
    while the mask has fewer set pixels than 16 bits can count (each component has one)."""
    import cv2

    mask = mask.astype(np.uint8, copy=False)
    ltype = cv2.CV_16U if np.count_nonzero(mask) < 65535 else cv2.CV_32S
    return cv2.connectedComponentsWithStats(mask, connectivity=connectivity, ltype=ltype)


def find_text(crop: np.ndarray, frame_height: int, settings: TextSettings = TextSettings()) -> TextLayer:
    """Caption text lines in a BGR (or grey) crop; ``frame_height`` sets the text scale."""
    import cv2

    if crop.ndim == 3:
        gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        spread = channel_spread(crop)
    else:
        gray, spread = crop, np.zeros_like(crop)
    kernel = _odd(frame_height * settings.stroke_kernel)
    for polarity in settings.polarities:
        mask, _ = _candidates(gray, spread, polarity, kernel, settings.contrast, _light_floor(frame_height))
        layer = _group_lines(mask, frame_height, settings)
        if not layer.empty:
            layer.polarity = polarity
            return layer
    return TextLayer(mask=np.zeros(gray.shape, dtype=bool))


def _group_lines(mask: np.ndarray, frame_height: int, settings: TextSettings) -> TextLayer:
    import cv2

    height, width = mask.shape
    if not mask.any():
        return TextLayer(mask=mask)
    # Join the letters of a line (gaps between letters and words are under ~0.5 em).
    # Letters: components of the candidate mask no taller than a line; wider blobs of
    # scenery (white fur, pavement between shadows) are dropped before lines are joined.
    lo, hi = settings.min_line_height * frame_height, settings.max_line_height * frame_height
    count, letter_labels, letters, _ = components(mask, 8)
    letter_ok = np.zeros(count, dtype=bool)
    heights = letters[:, cv2.CC_STAT_HEIGHT]
    widths = letters[:, cv2.CC_STAT_WIDTH]
    letter_ok[1:] = (heights[1:] <= hi) & (widths[1:] <= 3 * np.maximum(heights[1:], lo))
    mask = letter_ok[letter_labels] & mask
    # Join the letters of a line (gaps between letters and words are under ~0.5 em).
    join_w = _odd(frame_height / 30)
    joined = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (join_w, 3)))
    count, labels, stats, _ = components(joined, 8)
    keep = np.zeros(count, dtype=bool)
    lines = []
    for label in _plausible_lines(stats, width, height, lo, hi, settings):
        x, y, w, h, _ = stats[label]
        inside = labels[y : y + h, x : x + w] == label
        density = mask[y : y + h, x : x + w][inside].mean()
        if not 0.08 <= density <= 0.65:
            continue
        # A caption line is a row of several letters, not one blob.
        parts = np.unique(letter_labels[y : y + h, x : x + w][inside & mask[y : y + h, x : x + w]])
        if sum(1 for t in parts if t and heights[t] >= 0.5 * lo) < settings.min_letters:
            continue
        keep[label] = True
        lines.append((int(x), int(y), int(x + w), int(y + h)))
    kept = keep[labels] & mask
    if not lines:
        return TextLayer(mask=kept)
    # Multi-line blocks join into one component, so the block height says little about
    # the text size; the tallest letters (capitals, ascenders) do.
    kept_letters = np.unique(letter_labels[kept])
    kept_letters = kept_letters[kept_letters > 0]
    letter_height = _letter_height(heights[kept_letters], letters[kept_letters, cv2.CC_STAT_AREA], lines)
    if settings.centered:
        lines, kept = _widen_lines(lines, kept, mask, letter_labels, letters, width, letter_height, settings.center_tolerance)
    return TextLayer(mask=kept, lines=sorted(lines, key=lambda b: (b[1], b[0])), letter_height=letter_height)


def _widen_lines(
    lines, kept: np.ndarray, mask: np.ndarray, letter_labels: np.ndarray, letters: np.ndarray, width: int, letter_px: float, tolerance: float
):
    """Lines grown sideways over the letters next to them, one letter gap at a time.

    Over grass or gravel the letters at a line's ends join the texture into one blob
    that fails the line test, and only the words over smooth ground stay: "the race by"
    of "She won the race by two seconds!". Letter-sized parts of the stroke mask that sit
    inside the line's rows and follow on within a letter's height of the line are its
    words too. A line that would end up off-centre (as judged for lines) keeps its old
    width (the growth was scenery), as does one that would reach the crop's edge."""
    import cv2

    x, y, w, h = (letters[:, i] for i in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    widened = []
    kept = kept.copy()
    for x0, y0, x1, y1 in lines:
        # Letters there are often broken into fragments; a third of a letter still counts.
        inside = (y >= y0 - 1) & (y + h <= y1 + 1) & (h >= max(2.0, letter_px / 3))
        inside[0] = False
        gap = max(letter_px, 2.0)
        grown_x0, grown_x1, added = x0, x1, []
        for label in np.flatnonzero(inside & (x + w <= x0))[np.argsort(-(x + w)[inside & (x + w <= x0)])]:
            if x[label] + w[label] < grown_x0 - gap:
                break
            grown_x0 = min(grown_x0, int(x[label]))
            added.append(label)
        for label in np.flatnonzero(inside & (x >= x1))[np.argsort(x[inside & (x >= x1)])]:
            if x[label] > grown_x1 + gap:
                break
            grown_x1 = max(grown_x1, int(x[label] + w[label]))
            added.append(label)
        off_centre = abs((grown_x0 + grown_x1) / 2 - width / 2) > tolerance * width
        if not added or grown_x0 <= 0 or grown_x1 >= width or off_centre:
            widened.append((x0, y0, x1, y1))
            continue
        rows = slice(max(0, y0 - 1), y1 + 1)
        kept[rows, grown_x0:grown_x1] |= np.isin(letter_labels[rows, grown_x0:grown_x1], added) & mask[rows, grown_x0:grown_x1]
        widened.append((grown_x0, y0, grown_x1, y1))
    return widened, kept


def _letter_height(heights: np.ndarray, areas: np.ndarray, lines) -> float:
    """The height of capitals and ascenders: the 90th percentile of letter heights with
    each part weighted by its pixels. Letters over pale scenery break into many 1-3 px
    fragments (a third of the parts at 270 lines); counted one each they pulled an
    unweighted percentile from 11 px down to 7, and the OCR image was scaled for 7."""
    if not heights.size:
        return float(lines[0][3] - lines[0][1])
    order = np.argsort(heights)
    weight = np.cumsum(areas[order].astype(float))
    return float(heights[order][np.searchsorted(weight, 0.9 * weight[-1])])


def _plausible_lines(stats: np.ndarray, width: int, height: int, lo: float, hi: float, settings: TextSettings) -> np.ndarray:
    """Labels of joined components whose box can be a caption line: line-high, wide
    enough, not cut by the region's edge (scenery), centred where asked. Judged on all
    boxes at once: busy footage gives hundreds of components per frame."""
    x, y, w, h = stats[:, :4].T  # cv2.CC_STAT_LEFT, TOP, WIDTH, HEIGHT
    ok = (lo <= h) & (h <= hi) & (w >= settings.min_aspect * h)
    if not settings.edge_lines:
        ok &= (y > 0) & (y + h < height)
    if settings.centered:
        ok &= np.abs((x + w / 2) - width / 2) <= settings.center_tolerance * width
    ok[0] = False  # the background
    return np.flatnonzero(ok)


def text_blocks(layer: TextLayer) -> list[list[tuple[int, int, int, int]]]:
    """Lines grouped into blocks separated by more than a letter's height of empty rows
    (a meme's top and bottom captions are two blocks)."""
    blocks: list[list[tuple[int, int, int, int]]] = []
    gap = max(layer.letter_height, 1.0)
    for line in layer.lines:
        if blocks and line[1] - max(b[3] for b in blocks[-1]) <= gap:
            blocks[-1].append(line)
        else:
            blocks.append([line])
    return blocks


def _islands(bright: np.ndarray) -> np.ndarray:
    """Pixels of the 4-connected bright components that do not touch the image's edge."""
    import cv2

    count, labels, stats, _ = components(bright.astype(np.uint8), 4)
    x_end = stats[:, cv2.CC_STAT_LEFT] + stats[:, cv2.CC_STAT_WIDTH]
    y_end = stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT]
    touches = (stats[:, cv2.CC_STAT_LEFT] == 0) | (stats[:, cv2.CC_STAT_TOP] == 0)
    touches |= (x_end >= bright.shape[1]) | (y_end >= bright.shape[0])
    touches[0] = True
    return ~touches[labels]


def ocr_image(
    crop: np.ndarray,
    layer: TextLayer,
    lines: list[tuple[int, int, int, int]] | None = None,
    *,
    letter_px: float = TARGET_LETTER_PX,
    reach: float = REACH,
) -> np.ndarray:
    """Binarised, upscaled image of the kept lines (default: all of them): black text on
    white with a margin. Letters are scaled to ``letter_px`` (capital height, at most
    ``MAX_UPSCALE`` times); pixels up to ``reach`` letter heights from the found strokes
    may be text."""
    import cv2

    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    lines = lines or layer.lines
    x0 = min(b[0] for b in lines)
    y0 = min(b[1] for b in lines)
    x1 = max(b[2] for b in lines)
    y1 = max(b[3] for b in lines)
    line_h = layer.letter_height or float(np.median([b[3] - b[1] for b in lines]))
    pad = int(round(line_h * 0.5))
    x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
    x1, y1 = min(gray.shape[1], x1 + pad), min(gray.shape[0], y1 + pad)
    patch = gray[y0:y1, x0:x1]
    # Colour spread: white letters are grey-level, a yellow or cyan background is not,
    # which keeps letters from merging with a bright but colourful background.
    spread = channel_spread(crop[y0:y1, x0:x1]) if crop.ndim == 3 and layer.polarity == LIGHT else None
    # Thin strokes blur below the stroke test at small sizes, and letters over pale
    # scenery fail it (their surroundings are as bright as they are): the neighbourhood
    # of the found strokes, most of a letter's height around them, still holds them,
    # and the outline test below tells them from the scenery. (A fifth of a letter each
    # way lost the "l" of "leave" and final periods at 270 lines.)
    # How bright the letters' fill is: most pixels the stroke test found are fill.
    found = layer.mask[y0:y1, x0:x1]
    fill = float(np.percentile(patch[found], 75)) if found.any() else 255.0
    if layer.polarity == DARK:
        fill = 255.0 - fill
    near = _odd(line_h * reach)
    keep = cv2.dilate(layer.mask[y0:y1, x0:x1].astype(np.uint8), np.ones((near, near), np.uint8))
    scale = float(np.clip(letter_px / max(line_h, 1.0), 1.0, MAX_UPSCALE))
    if scale > 1.0:
        size = (int(round(patch.shape[1] * scale)), int(round(patch.shape[0] * scale)))
        patch = cv2.resize(patch, size, interpolation=cv2.INTER_CUBIC)
        keep = cv2.resize(keep, size, interpolation=cv2.INTER_NEAREST)
        if spread is not None:
            spread = cv2.resize(spread, size, interpolation=cv2.INTER_LINEAR)
    if layer.polarity == DARK:
        patch = 255 - patch
    # Otsu over the text neighbourhood only separates stroke from outline, whatever
    # the background does further away.
    values = patch[keep > 0]
    threshold, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = patch > threshold
    if spread is not None:
        bright &= spread < 100
    # Outlined letters are bright islands closed by their dark outline; pale scenery
    # between letters (pavement, sky) runs on beyond the line and reaches the patch's
    # edge, so bright components that touch the edge are background.
    # Where compression or scaling thinned a letter's outline to a pixel, the letter
    # leaks into the scenery beyond it and would go with it ("Hold" read "Hol"): the
    # islands found with the outline thickened by a pixel (given their edge pixels
    # back) count too. (Those alone lose thin strokes: mean CER 0.035 -> 0.039 on the
    # benchmark's cue frames; both together 0.033.)
    cut = bright & ~(cv2.dilate((patch <= threshold).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    rescued = (cv2.dilate(_islands(cut).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & bright
    text = _islands(bright) | rescued
    text = (text & (keep > 0)).astype(np.uint8)
    # Specks of background that slipped through next to the letters confuse Tesseract
    # more than a missing i-dot would; drop components far smaller than a stroke blob.
    count, labels, stats, _ = components(text, 8)
    min_area = 0.006 * (line_h * scale) ** 2
    small = np.zeros(count, dtype=bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] < min_area
    # Pale scenery closed in by the outlines of two neighbouring letters (the opening
    # of a "c" over a grey wall) is an island as well, but never as bright as the
    # letters' fill: "Scales" read "Seales" with it.
    peak = np.zeros(count, dtype=np.float32)
    np.maximum.at(peak, labels.ravel(), patch.ravel().astype(np.float32))
    small |= peak < threshold + FILL_SHARE * (fill - threshold)
    small[0] = False
    text = (text > 0) & ~small[labels]
    out = np.where(text, 0, 255).astype(np.uint8)
    return cv2.copyMakeBorder(out, 12, 12, 12, 12, cv2.BORDER_CONSTANT, value=255)
