"""The cost model: cycles, memory bits and lanes per layer for a deployable model and a folding.

One model serves the generator's reports, the folding choice and the architecture search. Figures:
- ``cycles``: cycles a layer is busy per inference (positions x neuron folds x synapse folds);
- ``initiation_interval``: cycles between inferences in steady state = the slowest layer;
- ``latency``: cycles from the first input transfer to the result, for one inference alone
  (an upper bound: the layers are summed as if nothing overlapped);
- ``memory_bits``: weights, thresholds (direction bit + threshold) and buffers;
- ``lanes``: XNOR lanes (PE x SIMD) for binary layers.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kwsbnn.errors import KwsError

from .arith import signed_width


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass
class Folding:
    """Per-layer PE (output channels in parallel) and SIMD (input bits per cycle)."""
    layers: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> dict:
        return self.layers[name]

    @classmethod
    def default(cls, dep, max_simd: int = 32) -> "Folding":
        """SIMD = the largest divisor of K up to ``max_simd``, PE = 1, for every conv layer."""
        layers = {}
        for layer in dep.layers:
            if layer["op"] == "conv":
                k = int(np.shape(layer["weights"])[1])
                layers[layer["name"]] = {"pe": 1, "simd": max(d for d in _divisors(k) if d <= max_simd)}
        return cls(layers)

    @classmethod
    def load(cls, path: str | Path, dep) -> "Folding":
        """Read a folding file ``{"layers": {name: {"pe": P, "simd": S}}}``; unnamed layers get defaults."""
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise KwsError(f"{path}: cannot read the folding file ({e})",
                           'write it as {"layers": {"conv1": {"pe": 4, "simd": 32}}}') from None
        folding = cls.default(dep)
        names = set(folding.layers)
        for name, fold in raw.get("layers", {}).items():
            if name not in names:
                raise KwsError(f"{path}: layer {name!r} is not a convolution of this model",
                               f"its layers are {sorted(names)}")
            folding.layers[name] = {"pe": int(fold["pe"]), "simd": int(fold["simd"])}
        return folding

    def to_dict(self) -> dict:
        return {"layers": self.layers}


def layer_costs(dep, folding: Folding) -> dict:
    """Per-layer and whole-network cost figures (see the module docstring)."""
    c, t, f = dep.input["shape"]
    positions = t * f
    entries = []
    for layer in dep.layers:
        name = layer["name"]
        if layer["op"] == "conv":
            co, k = np.shape(layer["weights"])
            fold = folding[name]
            nf, sf = co // fold["pe"], k // fold["simd"]
            thr = layer["threshold"]
            tw = signed_width(int(min(thr.min(), -k)), int(max(thr.max(), k)))
            entries.append({"name": name, "op": "conv", "pe": fold["pe"], "simd": fold["simd"],
                            "lanes": fold["pe"] * fold["simd"], "cycles": positions * nf * sf,
                            "binary_ops": positions * co * k,
                            "weight_bits": int(co * k), "threshold_bits": int(co * (1 + tw * thr.shape[1])),
                            "buffer_bits": int(k + 2 * co)})
        elif layer["op"] == "dense":
            w = layer["weights"]
            kk, cc = np.shape(w)
            wv = 2 * w - 1 if layer["w_prec"] == "bin" else w
            ww = signed_width(int(np.min(wv)), int(np.max(wv)))
            entries.append({"name": name, "op": "gap+dense+argmax", "lanes": 0,
                            "cycles": positions + cc * kk + kk + 5, "binary_ops": 0,
                            "weight_bits": int(kk * cc * ww), "threshold_bits": 0,
                            "buffer_bits": 0})
    ii = max(e["cycles"] for e in entries)
    for e in entries:
        e["memory_bits"] = e["weight_bits"] + e["threshold_bits"] + e["buffer_bits"]
    return {"cycles_per_inference": ii, "initiation_interval": ii,
            "latency": sum(e["cycles"] + 3 for e in entries),
            "memory_bits": sum(e["memory_bits"] for e in entries),
            "weight_bits": sum(e["weight_bits"] for e in entries),
            "lanes": sum(e["lanes"] for e in entries), "layers": entries}
