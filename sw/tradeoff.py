"""The trade-off study: accuracy against weight memory and peak activation memory per model.

:func:`tradeoff` measures each model (accuracy on a split with the torch engine, or the test accuracy
recorded in the model file when no data folder is given) and its footprint (:mod:`.footprint`);
:func:`format_table` and :func:`plot_tradeoff` present the rows.
"""

from pathlib import Path

from kwsbnn.errors import KwsError

from .checkpoint import load_model, resolve_model
from .footprint import footprint
from .plots import save_figure

DEFAULT_MODELS = ("float", "int8", "binary-naive", "binary-w24", "binary-sign-last", "binary", "binary-wide")


def _kind(model) -> str:
    cfg = model.config
    if cfg.precision == "binary":
        return "binary (naive)" if cfg.layout == "honk" else "binary (redesign)"
    return {"float": "float", "int8": "8-bit"}[cfg.precision]


def tradeoff(refs, data=None, split: str = "test", progress=None) -> list[dict]:
    """One row per model reference (a path or a shipped name): accuracy, weight and activation bits."""
    from .evaluate import evaluate
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
            acc = (model.metrics or {}).get("test_accuracy")
            if acc is None:
                raise KwsError(f"{ref}: the model file records no test accuracy",
                               "pass --data DIR to evaluate it")
            source = "recorded in the model file (test split)"
        cfg = model.config
        rows.append({"model": str(ref), "path": str(path), "kind": _kind(model),
                     "precision": cfg.precision, "arch": cfg.arch, "layout": cfg.layout,
                     "channels": cfg.channels, "accuracy": float(acc), "accuracy_source": source,
                     "weight_bits": fp["weight_bits"], "activation_peak_bits": fp["activation_peak_bits"]})
    ref_rows = {r["precision"]: r for r in rows if r["kind"] in ("float", "8-bit")}
    for r in rows:
        for p, base in ref_rows.items():
            r[f"weight_reduction_vs_{p}"] = base["weight_bits"] / r["weight_bits"]
            r[f"accuracy_delta_vs_{p}"] = r["accuracy"] - base["accuracy"]
    return rows


def _kbit(bits: int) -> str:
    return f"{bits / 1000:,.1f}"


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the rows."""
    head = f"{'model':18s} {'kind':18s} {'ch':>3s} {'accuracy':>8s} {'weights kbit':>12s} " \
           f"{'act. peak kbit':>14s} {'w. vs float':>11s} {'w. vs 8-bit':>11s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        vf = r.get("weight_reduction_vs_float")
        vi = r.get("weight_reduction_vs_int8")
        lines.append(f"{r['model'][:18]:18s} {r['kind']:18s} {r['channels']:3d} {r['accuracy']:8.3f} "
                     f"{_kbit(r['weight_bits']):>12s} {_kbit(r['activation_peak_bits']):>14s} "
                     f"{(f'{vf:.1f}x' if vf else '-'):>11s} {(f'{vi:.1f}x' if vi else '-'):>11s}")
    return "\n".join(lines)


def plot_tradeoff(rows: list[dict], path) -> Path:
    """Accuracy against weight memory and against peak activation memory (log x), one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    colors = {"float": "tab:blue", "8-bit": "tab:green", "binary (naive)": "tab:red",
              "binary (redesign)": "tab:purple"}
    for ax, key, label in ((axes[0], "weight_bits", "weight memory (kbit, log)"),
                           (axes[1], "activation_peak_bits", "peak activation memory (kbit, log)")):
        for r in rows:
            ax.scatter(r[key] / 1000, 100 * r["accuracy"], s=60, color=colors.get(r["kind"], "gray"),
                       label=r["kind"], zorder=3)
            ax.annotate(r["model"], (r[key] / 1000, 100 * r["accuracy"]), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("12-class accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    axes[0].legend(uniq.values(), uniq.keys(), loc="lower right", fontsize=8)
    fig.suptitle("Keyword spotting: accuracy against memory by precision")
    fig.tight_layout()
    return save_figure(fig, path)
