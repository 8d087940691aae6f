"""The ``golden`` inference engine for :mod:`kwsbnn.sw.evaluate` (the NumPy golden model, reading
only the deployable-model files the model exports to), and deployable folders as models.

The ``rtl`` engine (the accelerator in Verilator) belongs to the simulation side: importing
:mod:`kwsbnn.sim.engine` registers it; this package knows nothing of ``sim``.
"""

import tempfile

import numpy as np

from . import deploy
from .evaluate import register_engine


class DeployedModel:
    """A deployable model folder standing in for a trained model in :func:`~kwsbnn.sw.evaluate.evaluate`:
    the golden and rtl engines run it; it has no PyTorch form (``meta`` carries the feature settings,
    the quantizer and the classes stored in its manifest)."""

    def __init__(self, dep: deploy.Deployable):
        from types import SimpleNamespace

        from .golden import GoldenModel
        inp = dep.input
        self.meta = {"features": inp.get("features") or {}, "quantizer": inp.get("quantizer") or {},
                     "classes": list(dep.classes), "input_shape": list(inp["shape"][1:])}
        self.config = SimpleNamespace(precision=f"deployable {dep.name}", layout="chain")
        self._golden = GoldenModel(dep)


def is_deployable_folder(ref) -> bool:
    from pathlib import Path
    return (Path(ref) / deploy.MANIFEST).is_file()


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
