"""The trade-off study: accuracy against weight memory and peak activation memory per model.

:func:`tradeoff` measures each model (accuracy on a split with the torch engine, or the test accuracy
recorded for it when no data folder is given: a shipped model's record, ``models/<name>.json``, as the
README's table reads it, else the model file's training figure) and its footprint (:mod:`.footprint`);
:func:`format_table` and :func:`plot_tradeoff` present the rows.
"""

import json
from pathlib import Path

from kwsbnn.errors import KwsError
from kwsbnn.units import KBIT, kbit

from .checkpoint import load_model, resolve_model
from .footprint import footprint
from .plots import save_figure

DEFAULT_MODELS = ("float", "int8", "int8-w48", "binary-direct", "binary-w24", "binary-sign-last", "binary-ice40",
                  "binary-wide", "binary-w64", "binary")
CHANCE = 1 / 12                   # 12 balanced-ish classes
ICEBREAKER_SPRAM_BITS = 1 << 20   # the budget of a deployable binary model (weights + integer maps)
# The equal-memory table's budgets; the last is the SPRAM's 1 Mbit (2**20 bits), which the 48-channel
# int8 network (1,014,560 bits) fits, as a deployable model must.
EQUAL_MEMORY_BITS = (100_000, 200_000, 500_000, ICEBREAKER_SPRAM_BITS)


def _kind(model) -> str:
    cfg = model.config
    if cfg.precision == "binary":
        if cfg.layout == "honk":
            return "binary (naive)"
        opts = cfg.options
        if opts.preset == "direct":
            return "binary (direct)"
        if opts.shortcut == "int":
            # More than the redesign's three binary layers: the deep redesign, a front of its own.
            return "binary (deep stream)" if cfg.layers > 3 else "binary (Bi-Real stream)"
        return "binary (redesign)"
    return {"float": "float", "int8": "8-bit"}[cfg.precision]


def best_within(rows: list[dict], bits: int) -> dict | None:
    """The most accurate of ``rows`` whose weights fit ``bits`` (at or below), or None: the point of
    a front at that memory (a front is a step function of weight bits)."""
    return max((r for r in rows if r["weight_bits"] <= bits), key=lambda r: r["accuracy"], default=None)


def equal_memory(rows: list[dict], points=EQUAL_MEMORY_BITS) -> dict:
    """Accuracy of each kind's front at equal weight memory: ``{kind: {bits: accuracy or None}}``.

    A kind's front is its most accurate model at or below each memory (:func:`best_within`);
    ``None`` where the kind has no model that small."""
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        out[kind] = {b: (best["accuracy"] if (best := best_within(mine, b)) else None) for b in points}
    return out


def front_runs(folder) -> dict:
    """The finished runs of a fronts study (``benchmarks/fronts.py``'s ``--out``: run folders
    ``<family>-w<width>-s<seed>`` with ``metrics.json`` and ``model.pt``): ``{name: model path}``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KwsError(f"--fronts {folder}: no such folder", "give the --out folder of benchmarks/fronts.py")
    runs = {p.parent.name: str(p.parent / "model.pt")
            for p in sorted(folder.glob("*-w*-s*/metrics.json")) if (p.parent / "model.pt").is_file()}
    if not runs:
        raise KwsError(f"--fronts {folder}: no finished run in it",
                       "train the fronts first: benchmarks/fronts.py --data DIR --out FOLDER")
    return runs


def recorded_accuracy(path, model) -> tuple[float | None, str]:
    """The test accuracy recorded for a model file, and where it comes from. A shipped model's record
    (the ``.json`` beside the ``.pt``) holds the figure its ``eval_command`` prints, the integer
    engine's, which the README's table shows too; otherwise the training run's figure in the file."""
    record = Path(path).with_suffix(".json")
    if record.is_file():
        acc = json.loads(record.read_text()).get("test_accuracy_on_subset_testing_list")
        if acc is not None:
            return acc, f"recorded in {record.name} (the subset's testing list)"
    return (model.metrics or {}).get("test_accuracy"), "recorded in the model file (test split)"


