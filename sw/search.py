"""Hardware-aware architecture search: an Optuna multi-objective study over binary networks.

Objectives (in this order): validation accuracy (maximize), weight memory bits
(:func:`kwsbnn.sw.footprint.footprint`, minimize) and cycles per inference (the hardware cost model
with the default folding, :func:`kwsbnn.hw.cost.layer_costs`, minimize). The search space is
:func:`suggest` (docs/binary-guidelines.md says why each option is in it or fixed).

One trial (:class:`Objective`):
1. sample the options and turn them into one ``--binary-options`` text (every trial can be rerun
   with ``kwsbnn train --arch res8 --precision binary --binary-options TEXT``);
2. export the *untrained* candidate (random batch-norm statistics) and cost it: weight bits, cycles,
   memory bits, and with ``--budget board`` what the iCEBreaker runs it as (:func:`board_estimate`:
   the pipeline style where it fits, else the engine style with its weights, the integer stream map
   and the input ring in SPRAM; block RAMs, logic cells and DSPs by the calibrated resource
   estimate with the board's UART link); an integer-stream candidate (``shortcut=int``) is costed
   as the generator builds it, in the engine style (:func:`kwsbnn.hw.cost.engine_costs`); a
   network the hardware cannot build (:func:`kwsbnn.hw.plan.plan`, the engine's refusals, weights
   and stream map over the weight memory) or one over the budget is *rejected* with the numbers:
   state PRUNED with the user attribute ``rejected``, nothing trained;
3. train it into ``<out>/trials/<number>`` (``kwsbnn train``'s run folder), one schedule of
   ``--epochs``, reporting the validation accuracy of every epoch (user attribute ``val_curve``);
   at each rung of successive halving (:func:`rung_epochs`, :func:`rung_check`) it goes on only
   among the best 1/eta of the trials that reached the rung, else it stops (PRUNED); hopeless runs
   are pruned between rungs too (:func:`prune_reason`); Optuna's own pruners do not take
   multi-objective trials;
4. record ``test_accuracy``, ``model``, ``seconds`` and the costs as user attributes.

Refinement (:func:`refine`, ``kwsbnn search --refine K``): a trial's few epochs rank candidates,
but they do not train a model worth deploying, and they can mis-rank options whose worth shows only
after long training (an int8 last layer: docs/binary-guidelines.md). After the trials, the K most
accurate members of the Pareto front are trained again for ``--refine-epochs`` epochs with the
same options (and the teacher) into ``<out>/refined/<number>-<epochs>ep``; the results are the study's user
attribute ``refined``, and ``recommended`` is the refined model with the best validation accuracy.
An interrupted refinement resumes from its last epoch; a finished one is not repeated.

Storage: an Optuna RDB storage, by default ``sqlite:///<out>/study.db``; ``postgresql://...`` lets
workers on many machines share one study. Workers send heartbeats; a trial whose worker died
(heartbeat stale, or on this host its process gone) is marked FAIL and re-queued with the same
parameters, and the re-run resumes training from the dead trial's run folder.
"""

import json
import math
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kwsbnn.errors import KwsError

OBJECTIVES = ("val_accuracy", "weight_bits", "cycles")
DIRECTIONS = ("maximize", "minimize", "minimize")
BOARD = "icebreaker"
BOARD_EBRS = 30                     # iCE40UP5K: 30 EBRs of 4 Kibit
BOARD_MEMORY_BITS = BOARD_EBRS * 4096
BOARD_LOGIC_CELLS = 5280
BOARD_DSPS = 8
BOARD_SPRAM_BITS = 16384 * 64       # four SB_SPRAM256KA: 16K words of 64 bits (1 Mbit)
BOARD_CLOCK_HZ = 24e6               # the iCEBreaker build's clock (inferences per second)
WORD_BITS = 64                      # a weight-memory word of the layer engine (kwsbnn.hw.engine)
HEARTBEAT_INTERVAL = 30             # seconds between a running trial's heartbeats
GRACE_PERIOD = 120                  # a RUNNING trial without a heartbeat this long is failed
MAX_RETRY = 2

# Width and depth choices of the stages: full search and the tiny test search.
SPACE = {
    "full": {"widths": [16, 20, 24, 32, 48, 64, 96, 128], "depths": [1, 2, 3, 4, 5, 6]},
    "tiny": {"widths": [4, 8], "depths": [1, 2]},
}
SPACE_VERSION = 2                   # 2: shortcut none|bit|int, rsign, widths to 128, rungs
LR_BASE = {"adam": 2e-3, "sgd": 0.05}


def _log(msg: str):
    print(msg, file=sys.stderr, flush=True)


@dataclass
class SearchConfig:
    """Settings of a search (the ones in :data:`SETTINGS_KEYS` must agree when a study is resumed)."""
    data: str = ""
    trials: int = 20
    study: str = "kws"
    out: str = ""                    # study folder (default searches/<study>)
    storage: str | None = None       # default sqlite:///<out>/study.db
    budget: str = "board"            # board | bits:N | none
    epochs: int = 20
    teacher: str | None = None       # model reference, or None
    tiny: bool = False
    seed: int = 0
    batch_size: int = 64
    bn_batches: int = 20
    threads: int = 2
    pruner: str = "pareto"           # pareto | median | none
    prune_margin: float = 0.02
    prune_warmup: int = 2            # epochs before any pruning
    baseline: bool = True            # enqueue the shipped redesign's architecture as trial 0
    refine: int = 0                  # retrain this many front members after the trials
    refine_epochs: int = 0           # their epochs (default 5 x epochs)
    rungs: int = 3                   # successive halving: rungs of the schedule (1: none)
    eta: int = 3                     # 1 / eta of the trials at a rung go on to the next

    def folder(self) -> Path:
        return Path(self.out or f"searches/{self.study}")

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.folder() / 'study.db').resolve()}"

    def settings(self) -> dict:
        return {"budget": self.budget, "epochs": self.epochs, "tiny": self.tiny, "seed": self.seed,
                "batch_size": self.batch_size, "teacher": bool(self.teacher),
                "space_version": SPACE_VERSION, "rungs": rung_epochs(self.epochs, self.rungs, self.eta)}


