"""Footprint accounting and the trade-off report (models made in code), and the fronts study on
fixture data."""

import json

import numpy as np
import pytest

from kwsbnn.cli import main
from kwsbnn.paths import ROOT
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


def test_tradeoff_reads_a_shipped_models_record_before_its_training_figure(tmp_path):
    """One source for a shipped model's accuracy: its record's eval figure (the README's table),
    before the training run's figure in the .pt."""
    p = tmp_path / "m.pt"
    save_model(p, _model("int8"), {"test_accuracy": 0.8465})
    assert tradeoff([str(p)])[0]["accuracy"] == 0.8465
    (tmp_path / "m.json").write_text(json.dumps({"name": "m", "test_accuracy_on_subset_testing_list": 0.844}))
    row = tradeoff([str(p)])[0]
    assert row["accuracy"] == 0.844 and "m.json" in row["accuracy_source"]
    row = tradeoff(["int8"])[0]
    rec = json.loads((ROOT / "models" / "int8.json").read_text())
    assert row["accuracy"] == rec["test_accuracy_on_subset_testing_list"] and "int8.json" in row["accuracy_source"]


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


def _fronts_module():
    import importlib.util

    from kwsbnn.paths import ROOT
    spec = importlib.util.spec_from_file_location("fronts", ROOT / "benchmarks" / "fronts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_width_option_sets_float_and_int8_channels(tmp_path):
    for prec in ("float", "int8"):
        cfg = make_config("res8", prec, width=16, layout="chain")
        assert cfg.channels == 16 and cfg.block_widths() == [16] * 7
    # int8 at 16 and 48 channels: the ends of the fronts' ~100 kbit to ~1 Mbit
    assert footprint(_widthed("int8", 16))["weight_bits"] == 432 * 16 ** 2 + 392 * 16 + 416 == 117_280
    assert footprint(_widthed("int8", 48))["weight_bits"] == 1_014_560
    # binary: the same as the option width=, which the model file records
    b = make_config("res8", "binary", BinaryOptions.parse("direct"), width=32)
    assert b.channels == 32 and b.options.width == 32 and b.options.preset == "direct"
    with pytest.raises(ValueError, match="both set the widths"):
        make_config("res8", "binary", BinaryOptions.parse("redesign,stages=8x1"), width=8)
    with pytest.raises(ValueError, match="disagree"):
        make_config("res8", "binary", BinaryOptions.parse("redesign,width=8"), width=16)


def _widthed(prec, width):
    m = build_model(make_config("res8", prec, width=width))
    m.meta = dict(META)
    return m


def test_train_width_errors(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path), "--precision", "int8", "--width", "0"]) == 2
    assert "--width 0" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--precision", "binary", "--width", "8",
                 "--binary-options", "redesign,stages=8x1-16x1"]) == 2
    assert "both set the widths" in capsys.readouterr().err


