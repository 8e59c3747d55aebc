"""Imported by the fork server of chunked prediction runs, after worker_preload: the libraries
every prediction run loads the champion with (scikit-learn through skops, about 2.6 s),
imported once instead of in every worker."""

import gc

import sklearn.compose  # noqa: F401 - the classes of a price model's pipeline
import sklearn.ensemble  # noqa: F401
import sklearn.pipeline  # noqa: F401
import sklearn.preprocessing  # noqa: F401
import skops.io  # noqa: F401 - how artifacts are loaded (ml_platform/models/artifacts.py)

gc.freeze()  # as worker_preload does: workers' collections skip the inherited heap
