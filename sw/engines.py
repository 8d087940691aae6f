"""Inference engines beyond PyTorch for :mod:`kwsbnn.sw.evaluate`: ``golden`` (the NumPy golden
model, reading only the deployable-model files the model exports to).
"""

import tempfile

import numpy as np

from . import deploy
from .evaluate import register_engine


def golden_of(model):
    """The golden model of a trained model, through its deployable files (cached on the model)."""
    g = getattr(model, "_golden", None)
    if g is None:
        from .golden import GoldenModel
        from .integer import integer_spec
        folder = tempfile.mkdtemp(prefix="kwsbnn-deployable-")
        deploy.save(integer_spec(model), folder)
        g = model._golden = GoldenModel(deploy.load(folder))
    return g


def _golden_engine(model, q) -> np.ndarray:
    x = np.asarray(q).round().astype(np.int64)
    if x.ndim == 3:
        x = x[:, None]
    return golden_of(model).run(x).classes


register_engine("golden", _golden_engine)