def tradeoff(refs, data=None, split: str = "test", progress=None, labels: dict | None = None) -> list[dict]:
    """One row per model reference (a path or a shipped name): accuracy, weight and activation bits.

    ``labels``: reference -> the name its row (and its point on the plot) carries instead."""
    from .evaluate import evaluate
    labels = labels or {}
    rows = []
    for ref in refs:
        path = resolve_model(ref)
        model = load_model(path)
        fp = footprint(model)
        if data is not None:
            if progress:
                progress(f"evaluating {ref} on the {split} split of {data}")
            acc, source = evaluate(model, data, split=split)["accuracy"], f"{split} split of {data}"
        else:
            acc, source = recorded_accuracy(path, model)
            if acc is None:
                raise KwsError(f"{ref}: the model file records no test accuracy",
                               "pass --data DIR to evaluate it")
        cfg = model.config
        rows.append({"model": labels.get(ref, str(ref)), "front": ref in labels,
                     "path": str(path), "kind": _kind(model),
                     "precision": cfg.precision, "arch": cfg.arch, "layout": cfg.layout,
                     "channels": cfg.channels, "accuracy": float(acc), "accuracy_source": source,
                     "weight_bits": fp["weight_bits"], "activation_peak_bits": fp["activation_peak_bits"]})
    # The references of the reduction columns: the shipped (or first named) float and 8-bit models,
    # not the fronts' narrow ones.
    ref_rows = {}
    for r in rows:
        if r["kind"] in ("float", "8-bit") and r["precision"] not in ref_rows and r["model"] not in labels.values():
            ref_rows[r["precision"]] = r
    for r in rows:
        if r["kind"] in ("float", "8-bit") and r["precision"] not in ref_rows:
            ref_rows[r["precision"]] = r
    for r in rows:
        for p, base in ref_rows.items():
            r[f"weight_reduction_vs_{p}"] = base["weight_bits"] / r["weight_bits"]
            r[f"accuracy_delta_vs_{p}"] = r["accuracy"] - base["accuracy"]
    return rows


def merge_seeds(rows: list[dict]) -> list[dict]:
    """One row per fronts run over its seeds: the rows of ``<run>-s<seed>`` (same network, same
    clips) become one row named ``<run>`` whose accuracy (and accuracy deltas) are the seeds' mean
    and ``seeds`` their list, in the place of the first; other rows pass unchanged."""
    groups = {}                                   # run (or a row's own id) -> [(seed, row)]
    for r in rows:
        base, _, seed = r["model"].rpartition("-s")
        key = base if r.get("front") and base and seed.isdigit() else id(r)
        groups.setdefault(key, []).append((seed, r))
    out = []
    for key, members in groups.items():
        if isinstance(key, int):                  # not a fronts run: unchanged
            out.append(members[0][1])
            continue
        seeds = [r for _, r in members]
        mean = {k: sum(r[k] for r in seeds) / len(seeds)
                for k in seeds[0] if k == "accuracy" or k.startswith("accuracy_delta_vs_")}
        out.append(dict(seeds[0], model=key, seeds=[int(s) for s, _ in members],
                        seed_accuracies=[r["accuracy"] for r in seeds], **mean))
    return out


def budget_label(bits: int) -> str:
    """A weight budget's name in the tables: ``"500 kbit"``, or ``"1 Mbit"`` for the SPRAM's 2**20 bits."""
    return "1 Mbit" if bits == ICEBREAKER_SPRAM_BITS else kbit(bits, ",.0f")


def format_equal_memory(rows: list[dict], points=EQUAL_MEMORY_BITS) -> str:
    """The equal-memory table as text: best accuracy of each kind within each weight budget."""
    eq = equal_memory(rows, points)
    head = f"{'best accuracy within':24s}" + "".join(f"{budget_label(b):>12s}" for b in points)
    lines = [head, "-" * len(head)]
    for kind, accs in eq.items():
        lines.append(f"{kind:24s}" + "".join(f"{(f'{100 * a:.1f}%' if a is not None else '-'):>12s}"
                                            for a in accs.values()))
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the rows."""
    head = f"{'model':18s} {'kind':18s} {'ch':>3s} {'accuracy':>8s} {'weights kbit':>12s} " \
           f"{'act. peak kbit':>14s} {'w. vs float':>11s} {'w. vs 8-bit':>11s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        vf = r.get("weight_reduction_vs_float")
        vi = r.get("weight_reduction_vs_int8")
        lines.append(f"{r['model'][:18]:18s} {r['kind']:18s} {r['channels']:3d} {r['accuracy']:8.3f} "
                     f"{kbit(r['weight_bits'], unit=False):>12s} "
                     f"{kbit(r['activation_peak_bits'], unit=False):>14s} "
                     f"{(f'{vf:.1f}x' if vf else '-'):>11s} {(f'{vi:.1f}x' if vi else '-'):>11s}")
    return "\n".join(lines)


COLORS = {"float": "tab:blue", "8-bit": "tab:green", "binary (naive)": "tab:red",
          "binary (direct)": "tab:orange", "binary (redesign)": "tab:purple",
          "binary (Bi-Real stream)": "tab:brown", "binary (deep stream)": "tab:pink"}


def _panel(ax, rows: list[dict], key: str, recommended: str, widths: bool, zoom: bool = False) -> None:
    """One panel: accuracy against ``key`` (bits, log x), a front line per kind, every model's point,
    model names beside their points and, if ``widths``, each fronts run's width beside its point.
    ``zoom``: the panel zoomed onto the fronts (the recommended model's name goes up-left there)."""
    for kind in dict.fromkeys(r["kind"] for r in rows):      # one front (line) per kind
        pts, best = [], -1.0          # the front: models more accurate than every smaller one
        for x, y in sorted((r[key] / KBIT, 100 * r["accuracy"]) for r in rows if r["kind"] == kind):
            if y > best:
                pts.append((x, y))
                best = y
        if len(pts) > 1:
            ax.plot(*zip(*pts), color=COLORS.get(kind, "gray"), alpha=0.5, zorder=2)
    shipped = {(r[key], r["accuracy"]) for r in rows if not r.get("front")}
    for r in rows:
        star = r["model"] == recommended
        ax.scatter(r[key] / KBIT, 100 * r["accuracy"], s=200 if star else (30 if r.get("front") else 60),
                   marker="*" if star else "o", color=COLORS.get(r["kind"], "gray"),
                   label=r["kind"], zorder=3, edgecolors="black" if star else "none")
        # A fronts run is labelled with its width only, below its point where the models' names go
        # above, and not at all under a shipped model (or in the overview panels: the zoom has them).
        if r.get("front") and (not widths or (r[key], r["accuracy"]) in shipped):
            continue
        text = f"{r['channels']}" if r.get("front") else r["model"] + (" (recommended)" if star else "")
        # Binary fronts' widths go right of their points, the others' below. The recommended model's
        # name goes below-right in the overview (the legend and the int8 front are up-left), up-left
        # in the zoom (the fronts pass through its memory on the right).
        if r.get("front"):
            xy, ha = ((5, 2) if r["kind"].startswith("binary") else (4, -10)), "left"
        elif star:
            xy, ha = ((-8, 5), "right") if zoom else ((6, -13), "left")
        else:
            xy, ha = (6, 4), "left"
        ax.annotate(text, (r[key] / KBIT, 100 * r["accuracy"]), textcoords="offset points", xytext=xy,
                    ha=ha, fontsize=7 if r.get("front") else 8)
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)


