"""Shape inference and consistency checks for a network in the integer contract.

:func:`infer_shapes` walks the layer list from the input shape ``[C, T, F]`` and returns each
layer's output shape, raising ``ValueError`` with the layer name when a field or an array does not
agree with the geometry (docs/integer-network.md).
"""

import numpy as np


def conv_out(n: int, k: int, s: int, d: int, p: int) -> int:
    """Output length of a convolution along one axis."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pair(layer, key, default=None):
    v = layer.get(key, default)
    if v is None:
        return None
    if isinstance(v, int):
        return (v, v)
    if len(v) != 2:
        raise ValueError(f"layer {layer.get('name')}: {key} must have two entries, got {v}")
    return tuple(int(x) for x in v)


def _check_array(layer, key, shape):
    arr = layer.get(key)
    if arr is None:
        raise ValueError(f"layer {layer['name']}: missing {key}")
    if tuple(np.shape(arr)) != tuple(shape):
        raise ValueError(f"layer {layer['name']}: {key} has shape {list(np.shape(arr))}, "
                         f"expected {list(shape)}")


def infer_shapes(inp: dict, layers: list, n_classes: int | None = None) -> list[tuple]:
    shape = tuple(inp["shape"])
    prec = inp["prec"]
    if len(shape) != 3:
        raise ValueError(f"input shape must be [C, T, F], got {list(shape)}")
    shapes = []
    for i, layer in enumerate(layers):
        name = layer.get("name", f"#{i}")
        op = layer["op"]
        if op == "conv":
            c, t, f = shape
            if layer["in_channels"] != c:
                raise ValueError(f"layer {name}: in_channels {layer['in_channels']} but its input has {c}")
            stream = layer.get("in_threshold") is not None
            if stream:
                if prec != "int8" or layer["in_prec"] != "bin":
                    raise ValueError(f"layer {name}: in_threshold binarizes an int8 input for in_prec bin")
                _check_array(layer, "in_threshold", (c,))
            elif layer["in_prec"] != prec:
                raise ValueError(f"layer {name}: in_prec {layer['in_prec']} but its input is {prec}")
            kt, kf = _pair(layer, "kernel")
            st, sf = _pair(layer, "stride", (1, 1))
            dt, df = _pair(layer, "dilation", (1, 1))
            pt, pf = _pair(layer, "padding", (0, 0))
            to, fo = conv_out(t, kt, st, dt, pt), conv_out(f, kf, sf, df, pf)
            if to < 1 or fo < 1:
                raise ValueError(f"layer {name}: kernel larger than its {t}x{f} input")
            pool = _pair(layer, "pool")
            if pool:
                to, fo = to // pool[0], fo // pool[1]
                if to < 1 or fo < 1:
                    raise ValueError(f"layer {name}: pool {list(pool)} larger than the conv output")
            co = layer["out_channels"]
            k = c * kt * kf
            _check_array(layer, "weights", (co, k))
            sc = layer.get("shortcut", "none")
            if sc != "none" and (co != c or (st, sf) != (1, 1) or pool or (to, fo) != (t, f)):
                raise ValueError(f"layer {name}: a shortcut needs equal channels, stride 1, no pooling "
                                 "and an output as large as the input")
            if sc == "int8" and prec != "int8":
                raise ValueError(f"layer {name}: shortcut 'int8' needs an int8 input")
            if sc == "bit" and (prec != "bin" or stream):
                raise ValueError(f"layer {name}: shortcut 'bit' needs a binary input")
            if layer["out"] == "bits":
                _check_array(layer, "direction", (co,))
                _check_array(layer, "threshold", (co, 2 if sc == "bit" else 1))
                prec = "bin"
            elif layer["out"] == "int8":
                for key in ("mul", "add", "smul"):
                    _check_array(layer, key, (co,))
                prec = "int8"
            else:
                raise ValueError(f"layer {name}: out must be 'bits' or 'int8', got {layer['out']!r}")
            shape = (co, to, fo)
        elif op == "gap":
            shape = (shape[0], 1, 1)
            prec = "int"
        elif op == "dense":
            if prec != "int" or i != len(layers) - 1:
                raise ValueError(f"layer {name}: dense must be the last layer and follow gap")
            _check_array(layer, "weights", (layer["out_features"], shape[0]))
            _check_array(layer, "bias", (layer["out_features"],))
            if n_classes is not None and layer["out_features"] != n_classes:
                raise ValueError(f"layer {name}: {layer['out_features']} outputs for {n_classes} classes")
            shape = (layer["out_features"], 1, 1)
        else:
            raise ValueError(f"layer {name}: unknown op {op!r}")
        shapes.append(shape)
    if not layers or layers[-1]["op"] != "dense":
        raise ValueError("the network must end with a dense layer (the scores)")
    return shapes