def parse_budget(text: str) -> tuple[str, int | None]:
    """``board`` | ``bits:N`` | ``none`` -> (kind, N)."""
    text = (text or "board").strip().lower()
    if text in ("board", BOARD):
        return "board", None
    if text == "none":
        return "none", None
    if text.startswith("bits:"):
        try:
            n = int(float(text[5:]))
        except ValueError:
            n = 0
        if n > 0:
            return "bits", n
    raise KwsError(f"--budget {text!r}: not a budget", "use board, bits:N (a weight-bit cap) or none")


# ---------------------------------------------------------------------------------------------
# The search space


def suggest(trial, tiny: bool = False, epochs: int = 20, teacher: bool = False) -> dict:
    """Sample one candidate's options from ``trial`` (an Optuna trial); returns the options dict."""
    space = SPACE["tiny" if tiny else "full"]
    p = {}
    n_stages = trial.suggest_categorical("stages", [1, 2])
    stages = []
    for s in range(1, n_stages + 1):
        stages.append((trial.suggest_categorical(f"width{s}", space["widths"]),
                       trial.suggest_categorical(f"depth{s}", space["depths"])))
    p["stages"] = "-".join(f"{w}x{d}" for w, d in stages)
    p["pool"] = trial.suggest_categorical("pool", ["4x3", "2x3/2x1"])
    p["dilation"] = "on" if trial.suggest_categorical("dilation", [False, True]) else "off"
    p["shortcut"] = trial.suggest_categorical("shortcut", ["none", "bit", "int"])
    # RSign (a learned shift before each sign of the stream) only exists with the stream.
    p["rsign"] = trial.suggest_categorical("rsign", [True, False]) if p["shortcut"] == "int" else True
    p["first_weights"] = trial.suggest_categorical("first_weights", ["int8", "bin"])
    p["last"] = trial.suggest_categorical("last", ["bin", "int8"])
    p["bn"] = trial.suggest_categorical("bn", [True, False])
    p["clipped_ste"] = trial.suggest_categorical("clipped_ste", [True, False])
    p["ste_window"] = trial.suggest_categorical("ste_window", [0.5, 1.0, 2.0, 3.0])
    p["pad_bit"] = trial.suggest_categorical("pad_bit", [1, 0])
    p["optimizer"] = trial.suggest_categorical("optimizer", ["adam", "sgd"])
    p["schedule"] = trial.suggest_categorical("schedule", ["cosine", "linear", "constant"])
    factor = trial.suggest_float("lr_factor", 0.2, 5.0, log=True)
    p["lr"] = float(f"{LR_BASE[p['optimizer']] * factor:.3g}")
    p["distill"] = trial.suggest_categorical("distill", [0.0, 0.25, 0.5, 0.75]) if teacher else 0.0
    p["epochs"] = epochs            # every trial's schedule; the rungs decide how far it runs
    return p


def baseline_params(tiny: bool = False, epochs: int = 20, teacher: bool = False) -> dict:
    """The Optuna parameters of the guidelines' hand-designed network: the redesign preset at 20
    channels with six binary layers and every guideline on (the res8 that fits the iCEBreaker with
    the host-protocol top; the shipped ``binary`` model until a search found a better one)."""
    return seed_params(((8, 2),) if tiny else ((20, 6),), tiny, epochs, teacher)


# Networks every new full study trains after the baseline: fewer, wider binary layers (guideline 4
# against the iCEBreaker's logic cells, which grow with the number of layers), and the shipped
# `binary`'s integer-stream network at 64 and 96 channels (the engine style's).
STREAM = {"shortcut": "int", "rsign": True, "first_weights": "bin", "last": "int8", "dilation": True,
          "ste_window": 0.5, "pad_bit": 0, "lr_factor": 3.14}
SEEDS = ((((32, 3),), {}), (((48, 2),), {}), (((32, 4),), {}),
         (((64, 1), (64, 2)), STREAM), (((96, 1), (96, 2)), STREAM))


def seed_params(stages, tiny: bool = False, epochs: int = 20, teacher: bool = False, **over) -> dict:
    """The Optuna parameters of a network with every guideline on and the given ``(width, depth)``
    stages (``over``: other parameter values)."""
    p = {"stages": len(stages)}
    for s, (w, d) in enumerate(stages, start=1):
        p[f"width{s}"], p[f"depth{s}"] = w, d
    p.update({"pool": "4x3", "dilation": False, "shortcut": "bit", "first_weights": "int8", "last": "bin",
              "bn": True,
              "clipped_ste": True, "ste_window": 1.0, "pad_bit": 1, "optimizer": "adam",
              "schedule": "cosine", "lr_factor": 1.0})
    p.update(over)
    if teacher:
        p["distill"] = 0.7 if p["shortcut"] == "int" else 0.5
    return p


def options_text(p: dict) -> str:
    """The ``--binary-options`` text of a candidate's options."""
    keys = ("stages", "pool", "dilation", "shortcut", "first_weights", "bn", "clipped_ste", "ste_window",
            "pad_bit", "optimizer", "schedule", "lr", "distill")

    def fmt(v):
        return str(v).lower() if isinstance(v, bool) else str(v)
    sc = p["shortcut"]
    if isinstance(sc, bool):       # trials of space version 1: a bool
        sc = "bit" if sc else "none"
    text = "redesign," + ",".join(f"{k}={fmt(sc if k == 'shortcut' else p[k])}" for k in keys)
    if sc == "int" and p.get("rsign") is False:
        text += ",rsign=false"
    # Trials of studies from before the option existed have no "last": a binary last layer.
    return text + ",last=int8" if p.get("last") == "int8" else text


