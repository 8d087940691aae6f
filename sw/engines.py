"""Inference engines beyond PyTorch for :mod:`kwsbnn.sw.evaluate`: ``golden`` (the NumPy golden
model, reading only the deployable-model files the model exports to) and ``rtl`` (the generated
accelerator in Verilator, checked against the golden model clip by clip).
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


def _rtl_engine(model, q):
    """Classes from the RTL, plus agreement with the golden model and simulation figures."""
    import hashlib

    from kwsbnn.paths import cache_dir
    from kwsbnn.sim.network import simulate

    g = golden_of(model)
    x = np.asarray(q).round().astype(np.int64)
    if x.ndim == 3:
        x = x[:, None]
    key = hashlib.sha256((g.model.path / deploy.MANIFEST).read_bytes()).hexdigest()[:12]
    res = simulate(g.model, cache_dir("rtl", key), inputs=x)
    figures = {"agreement": {"equal": res["equal"], "total": res["total"]},
               "cycles_per_inference": res["cycles_steady"],
               "sim_cycles_per_second": res["sim_cycles_per_second"]}
    if res["mismatches"]:
        figures["first_mismatch"] = res["mismatches"][0]
    return np.asarray(res["classes"], dtype=np.int64), figures


register_engine("rtl", _rtl_engine)
