"""The stacking ensemble's meta-estimator (``mmtk.models.stack``), trained by its own
recipe (``mmtk.stacking.train_stack``) over member runs."""

from __future__ import annotations

from mmtk.models import MODELS, input_dims

# fits="members": mmtk.train.train hands the run to mmtk.stacking.train_stack, which
# trains (or takes) the members, fits the meta-estimators on their out-of-fold scores
# and writes the run; the registry entry rebuilds the model when the run is loaded.
# interactions=False: members each see one input, so no member (and no stack) learns a
# label that needs two inputs together.


@MODELS.register(
    "stack", help="Stacking ensemble: one member run per feature (or --members RUN,...), a meta-estimator per task "
    "(--meta logreg|tree|forest|hard-vote|soft-vote|auto) fitted on the members' k-fold out-of-fold scores.",
    explains=True, sequences=False, missing=False, fits="members", regression=False, interactions=False,
)
def build_stack(inputs: dict, heads: dict[str, int], *, meta: str = "auto", folds: int = 5, member: str = "logreg"):
    """The meta-estimator over member scores. ``meta``: the meta-estimator (``auto``: the
    best per task by cross-validated macro-F1), ``folds``: out-of-fold folds, ``member``:
    the model of the members trained per feature (any registered model but stack)."""
    from mmtk.errors import UsageError
    from mmtk.models.stack import StackModel, check_meta

    check_meta(meta)
    if folds < 2:
        raise UsageError(f"--folds {folds} must be at least 2", "e.g. --folds 5")
    MODELS.get(member)
    if member == "stack":
        raise UsageError("--member-model stack: a member cannot be a stack trained per feature", "choose a model such as logreg or gmu")
    return StackModel(input_dims(inputs), heads)
