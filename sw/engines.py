"""Inference engines beyond PyTorch for :mod:`kwsbnn.sw.evaluate`: ``golden`` (the NumPy golden
model, reading only the deployable-model files the model exports to) and ``rtl`` (the generated
accelerator in Verilator, checked against the golden model clip by clip).
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


# Options of the ``rtl`` engine, set by ``kwsbnn eval`` and ``kwsbnn demo``: ``waves_dir`` (a folder:
# write an FST of the first mismatching clip, or of the first clip when all agree) and ``folding``
# (the accelerator's folding; None: the default folding).
RTL_OPTIONS = {"waves_dir": None, "folding": None}


def _rtl_engine(model, q):
    """Classes from the RTL, plus agreement with the golden model and simulation figures.

    :func:`~kwsbnn.sw.evaluate.predict` calls an engine batch by batch; figures that do not add up
    over batches (the first mismatch with its layer, the waveform) go straight into
    :data:`~kwsbnn.sw.evaluate.FIGURES`, once, with clip numbers counted over the whole evaluation.
    """
    import hashlib

    from kwsbnn.paths import cache_dir
    from kwsbnn.sim.network import simulate

    from .evaluate import FIGURES

    g = golden_of(model)
    x = np.asarray(q).round().astype(np.int64)
    if x.ndim == 3:
        x = x[:, None]
    offset = FIGURES.get("agreement", {}).get("total", 0)     # clips of the batches before this one
    waves_dir = RTL_OPTIONS.get("waves_dir")
    # The first mismatching clip's waves replace those of clip 0 (written while all agreed).
    want_waves = waves_dir is not None and not FIGURES.get("waves", {}).get("mismatch")
    folding = RTL_OPTIONS.get("folding")
    ident = (g.model.path / deploy.MANIFEST).read_bytes() + repr(folding.to_dict() if folding else None).encode()
    key = hashlib.sha256(ident).hexdigest()[:12]
    res = simulate(g.model, cache_dir("rtl", key), inputs=x, waves_dir=waves_dir if want_waves else None,
                   waves_always="waves" not in FIGURES, folding=folding)
    figures = {"agreement": {"equal": res["equal"], "total": res["total"]},
               "cycles_per_inference": res["cycles_steady"] if res["total"] > 1 else None,
               "sim_cycles_per_second": res["sim_cycles_per_second"]}
    FIGURES.setdefault("model_cycles_per_inference", res["report"]["cycles_per_inference"])
    if res["mismatches"] and "first_mismatch" not in FIGURES:
        first = dict(res["mismatches"][0])
        first["clip"] = first.pop("index") + offset
        loc = res.get("first_difference")
        if loc:
            first["first_difference"] = {**loc, "clip": loc["clip"] + offset}
        FIGURES["first_mismatch"] = first
    if res.get("waves"):
        FIGURES["waves"] = {"path": res["waves"], "clip": res["waves_clip"] + offset,
                            "mismatch": bool(res["mismatches"])}
    return np.asarray(res["classes"], dtype=np.int64), figures


register_engine("rtl", _rtl_engine)
