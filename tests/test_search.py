"""Architecture search: the new architecture options, the block-RAM estimate, pruning, and a tiny
study end to end on fixture data (rejection before training, resume, re-queueing of a dead worker's
trial, the Pareto report and the export of a Pareto point that the golden model runs)."""

import json
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch

from fixtures import make_speech_commands
from kwsbnn.cli import main
from kwsbnn.sw import deploy
from kwsbnn.sw.models import BinaryOptions, ModelConfig, build_model, make_config
from kwsbnn.sw.search import (SearchConfig, candidate_costs, options_text, over_budget, prune_reason,
                              suggest)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_speech_commands(tmp_path_factory.mktemp("sc")).root


def _random_bn(model, seed=0):
    from kwsbnn.sw.models import randomize_bn_stats
    return randomize_bn_stats(model, torch.Generator().manual_seed(seed))


def test_stages_pooling_and_dilation_options_build_exact_integer_networks():
    """Two stages of different widths, a second pooling and dilation: the model, its integer form
    and the golden model agree, and the hardware plan accepts it."""
    from kwsbnn.hw.cost import layer_costs
    from kwsbnn.sw.golden import GoldenModel
    from kwsbnn.sw.integer import integer_forward, integer_spec

    opts = BinaryOptions.parse("redesign,stages=4x1-8x2,pool=2x3/2x1,dilation=on,first_weights=bin")
    cfg = make_config("res8", "binary", opts)
    assert cfg.layers == 3 and cfg.block_widths() == [4, 4, 8, 8]
    assert cfg.block_pools() == [(2, 3), None, (2, 1), None]
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    torch.manual_seed(0)
    model = _random_bn(build_model(cfg))
    model.meta = {"input_shape": [24, 12], "classes": [f"c{k}" for k in range(12)]}
    blocks = model.blocks
    assert [b.shortcut_scale is not None for b in blocks] == [False, True, False, True]
    assert [b.dilation for b in blocks[1:]] == [1, 1, 2]
    spec = integer_spec(model)
    q = torch.randint(-127, 128, (6, 24, 12)).float()
    scores, _ = integer_forward(spec, q)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        dep = deploy.load(deploy.save(spec, tmp))
        g = GoldenModel(dep).run(q.numpy().astype(np.int64)[:, None])
        assert np.array_equal(scores.numpy(), g.scores)
        assert layer_costs(dep)["cycles_per_inference"] > 0
    # defaults are unchanged: no per-block lists, the arch's geometry
    plain = make_config("res8", "binary", BinaryOptions.parse("redesign,width=24"))
    assert plain.widths is None and plain.pools is None and plain.block_widths() == [24] * 7
    with pytest.raises(ValueError, match="stage"):
        make_config("res8", "binary", BinaryOptions.parse("redesign,stages=8y2"))
    with pytest.raises(ValueError, match="dilation"):
        make_config("res8", "binary", BinaryOptions.parse("redesign,dilation=maybe"))
    with pytest.raises(ValueError, match="chain layout"):
        make_config("res8", "binary", BinaryOptions.parse("naive,stages=8x1-16x1"))


def test_block_ram_estimate_of_the_res8_that_fits_the_icebreaker():
    """The 24-channel binary res8 took 29 of the iCE40UP5K's 30 block RAMs (nextpnr) before the board
    top kept a streaming ring buffer (8 more: docs/host-protocol.md); the cost model's memory bits
    (55 kbit) alone would admit it. With the ring it no longer fits as a pipeline, so the board
    runs it in the engine style (weights in SPRAM); 16 channels still fit as a pipeline (24 EBRs)."""
    def memory_only(c):          # the logic-cell estimate, where present, is not under test here
        return {k: v for k, v in c.items() if k not in ("logic_cells", "dsp")}
    costs = candidate_costs("redesign,width=24")
    assert costs["pipeline_ebr"] == 29 + 8 and costs["memory_bits"] < 60_000
    assert costs["pipeline_cycles"] == 145_440
    as_pipeline = memory_only(costs) | {"style": "pipeline", "ebr": costs["pipeline_ebr"]}
    assert "block RAMs" in over_budget(as_pipeline, "board")
    assert costs["style"] == "engine" and costs["ebr"] <= 30 and over_budget(costs, "board") is None
    # the engine's cycles are the objective: what the board runs
    assert costs["cycles"] > costs["pipeline_cycles"] and costs["inferences_per_s"] > 25
    assert costs["spram_bits"] == costs["spram_weight_bits"] + costs["spram_ring_bits"]
    small = candidate_costs("redesign,width=16")
    assert small["style"] == "pipeline" and small["ebr"] == 24 and over_budget(memory_only(small), "board") is None
    assert "logic cells" in over_budget(memory_only(small) | {"logic_cells": 6000}, "board")
    assert over_budget(small, f"bits:{small['weight_bits'] - 1}") is not None
    assert over_budget(small, "none") is None


