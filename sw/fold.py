"""Folding a monotonic per-channel step function into integer thresholds.

The float model's post-accumulator function (batch norm, shortcut add, sign) is evaluated on every
reachable accumulator value; :func:`fold_step` turns the resulting bits into one ``direction`` and
``threshold`` per channel that reproduce them exactly (docs/integer-network.md).
"""

import numpy as np


def fold_step(values: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds for ``bits [C, V]``, the outputs at the ascending accumulator ``values [V]``.

    Returns ``direction [C]`` (+1: output 1 iff acc >= threshold; -1: iff acc <= threshold) and
    ``threshold [C]`` (int64). A constant channel gets direction +1 and a threshold one below
    (always 1) or one above (always 0) the value range. Raises ``ValueError`` if a channel's bits
    are not a monotonic step.
    """
    values = np.asarray(values, dtype=np.int64)
    bits = np.asarray(bits).astype(bool)
    if values.ndim != 1 or bits.ndim != 2 or bits.shape[1] != values.size or values.size == 0:
        raise ValueError(f"fold_step wants values [V] and bits [C, V], got {values.shape}, {bits.shape}")
    if np.any(np.diff(values) <= 0):
        raise ValueError("values must be strictly ascending")
    c = bits.shape[0]
    direction = np.ones(c, dtype=np.int64)
    threshold = np.zeros(c, dtype=np.int64)
    for ch in range(c):
        b = bits[ch]
        if b.all():
            threshold[ch] = values[0] - 1
        elif not b.any():
            threshold[ch] = values[-1] + 1
        elif np.all(np.diff(b.astype(np.int8)) >= 0):     # 0..0 1..1
            threshold[ch] = values[np.argmax(b)]
        elif np.all(np.diff(b.astype(np.int8)) <= 0):     # 1..1 0..0
            direction[ch] = -1
            threshold[ch] = values[b.size - 1 - np.argmax(b[::-1])]
        else:
            raise ValueError(f"channel {ch}: output is not a monotonic step in the accumulator")
    return direction, threshold


def apply_step(acc: np.ndarray, direction: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Bits of ``acc [..., C]`` under per-channel ``direction`` and ``threshold``."""
    acc = np.asarray(acc)
    return np.where(direction > 0, acc >= threshold, acc <= threshold)
