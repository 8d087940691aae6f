"""The command line: every subcommand has --help; unbuilt ones say so; --json gives one object;
user mistakes give one clear line, never a traceback."""

import json
import re
import subprocess
import sys

import pytest

from kwsbnn.cli import COMMANDS


def kwsbnn(*args, env=None):
    return subprocess.run([sys.executable, "-m", "kwsbnn.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command):
    r = kwsbnn(command, "--help")
    assert r.returncode == 0, r.stderr
    assert f"kwsbnn {command}" in r.stdout and len(r.stdout.splitlines()) > 3


def test_search_and_report_without_their_arguments_are_usage_errors():
    for command in ("search", "report"):
        r = kwsbnn(command)
        assert r.returncode == 2
        assert "usage:" in r.stderr and "Traceback" not in r.stderr


def test_export_and_verilog_json(tmp_path):
    r = kwsbnn("export", "--model", "tiny", "--out", str(tmp_path / "m"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["layers"] == ["fc1", "gap", "fc2"]
    assert (tmp_path / "m" / "manifest.json").is_file()
    r = kwsbnn("verilog", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "v"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for key in ("cycles_per_inference", "initiation_interval", "memory_bits", "lanes", "layers"):
        assert key in rep
    assert (tmp_path / "v" / "kws_top.v").read_text().count("module kws_top") == 1


def test_bad_inputs_give_clear_errors(tmp_path):
    r = kwsbnn("verilog", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "v"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no such model file" in r.stderr
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"layers": {"fc1": {"pe": 3, "simd": 32}}}))
    r = kwsbnn("verilog", "--model", "tiny", "--out", str(tmp_path / "v"), "--fold", str(fold))
    assert r.returncode == 2 and re.search(r"(?i)pe=3 must divide (the )?32", r.stderr)
    assert not (tmp_path / "v").exists()
    r = kwsbnn("build", "--board", "icebreaker", "--model", "tiny", "--freq", "300",
               "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "PLL makes 16-275 MHz, not 300 MHz" in r.stderr


def test_shipped_binary_model_generates_lint_clean_verilog(tmp_path):
    """The iCEBreaker's shipped binary model goes through export and the generator; its Verilog passes
    lint. The recommended `binary` (an integer residual stream) exports, and the generator builds it in
    the engine style (the pipeline style refuses it: tests/test_engine_stream.py)."""
    from kwsbnn.paths import MODELS
    from kwsbnn.sim.runner import lint
    for name in ("binary", "binary-w64", "binary-ice40"):
        if not (MODELS / f"{name}.pt").is_file():
            pytest.fail(f"models/{name}.pt is missing from the repository")
    r = kwsbnn("export", "--model", "binary-ice40", "--out", str(tmp_path / "m"), "--json")
    assert r.returncode == 0, r.stderr
    r = kwsbnn("verilog", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "v"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["memory_bits"] < 120_000 and rep["cycles_per_inference"] > 0
    lint(tmp_path / "v" / "kws_top.v", "kws_top")
    r = kwsbnn("export", "--model", "binary", "--out", str(tmp_path / "s"), "--json")
    assert r.returncode == 0, r.stderr
    # Only the engine style runs it: its default folding is the engine's.
    r = kwsbnn("verilog", "--model", str(tmp_path / "s"), "--out", str(tmp_path / "sv"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["style"] == "engine" and (tmp_path / "sv" / "weights.hex").is_file()
