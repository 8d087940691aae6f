"""Debugging aids of the whole-network simulation: FST waveforms of one clip, the harness's VPI
visibility, and how `kwsbnn eval --engine rtl` reports agreement, mismatches and waveforms."""

import numpy as np
import pytest

from kwsbnn.cli import main
from kwsbnn.sim.harness import harness_config, harness_verilog
from kwsbnn.sim.network import simulate
from kwsbnn.sw.export import deployable


@pytest.fixture(scope="module")
def tiny():
    return deployable("tiny")


@pytest.fixture(scope="module")
def simdir(tmp_path_factory):
    """One work folder, so that both waveform tests share one tracing build."""
    return tmp_path_factory.mktemp("sim")


def test_waves_of_the_first_clip_when_all_agree(tiny, simdir, tmp_path):
    x = np.random.default_rng(2).integers(0, 2, (5, 64, 1, 1))
    res = simulate(tiny, simdir, inputs=x, waves_dir=tmp_path / "waves", waves_always=True)
    assert res["equal"] == 5 and res["waves_clip"] == 0
    fst = tmp_path / "waves" / "clip0.fst"
    assert res["waves"] == str(fst) and fst.stat().st_size > 1000
    # No waveform unless asked, or unless a clip mismatches.
    res = simulate(tiny, simdir, inputs=x, waves_dir=tmp_path / "none")
    assert "waves" not in res and not (tmp_path / "none" / "clip0.fst").exists()


def test_waves_of_the_first_mismatching_clip(tiny, simdir, tmp_path):
    """Against a golden model with one flipped weight bit: the FST is of the first mismatching clip."""
    from kwsbnn.sw import deploy
    spec = {"name": "tiny-mutant", "classes": tiny.classes, "input": tiny.input,
            "layers": [dict(layer) for layer in tiny.layers]}
    first = spec["layers"][0]
    first["weights"] = first["weights"].copy()
    first["weights"][10, 7] ^= 1
    first["direction"] = np.where(first["direction"] > 0, 1, -1)
    mutant = deploy.save(spec, tmp_path / "mutant")
    x = np.random.default_rng(5).integers(0, 2, (400, 64, 1, 1))
    res = simulate(tiny, simdir, inputs=x, golden_model=mutant, waves_dir=tmp_path / "waves")
    k = res["mismatches"][0]["index"]
    assert res["waves_clip"] == k and res["first_difference"]["clip"] == k
    assert res["first_difference"]["layer"] == "fc1"
    assert res["waves"] == str(tmp_path / "waves" / f"clip{k}.fst")
    assert (tmp_path / "waves" / f"clip{k}.fst").stat().st_size > 1000


def test_harness_exposes_only_its_ports():
    taps = [{"layer": "conv0", "width": 8, "shape": [8, 4, 4], "transfers": 16}]
    vlt = harness_config(taps)
    assert vlt.startswith("`verilator_config")
    assert 'public_flat_rd -module "kws_sim" -var "tap_conv0_payload"' in vlt
    assert "-var \"*\"" not in vlt
    text = harness_verilog(8, 40, taps)
    assert "output wire [7:0] tap_conv0_payload" in text and ".tap_conv0_valid(tap_conv0_valid)" in text


def test_waves_needs_the_rtl_engine(tmp_path, capsys):
    code = main(["eval", "--model", "binary-ice40", "--data", str(tmp_path), "--waves", str(tmp_path / "w")])
    assert code == 2
    assert "--waves needs --engine rtl" in capsys.readouterr().err


def test_rtl_text_report_names_clip_layer_and_waves():
    from kwsbnn.commands.eval import rtl_lines
    res = {"agreement": {"equal": 7, "total": 8}, "cycles_per_inference": 145500.0,
           "model_cycles_per_inference": 145440, "sim_cycles_per_second": 1.2e6,
           "clips": [f"yes/{k}.wav" for k in range(8)],
           "first_mismatch": {"clip": 3, "rtl": {"cls": 1, "scores": []}, "golden": {"cls": 2, "scores": []},
                              "first_difference": {"clip": 3, "layer": "conv2", "position": [4, 7],
                                                   "channel": 5, "index": 1234, "expected": 1, "got": 0}},
           "waves": {"path": "/w/clip3.fst", "clip": 3, "mismatch": True}}
    text = "\n".join(rtl_lines(res))
    assert "7/8 clips agree" in text and "+0.0%" in text and "1,200,000 cycles/s" in text
    assert "clip 3 (yes/3.wav)" in text
    assert "first layer that differs: conv2 at position [4, 7], channel 5: expected 1, got 0" in text
    assert "waveform of clip 3: /w/clip3.fst" in text