# ---------------------------------------------------------------------------------------------
# Costs of an untrained candidate


def candidate_costs(binary_text: str, input_shape=None, seed: int = 0, board: bool = True) -> dict:
    """Weight bits, cycles per inference, memory bits and, with ``board``, the iCEBreaker estimate of
    the untrained candidate (:func:`board_estimate`: the style it runs in, block RAMs, logic cells,
    DSPs, SPRAM bits).

    The candidate is exported with random batch-norm statistics (as the tests do) and int8
    activation ranges of 8.0, so that every threshold and multiplier is a real one. ``cycles`` is
    the pipeline's at the default folding, or with ``board`` the cycles of the style the board runs
    it in (the engine's at its board folding). ``stream_map_bits``: the integer residual stream's map
    (``shortcut=int``: channels x positions x 8 bits, in the weight memory after the weights), 0
    without it. A stream network is costed as the generator builds it (the engine style, its default
    folding: :func:`kwsbnn.hw.cost.engine_costs`); one whose weights and stream map exceed the weight
    memory (16K 64-bit words), which the engine cannot build, gets only its memory figures and
    ``hardware_error`` (:func:`over_budget` rejects it under every budget, with the numbers). Raises
    :class:`~kwsbnn.hw.plan.UnsupportedNetwork` for a network the hardware cannot build otherwise.
    """
    from kwsbnn.hw.plan import UnsupportedNetwork

    from .models import BinaryOptions, make_config
    from .data import CLASSES
    from .features import FeatureConfig

    if input_shape is None:
        fc = FeatureConfig()
        input_shape = [fc.frames, fc.n_features]
    try:
        opts = BinaryOptions.parse(binary_text)
        cfg = make_config("res8", "binary", opts, n_classes=len(CLASSES))
    except ValueError as e:
        raise UnsupportedNetwork(f"options {binary_text!r}: {e}") from None
    model, fp = _untrained(cfg, input_shape, seed)
    stream = opts.shortcut == "int"
    with tempfile.TemporaryDirectory() as tmp:
        dep = _deployable(model, tmp)
        out = {"weight_bits": int(fp["weight_bits"]), "activation_peak_bits": int(fp["activation_peak_bits"]),
               "binary_layers": cfg.layers, "channels": cfg.block_widths()}
        if stream:
            crowded = _stream_over_memory(dep, board)
            if crowded:
                return {**out, **crowded}
        costs = _layer_costs(dep)          # a stream network: the engine style's (its default folding)
        stream_bits = int(costs.get("stream_map_bits", 0))
        out.update({"cycles": int(costs["cycles_per_inference"]), "memory_bits": int(costs["memory_bits"]),
                    "hw_weight_bits": int(costs["weight_bits"]),
                    "lanes": int(costs["lanes"]), "bottleneck": costs["bottleneck"],
                    "stream_map_bits": stream_bits, "pipeline_cycles": int(costs["cycles_per_inference"])})
        if board:
            est = board_estimate(dep, stream_bits, stream=stream,
                                 pipeline_memory_bits=int(costs["memory_bits"]))
            if est.get("cycles"):
                out["cycles"] = est.pop("cycles")
            out.update(est)
    return out


def _stream_over_memory(dep, board: bool) -> dict | None:
    """A stream network's memory figures when its weights and stream map exceed the weight memory
    (the engine refuses to build it), else None. With ``board``, ``spram_bits`` also counts the
    board's streaming ring (one transfer per 64-bit word: :class:`kwsbnn.boards.ring.SpramRing`)."""
    from kwsbnn.hw.cost import engine_words
    from kwsbnn.hw.resources import RingUnit
    w = engine_words(dep)
    if w["memory_words"] <= w["spram_words"]:
        return None
    out = {"style": "engine", "spram_weight_bits": w["weight_words"] * WORD_BITS,
           "stream_map_bits": w["stream_words"] * WORD_BITS,
           "hardware_error": (f"the layer engine cannot build it: {w['weight_words']:,} weight words and "
                              f"{w['stream_words']:,} stream-map words exceed the {w['spram_words']:,} "
                              "words of the weight memory")}
    if board:
        ring = RingUnit.for_model(dep).depth
        out.update(spram_ring_bits=ring * WORD_BITS, spram_bits=(w["memory_words"] + ring) * WORD_BITS)
    return out


def _untrained(cfg, input_shape, seed: int):
    """The model of ``cfg`` with random batch-norm statistics, in evaluation mode, and its footprint."""
    import torch

    from .data import CLASSES
    from .footprint import footprint
    from .models import build_model, randomize_bn_stats
    from .quant import Int8Activation

    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model(cfg)
    model.meta = {"input_shape": list(input_shape), "classes": list(CLASSES)}
    randomize_bn_stats(model, gen)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Int8Activation):     # untrained: no range yet; a trained one's size
                m.running_max.fill_(8.0)
                m.initialized.fill_(True)
    return model, footprint(model)


def _deployable(model, folder):
    """The deployable model (loaded) of an untrained candidate."""
    from kwsbnn.hw.plan import UnsupportedNetwork

    from . import deploy
    from .integer import integer_spec
    try:
        spec = integer_spec(model, name="candidate")
    except KwsError as e:
        raise UnsupportedNetwork(f"candidate has no integer form: {e.message}") from None
    return deploy.load(deploy.save(spec, folder))


def _layer_costs(dep) -> dict:
    from kwsbnn.hw.cost import layer_costs
    from kwsbnn.hw.plan import UnsupportedNetwork
    try:
        return layer_costs(dep)
    except ValueError as e:
        raise UnsupportedNetwork(f"candidate: {e}") from None


