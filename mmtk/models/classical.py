"""Classical baselines over the concatenated (pooled) features: an RBF support vector
machine and a logistic regression with ``C`` chosen by cross-validation, both with
calibrated probabilities. scikit-learn fits them; what it fitted is kept as torch buffers.

Papers: the soft-margin SVM of Cortes & Vapnik (1995, "Support-vector networks") with the
RBF kernel at scikit-learn's ``gamma="scale"`` (``1 / (d * Var(X))``); multi-class SVMs
are scikit-learn's own one-vs-one pairs aggregated into one score per class (votes plus
bounded confidences). We keep its one-vs-one scheme rather than fitting K one-vs-rest
SVMs because each pair trains on two classes only (libsvm's cost grows faster than
linearly in the items) and the scores are then exactly scikit-learn's public
``decision_function``, which the tests compare against. The logistic regression
(multinomial for several classes) takes ``C`` from a grid by stratified k-fold
cross-validated log loss.

Calibration (both models): on decision values each training item got from a model fitted
on the other folds (stratified k-fold), then the model is refitted on every item. Two
classes: Platt's sigmoid (Platt 1999, "Probabilistic outputs for support vector
machines"), exactly scikit-learn's ``CalibratedClassifierCV(method="sigmoid",
ensemble=False)``. More classes: one temperature over the class scores (Guo et al. 2017)
instead of scikit-learn's one-vs-rest sigmoids normalised to sum to 1, which gave worse
probabilities (``benchmarks/bench_classical.py``, BENCHMARKS.md): on av-clean's test split
(mfcc / pixels / fused, 10 classes) test log loss with one-vs-rest sigmoids against a
temperature was, for the SVM, 0.150 / 0.336 / 0.256 against 0.111 / 0.291 / 0.214 at
equal accuracy; for the logistic regression 0.392 / 0.448 / 0.175 against 0.117 / 0.378 /
0.093, where its uncalibrated multinomial probabilities scored 0.123 / 0.369 / 0.087 (a
temperature costs it little, so one rule serves both). For two classes Platt's sigmoid on
the logistic regression left Clothing's text and tabular rows as they were (0.308 ->
0.308, 0.170 -> 0.169) and improved the fused row (0.184 -> 0.171; top-class expected
calibration error 0.031 -> 0.009), where cross-validation picked a strong penalty
(C = 0.01) that leaves the raw probabilities underconfident.

Where we differ from scikit-learn: ``gamma`` is computed once from all training items
and used in every calibration fold (``"scale"`` would recompute it per fold), so the
folds' decision values come from the same kernel as the final model.

Why buffers: a fitted scikit-learn estimator is saved by pickle. Here each fitted model's
arrays (support vectors, dual coefficients, intercepts, gamma; the logistic regression's
weights and biases; the calibration; the standardisation's mean and scale) are float64
buffers of an ``nn.Module`` whose ``forward`` computes scikit-learn's decision function
and the calibrated logits (binary: the positive class's log-odds; multi-class: scores
over the temperature, whose softmax is the probabilities). A run is therefore
config.json plus model.safetensors like any other, loading runs no code, and evaluate
and predict need nothing special. The buffers' shapes depend on the data (how many
support vectors), so ``load_state_dict`` builds the parts from the saved shapes.

Tasks: one estimator per task; multi-label tasks one binary estimator per label;
regression is refused (``fit_arrays`` names the models that regress).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from mmtk.errors import DataError, UsageError
from mmtk.models.common import check_dims
from mmtk.training.batch import as_batch

#: Kernel entries computed at once (rows x support vectors): bounds the memory of a
#: forward pass over a large chunk against many support vectors (4M float64 = 32 MB).
KERNEL_BLOCK = 1 << 22


class Calibration(nn.Module):
    """The map from decision values ``f`` to calibrated logits, ``scale * f + shift``
    (buffers of shape (1,)): for two classes Platt's sigmoid ``p = 1 / (1 + exp(a f + b))``
    as log-odds (``scale = -a``, ``shift = -b``); for more, temperature scaling
    (``scale = 1 / T``, ``shift = 0``), whose softmax gives the probabilities."""

    def __init__(self, scale, shift):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float64).reshape(1).clone())
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float64).reshape(1).clone())

    def calibrated(self, decision: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, outputs)`` from decision values ``(B,)`` (two classes) or ``(B, C)``."""
        return self.scale * (decision[:, None] if decision.ndim == 1 else decision) + self.shift


