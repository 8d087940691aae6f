"""The ``rtl`` inference engine: the generated accelerator in Verilator, checked against the golden
model clip by clip. Importing this module registers it with :mod:`kwsbnn.sw.evaluate` (the command
line does, for ``--engine rtl``); the software side never imports the simulation side.
"""

import hashlib

import numpy as np

from kwsbnn.paths import cache_dir
from kwsbnn.sw.deploy import MANIFEST
from kwsbnn.sw.engines import golden_of
from kwsbnn.sw.evaluate import FIGURES, register_engine

from .network import simulate

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
    g = golden_of(model)
    x = np.asarray(q).round().astype(np.int64)
    if x.ndim == 3:
        x = x[:, None]
    offset = FIGURES.get("agreement", {}).get("total", 0)     # clips of the batches before this one
    waves_dir = RTL_OPTIONS.get("waves_dir")
    # The first mismatching clip's waves replace those of clip 0 (written while all agreed).
    want_waves = waves_dir is not None and not FIGURES.get("waves", {}).get("mismatch")
    folding = RTL_OPTIONS.get("folding")
    ident = (g.model.path / MANIFEST).read_bytes() + repr(folding.to_dict() if folding else None).encode()
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
