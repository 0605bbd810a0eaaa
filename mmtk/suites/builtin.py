"""The built-in metric suites, each as its shared task defines it.

Sources (read before writing these; column names and label values as the data ship):

- ``memotion``: SemEval-2020 task 8 (Sharma et al. 2020, "Memotion Analysis - the
  Visuo-Lingual Metaphor!", arXiv:2008.03781): task A sentiment (negative, neutral,
  positive), task B the presence of humour, sarcasm, offence and motivation, task C their
  intensity, each ranked by macro-F1, B and C averaged over the four emotions. The
  dataset's ``labels.csv`` has ``overall_sentiment`` (very_negative, negative, neutral,
  positive, very_positive), ``humour`` (not_funny, funny, very_funny, hilarious),
  ``sarcasm`` (not_sarcastic, general, twisted_meaning, very_twisted), ``offensive``
  (not_offensive, slight, very_offensive, hateful_offensive) and ``motivational``
  (not_motivational, motivational). Memotion 2.0 (Patwa et al. 2022) reports weighted F1
  (per-class F1 weighted by gold support), reported here beside macro-F1 as ``weighted_f1``.
  Task B's presence is any level but the "not" level, from the gold intensities and, for a
  head that predicts intensities only, from its probabilities (present = the summed
  probability of the levels above "not", as ``mmtk.models.multitask`` derives presence).
- ``mami``: SemEval-2022 task 5 (Fersini et al. 2022), official scorer
  ``Evaluation/evaluation.py`` of github.com/MIND-Lab/SemEval2022-Task-5-Multimedia-
  Automatic-Misogyny-Identification-MAMI-: sub-task A is the mean of the two classes' F1
  of ``misogynous``; sub-task B scores each of ``shaming``, ``stereotype``,
  ``objectification``, ``violence`` the same way and averages them weighted by each
  label's number of positive gold items. That is not scikit-learn's multi-label
  ``average="weighted"`` (the positive class's F1 per label), which ranks differently.
- ``hateful-memes``: the Hateful Memes challenge (Kiela et al. 2020) ranks by AUROC and
  reports accuracy, on the ``label`` column (0/1) of its ``*.jsonl`` files.
- ``mmimdb``: MM-IMDb (Arevalo et al. 2017, "Gated Multimodal Units for Information
  Fusion") reports micro-, macro-, weighted- and samples-averaged F1 of the genre labels
  decided at 0.5 (scikit-learn's averages); the genres are the ``genres`` list of each item.
- ``moviescope``: Moviescope (Cascante-Bonilla et al. 2019, "Moviescope: Large-scale
  Analysis of Movies using Multiple Modalities") reports micro, macro and samples average
  precision (muAP, mAP, sAP) of the genre labels.
- Cross-check: facebookresearch/mmf ``mmf/modules/metrics.py`` (commit 089d9f37) registers
  accuracy, binary/macro/micro and multi-label micro/macro F1, ROC-AUC and micro/macro
  AP, but no weighted F1, no samples AP and no per-emotion averages (and its
  ``micro_ap``/``macro_ap`` classes derive from its ROC-AUC class, whose ``calculate``
  they inherit).
"""

from __future__ import annotations

from mmtk.suites.spec import average, binary_task, multiclass_task, multilabel_task
from mmtk.suites.suite import Suite

SENTIMENT_LEVELS = ("very_negative", "negative", "neutral", "positive", "very_positive")
#: Memotion's intensity levels per emotion column, the "not" level first.
EMOTION_LEVELS = {
    "humour": ("not_funny", "funny", "very_funny", "hilarious"),
    "sarcasm": ("not_sarcastic", "general", "twisted_meaning", "very_twisted"),
    "offensive": ("not_offensive", "slight", "very_offensive", "hateful_offensive"),
    "motivational": ("not_motivational", "motivational"),
}
MAMI_TYPES = ("shaming", "stereotype", "objectification", "violence")
F1S = ("macro_f1", "weighted_f1")


def memotion() -> Suite:
    """Memotion (SemEval-2020 task 8; Memotion 2.0's weighted F1): tasks A, B and C."""
    tasks = [
        multiclass_task(
            "task_a", "overall_sentiment", SENTIMENT_LEVELS, F1S, merge={"very_negative": "negative", "very_positive": "positive"},
            description="sentiment, 5 levels merged into negative/neutral/positive",
        )
    ]
    tasks += [
        binary_task(f"task_b/{emotion}", emotion, F1S, levels=levels, absent=levels[:1], description=f"{emotion} present (any level above {levels[0]})")
        for emotion, levels in EMOTION_LEVELS.items()
    ]
    tasks += [
        multiclass_task(f"task_c/{emotion}", emotion, levels, F1S, description=f"{emotion} intensity ({len(levels)} levels)")
        for emotion, levels in EMOTION_LEVELS.items()
    ]
    averages = [
        average(name, [f"{name}/{emotion}" for emotion in EMOTION_LEVELS], F1S, description="mean over the four emotions")
        for name in ("task_b", "task_c")
    ]
    return Suite("memotion", tuple(tasks), tuple(averages), description=memotion.__doc__)


def mami() -> Suite:
    """MAMI (SemEval-2022 task 5): sub-task A macro-F1, sub-task B weighted-F1."""
    tasks = [binary_task("sub_task_a", "misogynous", ["macro_f1"], description="misogynous: mean of both classes' F1")]
    tasks += [binary_task(f"sub_task_b/{kind}", kind, ["macro_f1"], description="mean of both classes' F1") for kind in MAMI_TYPES]
    weighted = average(
        "sub_task_b", [f"sub_task_b/{kind}" for kind in MAMI_TYPES], {"weighted_f1": "macro_f1"}, weights="positives",
        description="the four types' F1 weighted by positive gold items",
    )
    return Suite("mami", tuple(tasks), (weighted,), description=mami.__doc__)


def hateful_memes() -> Suite:
    """Hateful Memes: accuracy and ROC-AUC of the label column."""
    return Suite("hateful-memes", (binary_task("hateful", "label", ["accuracy", "roc_auc"], description="label 1 = hateful"),), description=hateful_memes.__doc__)


def mmimdb() -> Suite:
    """MM-IMDb: micro/macro/weighted/samples F1 of the genres at 0.5 (or tuned thresholds)."""
    genres = multilabel_task("genres", "genres", ["micro_f1", "macro_f1", "weighted_f1", "samples_f1"], description="genre labels")
    return Suite("mmimdb", (genres,), description=mmimdb.__doc__)


def moviescope() -> Suite:
    """Moviescope: micro, macro and samples average precision of the genres."""
    genres = multilabel_task("genres", "genres", ["micro_ap", "macro_ap", "samples_ap"], description="genre labels")
    return Suite("moviescope", (genres,), description=moviescope.__doc__)


BUILTIN = {"memotion": memotion, "mami": mami, "hateful-memes": hateful_memes, "mmimdb": mmimdb, "moviescope": moviescope}
