"""Choosing the folding: PE x SIMD per layer to meet a throughput target or a board budget.

:func:`for_target` gives every conv layer the fewest lanes whose matrix-vector unit finishes an
inference within ``target_cycles`` (balanced layers: none is much faster than it needs to be);
:func:`for_ips` does the same for inferences per second at a clock. (Fitting a board budget needs a
logic estimate calibrated against synthesis, which is not written yet.)
"""

from kwsbnn.errors import KwsError

from .cost import Folding, divisors, layer_costs
from .plan import plan


def _choices(p) -> list[tuple[int, int, int]]:
    """(lanes, pe, simd) for every legal folding of a conv layer, fewest lanes first.

    Among equal lane counts, wider SIMD first: one accumulator and threshold per PE is the costly part.
    """
    c_out = p.conv_shape[0]
    out = [(pe * simd, pe, simd) for pe in divisors(c_out) for simd in divisors(p.k)]
    return sorted(out, key=lambda x: (x[0], x[1]))


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