def board_estimate(dep, stream_map_bits: int = 0, stream: bool = False,
                   pipeline_memory_bits: int = 0) -> dict:
    """What the iCEBreaker runs the candidate as, with the board's UART link and streaming ring
    (the calibrated resource estimate, :func:`kwsbnn.hw.resources.estimate`).

    ``style`` ``pipeline``: at the default folding, or, when that is over the iCEBreaker's logic,
    DSPs or block RAMs, at the pipeline folding ``kwsbnn build`` would choose
    (:func:`kwsbnn.hw.folding.for_budget`), if one fits. Otherwise (and always for an integer
    stream network: ``stream``) ``style`` ``engine``: the binary layers on the layer engine at the
    fastest engine folding that fits (:func:`kwsbnn.hw.folding.engine_for_budget`; when none fits,
    the default engine folding, for the figures, and ``engine_error`` says why). ``spram_bits``:
    the engine's weight words (64 bits each) + the integer stream map (``stream_map_bits``) +
    the streaming ring (its board top keeps the ring in the last words, one transfer per 64-bit
    word: 4,096 words for a 101 x 40 input), against :data:`BOARD_SPRAM_BITS`;
    ``cycles``: the engine style's cycles per inference. ``style`` ``none``: the engine cannot run
    the network either (``engine_error``)."""
    from kwsbnn.hw.cost import engine_costs, engine_folding, engine_memory
    from kwsbnn.hw.folding import engine_for_budget, for_budget, resolve_budget
    from kwsbnn.hw.plan import UnsupportedNetwork
    from kwsbnn.hw.resources import RingUnit, estimate

    def fits(r):
        return r["block_ram"] <= BOARD_EBRS and r["logic_cells"] <= BOARD_LOGIC_CELLS and r["dsp"] <= BOARD_DSPS

    def figures(r):
        return {"ebr": int(r["block_ram"]), "logic_cells": int(r["logic_cells"]), "dsp": int(r["dsp"])}

    pipeline = None
    if not stream:
        pipeline = estimate(dep, family="ice40", link=True)
        # A pipeline keeps every weight in block RAM: no folding fits one whose weights alone do not.
        hopeless = pipeline_memory_bits > BOARD_MEMORY_BITS
        if not fits(pipeline) and not hopeless:
            try:
                res = estimate(dep, for_budget(dep, "icebreaker", engine=False), family="ice40", link=True)
                if fits(res) or res["logic_cells"] < pipeline["logic_cells"]:
                    pipeline = res
            except KwsError:
                pass
        if fits(pipeline):
            return {"style": "pipeline", **figures(pipeline), "spram_bits": 0}
    ring = RingUnit.for_model(dep)
    error = None
    try:
        try:
            folding = engine_for_budget(dep, resolve_budget("icebreaker"), link=True, clk_hz=BOARD_CLOCK_HZ)
        except UnsupportedNetwork:
            raise
        except KwsError as e:
            error = e.message
            folding = engine_folding(dep)
        mem = engine_memory(dep, folding)
        res = estimate(dep, folding, family="ice40", link=True)
        cycles = engine_costs(dep, folding)["cycles_per_inference"]
    except (UnsupportedNetwork, ValueError) as e:
        why = e.message if isinstance(e, KwsError) else str(e)
        out = {"style": "none", "engine_error": f"the layer engine cannot run it: {why}",
               "spram_bits": 0}
        out.update(figures(pipeline) if pipeline else {"ebr": 0, "logic_cells": 0, "dsp": 0})
        return out
    weight_bits = mem["weight_words"] * WORD_BITS
    ring_bits = ring.depth * WORD_BITS      # SpramRing: one transfer per 64-bit word
    pipe = {f"pipeline_{k}": v for k, v in figures(pipeline).items()} if pipeline else {}
    out = {"style": "engine", **figures(res), **pipe, "cycles": int(cycles),
           "spram_bits": int(weight_bits + stream_map_bits + ring_bits), "spram_weight_bits": int(weight_bits),
           "spram_ring_bits": int(ring_bits), "engine_pe": folding[next(iter(folding.layers))]["pe"]}
    out["inferences_per_s"] = round(BOARD_CLOCK_HZ / max(1, cycles), 2)
    if error:
        out["engine_error"] = error
    return out


def over_budget(costs: dict, budget: str) -> str | None:
    """Why a candidate does not fit ``budget`` (None if it fits)."""
    kind, n = parse_budget(budget)
    if kind == "board":
        style = costs.get("style", "pipeline")
        if style == "none":
            return costs.get("engine_error", "neither style of the hardware runs it on the iCEBreaker")
        if style == "engine":
            if costs["spram_bits"] > BOARD_SPRAM_BITS:
                return (f"the layer engine needs {costs['spram_bits']:,} bits of SPRAM (weights "
                        f"{costs.get('spram_weight_bits', 0):,} + integer stream map "
                        f"{costs.get('stream_map_bits', 0):,} + input ring {costs.get('spram_ring_bits', 0):,}) "
                        f"> {BOARD_SPRAM_BITS:,} (16K 64-bit words)")
    if costs.get("hardware_error"):          # the generator cannot build it (candidate_costs)
        return costs["hardware_error"]
    if kind == "board":
        if costs["ebr"] > BOARD_EBRS:
            return (f"needs {costs['ebr']} block RAMs; the iCEBreaker's iCE40UP5K has {BOARD_EBRS} "
                    f"({costs['memory_bits']:,} memory bits)" + (" in the engine style" if style == "engine" else ""))
        if style == "pipeline" and costs["memory_bits"] > BOARD_MEMORY_BITS:
            return f"{costs['memory_bits']:,} memory bits > {BOARD_MEMORY_BITS:,} (30 EBRs of 4 Kibit)"
        if costs.get("logic_cells", 0) > BOARD_LOGIC_CELLS:
            return (f"needs about {costs['logic_cells']:,} logic cells; the iCE40UP5K has {BOARD_LOGIC_CELLS:,}"
                    + (" (engine style)" if style == "engine" else ""))
        if costs.get("dsp", 0) > BOARD_DSPS:
            return f"needs {costs['dsp']} DSPs; the iCE40UP5K has {BOARD_DSPS}"
        if style == "engine" and costs.get("engine_error"):
            return f"engine style: {costs['engine_error']}"
    elif kind == "bits" and costs["weight_bits"] > n:
        return f"{costs['weight_bits']:,} weight bits > the cap of {n:,}"
    return None


