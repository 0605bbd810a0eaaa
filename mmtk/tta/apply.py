"""Running a frozen-feature run over every test-time view of a dataset.

Each image feature of the run (a stored backbone over an image column, pooled or a
sequence form) is gathered once per view (``FeatureOptions.view``: its own feature set,
extracted when missing); a fine-tuned image tower (``mmtk.finetune``) reads each view's
pixels through a ``views.ViewLoader`` in place of its evaluation loader; every other
input (text, tabular, audio, run outputs) is the same in every view and gathered once. The model runs over each view's inputs and
``mmtk.tta.combine`` averages the views' log-probabilities.
"""

from __future__ import annotations

from dataclasses import replace

from mmtk.errors import UsageError
from mmtk.tta import NONE, TtaMethod, get_tta, view_name


def image_features(run, dataset) -> list[str]:
    """The names of the run's inputs that test-time views change: stored features whose
    backbone reads an image column (a video column's frames are not cut), and fine-tuned
    image towers (``finetuned_images``)."""
    from mmtk.features import resolve_features

    stored = [feature.name for feature in resolve_features(dataset, run.feature_refs) if feature.backbone.modality == "image"]
    return stored + finetuned_images(run, dataset)


def finetuned_images(run, dataset) -> list[str]:
    """The run's fine-tuned inputs read from an image column (``mmtk.finetune``): their
    towers see each view's pixels, decoded from the files at evaluation time."""
    from mmtk.features import pick_column

    return [
        ref.name for ref in run.feature_refs
        if getattr(ref, "finetune", False) and pick_column(dataset, ref.backbone, ref.column)[1] == "image"
    ]


def check_tta(run, dataset, tta: str) -> TtaMethod | None:
    """The method ``tta`` names, or None for ``none``; a ``UsageError`` for an unknown
    name or a run with no image feature to augment."""
    method = get_tta(tta)
    if method.name == NONE:
        return None
    if not image_features(run, dataset):
        names = ", ".join(ref.name for ref in run.feature_refs)
        raise UsageError(
            f"--tta {method.name}: run {run.path} has no image feature to augment (its features: {names})",
            "drop --tta for this run; test-time views need features of an image column, such as efficientnet-lite0",
        )
    return method


def view_refs(run, images, method: TtaMethod, view: str) -> list:
    """The run's feature references with the image ones (names in ``images``) set to ``view``."""
    return [
        replace(ref, options=replace(ref.options, view=view_name(method, view))) if ref.name in images else ref
        for ref in run.feature_refs
    ]


def tta_forward(run, dataset, store, method: TtaMethod, *, device: str = "auto", extract_missing: bool = True, progress=None, explain: bool = False):
    """``(logits, weights)`` as ``mmtk.inference.forward_source`` returns them, averaged
    over ``method``'s views: logits per task (``combine.average_log_probs``), gate
    weights (``explain``) by their mean."""
    from mmtk.tta.combine import average_views, average_weights

    outputs = view_outputs(run, dataset, store, method, device=device, extract_missing=extract_missing, progress=progress, explain=explain)
    logits, weights = [view[0] for view in outputs], [view[1] for view in outputs]
    return average_views({task: run.kind(task) for task in logits[0]}, logits), average_weights(weights)


def view_outputs(run, dataset, store, method: TtaMethod, *, device: str = "auto", extract_missing: bool = True, progress=None, explain: bool = False) -> list:
    """``forward_source``'s ``(logits, weights)`` for each of ``method``'s views, in order."""
    from mmtk.features import resolve_features
    from mmtk.inference import forward_source, gather_for_run, source_of
    from mmtk.tta.views import ViewLoader

    resolved = resolve_features(dataset, run.feature_refs)
    run.check_fingerprints(resolved)
    images = {feature.name for feature in resolved if feature.backbone.modality == "image"}
    towers = finetuned_images(run, dataset)
    if not images and not towers:
        raise UsageError(f"--tta {method.name}: run {run.path} has no image feature to augment", "drop --tta for this run")
    gather = dict(device=device, extract_missing=extract_missing, progress=progress)
    shared = gather_for_run(
        run, dataset, store, [ref for ref in run.feature_refs if ref.name not in images],
        [feature for feature in resolved if feature.name not in images], **gather,
    )
    outputs = []
    for index, view in enumerate(method.views):
        refs = [ref for ref in view_refs(run, images, method, view) if ref.name in images]
        viewed = gather_for_run(run, dataset, store, refs, resolve_features(dataset, refs), **gather) if refs else {}
        source = source_of(run, {**shared, **viewed}, dataset, device)
        for name in towers:  # a fine-tuned tower's images are decoded per batch: each batch gets this view
            if name in source.loaders:
                source.loaders[name] = ViewLoader(source.loaders[name], method.cut, index)
        outputs.append(forward_source(run, source, device=device, explain=explain))
    return outputs
