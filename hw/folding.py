"""Choosing the folding: PE x SIMD per layer to meet a throughput target or a board budget.

:func:`for_target` gives every conv layer the fewest lanes whose matrix-vector unit finishes an
inference within ``target_cycles`` (balanced layers: none is much faster than it needs to be);
:func:`for_ips` does the same for inferences per second at a clock; :func:`for_budget` gives the
fastest balanced folding whose estimated resources (:mod:`kwsbnn.hw.resources`, calibrated against
synthesis) fit a board, and :func:`budget_check` says whether a given folding fits.
"""

from kwsbnn.errors import KwsError
from kwsbnn.units import kibit

from .cost import Folding, divisors, layer_costs
from .plan import plan


#: Widest XNOR-popcount per lane and cycle for a binary-input layer: a popcount is one adder tree
#: without registers, and 180 bits in one cycle held a whole ULX3S design to 51 MHz.
MAX_BINARY_SIMD = 64


def _choices(p) -> list[tuple[int, int, int]]:
    """(lanes, pe, simd) for every legal folding of a conv layer, fewest lanes first.

    Among equal lane counts, wider SIMD first: one accumulator and threshold per PE is the costly part.
    A binary-input layer's SIMD is at most :data:`MAX_BINARY_SIMD` unless nothing smaller divides.
    """
    c_out = p.conv_shape[0]
    simds = divisors(p.k)
    if p.in_prec == "bin" and any(s <= MAX_BINARY_SIMD for s in simds):
        simds = [s for s in simds if s <= MAX_BINARY_SIMD]
    out = [(pe * simd, pe, simd) for pe in divisors(c_out) for simd in simds]
    return sorted(out, key=lambda x: (x[0], x[1]))


def fold_choices(p) -> list[dict]:
    """Every folding of conv layer ``p`` that a board search weighs: PE x SIMD (:func:`_choices`),
    and for an int8 first layer whose pooling folds into it (:func:`kwsbnn.hw.network.boxsum_fits`)
    each of them with ``"boxsum": True`` too (int8 weights: at most 6 multipliers)."""
    from .network import boxsum_fits
    folds = [{"pe": pe, "simd": simd} for _, pe, simd in _choices(p)]
    if boxsum_fits(p):
        boxed = [dict(f, boxsum=True) for f in folds]
        # The stream's first layer pools only with its pooling folded in.
        folds = boxed if p.stream_out and p.pool else folds + boxed
    return folds


