"""Footprint accounting and the trade-off report (models made in code, no data needed)."""

import json

import pytest

from kwsbnn.cli import main
from kwsbnn.sw.checkpoint import save_model
from kwsbnn.sw.footprint import footprint
from kwsbnn.sw.models import BinaryOptions, build_model, make_config
from kwsbnn.sw.tradeoff import tradeoff

META = {"input_shape": [101, 40]}


def _model(precision, opts=None, **kw):
    m = build_model(make_config("res8-narrow", precision, opts, **kw))
    m.meta = dict(META)
    return m


def test_weight_bits_by_precision():
    n, k = 19, 12
    conv = n * n * 9
    fl = footprint(_model("float"))
    assert fl["weight_bits"] == 32 * (9 * n + 6 * conv + n * k) + 32 * k
    i8 = footprint(_model("int8"))
    # int8 weights + one 32-bit scale per output channel; the dense layer has one scale and a bias
    assert i8["weight_bits"] == 8 * (9 * n + 6 * conv + n * k) + 32 * 7 * n + 32 + 32 * k
    b = footprint(_model("binary", BinaryOptions()))
    assert b["weight_bits"] == 8 * 9 * n + 32 * n + 6 * conv + 8 * n * k + 32 + 32 * k
    naive = footprint(_model("binary", BinaryOptions.parse("naive")))
    assert naive["weight_bits"] == 32 * 9 * n + 6 * conv + 32 * n * k + 32 * k
    assert fl["weight_bits"] / i8["weight_bits"] > 3.5
    assert i8["weight_bits"] / b["weight_bits"] > 5


def test_activation_peak_is_largest_layer():
    b = footprint(_model("binary", BinaryOptions()))
    # conv0 reads the int8 feature map (101 x 40) and writes 19 pooled binary maps of 25 x 13
    first = b["layers"][0]
    assert first["in_bits"] == 8 * 101 * 40 and first["out_bits"] == 19 * 25 * 13
    assert b["activation_peak_bits"] == max(l["in_bits"] + l["out_bits"] for l in b["layers"])
    fl = footprint(_model("float"))
    assert fl["activation_peak_bits"] == 8 * 101 * 40 + 32 * 19 * 101 * 40


def test_tradeoff_report(tmp_path, capsys):
    paths = []
    for name, prec, opts, acc in (("f", "float", None, 0.8), ("q", "int8", None, 0.79),
                                  ("b", "binary", BinaryOptions(), 0.7)):
        p = tmp_path / f"{name}.pt"
        save_model(p, _model(prec, opts), {"test_accuracy": acc})
        paths.append(str(p))
    rows = tradeoff(paths)
    assert [r["kind"] for r in rows] == ["float", "8-bit", "binary (redesign)"]
    assert rows[2]["weight_reduction_vs_int8"] == pytest.approx(rows[1]["weight_bits"] / rows[2]["weight_bits"])
    assert rows[2]["accuracy_delta_vs_int8"] == pytest.approx(-0.09)
    out = tmp_path / "rep"
    assert main(["report", "tradeoff", "--models", ",".join(paths), "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["rows"]) == 3
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "tradeoff.json").read_text())[0]["accuracy"] == 0.8


def test_tradeoff_needs_an_accuracy(tmp_path, capsys):
    p = tmp_path / "m.pt"
    save_model(p, _model("float"))
    assert main(["report", "tradeoff", "--models", str(p), "--out", str(tmp_path)]) == 2
    assert "records no test accuracy" in capsys.readouterr().err


def test_tradeoff_default_out_is_an_ignored_build_folder(tmp_path, capsys, monkeypatch):
    import subprocess

    from kwsbnn.paths import ROOT
    p = tmp_path / "f.pt"
    save_model(p, _model("float"), {"test_accuracy": 0.5})
    monkeypatch.chdir(tmp_path)
    assert main(["report", "tradeoff", "--models", str(p), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["table"] == "build/reports/tradeoff.json"
    assert (tmp_path / "build" / "reports" / "tradeoff.png").is_file()
    r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "build/reports/tradeoff.json"])
    assert r.returncode == 0            # git ignores it in the repository