class CalibratedSVC(Calibration):
    """One fitted RBF ``SVC`` and its calibration, as buffers.

    ``support`` (n_sv, d) support vectors, ``dual`` (C-1, n_sv) dual coefficients,
    ``intercept`` (C(C-1)/2,), ``sv_class`` (n_sv,) each support vector's class,
    ``gamma`` (), ``scale``/``shift`` (1,) (``Calibration``).
    """

    BUFFERS = ("support", "dual", "intercept", "sv_class", "gamma", "scale", "shift")

    def __init__(self, support, dual, intercept, sv_class, gamma, scale, shift):
        super().__init__(scale, shift)
        for name, value in (("support", support), ("dual", dual), ("intercept", intercept), ("sv_class", sv_class), ("gamma", gamma)):
            dtype = torch.int64 if name == "sv_class" else torch.float64
            self.register_buffer(name, torch.as_tensor(value).to(dtype).clone())
        classes, n_sv = self.dual.shape[0] + 1, self.support.shape[0]
        shapes = (self.dual.shape[1], tuple(self.sv_class.shape), tuple(self.intercept.shape), self.gamma.ndim)
        if self.support.ndim != 2 or shapes != (n_sv, (n_sv,), (classes * (classes - 1) // 2,), 0):
            raise RuntimeError(f"SVM buffers of inconsistent shapes: {[tuple(b.shape) for b in self.buffers()]}")

    @classmethod
    def from_fit(cls, fitted: Fitted) -> CalibratedSVC:
        svc = fitted.estimator
        sv_class = np.repeat(np.arange(len(svc.n_support_)), svc.n_support_)
        return cls(svc.support_vectors_, svc.dual_coef_, svc.intercept_, sv_class, float(svc.gamma), fitted.scale, fitted.shift)

    @property
    def classes(self) -> int:
        return self.dual.shape[0] + 1

    @property
    def outputs(self) -> int:
        """Logits this part gives: one for two classes, one per class otherwise."""
        return 1 if self.classes == 2 else self.classes

    @property
    def width(self) -> int:
        """Features it reads."""
        return self.support.shape[1]

    def kernel(self, x: torch.Tensor) -> torch.Tensor:
        """RBF kernel ``(B, n_sv)`` between float64 ``x`` and the support vectors, by
        libsvm's formula ``exp(-gamma (|x|^2 + |s|^2 - 2 x.s))``."""
        squared = (self.support * self.support).sum(dim=1)
        distance = (x * x).sum(dim=1, keepdim=True) + squared[None, :] - 2.0 * x @ self.support.T
        return torch.exp(-self.gamma * distance.clamp_min(0.0))

    def decision(self, x: torch.Tensor) -> torch.Tensor:
        """scikit-learn's ``decision_function``: ``(B,)`` for two classes (positive: the
        second), else the one-vs-one scores aggregated one-vs-rest, ``(B, C)``."""
        rows = max(1, KERNEL_BLOCK // max(1, self.support.shape[0]))
        return torch.cat([self._decision(x[start:start + rows]) for start in range(0, len(x), rows)]) if len(x) else self._decision(x)

    def _decision(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel(x)
        if self.classes == 2:  # scikit-learn's public dual_coef_/intercept_ are already signed for class 1
            return k @ self.dual[0] + self.intercept[0]
        first, second = torch.triu_indices(self.classes, self.classes, offset=1, device=x.device)
        # Pair (i, j): libsvm keeps the coefficients of class i's support vectors in row
        # j - 1 and those of class j's in row i; a positive score votes for i.
        cls = self.sv_class[None, :]
        coef = self.dual[second - 1] * (cls == first[:, None]) + self.dual[first] * (cls == second[:, None])
        pairwise = k @ coef.T + self.intercept
        onehot_first = nn.functional.one_hot(first, self.classes).to(x.dtype)
        onehot_second = nn.functional.one_hot(second, self.classes).to(x.dtype)
        votes = (pairwise >= 0).to(x.dtype) @ onehot_first + (pairwise < 0).to(x.dtype) @ onehot_second
        confidence = pairwise @ (onehot_first - onehot_second)
        return votes + confidence / (3.0 * (confidence.abs() + 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.calibrated(self.decision(x))


class CalibratedLinear(Calibration):
    """A fitted ``LogisticRegression`` and its calibration, as buffers: ``weight`` (1, d)
    for two classes (decision: the positive class's log-odds), (C, d) multinomial logits
    otherwise; ``bias`` likewise; ``scale``/``shift`` (1,) (``Calibration``)."""

    BUFFERS = ("weight", "bias", "scale", "shift")

    def __init__(self, weight, bias, scale, shift):
        super().__init__(scale, shift)
        self.register_buffer("weight", torch.as_tensor(weight).to(torch.float64).clone())
        self.register_buffer("bias", torch.as_tensor(bias).to(torch.float64).clone())
        if self.weight.ndim != 2 or self.bias.shape != self.weight.shape[:1]:
            raise RuntimeError(f"logistic regression buffers of inconsistent shapes: {tuple(self.weight.shape)}, {tuple(self.bias.shape)}")

    @classmethod
    def from_fit(cls, fitted: Fitted) -> CalibratedLinear:
        return cls(fitted.estimator.coef_, fitted.estimator.intercept_, fitted.scale, fitted.shift)

    @property
    def outputs(self) -> int:
        return self.weight.shape[0]

    @property
    def width(self) -> int:
        return self.weight.shape[1]

    def decision(self, x: torch.Tensor) -> torch.Tensor:
        """scikit-learn's ``decision_function``: ``(B,)`` for two classes, else ``(B, C)``."""
        scores = x @ self.weight.T + self.bias
        return scores[:, 0] if self.outputs == 1 else scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.calibrated(self.decision(x))


PARTS = (CalibratedSVC, CalibratedLinear)


@dataclass
class Fitted:
    """A scikit-learn classifier refitted on every training item, and the calibration of
    its ``decision_function`` fitted on cross-validated decision values (``Calibration``)."""

    estimator: Any
    scale: float
    shift: float

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``(N, C)`` (scikit-learn's layout)."""
        from scipy.special import expit, softmax

        logits = self.scale * self.estimator.decision_function(x) + self.shift
        if logits.ndim == 1:
            return np.stack([expit(-logits), expit(logits)], axis=1)
        return softmax(logits, axis=1)


def calibrated_fit(estimator, x: np.ndarray, y: np.ndarray, *, folds: int, seed: int) -> Fitted:
    """``estimator`` refitted on all of ``x``, ``y``, with a calibration fitted on the
    decision values each item got from a model trained on the other ``folds`` - 1 folds
    (stratified, shuffled by ``seed``): Platt's sigmoid for two classes, exactly as
    scikit-learn's ``CalibratedClassifierCV(method="sigmoid", ensemble=False)`` fits it;
    one temperature for more (``fit_temperature``)."""
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    if len(np.unique(y)) == 2:
        platt = CalibratedClassifierCV(estimator, method="sigmoid", cv=cv, ensemble=False).fit(x, y)
        (fitted,) = platt.calibrated_classifiers_
        (sigmoid,) = fitted.calibrators
        return Fitted(fitted.estimator, -float(sigmoid.a_), -float(sigmoid.b_))
    held_out = cross_val_predict(clone(estimator), x, y, cv=cv, method="decision_function")
    return Fitted(clone(estimator).fit(x, y), 1.0 / fit_temperature(held_out, y), 0.0)


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """The temperature ``T`` minimising the mean negative log-likelihood of
    ``softmax(scores / T)`` for class indices ``y`` (Guo et al. 2017, "On calibration of
    modern neural networks"), searched over log T in [-7, 7]."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(scores / np.exp(log_t), axis=1)[rows, y].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-7.0, 7.0), method="bounded", options={"xatol": 1e-8}).x))


def fit_svm(x: np.ndarray, y: np.ndarray, *, C: float, folds: int, balanced: bool, seed: int) -> Fitted:
    """An RBF ``SVC`` on ``x`` (float64) and class indices ``y``, calibrated on
    ``folds``-fold cross-validated decision values (``calibrated_fit``)."""
    from sklearn.svm import SVC

    variance = float(x.var())
    gamma = 1.0 / (x.shape[1] * variance) if variance > 0 else 1.0  # scikit-learn's "scale"
    svc = SVC(C=C, kernel="rbf", gamma=gamma, class_weight="balanced" if balanced else None)
    return calibrated_fit(svc, x, y, folds=folds, seed=seed)


def fit_logreg(x: np.ndarray, y: np.ndarray, *, grid: tuple[float, ...], folds: int, max_iter: int, balanced: bool, seed: int) -> Fitted:
    """A ``LogisticRegression`` with the ``C`` of ``grid`` whose ``folds``-fold stratified
    cross-validated log loss is lowest, calibrated on cross-validated decision values."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    model = LogisticRegression(max_iter=max_iter, class_weight="balanced" if balanced else None)
    search = GridSearchCV(
        model, {"C": list(grid)}, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), scoring="neg_log_loss", n_jobs=1, refit=False,
    ).fit(x, y)
    return calibrated_fit(model.set_params(C=search.best_params_["C"]), x, y, folds=folds, seed=seed)


def svm_part(x: np.ndarray, y: np.ndarray, *, C: float, folds: int, balanced: bool, seed: int) -> CalibratedSVC:
    """``fit_svm`` as buffers."""
    return CalibratedSVC.from_fit(fit_svm(x, y, C=C, folds=folds, balanced=balanced, seed=seed))


def logreg_part(x: np.ndarray, y: np.ndarray, *, grid: tuple[float, ...], folds: int, max_iter: int, balanced: bool, seed: int) -> CalibratedLinear:
    """``fit_logreg`` as buffers."""
    return CalibratedLinear.from_fit(fit_logreg(x, y, grid=grid, folds=folds, max_iter=max_iter, balanced=balanced, seed=seed))


def parse_grid(grid: str) -> tuple[float, ...]:
    """``"0.01,0.1,1"`` -> ``(0.01, 0.1, 1.0)``; anything but positive numbers is a ``UsageError``."""
    try:
        values = tuple(float(v) for v in grid.split(","))
    except ValueError:
        values = ()
    if not values or not all(v > 0 for v in values):
        raise UsageError(f"--model-arg grid={grid!r} is not a list of positive Cs", "e.g. --model-arg grid=0.01,0.1,1,10")
    return values


class ClassicalModel(nn.Module):
    """A scikit-learn model per task over the standardised concatenation of the inputs
    (in name order), fitted whole by ``fit_arrays`` and run as torch buffers.

    ``fitter(x, y, folds=, balanced=, seed=) -> part`` fits one part (a ``CalibratedSVC``
    or ``CalibratedLinear``) on float64 ``x`` and class indices ``y`` with ``folds``-fold
    cross-validation (fewer where the rarest class has fewer items); the builders in
    ``mmtk.models.catalog.classical`` give ``svm_part`` or ``logreg_part`` with their
    settings bound. The model has no parameters
    and gets no gradient steps; ``forward(batch)`` gives ``{task: logits}`` as every
    model does, ``represent(batch)`` the standardised concatenation ``(B, width)``.
    """

    def __init__(self, input_dims: dict[str, int], heads: dict[str, int], fitter: Callable, *, folds: int = 5, family: str = "classical"):
        super().__init__()
        check_dims(input_dims, heads)
        if folds < 2:
            raise UsageError(f"--model-arg folds={folds} must be at least 2", "e.g. --model-arg folds=5")
        self.names = list(input_dims)
        self.dims = [int(input_dims[n]) for n in self.names]
        self.tasks = list(heads)
        self.units = [int(heads[t]) for t in self.tasks]
        self.width = sum(self.dims)
        self.fitter = fitter
        self.folds = int(folds)
        self.family = family
        self.register_buffer("mean", torch.zeros(self.width, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(self.width, dtype=torch.float64))
        self.parts = nn.ModuleList(nn.ModuleList() for _ in self.tasks)

    @property
    def fitted(self) -> bool:
        return all(len(parts) for parts in self.parts)

    def fit_arrays(self, features: dict, targets: dict[str, np.ndarray], kinds: dict[str, str], *, balanced: bool = False, seed: int = 0) -> ClassicalModel:
        """Fit on whole arrays: ``features`` {input: (N, d)}, ``targets`` {task: encoded
        labels} (class indices; multi-label (N, L) 0/1), ``kinds`` {task: kind}.
        ``balanced`` weights classes by inverse frequency (``--class-weights``)."""
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        from mmtk.device import cpu_threads_per_process

        missing = [n for n in self.names if n not in features]
        if missing:
            raise KeyError(f"model input lacks the features {missing}; it was built for {self.names}")
        regression = [task for task in self.tasks if kinds[task] == "regression"]
        if regression:
            from mmtk.models import MODELS

            able = [name for name in MODELS.names() if MODELS.capabilities(name).get("regression", True)]
            raise UsageError(
                f"model {self.family!r} classifies, but task {regression[0]!r} is a regression",
                f"train it with one of: {', '.join(able)}",
            )
        x = np.concatenate([np.asarray(_numpy(features[n]), dtype=np.float64).reshape(len(features[n]), -1) for n in self.names], axis=1)
        scaler = StandardScaler().fit(x)
        x = scaler.transform(x)
        # BLAS threads as many as torch's (mmtk.device: one by default). Measured on the
        # 2-core machine with other jobs running: a LogisticRegression fit (1,200 x 256,
        # 10 classes) took 0.9-2.2 s with OpenBLAS's two threads and 0.03-0.07 s with one.
        with threadpool_limits(limits=cpu_threads_per_process()):
            fitted = [self._fit_task(x, task, units, kinds[task], targets, balanced, seed) for task, units in zip(self.tasks, self.units)]
        device = self.mean.device
        self.mean.copy_(torch.as_tensor(scaler.mean_))
        self.scale.copy_(torch.as_tensor(scaler.scale_))
        for holder, parts in zip(self.parts, fitted):
            del holder[:]
            holder.extend(part.to(device) for part in parts)
        self._check_outputs()
        return self

    def _fit_task(self, x: np.ndarray, task: str, units: int, kind: str, targets: dict, balanced: bool, seed: int) -> list:
        """The parts of one classification task: one estimator, or one per label of a
        multi-label task."""
        y = np.asarray(targets[task])
        if kind == "multilabel":
            return [self._fit_one(x, y[:, label].astype(np.int64), 2, f"{task} label {label}", balanced, seed) for label in range(y.shape[1])]
        return [self._fit_one(x, y.astype(np.int64), max(units, 2), task, balanced, seed)]

    def _fit_one(self, x: np.ndarray, y: np.ndarray, classes: int, what: str, balanced: bool, seed: int):
        """One part on class indices ``y`` of ``classes`` classes, with as many folds as the
        rarest class allows (each training fold must hold every class)."""
        counts = np.bincount(y, minlength=classes)
        rarest = int(np.argmin(counts))
        if counts[rarest] < 2:
            raise DataError(
                f"task {what}: class {rarest} has {counts[rarest]} training item(s); {self.family} fits on cross-validation folds",
                "give it at least 2 training items per class (better 5), or leave that class or label out",
            )
        return self.fitter(x, y, folds=min(self.folds, int(counts[rarest])), balanced=balanced, seed=seed)

    def _check_outputs(self) -> None:
        for task, units, parts in zip(self.tasks, self.units, self.parts):
            given = sum(part.outputs for part in parts)
            if given != units and not _two_class_softmax(units, parts):
                raise RuntimeError(f"task {task!r}: the fitted parts give {given} outputs, its head has {units}")
            wrong = [part.width for part in parts if part.width != self.width]
            if wrong:
                raise RuntimeError(f"task {task!r}: a fitted part reads {wrong[0]} features, the model's inputs have {self.width}")

    def represent(self, batch) -> torch.Tensor:
        """The standardised concatenated inputs ``(B, width)`` the estimators read."""
        return self._scaled(batch).to(torch.float32)

    def forward(self, batch) -> dict[str, torch.Tensor]:
        if not self.fitted:
            raise RuntimeError(f"the {self.family} model is not fitted: call fit_arrays (mmtk train does) or load a run")
        x = self._scaled(batch)
        return {task: self._logits(x, units, parts).to(torch.float32) for task, units, parts in zip(self.tasks, self.units, self.parts)}

    @staticmethod
    def _logits(x: torch.Tensor, units: int, parts) -> torch.Tensor:
        logits = torch.cat([part(x) for part in parts], dim=1)
        if _two_class_softmax(units, parts):  # softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
        return logits

    def _scaled(self, batch) -> torch.Tensor:
        features = as_batch(batch).features
        missing = [n for n in self.names if n not in features]
        if missing:
            raise KeyError(f"model input lacks the features {missing}; it was built for {self.names}")
        x = torch.cat([features[n].reshape(len(features[n]), -1).to(torch.float64) for n in self.names], dim=1)
        return (x - self.mean) / self.scale

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Build each task's parts from the saved buffers' shapes (they depend on the
        data the model was fitted on), then load them as any module does."""
        rebuilt = []
        for t, _ in enumerate(self.tasks):
            prefix = f"parts.{t}."
            indices = sorted({int(key[len(prefix):].split(".")[0]) for key in state_dict if key.startswith(prefix)})
            if indices != list(range(len(indices))):
                raise RuntimeError(f"saved parts of task {self.tasks[t]!r} are not numbered 0..n-1: {indices}")
            rebuilt.append([self._part_from(state_dict, f"{prefix}{p}.") for p in indices])
        device = self.mean.device
        for holder, parts in zip(self.parts, rebuilt):
            del holder[:]
            holder.extend(part.to(device) for part in parts)
        self._check_outputs()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @staticmethod
    def _part_from(state_dict, prefix: str):
        names = {key[len(prefix):] for key in state_dict if key.startswith(prefix)}
        for kind in PARTS:
            if names == set(kind.BUFFERS):
                return kind(*(state_dict[prefix + name] for name in kind.BUFFERS))
        raise RuntimeError(f"saved part {prefix.rstrip('.')} has buffers {sorted(names)}, which no classical model part has")


def _two_class_softmax(units: int, parts) -> bool:
    """A multi-class task of two classes (``--task COL:multiclass`` on a 0/1 column): its
    head wants two softmax logits, its one estimator gives the second class's log-odds."""
    return units == 2 and len(parts) == 1 and parts[0].outputs == 1


def _numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)