# ---------------------------------------------------------------------------------------------
# Successive halving over epochs


def rung_epochs(epochs: int, rungs: int = 3, eta: int = 3) -> list[int]:
    """The epochs at which a trial's run is judged: ``epochs / eta^k`` for ``k = rungs-1 .. 0``
    (rounded, at least 1, without repeats); the last is ``epochs`` (20 epochs, 3 rungs, eta 3:
    2, 7, 20)."""
    rungs, eta = max(1, int(rungs)), max(2, int(eta))
    return sorted({max(1, round(epochs / eta ** k)) for k in range(rungs)} | {epochs})


def pareto_layers(points: list[tuple]) -> list[int]:
    """Non-dominated sorting of ``(accuracy, weight bits, cycles)`` points (accuracy maximised, the
    costs minimised): each point's front number (0 = not dominated by any other point)."""
    def dominates(a, b):
        return a[0] >= b[0] and a[1] <= b[1] and a[2] <= b[2] and a != b
    layer = [None] * len(points)
    left, k = set(range(len(points))), 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left if j != i)}
        for i in front:
            layer[i] = k
        left -= front
        k += 1
    return layer


def promotion(point: tuple, others: list[tuple], eta: int) -> tuple[bool, int, int]:
    """Whether a trial at a rung goes on (asynchronous successive halving, as ASHA): ``point`` and
    ``others`` (the trials that reached this rung before it) are ``(accuracy, weight bits, cycles)``;
    they are ordered by Pareto front number, then accuracy, and the first ``max(1, n // eta)`` of
    the ``n`` go on. Returns ``(promoted, rank, n)`` (rank 0 = first; in a tie the trial that
    reached the rung first ranks first, so a crowd of trials at chance level does not all go on)."""
    pts = list(others) + [tuple(point)]
    layers = pareto_layers(pts)
    key = [(layers[i], -pts[i][0]) for i in range(len(pts))]
    rank = sum(1 for k in key[:-1] if k <= key[-1])
    n = len(pts)
    return rank < max(1, n // max(2, eta)), rank, n


def rung_competitors(trials, number: int, epoch: int) -> list[tuple]:
    """``(best accuracy up to epoch, weight bits, cycles)`` of the other trials that reached
    ``epoch`` (Optuna FrozenTrials with ``val_curve``; rejected ones have none)."""
    out = []
    for t in trials:
        curve = t.user_attrs.get("val_curve") or []
        if t.number == number or len(curve) < epoch or "weight_bits" not in t.user_attrs:
            continue
        out.append((max(curve[:epoch]), t.user_attrs["weight_bits"], t.user_attrs.get("cycles", 0)))
    return out


def rung_check(trial, epoch: int, curve: list, costs: dict, rungs: list, eta: int) -> str | None:
    """At a rung epoch (not the last), decide whether the running ``trial`` (an Optuna trial whose
    ``val_curve`` up to ``epoch`` is ``curve``) goes on: records its ``rung`` (index) and returns
    why it stops (also its ``pruned`` attribute) or None. The run itself is not touched: a promoted
    trial continues the same schedule from the same state."""
    if epoch not in rungs[:-1]:
        return None
    others = rung_competitors(trial.study.get_trials(deepcopy=False), trial.number, epoch)
    go, rank, n = promotion((max(curve[:epoch]), costs["weight_bits"], costs["cycles"]), others, eta)
    k = rungs.index(epoch)
    trial.set_user_attr("rung", k)
    if go:
        _log(f"trial {trial.number}: promoted at rung {k + 1} (epoch {epoch}): rank {rank + 1} of {n}")
        return None
    why = (f"not promoted at rung {k + 1} (epoch {epoch}): rank {rank + 1} of {n} at that rung; "
           f"the best {max(1, n // eta)} go on")
    trial.set_user_attr("pruned", why)
    _log(f"trial {trial.number}: {why}")
    return why


# ---------------------------------------------------------------------------------------------
# Pruning


def prune_reason(epoch: int, val: float, costs: dict, finished: list, cfg: SearchConfig,
                 epochs: int) -> str | None:
    """Why a run at ``epoch`` (1-based) with validation accuracy ``val`` is hopeless, or None.

    ``finished``: completed trials (Optuna FrozenTrials with ``val_curve``, ``weight_bits`` and
    ``cycles`` user attributes). Never prunes before ``cfg.prune_warmup`` epochs or at the last one.
    - ``pareto``: at least two finished trials cost no more (weight bits and cycles) and were more
      than ``prune_margin`` more accurate at the same epoch: the run is heading for a dominated point.
      (A median rule on accuracy alone would prune every small network, the very points a
      multi-objective search is after.)
    - ``median``: below the median of the finished trials' accuracy at this epoch (at least three).
    - both: at or below chance (1/12) after the warm-up.
    """
    if cfg.pruner == "none" or epoch < max(1, cfg.prune_warmup) or epoch >= epochs:
        return None
    if val <= 1.0 / 12:
        return f"validation accuracy {val:.3f} at epoch {epoch} is at chance level"
    at = []
    for t in finished:
        curve = t.user_attrs.get("val_curve") or []
        if len(curve) >= epoch:
            at.append((curve[epoch - 1], t))
    if cfg.pruner == "median":
        if len(at) >= 3:
            vals = sorted(v for v, _ in at)
            med = vals[len(vals) // 2] if len(vals) % 2 else 0.5 * (vals[len(vals) // 2 - 1] + vals[len(vals) // 2])
            if val < med:
                return f"validation accuracy {val:.3f} at epoch {epoch} < median {med:.3f} of {len(at)} trials"
        return None
    better = [t.number for v, t in at
              if t.user_attrs.get("weight_bits", math.inf) <= costs["weight_bits"]
              and t.user_attrs.get("cycles", math.inf) <= costs["cycles"] and v > val + cfg.prune_margin]
    if len(better) >= 2:
        return (f"dominated at epoch {epoch} (accuracy {val:.3f}) by trials {better[:5]}: as small, "
                f"as fast and more accurate at the same epoch")
    return None


# ---------------------------------------------------------------------------------------------
# Storage and study


def _quiet_optuna():
    """Optuna's experimental-feature warnings (heartbeats, constant liar) are noise for users."""
    import warnings

    import optuna
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)     # failures re-raise; interruptions re-queue


def open_storage(url: str):
    """An Optuna RDB storage with heartbeats and re-queueing of dead workers' trials."""
    import optuna
    _quiet_optuna()
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    kwargs = {}
    if url.startswith("sqlite"):
        path = url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"pool_pre_ping": True}
    from sqlalchemy.exc import IntegrityError, ProgrammingError
    try:
        for attempt in range(4):
            try:
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_INTERVAL,
                    grace_period=GRACE_PERIOD,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY))
            except (IntegrityError, ProgrammingError):
                # Workers starting together on an empty database race to create its tables.
                if attempt == 3:
                    raise
                time.sleep(1 + attempt)
    except (OperationalError, ArgumentError, NoSuchModuleError, ImportError, ValueError,
            IntegrityError, ProgrammingError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise KwsError(f"--storage {_safe_url(url)}: cannot open the study storage ({msg})",
                       "give sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB of a running "
                       "server") from None


def _safe_url(url: str) -> str:
    """The URL without its password."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return url


def load_study(storage, name: str, create: bool = False, sampler=None):
    import optuna
    if create:
        return optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS),
                                   sampler=sampler, load_if_exists=True)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise KwsError(f"no study {name!r} in the storage",
                       f"studies there: {', '.join(names) or '(none)'}") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_trials(study) -> list[int]:
    """Fail RUNNING trials whose worker is gone and re-queue them; return their numbers.

    On this host a worker is gone when its process is (checked at once); elsewhere when its
    heartbeat is older than the grace period (Optuna's stale-trial check)."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    host = socket.gethostname()
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY)
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        ua = t.user_attrs
        if ua.get("host") == host and isinstance(ua.get("pid"), int) and ua["pid"] != os.getpid() \
                and not _alive(ua["pid"]):
            try:
                storage.set_trial_user_attr(t._trial_id, "failed", "its worker process died")
                if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    retry(study, storage.get_trial(t._trial_id))
                    recovered.append(t.number)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    return recovered + sorted(after - before)


def requeue_interrupted(study) -> list[int]:
    """Re-queue the trials this process was running when it was interrupted (Ctrl-C): Optuna marks
    them FAIL; their re-runs continue from their run folders' last epoch."""
    import optuna
    from optuna.trial import TrialState

    _quiet_optuna()
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY)
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials}
    out = []
    for t in trials:
        ua = t.user_attrs
        if t.state == TrialState.FAIL and ua.get("pid") == os.getpid() \
                and ua.get("host") == socket.gethostname() and t.number not in retried:
            retry(study, t)
            out.append(t.number)
    if out:
        _log(f"interrupted: trials {out} re-queued; rerun the same command to continue")
    return out


