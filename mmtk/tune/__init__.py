"""Hyper-parameter search (``mmtk tune``): an Optuna study over ``mmtk.train.train``.

``tune`` runs it (``mmtk.tune.recipe``), ``load_space`` reads a search-space file
(``mmtk.tune.space``); the study file, its locking and resuming are in
``mmtk.tune.study``, the tables and ``best.json`` in ``mmtk.tune.results``. Optuna is
imported only when a study runs.
"""

from mmtk.tune.recipe import TuneReport, tune
from mmtk.tune.space import Space, load_space

__all__ = ["Space", "TuneReport", "load_space", "tune"]