def for_target(dep, target_cycles: int) -> Folding:
    """The balanced folding whose matrix-vector units each take at most ``target_cycles``.

    A layer that cannot get there (even fully parallel) gets its fastest folding; the cost model then
    reports the cycles actually reachable.
    """
    convs, _ = plan(dep)
    layers = {}
    for p in convs:
        chosen = None
        for lanes, pe, simd in _choices(p):
            if p.window_positions * (p.conv_shape[0] // pe) * (p.k // simd) <= target_cycles:
                chosen = (pe, simd)
                break
        if chosen is None:
            chosen = (p.conv_shape[0], p.k)
        layers[p.name] = {"pe": chosen[0], "simd": chosen[1]}
    return Folding(layers)


def floor_cycles(dep) -> int:
    """Cycles per inference that no folding beats (window, pooling and tail units)."""
    full = Folding({p.name: {"pe": p.conv_shape[0], "simd": p.k} for p in plan(dep)[0]})
    costs = layer_costs(dep, full)
    return costs["cycles_per_inference"]


def for_ips(dep, ips: float, clock_hz: float) -> Folding:
    """The balanced folding for ``ips`` inferences per second at ``clock_hz``."""
    if ips <= 0:
        raise KwsError(f"--target-ips must be positive, got {ips}")
    target = int(clock_hz // ips)
    if target < 1:
        raise KwsError(f"{ips:g} inferences/s at {clock_hz / 1e6:g} MHz leaves less than one cycle each")
    return for_target(dep, target)


# ---------------------------------------------------------------------------------------------
# Fitting a board budget.

#: Share of each resource that :func:`for_budget` lets the estimate use by default, per family.
#: Block RAMs and DSPs are counted exactly. Logic keeps room for the estimate's error and for
#: routing: on iCE40 3% (whole designs came within 1-2% of nextpnr's count, and designs at 99% of
#: an iCE40UP5K have placed and routed); on ECP5 10% (a large design is harder to route and meet
#: timing; the estimate came 6-10% above nextpnr's count there).
DEFAULT_MARGIN = {
    "ice40": {"logic_cells": 0.97, "flip_flops": 0.97, "block_ram": 1.0, "dsp": 1.0, "spram": 1.0},
    "ecp5": {"logic_cells": 0.90, "flip_flops": 0.90, "block_ram": 1.0, "dsp": 1.0, "spram": 1.0},
}
_RESOURCES = ("logic_cells", "flip_flops", "block_ram", "dsp", "spram")


def resolve_budget(budget, margin: dict | float | None = None) -> dict:
    """``{"name", "family", "available": {...}, "limits": {...}}`` for a board name (a key of
    :data:`kwsbnn.hw.resources.BOARD_BUDGETS`) or a dict ``{"family", "logic_cells", "block_ram",
    "dsp", ["flip_flops"]}``; limits = available x margin (a number for every resource, or a dict
    per resource over the family's :data:`DEFAULT_MARGIN`)."""
    from .resources import BOARD_BUDGETS, FAMILIES
    if isinstance(budget, str):
        if budget not in BOARD_BUDGETS:
            raise KwsError(f"unknown board {budget!r} for a resource budget",
                           f"choose one of: {', '.join(BOARD_BUDGETS)}")
        name, raw = budget, BOARD_BUDGETS[budget]
    else:
        name, raw = budget.get("name", "budget"), dict(budget)
    family = raw.get("family")
    if family not in FAMILIES:
        raise KwsError(f"budget {name!r}: family must be one of {', '.join(FAMILIES)}, got {family!r}")
    if isinstance(margin, (int, float)):
        margins = {k: float(margin) for k in _RESOURCES}
    else:
        margins = dict(DEFAULT_MARGIN[family], **(margin or {}))
    for k, v in margins.items():
        if not 0 < v <= 1:
            raise KwsError(f"budget margin for {k} must be in (0, 1], got {v}")
    available = {k: int(raw[k]) for k in _RESOURCES if k in raw}
    limits = {k: int(available[k] * margins[k]) for k in available}
    return {"name": name, "family": family, "available": available, "limits": limits,
            "margin": {k: margins[k] for k in available}}


def _over(total: dict, limits: dict) -> list[str]:
    return [k for k, lim in limits.items() if k in total and total[k] > lim]


def _describe(total: dict, budget: dict) -> str:
    parts = []
    for k, lim in budget["limits"].items():
        if k in total:
            parts.append(f"{total[k]:,} {k.replace('_', ' ')} of {lim:,} allowed "
                         f"({budget['available'][k]:,} x {budget['margin'][k]:g})")
    return ", ".join(parts)


class _Search:
    """Per-layer candidates (every legal PE x SIMD) with their cycles and estimated resources."""

    def __init__(self, dep, budget: dict, link: bool, clk_hz: float):
        from .resources import LayerEstimator
        self.budget = budget
        self.est = LayerEstimator(dep, budget["family"])
        self.convs, self.tail = plan(dep)
        self.link = link
        self.clk_hz = clk_hz
        self.cands = {}
        for p in self.convs:
            rows = []
            for fold in fold_choices(p):
                try:
                    e = self.est.layer(p, fold)
                except ValueError:          # a unit refusing this folding
                    continue
                rows.append({"fold": fold, "cycles": e["cycles"], "est": e, "score": self.score(e)})
            self.cands[p.name] = rows

    def score(self, e: dict) -> float:
        """One number for a layer's size: its share of each limited resource, summed."""
        return sum(e.get(k, 0) / max(1, lim) for k, lim in self.budget["limits"].items())

    def total(self, choice: dict) -> dict:
        folding = Folding({name: row["fold"] for name, row in choice.items()})
        return self.est.network(folding, link=self.link, clk_hz=self.clk_hz)

    def fits(self, choice: dict) -> bool:
        return not _over(self.total(choice), self.budget["limits"])

    def smallest(self, rounds: int = 12):
        """``(choice, total)``: per layer the folding with the least weighted use of the limited
        resources, the weight of a resource doubling while the network overuses it (block RAM
        traded for logic or the reverse); ``(None, total)`` with the least overused total when no
        weighting fits."""
        limits = self.budget["limits"]
        w = {k: 1.0 for k in limits}
        worst = None
        for _ in range(rounds):
            def weighted(row):
                return sum(w[k] * row["est"].get(k, 0) / max(1, lim) for k, lim in limits.items())
            choice = {name: min(rows, key=lambda r: (weighted(r), r["cycles"]))
                      for name, rows in self.cands.items()}
            total = self.total(choice)
            over = _over(total, limits)
            if not over:
                return choice, total
            ratio = max(total[k] / max(1, limits[k]) for k in over)
            if worst is None or ratio < worst[0]:
                worst = (ratio, total)
            for k in over:
                w[k] *= 2
        return None, worst[1]


def for_budget(dep, budget, *, margin: dict | float | None = None, link: bool = True,
               clk_hz: float = 12e6, rate: float | None = None, engine: bool = True) -> Folding:
    """The fastest balanced folding whose estimated resources (:mod:`kwsbnn.hw.resources`) fit
    ``budget``: a board name (``icebreaker``, ``ulx3s-85f``) or a dict (see :func:`resolve_budget`),
    with ``margin`` of each resource usable (default: the family's :data:`DEFAULT_MARGIN`).
    ``link=True`` counts the board's UART and protocol logic, as ``kwsbnn build`` adds it
    (``clk_hz``: its clock, which sizes the UART and timeout counters). With ``rate`` (inferences
    per second at ``clk_hz``), the speed-up stops as soon as the network reaches it: the smallest
    folding found that is fast enough (or the fastest that fits, if none is).

    Start: every conv layer at its smallest folding (the fewest estimated resources, weighing the
    resources the network runs short of, :meth:`_Search.smallest`). Then, step by
    step, the bottleneck layer (most cycles per inference) moves to its next faster folding, the
    smallest speed-up that still fits; it stops when the bottleneck has no faster folding that
    fits, is held by a unit no folding speeds up (such as a sliding window), or is already as fast
    as the tail (global pooling, dense layer and argmax). Last, every other
    layer goes back to its smallest folding that keeps up with the bottleneck, each resource
    weighed by 1 / the headroom the network leaves of it. When no folding fits, the budget has
    SPRAM (the iCEBreaker) and ``engine`` is true: the fastest folding of the ``engine`` style that
    fits (:func:`engine_for_budget`). Raises :class:`KwsError` with the numbers when even the
    smallest folding does not fit.
    """
    from .plan import is_stream
    b = resolve_budget(budget, margin)
    if is_stream(dep):
        # Only the engine style runs the integer residual stream (with SPRAM, or block RAM on ECP5).
        if not (engine and (b["available"].get("spram") or b["family"] == "ecp5")):
            from .plan import STREAM_HINT, STREAM_REFUSAL, UnsupportedNetwork
            why = (f", which needs SPRAM or ECP5 block RAM ({b['name']} has neither)" if engine
                   else ", and the engine style is not allowed here")
            raise UnsupportedNetwork(f"model {dep.name}: {STREAM_REFUSAL}{why}", STREAM_HINT)
        return engine_for_budget(dep, b, link=link, clk_hz=clk_hz, rate=rate)
    s = _Search(dep, b, link, clk_hz)
    choice, total = s.smallest()
    if choice is None:
        engine_text = ""
        if engine and b["available"].get("spram"):
            try:
                return engine_for_budget(dep, b, link=link, clk_hz=clk_hz, rate=rate)
            except KwsError as e:
                engine_text = f"; in the engine style: {e.args[0]}"
        raise KwsError(f"model {dep.name} does not fit {b['name']} ({b['family']}) even at its smallest "
                       f"folding: estimated {_describe(total, b)}{engine_text}",
                       "use a smaller model (fewer channels or layers) or a larger FPGA")
    # The tail (global pooling, dense, argmax) takes the same cycles at every folding: no layer
    # needs to be faster than it.
    tail_cycles = layer_costs(dep, Folding({n: r["fold"] for n, r in choice.items()}))["layers"][-1]["cycles"]

    def network_ii(ch) -> int:
        """Cycles per inference of the whole network (with the last layer's stall while the
        scores unit computes, which per-layer cycles do not show)."""
        return layer_costs(dep, Folding({n: r["fold"] for n, r in ch.items()}))["cycles_per_inference"]

    enough = max(tail_cycles, int(clk_hz // rate)) if rate else None
    last_conv = list(choice)[-1]
    while True:
        name = max(choice, key=lambda n: choice[n]["cycles"])
        stalled = False
        if enough is not None:
            if network_ii(choice) <= enough:
                break
            if choice[name]["cycles"] <= enough:     # the last layer's stall is what is too slow
                name, stalled = last_conv, True
        current = choice[name]
        if current["cycles"] <= tail_cycles and not stalled:
            break
        faster = sorted((r for r in s.cands[name] if r["cycles"] < current["cycles"]),
                        key=lambda r: (-r["cycles"], r["score"]))
        for row in faster:
            trial = dict(choice, **{name: row})
            if s.fits(trial):
                choice = trial
                break
        else:
            break
    # Balance: the layers that are not the bottleneck take the smallest folding that keeps up,
    # "smallest" weighing each resource by 1 / its headroom in the network (on a nearly full
    # iCE40, logic cells count for more than block RAMs; on a roomy device all weigh about alike).
    ii = max(max(r["cycles"] for r in choice.values()), tail_cycles)
    ii_network = network_ii(choice)
    total = s.total(choice)
    weight = {k: 1.0 / (1.0 - min(0.99, total.get(k, 0) / max(1, lim))) for k, lim in b["limits"].items()}

    def weighted(row):
        return sum(weight[k] * row["est"].get(k, 0) / max(1, lim) for k, lim in b["limits"].items())
    for name, rows in s.cands.items():
        for row in sorted((r for r in rows if r["cycles"] <= ii), key=weighted):
            if weighted(row) >= weighted(choice[name]):
                break
            trial = dict(choice, **{name: row})
            if s.fits(trial) and network_ii(trial) <= ii_network:
                choice = trial
                break
    return Folding({name: dict(row["fold"]) for name, row in choice.items()})


def engine_for_budget(dep, budget, *, link: bool = True, clk_hz: float = 12e6,
                      rate: float | None = None, closest: bool = False) -> Folding:
    """The fastest folding of the ``engine`` style (:func:`kwsbnn.hw.cost.engine_folding`: every
    ``pe`` x ``simd`` of at most 64 lanes) whose estimate fits ``budget`` (a resolved budget, see
    :func:`resolve_budget`, with SPRAM); with ``rate``, the fewest lanes that reach it. Raises
    :class:`KwsError` with the numbers when the network is not one the engine runs, when its
    weights exceed the weight memory (four SB_SPRAM256KA: 16K words of 64 bits), or when no folding
    fits. An ECP5 budget gets the block-RAM engine instead (:func:`bram_engine_for_budget`)."""
    if budget["family"] == "ecp5":
        return bram_engine_for_budget(dep, budget, link=link, clk_hz=clk_hz, rate=rate, closest=closest)
    from .cost import engine_folding
    from .engine import SPRAM_WORDS, WORD_BITS
    from .plan import engine_split
    from .resources import LayerEstimator
    _, eng, _ = engine_split(dep)
    c = eng[0].in_shape[0]
    need = sum(p.conv_shape[0] * p.k for p in eng)
    have = SPRAM_WORDS * WORD_BITS if budget["available"].get("spram", 0) >= 4 else 0
    stream_bits = eng[0].in_shape[0] * eng[0].in_shape[1] * eng[0].in_shape[2] * 8 if eng[0].stream else 0
    if need + stream_bits > have:
        what = (f"the engine layers' weights ({kibit(need)}) and the integer stream's map "
                f"({kibit(stream_bits)}) are {kibit(need + stream_bits)}"
                if stream_bits else f"the engine layers' weights are {kibit(need)}")
        raise KwsError(f"{what}; the weight memory holds {kibit(have, ',.0f')} (4 SB_SPRAM256KA "
                       "of 256 Kibit)", "use fewer channels or layers")
    est = LayerEstimator(dep, budget["family"])
    front, _, _ = engine_split(dep)
    ring = 0
    if link:
        # The board top keeps its streaming ring in the weight memory's last words
        # (kwsbnn.boards.ring.SpramRing), one transfer per word.
        from .resources import RingUnit
        ring = RingUnit.for_model(dep).depth
    rows = []
    crowded = None
    for pe in divisors(c):
        for simd in divisors(c):
            if pe * simd > WORD_BITS:
                continue
            words = sum((p.conv_shape[0] // pe) * (p.k // simd) for p in eng)
            if words + stream_bits // WORD_BITS + ring > SPRAM_WORDS:
                crowded = words
                continue
            try:
                base = engine_folding(dep, pe, simd)
            except ValueError:
                continue
            engine_cycles = est.engine(base)["cycles"]
            # The front layers (the int8 first layer): each of their foldings with this engine,
            # a box-sum form's MVU on the window's held vector (as engine_folding builds it).
            fronts = [{}]
            for p in front:
                fronts = [dict(f, **{p.name: dict(fold, hold=True) if fold.get("boxsum") else fold})
                          for f in fronts for fold in fold_choices(p)
                          if p.layer["w_prec"] != "int8" or fold["pe"] * fold["simd"] <= 6]
            for fr in fronts:
                folding = Folding(dict(base.layers, **fr), style="engine")
                try:
                    total = est.network(folding, link=link, clk_hz=clk_hz)
                except ValueError:
                    continue
                front_cycles = max((est.layer(p, folding[p.name], folding.memory)["cycles"] for p in front),
                                   default=0)
                rows.append((front_cycles + engine_cycles, total["logic_cells"], folding, total))
    if not rows and crowded is not None:
        smap = stream_bits // WORD_BITS
        used = (f"the engine's weights ({crowded:,} words) and the integer stream's map ({smap:,})"
                if smap else f"the engine's weights ({crowded:,} words)")
        raise KwsError(f"{used} and the board's streaming ring ({ring:,}) take "
                       f"{crowded + smap + ring:,} of the {SPRAM_WORDS:,} SPRAM words",
                       "use fewer channels or layers, or a shorter input")
    fitting = [r for r in rows if not _over(r[3], budget["limits"])]
    if not fitting:
        def overuse(row):
            return max(row[3].get(k, 0) / max(1, lim) for k, lim in budget["limits"].items())
        least = min(overuse(r) for r in rows)
        # The fastest of those within 5% of the least overuse (a few cells more for 2-4x the speed).
        best = min((r for r in rows if overuse(r) <= least + 0.05), key=lambda r: (r[0], overuse(r)))
        if closest:
            return best[2]
        stream = f" and {kibit(stream_bits)} of stream map" if stream_bits else ""
        raise KwsError(f"estimated {_describe(best[3], budget)} at its engine folding closest to "
                       f"fitting ({kibit(need)} of weights{stream} in SPRAM)")
    if rate:
        fast = [r for r in fitting if r[0] <= clk_hz / rate]
        if fast:
            return min(fast, key=lambda r: (r[1], r[0]))[2]
    return min(fitting, key=lambda r: (r[0], r[1]))[2]


#: The most lanes (PE x SIMD) the block-RAM engine search offers: what builds within 15 minutes
#: with YoWASP on a 2-core machine. PE 4 x SIMD 576 (2,304 lanes, 64 EBR of weights; the whole
#: ULX3S design of ``binary`` 15.8k LUT4) places and routes in about 9 of its 11 minutes; PE 8 x
#: SIMD 576 (4,608 lanes, 128 EBR, 28.8k LUT4) fits the device by the estimate and by nextpnr's
#: packing, but had not routed after 30 minutes (router1: 119k of 128k arcs left after 20;
#: router2 no faster). A folding file (``--fold``) can still ask for more.
BRAM_ENGINE_MAX_LANES = 2304


#: The widest SIMD of an int8-input front layer in front of the block-RAM engine: at SIMD 9 its MVU
#: adds nine 12-bit box sums and the accumulator in one cycle, which held the ULX3S design of
#: ``binary`` to 59.4 MHz (nextpnr, PE 2 x SIMD 9); SIMD 3 (one kernel row) with more PE keeps up.
BRAM_FRONT_MAX_SIMD = 3


def bram_front_folds(p) -> list[dict]:
    """The foldings of front layer ``p`` that :func:`bram_engine_for_budget` weighs:
    :func:`fold_choices`, int8 inputs at SIMD up to :data:`BRAM_FRONT_MAX_SIMD`, int8 weights at
    most 6 multipliers."""
    return [f for f in fold_choices(p)
            if (p.in_prec != "int8" or f["simd"] <= BRAM_FRONT_MAX_SIMD)
            and (p.layer["w_prec"] != "int8" or f["pe"] * f["simd"] <= 6)]


def bram_engine_lanes(dep, max_lanes: int | None = BRAM_ENGINE_MAX_LANES) -> list[tuple[int, int]]:
    """Every ``(pe, simd)`` of the block-RAM engine (:class:`kwsbnn.hw.bram_engine.BramEngine`) for
    ``dep``: PE dividing 8 and the channels, SIMD dividing every engine layer's window (``kt kf
    C`` bits) and at least 8 (or the window, if smaller), at most ``max_lanes`` lanes (None: no
    limit)."""
    from .bram_engine import STREAM_LANES
    from .plan import engine_split
    _, eng, _ = engine_split(dep)
    c = eng[0].in_shape[0]
    ks = [p.k for p in eng]
    simds = [d for d in divisors(min(ks)) if all(k % d == 0 for k in ks) and d >= min(8, min(ks))]
    return [(pe, simd) for pe in divisors(c) if STREAM_LANES % pe == 0 for simd in simds
            if max_lanes is None or pe * simd <= max_lanes]


def bram_engine_for_budget(dep, budget, *, link: bool = True, clk_hz: float = 60e6,
                           rate: float | None = None, closest: bool = False,
                           max_lanes: int | None = BRAM_ENGINE_MAX_LANES) -> Folding:
    """The fastest folding of the block-RAM engine (``memory: bram``, an ECP5 budget: see
    :func:`resolve_budget`) whose estimate fits ``budget``, the board's UART and streaming ring
    included with ``link``: every engine ``pe`` x ``simd`` (:func:`bram_engine_lanes`) with every
    folding of the front layer, up to ``max_lanes`` (:data:`BRAM_ENGINE_MAX_LANES`: what builds
    within 15 minutes); per engine folding, the front with the fewest estimated resources that
    keeps up with the engine (else the fastest that fits). Cycles per inference are the
    slowest of the front and the engine (they overlap, :func:`kwsbnn.hw.cost.engine_costs`). With
    ``rate``, the fewest logic cells among the foldings that reach it. ``closest``: the folding
    closest to fitting instead of an error when none fits. Raises :class:`KwsError` naming the
    block RAM (EBR, DP16KD) with the numbers when the engine's memories alone exceed it, or with
    the whole estimate when no folding fits."""
    from .cost import engine_folding, engine_unit
    from .plan import engine_split
    from .resources import LayerEstimator, bram_tiles
    front, eng, _ = engine_split(dep)
    est = LayerEstimator(dep, budget["family"])
    have = budget["limits"].get("block_ram", 0)
    cands = []
    for pe, simd in bram_engine_lanes(dep, max_lanes):
        try:
            unit = engine_unit(dep, pe, simd, "bram")
        except ValueError:
            continue
        ebr = sum(bram_tiles(w, d, budget["family"]) for name, w, d, rom in unit.memories()
                  if name != "crom")
        cands.append((max(unit.compute_cycles, unit.input_cycles), ebr, pe, simd, unit))
    if not cands:
        raise KwsError(f"model {dep.name}: no folding of the block-RAM engine runs its layers",
                       "the engine needs a multiple of 8 channels")
    least = min(cands, key=lambda r: r[1])
    if least[1] > have:
        u = least[4]
        maps = sum(bram_tiles(w, d, budget["family"]) for name, w, d, rom in u.memories()
                   if name.startswith(("amap", "lmap")))
        smaps = sum(bram_tiles(w, d, budget["family"]) for name, w, d, rom in u.memories()
                    if name.startswith("smap"))
        raise KwsError(f"model {dep.name} does not fit the block RAM of {budget['name']}: the engine "
                       f"layers' weights ({kibit(u.weight_bits)}), the integer stream's two "
                       f"maps ({kibit(u.stream_map_bits)}) and its bit maps "
                       f"({kibit(u.map_bits)}) take at least {least[1]:,} EBR (DP16KD of "
                       f"18 Kibit; weights {least[1] - maps - smaps}, stream maps {smaps}, bit maps "
                       f"{maps}), {budget['name']} has {have:,}", "use fewer channels or layers, or a "
                       "shorter input")
    cands.sort(key=lambda r: (r[0], r[1]))
    fronts = [{}]
    for p in front:
        fronts = [dict(f, **{p.name: fold}) for f in fronts for fold in bram_front_folds(p)]
    limits = budget["limits"]
    rows, near = [], []
    for engine_cycles, _, pe, simd, unit in cands:
        if rows and not rate and engine_cycles > min(r[0] for r in rows):
            break                             # slower than a fitting folding already found
        base = engine_folding(dep, pe, simd, front={p.name: {"pe": 1, "simd": 1} for p in front},
                              memory="bram")
        trials = []
        for fr in fronts:
            folding = Folding(dict(base.layers, **fr), style="engine", memory="bram")
            try:
                front_cycles = max((est.layer(p, folding[p.name], folding.memory)["cycles"] for p in front),
                                   default=0)
                total = est.network(folding, link=link, clk_hz=clk_hz)
            except ValueError:
                continue
            cycles = max(front_cycles, engine_cycles)
            trials.append((cycles, total["logic_cells"], folding, total))
        fitting = [t for t in trials if not _over(t[3], limits)]
        near += trials
        if not fitting:
            continue
        fast = min(t[0] for t in fitting)
        # The smallest front that keeps up (the cycles of the fastest one that fits).
        rows.append(min((t for t in fitting if t[0] <= fast), key=lambda t: (t[1], t[0])))
    if not rows:
        def overuse(t):
            return max(t[3].get(k, 0) / max(1, lim) for k, lim in limits.items())
        best = min(near, key=lambda t: (overuse(t), t[0]))
        if closest:
            return best[2]
        raise KwsError(f"model {dep.name} does not fit {budget['name']} in the block-RAM engine "
                       f"style: estimated {_describe(best[3], budget)} at its folding closest to "
                       "fitting", "use fewer channels or layers")
    if rate:
        fast = [r for r in rows if r[0] <= clk_hz / rate]
        if fast:
            return min(fast, key=lambda r: (r[1], r[0]))[2]
    return min(rows, key=lambda r: (r[0], r[1]))[2]


def budget_check(dep, folding: Folding, budget, *, margin=None, link: bool = True,
                 clk_hz: float = 12e6) -> dict:
    """``{"board", "family", "estimate", "limits", "fits", "over": [resources]}``: whether
    ``folding`` fits ``budget`` by the estimate."""
    from .resources import estimate
    b = resolve_budget(budget, margin)
    est = estimate(dep, folding, b["family"], link=link, clk_hz=clk_hz)
    over = _over(est, b["limits"])
    return {"board": b["name"], "family": b["family"], "limits": b["limits"],
            "available": b["available"], "fits": not over, "over": over,
            "estimate": {k: est[k] for k in b["limits"] if k in est},
            "text": _describe(est, b)}