def test_search_space_gives_valid_options():
    """Every sample builds; the space holds the integer stream, RSign (with the stream only), the
    STE window and widths up to 128."""
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    seen = {"shortcut": set(), "rsign": set(), "ste_window": set(), "width": set()}
    for _ in range(60):
        t = study.ask()
        p = suggest(t, tiny=False, epochs=8, teacher=True)
        opts = BinaryOptions.parse(options_text(p))
        cfg = make_config("res8", "binary", opts)
        assert 1 <= cfg.layers <= 12 and p["epochs"] == 8 and p["distill"] in (0, 0.25, 0.5, 0.75)
        assert opts.shortcut == p["shortcut"] and opts.ste_window == p["ste_window"]
        assert ("rsign" in t.params) == (p["shortcut"] == "int") and opts.rsign == p["rsign"]
        seen["shortcut"].add(opts.shortcut)
        seen["ste_window"].add(opts.ste_window)
        seen["width"].update(cfg.block_widths())
        if opts.shortcut == "int":
            seen["rsign"].add(opts.rsign)
        study.tell(t, [0.5, 1.0, 1.0])
    assert seen["shortcut"] == {"none", "bit", "int"} and seen["rsign"] == {True, False}
    assert seen["ste_window"] == {0.5, 1.0, 2.0, 3.0} and {96, 128} <= seen["width"]
    # the seeds: the shipped `binary`'s stream network among them; every seed is in the space
    from kwsbnn.sw.search import SEEDS, SPACE, seed_params
    stream = [seed_params(st, **over) for st, over in SEEDS if over.get("shortcut") == "int"]
    assert {p["width1"] for p in stream} == {64, 96}
    for st, over in SEEDS:
        p = seed_params(st, **over)
        assert all(p[f"width{i}"] in SPACE["full"]["widths"] for i in range(1, p["stages"] + 1))


def test_board_budget_counts_the_integer_stream_map():
    """The engine style keeps the weights, the int8 stream map (channels x 325 positions x 8 bits at
    101x40 with 4x3 pooling, right after the weights) and the board's streaming ring (its last 4,096
    64-bit words, one int8 frame value per word: kwsbnn.boards.ring.SpramRing) in the 16K words of
    SPRAM, costed as the generator builds them. At 128 channels four binary layers build (weights
    and map 14,416 words) but do not fit the board with the ring (18,512); five exceed the weight
    memory itself (16,720): rejected under every budget with the numbers, never a traceback."""
    from kwsbnn.sw.search import BOARD_SPRAM_BITS
    base = "redesign,pool=4x3,first_weights=bin,last=int8,dilation=on,shortcut=int,stages="
    ring = 4096 * 64
    small = candidate_costs(base + "64x1-64x1")
    assert small["style"] == "engine" and small["stream_map_bits"] == 64 * 325 * 8 == 166_400
    assert small["spram_weight_bits"] == 2 * 9 * 64 * 64 and small["spram_ring_bits"] == ring
    assert small["spram_bits"] == 73_728 + 166_400 + ring <= BOARD_SPRAM_BITS
    assert "SPRAM" not in (over_budget(small, "board") or "") and "hardware_error" not in small
    four = candidate_costs(base + "128x1-128x3")
    assert four["stream_map_bits"] == 128 * 325 * 8 == 332_800 and "hardware_error" not in four
    assert four["style"] == "engine" and four["spram_weight_bits"] == 4 * 9 * 128 * 128 == 589_824
    assert four["spram_bits"] == 589_824 + 332_800 + ring == 1_184_768 > BOARD_SPRAM_BITS
    assert "1,184,768 bits of SPRAM" in over_budget(four, "board")
    assert over_budget(four, "none") is None           # the generator builds it (not for this board)
    five = candidate_costs(base + "128x1-128x4")
    assert five["spram_bits"] == 5 * 147_456 + 332_800 + ring == 1_332_224
    why = over_budget(five, "board")
    assert "1,332,224 bits of SPRAM" in why and "integer stream map 332,800" in why and "ring 262,144" in why
    # the hardware cannot build it at all: rejected whatever the budget, with the word counts
    for budget in ("none", "bits:800000"):
        assert "11,520 weight words and 5,200 stream-map words exceed the 16,384" in over_budget(five, budget)
    assert "11,520" in candidate_costs(base + "128x1-128x4", board=False)["hardware_error"]