# ---------------------------------------------------------------------------------------------
# The objective


class Objective:
    """One trial: sample, cost, reject or train (see the module docstring)."""

    def __init__(self, cfg: SearchConfig, progress: bool = False):
        self.cfg = cfg
        self.progress = progress

    def __call__(self, trial):
        import optuna
        from optuna.trial import TrialState

        from .train import TrainConfig, train

        cfg = self.cfg
        t_start = time.time()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        p = suggest(trial, tiny=cfg.tiny, epochs=cfg.epochs, teacher=bool(cfg.teacher))
        text = options_text(p)
        rungs = rung_epochs(p["epochs"], cfg.rungs, cfg.eta)
        trial.set_user_attr("binary_options", text)
        trial.set_user_attr("epochs", p["epochs"])
        # A re-queued trial (its worker died) continues in the dead trial's run folder.
        retry_of = trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial")
        run_dir = trial.user_attrs.get("run_dir") if retry_of is not None else None
        run_dir = Path(run_dir) if run_dir else cfg.folder().resolve() / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("val_curve", [])
        if retry_of is not None:
            trial.set_user_attr("retry_of", retry_of)
        _log(f"trial {trial.number}: {text}, epochs={p['epochs']}")
        try:
            costs = candidate_costs(text, seed=cfg.seed, board=parse_budget(cfg.budget)[0] == "board")
        except KwsError as e:         # UnsupportedNetwork and integer-form problems
            trial.set_user_attr("rejected", f"the hardware cannot build it: {e.message}")
            _log(f"trial {trial.number}: rejected ({e.message})")
            raise optuna.TrialPruned(f"rejected: {e.message}") from None
        for k, v in costs.items():
            trial.set_user_attr(k, v)
        reason = over_budget(costs, cfg.budget)
        if reason:
            trial.set_user_attr("rejected", reason)
            _log(f"trial {trial.number}: rejected before training: {reason}")
            raise optuna.TrialPruned(f"rejected: {reason}")
        _log(f"trial {trial.number}: {costs['weight_bits']:,} weight bits, {costs['cycles']:,} cycles, "
             + (f"{costs['style']} style, {costs['ebr']} EBR, " if "style" in costs else "")
             + f"rungs at epochs {rungs}; training in {run_dir}")

        tcfg = TrainConfig(data=cfg.data, arch="res8", precision="binary", binary=text,
                           epochs=p["epochs"], seed=cfg.seed, out=str(run_dir), batch_size=cfg.batch_size,
                           teacher=cfg.teacher if p["distill"] > 0 else None, bn_batches=cfg.bn_batches,
                           threads=cfg.threads)
        curve = []

        def on_epoch(entry):
            curve.append(float(entry["val_accuracy"]))
            trial.set_user_attr("val_curve", list(curve))
            why = rung_check(trial, entry["epoch"], curve, costs, rungs, cfg.eta)
            if why:
                trial.set_user_attr("seconds", time.time() - t_start)
                raise optuna.TrialPruned(why)
            finished = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            why = prune_reason(entry["epoch"], entry["val_accuracy"], costs, finished, cfg, p["epochs"])
            if why:
                trial.set_user_attr("pruned", why)
                trial.set_user_attr("seconds", time.time() - t_start)
                _log(f"trial {trial.number}: pruned: {why}")
                raise optuna.TrialPruned(why)

        resume = (run_dir / "state.pt").exists()
        if resume:
            import torch
            state = torch.load(run_dir / "state.pt", map_location="cpu", weights_only=False)
            curve.extend(float(h["val_accuracy"]) for h in state.get("history", []))
            trial.set_user_attr("val_curve", list(curve))
            trial.set_user_attr("resumed_from_epoch", len(curve))
        metrics = train(tcfg, resume=resume, progress=self.progress, on_epoch=on_epoch)
        seconds = time.time() - t_start
        trial.set_user_attr("val_curve", [float(h["val_accuracy"]) for h in metrics["history"]])
        for k in ("best_val_accuracy", "test_accuracy", "seconds_per_epoch", "final_train_accuracy"):
            trial.set_user_attr(k, metrics.get(k))
        trial.set_user_attr("model", str(run_dir / "model.pt"))
        trial.set_user_attr("seconds", seconds)
        trial.set_user_attr("rung", len(rungs) - 1)
        _log(f"trial {trial.number}: val {metrics['best_val_accuracy']:.3f} test "
             f"{metrics.get('test_accuracy', float('nan')):.3f} ({seconds:.0f} s)")
        return float(metrics["best_val_accuracy"]), float(costs["weight_bits"]), float(costs["cycles"])


