"""What ``mmtk.train.train`` does differently with ``finetune``: checks, marking the
fine-tuned references, building towers, the model, batch sources and optimizer groups,
and the run's record. Each function is one step of the recipe, called from ``train``."""

from __future__ import annotations

from mmtk.errors import UsageError

#: Text tower options carried in ``--model-arg`` (the fusion model does not take them).
TOWER_ARGS = ("text_head", "text_pool")


def split_settings(finetune, model_args: dict | None):
    """``(FinetuneSettings or None, model_args without the tower options)``:
    ``text_head`` and ``text_pool`` are text tower options carried in ``--model-arg``;
    without a fine-tuned text backbone they are refused."""
    from mmtk.finetune.settings import FinetuneSettings

    settings = FinetuneSettings.of(finetune)
    args = dict(model_args or {})
    given = {key: str(args.pop(key)) for key in TOWER_ARGS if key in args}
    for key, value in given.items():
        if settings is None or "text" not in settings.wanted:
            raise UsageError(f"--model-arg {key}={value} applies to a fine-tuned text backbone", "add --finetune text (or all)")
    if given:
        settings = FinetuneSettings(**{**settings.to_json(), **given})
    return settings, args


def check_supported(settings, *, model: str, capabilities: dict, several, teaching, perturbation) -> None:
    """Refuse what fine-tuning does not combine with."""
    if settings is None:
        return
    hint = "train on stored features without --finetune, or choose a fusion model trained by gradient steps (e.g. gmu, concat)"
    if capabilities.get("fits") == "arrays":
        raise UsageError(f"model {model!r} is fitted whole, so its backbones cannot be fine-tuned", hint)
    if capabilities.get("tokens"):
        raise UsageError(f"model {model!r} runs its own BERT over word pieces; --finetune does not apply", "drop --finetune")
    for what, given in (("several datasets", several is not None), ("a distillation student", teaching is not None), ("--perturb", bool(perturbation))):
        if given:
            raise UsageError(f"--finetune does not combine with {what}", f"drop --finetune, or train without {what}")


def prepare(settings, refs, dataset, device: str):
    """``(refs marked finetune, {name: tower}, {name: BackboneConfig}, {name: column})``."""
    from mmtk.features import pick_column
    from mmtk.finetune.inputs import build_towers, mark_finetuned

    refs = mark_finetuned(refs, settings, dataset)
    built = build_towers(refs, dataset, settings, device)
    columns = {ref.name: pick_column(dataset, ref.backbone, ref.column)[0] for ref in refs if ref.finetune}
    return refs, {name: tower for name, (tower, _) in built.items()}, {name: config for name, (_, config) in built.items()}, columns


def model_inputs(gathered: dict, towers: dict) -> dict:
    """InputSpecs in gathered order: fine-tuned inputs are vectors of their tower's width."""
    from mmtk.finetune.media import is_raw
    from mmtk.training.data import input_specs
    from mmtk.training.inputs import InputSpec

    stored = input_specs({name: item for name, item in gathered.items() if not is_raw(item)})
    return {name: InputSpec(name, towers[name].dim) if name in towers else stored[name] for name in gathered}


def not_raw(gathered: dict) -> dict:
    from mmtk.finetune.media import is_raw

    return {name: item for name, item in gathered.items() if not is_raw(item)}


def sources(settings, towers, train_x, val_x, train_y, val_y, masks, device, standardizer, train_ds, val_ds):
    """The training source (augmenting, shuffled, images decoded by workers) and the
    validation source (evaluation preprocessing)."""
    from mmtk.finetune.inputs import item_labels
    from mmtk.finetune.media import DEFAULT_WORKERS, media_source

    workers = DEFAULT_WORKERS if settings.workers is None else settings.workers
    train = media_source(train_x, train_y, masks[0], device, standardizer, towers, item_labels(train_ds), train=True, workers=workers)
    val = media_source(val_x, val_y, masks[1], device, standardizer, towers, item_labels(val_ds), train=False, workers=workers)
    return train, val


def feature_entry(ref, config, column: str, dim: int) -> dict:
    """The run config's ``features`` entry of a fine-tuned reference."""
    return {
        **ref.to_json(), "backbone_spec": config.spec, "modality": config.modality, "base_fingerprint": config.fingerprint,
        "dataset_column": column, "dim": dim,
    }
