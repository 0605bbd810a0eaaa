"""Classical baselines fitted by scikit-learn and run as torch buffers (``mmtk.models.classical``)."""

from __future__ import annotations

from mmtk.models import MODELS, input_dims

# fits="arrays": train() calls the model's fit_arrays on the whole training arrays
# instead of the gradient loop (the model has no parameters), validates once and saves.
# regression=False: fit_arrays refuses regression tasks, naming the models that take them.
CLASSICAL = dict(explains=False, sequences=False, missing=False, fits="arrays", regression=False)
# interactions=False (logreg): a linear model cannot learn a label that needs two
# modalities together (the contract test holds it to linearly separable tasks only).


@MODELS.register(
    "svm", help="RBF support vector machine (scikit-learn SVC, gamma 'scale', --model-arg C) over the standardised "
    "concatenated features, probabilities Platt-calibrated on cross-validated decision values.",
    **CLASSICAL,
)
def build_svm(inputs: dict, heads: dict[str, int], *, C: float = 1.0, folds: int = 5):
    """An SVC per task (per label for multi-label tasks); ``folds``: calibration folds."""
    from functools import partial

    from mmtk.errors import UsageError
    from mmtk.models.classical import ClassicalModel, svm_part

    if not C > 0:
        raise UsageError(f"--model-arg C={C} must be positive", "e.g. --model-arg C=1.0")
    return ClassicalModel(input_dims(inputs), heads, partial(svm_part, C=C), folds=folds, family="svm")


@MODELS.register(
    "logreg", help="Logistic regression (scikit-learn, multinomial for several classes) over the standardised "
    "concatenated features, C chosen from --model-arg grid by cross-validated log loss.",
    **CLASSICAL, interactions=False,
)
def build_logreg(inputs: dict, heads: dict[str, int], *, grid: str = "0.001,0.01,0.1,1,10", folds: int = 5, max_iter: int = 3000):
    """A logistic regression per task (per label for multi-label tasks); ``grid``: the Cs
    tried, ``folds``: cross-validation folds, ``max_iter``: lbfgs iterations."""
    from functools import partial

    from mmtk.errors import UsageError
    from mmtk.models.classical import ClassicalModel, logreg_part, parse_grid

    if max_iter < 1:
        raise UsageError(f"--model-arg max_iter={max_iter} must be at least 1", "e.g. --model-arg max_iter=3000")
    fitter = partial(logreg_part, grid=parse_grid(grid), max_iter=max_iter)
    return ClassicalModel(input_dims(inputs), heads, fitter, folds=folds, family="logreg")
