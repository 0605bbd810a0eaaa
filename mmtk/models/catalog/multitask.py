"""Multi-task heads (the four Memotion 2.0 designs) over any fusion trunk of the registry."""

from __future__ import annotations

from mmtk.errors import UsageError
from mmtk.models import MODELS, check_model_params, model_params

NAME = "multitask-heads"


def parse_pairs(text: str, option: str) -> dict[str, str]:
    """``KEY=VALUE,KEY=VALUE`` (``trunk_args``) as a dict; a malformed item is a usage error."""
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip() or not value.strip():
            raise UsageError(f"--model-arg {option}: {item!r} is not KEY=VALUE", f"write e.g. --model-arg {option}=hidden=128,dropout=0.1")
        pairs[key.strip()] = value.strip()
    return pairs


def parse_stages(text: str) -> list[tuple[str, str]]:
    """``PRESENCE:INTENSITY,...`` as ``[(presence, intensity), ...]``."""
    stages = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        presence, colon, intensity = item.partition(":")
        if not colon or not presence.strip() or not intensity.strip():
            raise UsageError(
                f"--model-arg stages: {item!r} is not PRESENCE:INTENSITY",
                "write e.g. --model-arg stages=humour:humour_level,sarcasm:sarcasm_level",
            )
        stages.append((presence.strip(), intensity.strip()))
    return stages


def check_stages(design: str, stages: list[tuple[str, str]], heads: dict[str, int]) -> None:
    """The pairs against the tasks: each intensity is a task, once; no task is both a
    presence and an intensity; the two-stage designs train their presence tasks (one
    shared multi-label task for ``two-stage-multilabel``)."""
    tasks = ", ".join(heads)
    intensities = [i for _, i in stages]
    presences = {p for p, _ in stages}
    for presence, intensity in stages:
        if intensity not in heads:
            raise UsageError(f"--model-arg stages: intensity task {intensity!r} is not among the tasks", f"the tasks are: {tasks}")
        if intensities.count(intensity) > 1:
            raise UsageError(f"--model-arg stages: intensity task {intensity!r} is paired twice", "pair each intensity task once")
        if intensity in presences:
            raise UsageError(f"--model-arg stages: {intensity!r} is both a presence and an intensity task", "pair PRESENCE:INTENSITY")
        if design.startswith("two-stage") and presence not in heads:
            raise UsageError(
                f"--model-arg stages: design={design} trains presence task {presence!r}, which is not among the tasks",
                f"add it with --task, or use design=separate or shared to derive it; the tasks are: {tasks}",
            )
    if design.startswith("two-stage") and not stages:
        raise UsageError(f"design={design} needs --model-arg stages=PRESENCE:INTENSITY,...", f"the tasks are: {tasks}")
    if design == "two-stage-multilabel" and len(presences) > 1:
        raise UsageError(
            f"design=two-stage-multilabel has one multi-label presence task, but stages names {len(presences)}: {', '.join(sorted(presences))}",
            "name the multi-label task in every pair (e.g. emotions:humour_level,emotions:sarcasm_level), or use design=two-stage",
        )
    if design == "two-stage":
        wide = sorted(p for p in presences if heads[p] != 1)
        if wide:
            raise UsageError(
                f"design=two-stage needs binary presence tasks, but {wide[0]!r} has {heads[wide[0]]} outputs",
                f"give it as --task {wide[0]}:binary (one 0/1 column), or use design=two-stage-multilabel for one multi-label presence task",
            )


def trunk_of(trunk: str, trunk_args: str) -> tuple[str, dict]:
    """The trunk's registry name and its checked parameters (a bad key names the valid ones)."""
    MODELS.get(trunk)
    capabilities = MODELS.capabilities(trunk)
    usable = [name for name in MODELS.names() if name != NAME and _can_be_trunk(MODELS.capabilities(name))]
    if trunk == NAME or not _can_be_trunk(capabilities):
        raise UsageError(
            f"--model-arg trunk={trunk}: {trunk!r} cannot be the trunk of {NAME} (it has no representation trained by gradients)",
            f"choose one of: {', '.join(usable)}",
        )
    params = {**model_params(trunk), **check_model_params(trunk, parse_pairs(trunk_args, "trunk_args"))}
    return trunk, params


def _can_be_trunk(capabilities: dict) -> bool:
    # The heads learn through the trunk's representation: a model fitted whole (svm,
    # logreg) has none that gradients reach.
    return bool(capabilities.get("gradient", True)) and not capabilities.get("fits")


def trunk_capabilities(params: dict) -> dict:
    """The model's capabilities with these params: its trunk's (it reads its inputs,
    absent modalities included, and explains exactly as its trunk does)."""
    capabilities = MODELS.capabilities(params.get("trunk", "gmu"))
    return {"explains": False, "sequences": False, "missing": False, **capabilities}


@MODELS.register(
    NAME,
    help="The four Memotion 2.0 multi-task designs (separate, shared, two-stage, two-stage-multilabel) over any trunk "
    "(trunk=gmu); stages=PRESENCE:INTENSITY pairs; default task weights 0.4/0.3/0.3; presence derived from intensity.",
    explains=True, sequences=False, missing=True,
)
def build_multitask_heads(
    inputs: dict,
    heads: dict[str, int],
    *,
    trunk: str = "gmu",
    trunk_args: str = "",
    design: str = "separate",
    stages: str = "",
    absent: str = "",
    hidden: int = 128,
    dropout: float = 0.1,
):
    """Multi-task heads (Lee and Shen, Memotion 2.0 2022) on the representation of the
    registry model ``trunk`` (built with ``trunk_args``, e.g. ``hidden=128,dropout=0.1``).
    ``design``: separate | shared | two-stage | two-stage-multilabel. ``stages``:
    PRESENCE:INTENSITY task pairs (e.g. ``humour:humour_level,sarcasm:sarcasm_level``):
    the two-stage designs feed the presence probability into the intensity classifier;
    a presence task that is not trained is derived from its intensity (any class but
    the "not" class, which is class 0 or the one named in ``absent``). With stages the
    task weights default to 0.4 (other tasks) / 0.3 (presence) / 0.3 (intensity), split
    evenly in each group; ``--task-weight`` overrides them. ``hidden``/``dropout``: the
    heads' hidden layer."""
    from mmtk.models.multitask import DESIGNS, MultitaskHeads, remove_task_heads

    if design not in DESIGNS:
        raise UsageError(f"--model-arg design={design} is not a multi-task design", f"choose one of: {', '.join(DESIGNS)}")
    pairs = parse_stages(stages)
    check_stages(design, pairs, heads)
    name, params = trunk_of(trunk, trunk_args)
    body = MODELS.get(name)(inputs, heads, **params)
    if not remove_task_heads(body):
        # Its classifier is its own (mm-transformer's class queries, whose contrastive loss
        # reads them): replacing it would change the model rather than reuse its trunk.
        raise UsageError(
            f"--model-arg trunk={trunk}: {trunk!r} classifies with its own heads, not TaskHeads over its representation, "
            "so multitask-heads cannot replace them",
            "choose another trunk (mmtk list models)",
        )
    names = tuple(filter(None, (part.strip() for part in absent.split(","))))
    return MultitaskHeads(body, heads, design=design, stages=pairs, absent=names, hidden=hidden, dropout=dropout)


build_multitask_heads.capabilities_for = trunk_capabilities