# ---------------------------------------------------------------------------------------------
# The search


def counts(study) -> dict:
    from optuna.trial import TrialState
    out = {"complete": 0, "pruned": 0, "rejected": 0, "failed": 0, "running": 0, "waiting": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            out["complete"] += 1
        elif t.state == TrialState.PRUNED:
            out["rejected" if "rejected" in t.user_attrs else "pruned"] += 1
        elif t.state == TrialState.FAIL:
            out["failed"] += 1
        elif t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.state == TrialState.WAITING:
            out["waiting"] += 1
    out["finished"] = out["complete"] + out["pruned"] + out["rejected"]
    return out


def _check_inputs(cfg: SearchConfig):
    from .checkpoint import resolve_model
    from .data import open_data
    if cfg.trials < 1:
        raise KwsError("--trials must be at least 1")
    if cfg.epochs < 1:
        raise KwsError("--epochs must be at least 1")
    if cfg.refine < 0 or cfg.refine_epochs < 0:
        raise KwsError("--refine and --refine-epochs must not be negative")
    if cfg.rungs < 1 or cfg.eta < 2:
        raise KwsError("--rungs must be at least 1 and --eta at least 2")
    if cfg.pruner not in ("pareto", "median", "none"):
        raise KwsError(f"--pruner {cfg.pruner!r}", "use pareto, median or none")
    parse_budget(cfg.budget)
    open_data(cfg.data, seed=cfg.seed)          # a KwsError names a missing or empty folder
    if cfg.teacher:
        resolve_model(cfg.teacher)


def run_search(cfg: SearchConfig, progress: bool = False) -> dict:
    """Run (or continue, or join) the study until it has ``cfg.trials`` finished trials (complete,
    pruned or rejected; every worker's count). Returns a summary dict."""
    import optuna
    from optuna.trial import TrialState

    _check_inputs(cfg)
    folder = cfg.folder()
    folder.mkdir(parents=True, exist_ok=True)
    url = cfg.storage_url()
    storage = open_storage(url)
    sampler = optuna.samplers.TPESampler(n_startup_trials=5 if cfg.tiny else 10, constant_liar=True,
                                         multivariate=False)
    study = load_study(storage, cfg.study, create=True, sampler=sampler)
    settings = study.user_attrs.get("settings")
    if settings is None:
        study.set_user_attr("settings", cfg.settings())
        study.set_user_attr("created", time.strftime("%Y-%m-%d %H:%M:%S"))
    elif settings != cfg.settings():
        diff = {k: (settings.get(k), v) for k, v in cfg.settings().items() if settings.get(k) != v}
        raise KwsError(f"study {cfg.study!r} was started with other settings: "
                       + ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in diff.items()),
                       "use the same options to continue it, or another --study name")
    recovered = recover_dead_trials(study)
    if recovered:
        _log(f"study {cfg.study}: trials {recovered} were left RUNNING by a dead worker; failed and re-queued")
    if cfg.baseline and not study.trials:
        study.enqueue_trial(baseline_params(cfg.tiny, cfg.epochs, bool(cfg.teacher)), skip_if_exists=True)
        for stages, over in () if cfg.tiny else SEEDS:
            study.enqueue_trial(seed_params(stages, False, cfg.epochs, bool(cfg.teacher), **over),
                                skip_if_exists=True)
    c = counts(study)
    todo = cfg.trials - c["finished"] - c["running"]
    _log(f"study {cfg.study} in {_safe_url(url)}: {c['finished']} finished, {c['running']} running; "
         f"{max(0, todo)} to run here")
    t0 = time.time()
    if todo > 0:
        stop = optuna.study.MaxTrialsCallback(
            cfg.trials, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        try:
            study.optimize(Objective(cfg, progress), n_trials=todo, callbacks=[stop], gc_after_trial=True)
        except KeyboardInterrupt:
            requeue_interrupted(study)
            raise
    if cfg.refine:
        refine(study, cfg, progress)
    result = summary(study, cfg, url)
    result["seconds"] = time.time() - t0
    result["recovered"] = recovered
    from kwsbnn.paths import write_atomic
    write_atomic(folder / "search.json", json.dumps(result, indent=2, default=str) + "\n")
    return result


def refine_candidates(study, k: int) -> list:
    """The ``k`` most accurate completed trials of the Pareto front (ties: fewer weight bits)."""
    front = sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.number))
    return front[:k]