def test_rungs_promote_the_best_fraction():
    """Successive halving on a fake objective (no training): rung epochs, Pareto-then-accuracy
    ranking, and an asynchronous study in which only the best 1/eta of each rung go on."""
    from kwsbnn.sw.search import pareto_layers, promotion, rung_check, rung_epochs
    assert rung_epochs(20, 3, 3) == [2, 7, 20] and rung_epochs(27, 3, 3) == [3, 9, 27]
    assert rung_epochs(1, 3, 3) == [1] and rung_epochs(4, 3, 2) == [1, 2, 4] and rung_epochs(9, 1, 3) == [9]
    # (accuracy, weight bits, cycles): the small one is on the front although least accurate
    pts = [(0.5, 100, 10), (0.4, 50, 10), (0.3, 100, 10), (0.45, 100, 10)]
    assert pareto_layers(pts) == [0, 0, 2, 1]
    assert promotion((0.9, 10, 10), [], 3) == (True, 0, 1)            # the first trial goes on
    assert promotion((0.3, 100, 10), pts[:2], 3) == (False, 2, 3)     # 3 at the rung: only 1 goes on
    assert promotion((0.6, 100, 10), pts, 2) == (True, 0, 5)
    assert promotion((0.45, 100, 10), pts[:3], 2)[0] is False          # rank 2 of 4: 2 go on

    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    rungs, eta = rung_epochs(9, 3, 3), 3                             # 1, 3, 9
    quality = [0.5, 0.3, 0.7, 0.2, 0.6, 0.4, 0.8, 0.1, 0.35]
    epochs_run = {}

    def objective(trial):
        q = quality[trial.number]
        costs = {"weight_bits": 1000, "cycles": 100}               # equal costs: accuracy decides
        trial.set_user_attr("weight_bits", 1000)
        trial.set_user_attr("cycles", 100)
        curve = []
        for epoch in range(1, rungs[-1] + 1):
            curve.append(q * epoch / rungs[-1])
            trial.set_user_attr("val_curve", list(curve))
            if rung_check(trial, epoch, curve, costs, rungs, eta):
                epochs_run[trial.number] = epoch
                raise optuna.TrialPruned()
        epochs_run[trial.number] = epoch
        return max(curve), 1000.0, 100.0

    study.optimize(objective, n_trials=len(quality))
    # asynchronous: a trial is judged against those that reached the rung before it
    assert epochs_run == {0: 9, 1: 1, 2: 9, 3: 1, 4: 1, 5: 1, 6: 9, 7: 1, 8: 1}
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert [t.number for t in done] == [0, 2, 6] and all(t.user_attrs["rung"] == 1 for t in done)  # passed rungs 0 and 1
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert all("not promoted at rung" in t.user_attrs["pruned"] for t in pruned)


def _done(number, curve, wb, cyc):
    return SimpleNamespace(number=number, user_attrs={"val_curve": curve, "weight_bits": wb, "cycles": cyc})


def test_pruning_rules():
    cfg = SearchConfig(prune_warmup=2, prune_margin=0.02)
    costs = {"weight_bits": 1000, "cycles": 500}
    small_good = [_done(1, [0.3, 0.5, 0.7], 900, 400), _done(2, [0.3, 0.45, 0.6], 1000, 500)]
    big_good = [_done(3, [0.3, 0.6, 0.8], 5000, 500), _done(4, [0.3, 0.6, 0.8], 900, 9000)]
    # dominated at epoch 2 by two trials that cost no more: pruned
    assert "dominated" in prune_reason(2, 0.3, costs, small_good + big_good, cfg, epochs=3)
    # better networks that cost more do not prune a small one (median on accuracy would)
    assert prune_reason(2, 0.3, costs, big_good, cfg, epochs=3) is None
    assert prune_reason(2, 0.3, costs, big_good + small_good[:1], cfg, epochs=3) is None
    # no pruning before the warm-up or at the last epoch; chance level is hopeless
    assert prune_reason(1, 0.01, costs, small_good, cfg, epochs=3) is None
    assert prune_reason(3, 0.01, costs, small_good, cfg, epochs=3) is None
    assert "chance" in prune_reason(2, 0.05, costs, [], cfg, epochs=3)
    med = SearchConfig(pruner="median")
    assert "median" in prune_reason(2, 0.4, costs, small_good + big_good, med, epochs=3)
    assert prune_reason(2, 0.4, costs, small_good + big_good, SearchConfig(pruner="none"), epochs=3) is None


