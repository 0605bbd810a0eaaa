"""Test-time augmentation (``--tta`` of ``evaluate`` and ``predict``).

``TTA`` is the registry of methods a user picks by name: ``none`` (the default: each
image feature as extracted) and ``ten-crop`` (four corners and the centre of the image
resized as its backbone resizes it, and the same five of its mirror image). A run's
model sees each view's features in turn and the views' log-probabilities are averaged.

Modules, one job each: ``views`` cuts an image into its views (the seam a fine-tuned
image tower reuses), ``combine`` averages per-view outputs, ``backbone`` makes each
view of an image feature its own feature set in the store, ``apply`` runs a run over
every view of a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mmtk.errors import UsageError
from mmtk.registry import Registry
from mmtk.tta.views import TEN_CROP_VIEWS, ten_crop

#: The default: no augmentation.
NONE = "none"


@dataclass(frozen=True)
class TtaMethod:
    """A test-time augmentation: the names of its ``views`` (empty for ``none``) and
    ``cut(image, geometry)``, which returns one model input per view, in that order."""

    name: str
    views: tuple[str, ...]
    cut: Callable | None = None


TTA: Registry[TtaMethod] = Registry("test-time augmentation")
TTA.add(NONE, TtaMethod(NONE, ()), "no augmentation: each image feature as extracted (the default)")
TTA.add(
    "ten-crop",
    TtaMethod("ten-crop", TEN_CROP_VIEWS, ten_crop),
    "four corners and centre at the backbone's input size, and the same of the mirrored image; log-probabilities averaged",
)


def get_tta(name: str) -> TtaMethod:
    """The method called ``name``; an unknown name is a ``UsageError`` listing the valid ones."""
    return TTA.get(name)


def view_name(method: TtaMethod, view: str) -> str:
    """How ``FeatureOptions.view`` names one view: ``TTA:VIEW``."""
    return f"{method.name}:{view}"


def parse_view(text: str) -> tuple[TtaMethod, str]:
    """``TTA:VIEW`` (``ten-crop:top-left``) as the method and the view's name."""
    name, sep, view = str(text).partition(":")
    method = get_tta(name)
    if not sep or view not in method.views:
        raise UsageError(
            f"unknown test-time view {text!r}",
            f"write {name}:VIEW with VIEW one of: {', '.join(method.views)}" if method.views else "choose a method with views: ten-crop",
        )
    return method, view
