"""The Verilog `kwsbnn verilog` writes simulates in Icarus Verilog as it is: whole inferences of
small networks give the golden model's class and every score. Skipped only where `iverilog` is not
installed (CI installs it from Debian: .ci/run)."""

import numpy as np
import pytest
import torch

from kwsbnn.sim import icarus

pytestmark = pytest.mark.skipif(not icarus.available(), reason="Icarus Verilog (iverilog) not installed")


@pytest.mark.parametrize("opts", ["redesign,width=8", "redesign,width=8,last=int8"])
def test_icarus_runs_the_generated_verilog_like_the_golden_model(opts, tmp_path):
    from kwsbnn.hw.verilog import generate
    from kwsbnn.sw.engines import golden_of
    from kwsbnn.sw.models import BinaryOptions, build_model, make_config

    torch.manual_seed(1)
    model = build_model(make_config("res8-narrow", "binary", BinaryOptions.parse(opts)))
    model.meta = {"input_shape": [12, 8], "classes": [f"c{k}" for k in range(12)]}
    model.eval()
    g = golden_of(model)
    x = np.random.default_rng(0).integers(-127, 128, (3, 1, 12, 8))
    want = g.run(x)
    rep = generate(g.model, tmp_path / "v")
    got = icarus.run(rep["verilog"], rep, x, tmp_path / "run", max_cycles=60 * rep["cycles_per_inference"])
    assert not got["timeout"], got["log"]
    assert got["classes"] == want.classes.tolist()
    assert got["scores"] == want.scores.tolist()