def test_fronts_study_on_fixture_data(tmp_path, capsys):
    """benchmarks/fronts.py end to end on tiny widths and one epoch: every family trains, a rerun
    skips finished runs, --report scores them, `report tradeoff --fronts` draws them."""
    from fixtures import make_speech_commands
    fronts = _fronts_module()
    data = make_speech_commands(tmp_path / "sc").root
    out = tmp_path / "fronts"
    # the study's own runs: four widths for float and int8, five for binary, three for the deep
    # redesign, int8 from ~100 kbit to ~1 Mbit
    runs = fronts.all_runs()
    assert len(runs) == 21 and {f for f, _ in runs} == {"float", "int8", "direct", "redesign", "deep"}
    assert [w for f, w in runs if f == "deep"] == [32, 64, 96]
    assert fronts.select("int8-w16,redesign", runs) == [("int8", 16)] + [("redesign", w) for w in (16, 32, 64, 96, 128)]
    with pytest.raises(SystemExit, match="not a family"):
        fronts.select("int8-w17", runs)
    cfg = fronts.run_config("redesign", 96, "d", out, 0, {"float": 40, "binary": 50}, 1, "float")
    assert "stages=96x1-96x2" in cfg.binary and "shortcut=int" in cfg.binary and cfg.teacher == "float"
    deep = fronts.run_config("deep", 96, "d", out, 0, {"float": 40, "binary": 50}, 1, "float")
    assert deep.binary == cfg.binary.replace("stages=96x1-96x2", "stages=96x2-96x3") and deep.epochs == 50
    cfg = fronts.run_config("float", 24, "d", out, 0, {"float": 40, "binary": 50}, 1, "float")
    assert cfg.width == 24 and cfg.layout == "chain" and cfg.epochs == 40 and cfg.precision == "float"

    # an interrupted run (one of its two epochs done) is resumed, not restarted
    from kwsbnn.sw.train import train
    first = train(fronts.run_config("int8", 4, str(data), out, 0, {"float": 2, "binary": 1}, 1, None),
                  stop_after=1, progress=False)["history"][0]
    args = ["--data", str(data), "--out", str(out), "--widths-float", "4", "--widths-binary", "4,8",
            "--widths-deep", "4", "--epochs-float", "2", "--epochs-binary", "1", "--teacher", "none"]
    fronts.main(args)
    history = json.loads((out / "int8-w4-s0" / "metrics.json").read_text())["history"]
    assert len(history) == 2 and history[0] == first
    names = sorted(p.parent.name for p in out.glob("*/metrics.json"))
    assert names == ["deep-w4-s0", "direct-w4-s0", "direct-w8-s0", "float-w4-s0", "int8-w4-s0",
                     "redesign-w4-s0", "redesign-w8-s0"]
    stamp = (out / "int8-w4-s0" / "model.pt").stat().st_mtime_ns
    fronts.main(args)                           # finished runs are skipped
    assert (out / "int8-w4-s0" / "model.pt").stat().st_mtime_ns == stamp
    res = fronts.main(args + ["--report"])
    assert [r["run"] for r in res["rows"]] == ["float-w4", "int8-w4", "direct-w4", "direct-w8",
                                               "redesign-w4", "redesign-w8", "deep-w4"]
    r = res["rows"][1]
    assert r["kind"] == "8-bit" and r["width"] == 4 and 0 <= r["ci95"][0] <= r["test_accuracy"] <= r["ci95"][1]
    assert json.loads((out / "fronts.json").read_text())["rows"] == res["rows"]
    assert "| int8-w4 |" in (out / "fronts.md").read_text()
    assert {p["against"] for p in res["paired"]} == {"int8-w4"}
    assert sorted(p["run"] for p in res["paired"] if p["versus"] == "1 Mbit") == [
        "deep-w4", "direct-w4", "direct-w8", "float-w4", "redesign-w4", "redesign-w8"]
    capsys.readouterr()

    rep = tmp_path / "rep"
    assert main(["report", "tradeoff", "--models", "none", "--fronts", str(out), "--out", str(rep),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert sorted(r["model"] + "-s0" for r in got["rows"]) == names and all(r["front"] for r in got["rows"])
    assert set(got["equal_memory"]) == {"float", "8-bit", "binary (direct)", "binary (Bi-Real stream)",
                                        "binary (deep stream)"}
    assert (rep / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", "tradeoff", "--fronts", str(tmp_path / "nope"), "--out", str(rep)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_fronts_runs_seeds_make_one_point_with_their_mean_accuracy():
    from kwsbnn.sw.tradeoff import merge_seeds
    rows = [dict(model="binary", front=False, accuracy=0.8),
            dict(model="redesign-w96-s0", front=True, accuracy=0.825, accuracy_delta_vs_int8=0.825 - 0.847),
            dict(model="int8-w24-s0", front=True, accuracy=0.823),
            dict(model="redesign-w96-s1", front=True, accuracy=0.82, accuracy_delta_vs_int8=0.82 - 0.847),
            dict(model="redesign-w96-s2", front=True, accuracy=0.837, accuracy_delta_vs_int8=0.837 - 0.847),
            dict(model="shipped-s1", front=False, accuracy=0.5)]       # not a fronts run: kept as is
    got = merge_seeds(rows)
    assert [r["model"] for r in got] == ["binary", "redesign-w96", "int8-w24", "shipped-s1"]
    assert got[1]["seeds"] == [0, 1, 2] and got[1]["accuracy"] == pytest.approx(0.8273, abs=1e-4)
    assert got[1]["accuracy_delta_vs_int8"] == pytest.approx(got[1]["accuracy"] - 0.847)
    assert got[2]["seeds"] == [0] and got[2]["accuracy"] == 0.823
    assert rows[1]["accuracy"] == 0.825                                 # the input rows are not changed


def test_fronts_pairs_each_run_with_int8_at_the_same_memory_and_inside_1_mbit():
    """The targets' comparisons: int8's best at or below the run's weight bits, and int8's best inside
    the SPRAM's 1 Mbit for a run that fits it; seed-mean difference, its interval, McNemar per seed."""
    fronts = _fronts_module()
    rows = [dict(run="int8-w16", family="int8", weight_bits=117_280, accuracy=0.6),
            dict(run="int8-w24", family="int8", weight_bits=258_700, accuracy=0.7),
            dict(run="int8-w64", family="int8", weight_bits=1_800_000, accuracy=0.9),
            dict(run="redesign-w96", family="redesign", weight_bits=259_300, accuracy=0.75),
            dict(run="float-w48", family="float", weight_bits=4_000_000, accuracy=0.8)]
    n = 200
    ones = np.ones(n, bool)
    correct = {"int8-w16": [np.arange(n) < 120], "int8-w24": [np.arange(n) < 140],
               "int8-w64": [np.arange(n) < 180],
               "redesign-w96": [np.arange(n) < 160, np.arange(n) < 140],     # two seeds: 80% and 70%
               "float-w48": [ones]}
    got = {(p["run"], p["versus"]): p for p in fronts.paired(rows, correct)}
    assert set(got) == {("redesign-w96", "same memory"), ("redesign-w96", "1 Mbit"),
                        ("float-w48", "same memory")}        # float-w48 is over the budget
    same = got["redesign-w96", "same memory"]
    assert same["against"] == "int8-w24"                     # not int8-w16, and not the wider one
    assert same["difference"] == pytest.approx(0.05) and same["ci95"][0] <= 0.05 <= same["ci95"][1]
    assert same["p_per_seed"][1] == 1.0 and same["p_per_seed"][0] < 0.001   # equal, then 20 clips all one way
    assert got["redesign-w96", "1 Mbit"]["against"] == "int8-w24"   # int8-w64 is over 1 Mbit
    assert got["float-w48", "same memory"]["against"] == "int8-w64"
    assert got["float-w48", "same memory"]["difference"] == pytest.approx(0.1)


def test_fronts_adopts_a_shipped_model_only_with_the_runs_recipe(tmp_path, monkeypatch, capsys):
    """--adopt takes a shipped model as a finished run when its recorded settings are the family's
    recipe at that width on the same data; another width, data or schedule is refused, and nothing
    is written when any pair is refused."""
    fronts = _fronts_module()
    monkeypatch.chdir(tmp_path)
    data = "data/speech_commands_subset,data/speech_commands_extra,data/synth"   # int8-w48's folders
    for d in data.split(","):
        (tmp_path / d).mkdir(parents=True)
    out = tmp_path / "fronts"
    base = ["--data", data, "--out", str(out)]
    # a refused pair after a good one: nothing written
    with pytest.raises(SystemExit, match="no shipped model"):
        fronts.main(base + ["--adopt", "int8-w48=int8-w48,int8-w32=nope"])
    assert not out.exists() or not any(out.iterdir())
    fronts.main(base + ["--adopt", "int8-w48=int8-w48"])
    m = json.loads((out / "int8-w48-s0" / "metrics.json").read_text())
    rec = json.loads((ROOT / "models" / "int8-w48.json").read_text())
    assert m["adopted_from"] == "models/int8-w48.pt" and m["complete"]
    assert m["best_val_accuracy"] == rec["best_val_accuracy"] and m["epochs"] == 40
    assert (out / "int8-w48-s0" / "model.pt").read_bytes() == (ROOT / "models" / "int8-w48.pt").read_bytes()
    fronts.main(base + ["--adopt", "int8-w48=int8-w48"])          # again: the same run, allowed
    dotted = ",".join("./" + d for d in data.split(","))            # the same folders, spelt otherwise
    fronts.main(["--data", dotted, "--out", str(out), "--adopt", "int8-w48=int8-w48"])
    for bad, why in (("int8-w32=int8-w48", "width: 48"), ("redesign-w64=int8-w48", "precision: 'int8'"),
                     # int8's record has no `width` (it is the arch's 45 channels): not the 16-channel run
                     ("int8-w16=int8", "width: None"),
                     ("int8=int8-w48", "not a family"), ("int8-w40=int8-w48", "--adopt 'int8-w40'")):
        with pytest.raises(SystemExit, match=why):
            fronts.main(base + ["--adopt", bad])
    with pytest.raises(SystemExit, match="data: "):
        fronts.main(["--data", "data/speech_commands_subset", "--out", str(out), "--adopt", "int8-w48=int8-w48"])
    with pytest.raises(SystemExit, match="epochs: 40"):
        fronts.main(base + ["--epochs-float", "20", "--adopt", "int8-w48=int8-w48"])
    with pytest.raises(SystemExit, match="two steps"):
        fronts.main(base + ["--report", "--adopt", "int8-w48=int8-w48"])
    # a finished run of its own is not overwritten
    (out / "int8-w48-s0" / "metrics.json").write_text(json.dumps({"epochs": 40}))
    with pytest.raises(SystemExit, match="already holds a finished run"):
        fronts.main(base + ["--adopt", "int8-w48=int8-w48"])
    assert sorted(p.name for p in out.iterdir()) == ["int8-w48-s0"]


def test_the_last_equal_memory_budget_is_the_sprams_megabit():
    """The 48-channel int8 network (1,014,560 bits) is inside the 1 Mbit budget (2**20 bits, the
    iCEBreaker's SPRAM), as a deployable model of that size is; a model over it is not."""
    from kwsbnn.sw.tradeoff import EQUAL_MEMORY_BITS, budget_label, equal_memory
    rows = [{"kind": "8-bit", "weight_bits": 1_014_560, "accuracy": 0.875},
            {"kind": "8-bit", "weight_bits": 455_264, "accuracy": 0.85},
            {"kind": "8-bit", "weight_bits": 1_100_000, "accuracy": 0.9}]
    eq = equal_memory(rows)["8-bit"]
    assert eq[EQUAL_MEMORY_BITS[-1]] == 0.875 and eq[500_000] == 0.85 and eq[100_000] is None
    assert [budget_label(b) for b in EQUAL_MEMORY_BITS] == ["100 kbit", "200 kbit", "500 kbit", "1 Mbit"]


def _row(model, kind, bits, acc, front=False, ch=16):
    return {"model": model, "kind": kind, "weight_bits": bits, "activation_peak_bits": bits // 2,
            "accuracy": acc, "channels": ch, **({"front": "x"} if front else {})}


def test_the_plot_zooms_onto_the_fronts_and_labels_widths_only_there():
    """With fronts runs the figure gets a third panel whose axes hold exactly the fronts (their
    widths labelled there, not in the crowded overview); without them it stays two panels."""
    from kwsbnn.sw.tradeoff import tradeoff_figure
    rows = [_row("binary-direct", "binary (direct)", 117_000, 0.32),
            _row("int8-w16", "8-bit", 117_000, 0.78, front=True, ch=16),
            _row("int8-w32", "8-bit", 455_000, 0.85, front=True, ch=32),
            _row("redesign-w64", "binary (Bi-Real stream)", 118_000, 0.806, front=True, ch=64)]
    fig = tradeoff_figure(rows)
    overview, _, zoom = fig.axes
    lo, hi = zoom.get_ylim()
    assert lo <= 78 and hi >= 85 and lo > 32          # the fronts, not the direct model at 32%
    xlo, xhi = zoom.get_xlim()
    assert xlo <= 117 and xhi >= 455
    labels = lambda ax: {t.get_text() for t in ax.texts}
    assert {"16", "32", "64"} <= labels(zoom)
    assert not {"16", "32", "64"} & labels(overview) and "binary-direct" in labels(overview)
    assert len(tradeoff_figure([rows[0]]).axes) == 2
    import matplotlib.pyplot as plt
    plt.close("all")