def _storage(folder):
    from kwsbnn.sw.search import open_storage
    return open_storage(f"sqlite:///{folder / 'study.db'}")


def _search(data, folder, trials, *extra):
    return ["search", "--data", str(data), "--trials", str(trials), "--tiny", "--out", str(folder),
            "--threads", "1", "--budget", "bits:2500", "--json", *extra]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_tiny_search_end_to_end(data, tmp_path, capsys):
    from kwsbnn.sw.search import DIRECTIONS
    folder = tmp_path / "study"
    storage = _storage(folder)
    study = optuna.create_study(study_name="kws", storage=storage, directions=list(DIRECTIONS))
    # trial 0: eight channels in four int8-first-layer binary layers: over the 2,500-bit cap
    study.enqueue_trial({"stages": 2, "width1": 8, "depth1": 2, "width2": 8, "depth2": 2,
                         "first_weights": "int8", "shortcut": "bit"})
    # trial 1: a four-channel network with a binary first layer: under it
    small = {"stages": 1, "width1": 4, "depth1": 1, "first_weights": "bin", "shortcut": "bit",
             "bn": True, "pool": "4x3", "dilation": False}
    study.enqueue_trial(small)

    assert main(_search(data, folder, 3)) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["counts"]["finished"] == 3 and res["counts"]["rejected"] >= 1
    rows = {r["number"]: r for r in res["trials"]}
    assert rows[0]["state"] == "PRUNED" and "weight bits" in rows[0]["rejected"]
    assert rows[0]["weight_bits"] > 2500 and rows[0]["cycles"] > 0
    assert not (folder / "trials" / "0000").exists()              # rejected: nothing trained
    assert rows[1]["state"] == "COMPLETE" and rows[1]["weight_bits"] <= 2500
    assert (folder / "trials" / "0001" / "model.pt").is_file() and rows[1]["model"]
    assert rows[1]["test_accuracy"] is not None and rows[1]["seconds"] > 0
    assert len(rows[1]["val_curve"]) == 1
    t1 = optuna.load_study(study_name="kws", storage=storage).trials[1]
    assert t1.values[1] == t1.user_attrs["weight_bits"] and t1.values[2] == t1.user_attrs["cycles"]
    assert (folder / "search.json").is_file()
    # the recorded options retrain the same network with `kwsbnn train`
    assert make_config("res8", "binary", BinaryOptions.parse(rows[1]["binary_options"])).block_widths() == [4, 4]

    # A worker killed mid-trial left trial 3 RUNNING; the resumed search fails and re-queues it.
    study = optuna.load_study(study_name="kws", storage=storage)
    study.enqueue_trial(small | {"width1": 8})
    dead = study.ask()
    study._storage.set_trial_user_attr(dead._trial_id, "host", socket.gethostname())
    study._storage.set_trial_user_attr(dead._trial_id, "pid", _dead_pid())
    study._storage.set_trial_user_attr(dead._trial_id, "run_dir", str(folder / "trials" / "0003"))

    assert main(_search(data, folder, 5)) == 0                  # the same study, continued
    res = json.loads(capsys.readouterr().out)
    assert res["recovered"] == [3]
    rows = {r["number"]: r for r in res["trials"]}
    assert rows[3]["state"] == "FAIL" and rows[0]["state"] == "PRUNED" and rows[1]["state"] == "COMPLETE"
    retry = [r for r in rows.values() if r["number"] > 3 and r["run_dir"].endswith("0003")]
    assert len(retry) == 1 and retry[0]["state"] == "COMPLETE"
    assert retry[0]["params"].items() >= (small | {"width1": 8}).items()
    assert res["counts"]["finished"] == 5 and res["counts"]["failed"] == 1

    # resuming with other settings is refused
    assert main(_search(data, folder, 6, "--epochs", "2")) == 2
    assert "other settings" in capsys.readouterr().err

    # the Pareto report: table, JSON, PNG (shipped models alongside where present)
    out = tmp_path / "report"
    assert main(["report", "pareto", "--dir", str(folder), "--out", str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["pareto"] and all(r["state"] == "COMPLETE" for r in rep["pareto"])
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "pareto.json").read_text())["counts"]["finished"] == 5
    from kwsbnn.paths import MODELS
    if (MODELS / "binary.pt").is_file():
        shipped = {s["model"]: s for s in rep["shipped"]}
        assert shipped["binary-ice40"]["cycles"] > 0 and shipped["binary-ice40"]["weight_bits"] > 0

    # export a Pareto point: a deployable folder the golden model runs, equal to the torch model
    number = rep["pareto"][0]["number"]
    dest = tmp_path / "deployable"
    assert main(["report", "pareto", "--dir", str(folder), "--export", str(number), "--to", str(dest),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["deployable"] == str(dest)
    _golden_equals_torch(rep["pareto"][0]["model"], dest, data)

    assert main(["report", "pareto", "--dir", str(folder), "--export", "0", "--to", str(tmp_path / "x")]) == 2
    assert "did not finish training" in capsys.readouterr().err


def test_refine_trains_the_best_front_members_longer(data, tmp_path, capsys):
    """--refine K: the K most accurate front members trained again for --refine-epochs; recorded in
    the study, not repeated when the search is run again, shown by the report, exported."""
    from kwsbnn.sw.search import DIRECTIONS
    folder = tmp_path / "study"
    study = optuna.create_study(study_name="kws", storage=_storage(folder), directions=list(DIRECTIONS))
    small = {"stages": 1, "width1": 4, "depth1": 1, "first_weights": "bin", "shortcut": "bit",
             "bn": True, "pool": "4x3", "dilation": False}
    study.enqueue_trial(small)
    study.enqueue_trial(small | {"width1": 8, "shortcut": "none"})

    assert main(_search(data, folder, 2, "--refine", "1", "--refine-epochs", "2")) == 0
    res = json.loads(capsys.readouterr().out)
    front = sorted(res["pareto"], key=lambda r: (-r["val_accuracy"], r["weight_bits"], r["number"]))
    assert len(res["refined"]) == 1 and res["recommended"] == res["refined"][0]
    ref = res["refined"][0]
    assert ref["number"] == front[0]["number"] and ref["epochs"] == 2
    assert ref["binary_options"] == front[0]["binary_options"]
    assert ref["trial_val_accuracy"] == front[0]["val_accuracy"]
    metrics = json.loads((tmp_path / "study" / "refined" / f"{ref['number']:04d}-2ep" / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and metrics["best_val_accuracy"] == ref["val_accuracy"]

    # run again: nothing is retrained (the record and the model file are unchanged)
    model = tmp_path / "study" / "refined" / f"{ref['number']:04d}-2ep" / "model.pt"
    stamp = model.stat().st_mtime_ns
    assert main(_search(data, folder, 2, "--refine", "1", "--refine-epochs", "2")) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out)
    assert again["refined"] == res["refined"] and model.stat().st_mtime_ns == stamp
    assert "already refined" in captured.err

    # the report lists it; the export of that trial takes the refined weights
    out = tmp_path / "report"
    assert main(["report", "pareto", "--dir", str(folder), "--out", str(out), "--no-shipped"]) == 0
    text = capsys.readouterr().out
    assert "refined" in text and (out / "pareto.png").is_file()
    dest = tmp_path / "deployable"
    assert main(["report", "pareto", "--dir", str(folder), "--export", str(ref["number"]),
                 "--to", str(dest), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["model"] == ref["model"]
    _golden_equals_torch(ref["model"], dest, data)


def _golden_equals_torch(model_path, folder, data):
    from kwsbnn.sw.checkpoint import load_model
    from kwsbnn.sw.data import SpeechCommands
    from kwsbnn.sw.evaluate import quantized_features, select
    from kwsbnn.sw.golden import GoldenModel
    from kwsbnn.sw.integer import integer_forward, integer_spec

    model = load_model(model_path)
    ds = SpeechCommands(data)
    q = quantized_features(model, ds, select(ds, "test"))
    scores, _ = integer_forward(integer_spec(model), q)
    g = GoldenModel(folder).run(q.numpy().round().astype(np.int64)[:, None])
    assert np.array_equal(scores.numpy(), g.scores)


def test_search_errors(data, tmp_path, capsys):
    assert main(["search", "--data", str(tmp_path / "nope"), "--trials", "1", "--tiny",
                 "--out", str(tmp_path / "s")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["search", "--data", str(data), "--trials", "1", "--tiny", "--budget", "lots",
                 "--out", str(tmp_path / "s")]) == 2
    assert "not a budget" in capsys.readouterr().err
    assert main(["search", "--data", str(data), "--trials", "1", "--tiny", "--out", str(tmp_path / "s"),
                 "--storage", "postgresql://kws@127.0.0.1:1/none"]) == 2
    assert "cannot open the study storage" in capsys.readouterr().err
    assert main(["report", "pareto", "--dir", str(tmp_path)]) == 2
    assert "not a search folder" in capsys.readouterr().err


def test_interrupted_trial_is_requeued_once():
    """Ctrl-C: Optuna marks the running trial FAIL; the search re-queues it (same parameters) once."""
    from optuna.trial import TrialState

    from kwsbnn.sw.search import DIRECTIONS, requeue_interrupted
    study = optuna.create_study(directions=list(DIRECTIONS))
    t = study.ask({"width1": optuna.distributions.CategoricalDistribution([4, 8])})
    t.set_user_attr("pid", os.getpid())
    t.set_user_attr("host", socket.gethostname())
    t.set_user_attr("run_dir", "/somewhere/0000")
    study.tell(t, state=TrialState.FAIL)
    assert requeue_interrupted(study) == [0]
    assert requeue_interrupted(study) == []
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].params == t.params
    assert waiting[0].system_attrs["failed_trial"] == 0 and waiting[0].user_attrs["run_dir"] == "/somewhere/0000"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_tiny_search_with_rungs(data, tmp_path, capsys):
    """Successive halving end to end on fixture data: 5 trials of a 4-epoch schedule judged at
    epochs 1 and 2 (eta 2); a promoted trial continues its run (one schedule, no restart), the
    others stop at their rung; an integer-stream candidate trains."""
    from kwsbnn.sw.search import DIRECTIONS, promotion
    folder = tmp_path / "study"
    study = optuna.create_study(study_name="kws", storage=_storage(folder), directions=list(DIRECTIONS))
    small = {"stages": 1, "width1": 4, "depth1": 1, "first_weights": "bin", "bn": True, "pool": "4x3",
             "dilation": False, "optimizer": "adam", "schedule": "cosine", "clipped_ste": True}
    # (the integer stream: a multiple of 8 channels, one stream word)
    for lr, sc, w in ((1.0, "bit", 4), (0.2, "bit", 4), (5.0, "bit", 4), (1.0, "int", 8), (0.5, "none", 4)):
        study.enqueue_trial(small | {"lr_factor": lr, "shortcut": sc, "width1": w})
    assert main(_search(data, folder, 5, "--epochs", "4", "--rungs", "3", "--eta", "2",
                        "--pruner", "none")) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["settings"]["rungs"] == [1, 2, 4] and res["counts"]["finished"] == 5
    rows = sorted(res["trials"], key=lambda r: r["number"])
    assert rows[3]["binary_options"].count("shortcut=int") == 1 and rows[3]["val_curve"]
    for r in rows:
        if r["state"] == "COMPLETE":
            assert len(r["val_curve"]) == 4 and r["rung"] == 2
            metrics = json.loads((folder / "trials" / f"{r['number']:04d}" / "metrics.json").read_text())
            assert metrics["config"]["epochs"] == 4 and len(metrics["history"]) == 4
        else:
            assert r["state"] == "PRUNED" and "not promoted at rung" in r["pruned"]
            assert len(r["val_curve"]) in (1, 2)
    # every decision is the rule's on the trials that reached the rung before
    for r in rows:
        for k, epoch in enumerate((1, 2)):
            if len(r["val_curve"]) < epoch:
                continue
            before = [(max(o["val_curve"][:epoch]), o["weight_bits"], o["cycles"]) for o in rows
                      if o["number"] < r["number"] and len(o["val_curve"]) >= epoch]
            go = promotion((max(r["val_curve"][:epoch]), r["weight_bits"], r["cycles"]), before, 2)[0]
            assert go == (len(r["val_curve"]) > epoch), (r["number"], epoch)
    assert rows[0]["state"] == "COMPLETE"                  # the first trial meets no competitor
    assert sum(r["state"] == "PRUNED" for r in rows) >= 2   # at 4 and 5 trials, at most 2 go on