def tradeoff_figure(rows: list[dict], recommended: str = "binary"):
    """The trade-off figure: accuracy against weight memory and against peak activation memory
    (log x, 0-100%, with chance), and where there are fronts runs (``front`` rows) a third, wide
    panel below that zooms the weight-memory panel onto the fronts, with their widths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fronts = [r for r in rows if r.get("front")]
    fig = plt.figure(figsize=(11, 9 if fronts else 4.5))
    grid = fig.add_gridspec(2 if fronts else 1, 2)
    axes = [fig.add_subplot(grid[0, 0])]
    axes.append(fig.add_subplot(grid[0, 1], sharey=axes[0]))
    for ax, key, label in ((axes[0], "weight_bits", "weight memory (kbit, log)"),
                           (axes[1], "activation_peak_bits", "peak activation memory (kbit, log)")):
        _panel(ax, rows, key, recommended, widths=not fronts)
        ax.axhline(100 * CHANCE, color="gray", linestyle=":", linewidth=1)
        ax.text(0.01, 100 * CHANCE + 1, "chance", transform=ax.get_yaxis_transform(), fontsize=8,
                color="gray")
        ax.set_xlabel(label)
    axes[1].tick_params(labelleft=False)
    axes[0].set_ylim(0, 100)
    axes[0].set_ylabel("12-class accuracy (%), subset testing list")
    weight_axes = [axes[0]]
    if fronts:
        zoom = fig.add_subplot(grid[1, :])
        _panel(zoom, rows, "weight_bits", recommended, widths=True, zoom=True)
        xs = [r["weight_bits"] / KBIT for r in fronts]
        ys = [100 * r["accuracy"] for r in fronts]
        zoom.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
        zoom.set_ylim(min(ys) - 3, min(100, max(ys) + 3))
        zoom.set_xlabel("weight memory (kbit, log): the fronts, each point labelled with its width "
                        "(channels)")
        zoom.set_ylabel("accuracy (%)")
        weight_axes.append(zoom)
    for ax, y in zip(weight_axes, (0.45, 0.92)):      # the overview's top is crowded: its middle
        ax.axvline(ICEBREAKER_SPRAM_BITS / KBIT, color="black", linestyle="--", linewidth=1)
        ax.text(ICEBREAKER_SPRAM_BITS / KBIT, y, " iCEBreaker\n SPRAM 1 Mbit", fontsize=8,
                transform=ax.get_xaxis_transform(), va="top")
    from matplotlib.lines import Line2D
    kinds = list(dict.fromkeys(r["kind"] for r in rows))     # one plain marker per kind
    axes[0].legend([Line2D([], [], marker="o", linestyle="", color=COLORS.get(k, "gray")) for k in kinds],
                   kinds, loc="upper left", fontsize=8)
    fig.suptitle("Keyword spotting: accuracy against memory by precision")
    fig.tight_layout()
    return fig


def plot_tradeoff(rows: list[dict], path, recommended: str = "binary") -> Path:
    """Write :func:`tradeoff_figure` as a PNG at ``path``."""
    return save_figure(tradeoff_figure(rows, recommended), path)
