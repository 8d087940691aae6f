"""Threshold folding by enumeration: exact for batch norm with positive, negative and zero scale."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from kwsbnn.sw.fold import apply_step, fold_step

floats = st.floats(-4, 4, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 80), st.lists(st.tuples(floats, floats, st.floats(-20, 20, width=32),
                                              st.floats(0.015625, 50, width=32)), min_size=1, max_size=6),
       st.sampled_from([0, 1, 2, 3]))
def test_fold_reproduces_float_batchnorm_sign(k, params, zero_index):
    """For every reachable ±1 dot product, the folded threshold gives the float BN+sign output."""
    gamma = torch.tensor([p[0] for p in params])
    beta = torch.tensor([p[1] for p in params])
    mean = torch.tensor([p[2] for p in params])
    var = torch.tensor([p[3] for p in params])
    if zero_index < len(params):
        gamma[zero_index] = 0.0
    values = np.arange(-k, k + 1, 2)
    acc = torch.tensor(values, dtype=torch.float32)[:, None]
    bits = ((acc - mean) / torch.sqrt(var + 1e-5) * gamma + beta >= 0).numpy().T
    direction, threshold = fold_step(values, bits)
    assert np.array_equal(apply_step(values[:, None], direction, threshold).T, bits)
    assert set(np.unique(direction)) <= {-1, 1}
    neg = (gamma < 0).numpy() & bits.any(axis=1) & ~bits.all(axis=1)
    assert (direction[neg] == -1).all()


def test_constant_channels_use_out_of_range_thresholds():
    values = np.array([-3, -1, 1, 3])
    bits = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], dtype=bool)
    d, t = fold_step(values, bits)
    assert d.tolist() == [1, 1] and t.tolist() == [-4, 4]


def test_non_monotonic_output_is_rejected():
    with pytest.raises(ValueError, match="not a monotonic step"):
        fold_step(np.array([0, 1, 2]), np.array([[1, 0, 1]]))