def refine(study, cfg: SearchConfig, progress: bool = False) -> dict:
    """Train the :func:`refine_candidates` again for ``cfg.refine_epochs`` epochs (module docstring);
    returns the study's ``refined`` record (trial number as a string -> result)."""
    from .train import train, TrainConfig

    epochs = cfg.refine_epochs or 5 * cfg.epochs
    record = dict(study.user_attrs.get("refined") or {})
    todo = refine_candidates(study, cfg.refine)
    for i, t in enumerate(todo, 1):
        key = str(t.number)
        done = record.get(key)
        if done and done.get("epochs") == epochs and Path(done.get("model", "")).is_file():
            _log(f"refine {i}/{len(todo)}: trial {t.number} already refined "
                 f"({done['epochs']} epochs, val {done['val_accuracy']:.3f})")
            continue
        text = t.user_attrs["binary_options"]
        run_dir = cfg.folder().resolve() / "refined" / f"{t.number:04d}-{epochs}ep"
        resume = (run_dir / "state.pt").exists()
        distill = float(t.params.get("distill", 0.0) or 0.0)
        _log(f"refine {i}/{len(todo)}: trial {t.number} (val {t.values[0]:.3f} after "
             f"{t.user_attrs.get('epochs')} epochs), {epochs} epochs in {run_dir}"
             + (" (resuming)" if resume else ""))
        t0 = time.time()
        tcfg = TrainConfig(data=cfg.data, arch="res8", precision="binary", binary=text, epochs=epochs,
                           seed=cfg.seed, out=str(run_dir), batch_size=cfg.batch_size,
                           teacher=cfg.teacher if distill > 0 else None, bn_batches=cfg.bn_batches,
                           threads=cfg.threads)
        metrics = train(tcfg, resume=resume, progress=progress)
        record[key] = {"number": t.number, "binary_options": text, "epochs": epochs,
                       "val_accuracy": float(metrics["best_val_accuracy"]),
                       "test_accuracy": metrics.get("test_accuracy"),
                       "trial_val_accuracy": float(t.values[0]), "weight_bits": t.user_attrs.get("weight_bits"),
                       "cycles": t.user_attrs.get("cycles"), "ebr": t.user_attrs.get("ebr"),
                       "model": str(run_dir / "model.pt"), "run_dir": str(run_dir),
                       "seconds": time.time() - t0, "host": socket.gethostname()}
        study.set_user_attr("refined", record)
        _log(f"refine {i}/{len(todo)}: trial {t.number}: val {record[key]['val_accuracy']:.3f} "
             f"(was {t.values[0]:.3f}), test {record[key]['test_accuracy'] or float('nan'):.3f}")
    return record


def refined_rows(study) -> list[dict]:
    """The study's refined models, most accurate (validation) first."""
    rows = list((study.user_attrs.get("refined") or {}).values())
    return sorted(rows, key=lambda r: (-r["val_accuracy"], r.get("weight_bits") or 0, r["number"]))


def trial_row(t) -> dict:
    """One trial as a plain dict (parameters, objectives, user attributes)."""
    ua = dict(t.user_attrs)
    row = {"number": t.number, "state": t.state.name, "params": dict(t.params),
           "binary_options": ua.get("binary_options"), "epochs": ua.get("epochs"),
           "val_accuracy": t.values[0] if t.values else None,
           "test_accuracy": ua.get("test_accuracy"), "weight_bits": ua.get("weight_bits"),
           "cycles": ua.get("cycles"), "memory_bits": ua.get("memory_bits"), "ebr": ua.get("ebr"),
           "activation_peak_bits": ua.get("activation_peak_bits"), "channels": ua.get("channels"),
           "binary_layers": ua.get("binary_layers"), "model": ua.get("model"), "run_dir": ua.get("run_dir"),
           "host": ua.get("host"), "seconds": ua.get("seconds"), "val_curve": ua.get("val_curve"),
           "rejected": ua.get("rejected"), "pruned": ua.get("pruned"), "rung": ua.get("rung"),
           "style": ua.get("style"), "spram_bits": ua.get("spram_bits"),
           "stream_map_bits": ua.get("stream_map_bits")}
    return row


def summary(study, cfg: SearchConfig | None = None, url: str | None = None) -> dict:
    """Counts, every trial and the Pareto front of ``study``."""
    from optuna.trial import TrialState
    front = pareto_numbers(study)
    trials = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    for r in trials:
        r["pareto"] = r["number"] in front
    refined = refined_rows(study)
    return {"study": study.study_name, "storage": _safe_url(url) if url else None,
            "folder": str(cfg.folder()) if cfg else None, "settings": study.user_attrs.get("settings"),
            "counts": counts(study), "pareto": [r for r in trials if r["pareto"]],
            "refined": refined, "recommended": refined[0] if refined else None, "trials": trials,
            "objectives": dict(zip(OBJECTIVES, DIRECTIONS)),
            "states": sorted({t.state.name for t in study.get_trials(deepcopy=False)
                              if t.state != TrialState.WAITING})}


def pareto_numbers(study) -> set:
    """Numbers of the completed trials on the Pareto front of the three objectives."""
    return {t.number for t in study.best_trials}
