"""The Pareto front of an architecture search: table, plots, shipped models alongside, export.

:func:`open_search` finds the study (a study folder's ``study.db``, or a storage URL and a name);
:func:`shipped_rows` measures the shipped models the trade-off study uses (weight bits from the
footprint, cycles from the cost model where the hardware builds the model); :func:`plot_pareto`
draws accuracy against weight memory and against cycles per inference; :func:`export_trial` writes
the deployable model of any trial that finished.
"""

from pathlib import Path

from kwsbnn.errors import KwsError
from kwsbnn.units import KBIT, kbit

from .search import _safe_url, load_study, open_storage, refined_rows, summary
from .plots import save_figure


def open_search(folder=None, storage: str | None = None, study: str | None = None):
    """``(study, url)`` from a study folder or a storage URL (and a study name if there are several)."""
    import optuna
    if storage is None:
        if folder is None:
            raise KwsError("no search given", "pass --dir DIR (a `kwsbnn search --out` folder) or "
                                              "--storage URL --study NAME")
        db = Path(folder) / "study.db"
        if not db.is_file():
            raise KwsError(f"{folder}: no study.db; not a search folder",
                           "give the --out folder of `kwsbnn search`, or --storage URL --study NAME")
        storage = f"sqlite:///{db.resolve()}"
    st = open_storage(storage)
    if study is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
        if len(names) != 1:
            raise KwsError(f"{_safe_url(storage)} holds {len(names)} studies: {', '.join(names) or '-'}",
                           "name one with --study NAME")
        study = names[0]
    return load_study(st, study), storage


def shipped_rows(refs=None, progress=None) -> list[dict]:
    """The shipped models (float, int8, binary-naive, binary; those present) as front-comparable rows.

    Accuracy: the validation and test accuracy recorded in each model file. Cycles: the cost model's,
    with the default folding, for models the hardware builds (binary redesigns); else None.
    """
    from kwsbnn.paths import MODELS

    from .checkpoint import load_model
    from .footprint import footprint
    from .tradeoff import DEFAULT_MODELS, _kind

    rows = []
    for ref in refs if refs is not None else DEFAULT_MODELS:
        if refs is None and not (MODELS / f"{ref}.pt").is_file():
            continue
        model = load_model(ref)
        metrics = model.metrics or {}
        row = {"model": str(ref), "kind": _kind(model), "weight_bits": footprint(model)["weight_bits"],
               "val_accuracy": metrics.get("best_val_accuracy"), "test_accuracy": metrics.get("test_accuracy"),
               "cycles": None, "ebr": None}
        if model.config.precision == "binary" and model.config.layout == "chain":
            try:
                from kwsbnn.hw.cost import layer_costs
                from kwsbnn.hw.resources import estimate

                from .export import deployable
                if progress:
                    progress(f"costing the shipped {ref} model")
                dep = deployable(str(ref))
                row["cycles"] = layer_costs(dep)["cycles_per_inference"]
                row["ebr"] = estimate(dep, family="ice40", link=True)["block_ram"]
            except KwsError:
                pass
        rows.append(row)
    return rows



def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def format_table(rows: list[dict], shipped: list[dict] | None = None) -> str:
    """A plain-text table of Pareto rows (and of the shipped models)."""
    head = (f"{'trial':>5s} {'val %':>6s} {'test %':>6s} {'weights kbit':>12s} {'cycles/inf':>10s} "
            f"{'EBR':>4s} {'epochs':>6s}  options")
    lines = [head, "-" * 100]
    for r in sorted(rows, key=lambda r: (r["weight_bits"] or 0)):
        opts = (r.get("binary_options") or "").removeprefix("redesign,")
        lines.append(f"{r['number']:5d} {_pct(r['val_accuracy']):>6s} {_pct(r['test_accuracy']):>6s} "
                     f"{kbit(r['weight_bits'], unit=False):>12s} {r['cycles'] or 0:10,d} {r['ebr'] or 0:4d} "
                     f"{r.get('epochs') or 0:6d}  {opts}")
    for s in shipped or []:
        cyc = f"{s['cycles']:10,d}" if s.get("cycles") else f"{'-':>10s}"
        ebr = f"{s['ebr']:4d}" if s.get("ebr") is not None else f"{'-':>4s}"
        lines.append(f"{'':5s} {_pct(s['val_accuracy']):>6s} {_pct(s['test_accuracy']):>6s} "
                     f"{kbit(s['weight_bits'], unit=False):>12s} {cyc} {ebr} {'':6s}  "
                     f"shipped {s['model']} ({s['kind']})")
    return "\n".join(lines)


def format_refined(rows: list[dict]) -> str:
    """A plain-text table of refined models (:func:`kwsbnn.sw.search.refine`), best first."""
    head = (f"{'trial':>5s} {'val %':>6s} {'test %':>6s} {'trial val %':>11s} {'weights kbit':>12s} "
            f"{'cycles/inf':>10s} {'epochs':>6s} {'seconds':>8s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['number']:5d} {_pct(r['val_accuracy']):>6s} {_pct(r.get('test_accuracy')):>6s} "
                     f"{_pct(r.get('trial_val_accuracy')):>11s} {kbit(r.get('weight_bits'), unit=False):>12s} "
                     f"{r.get('cycles') or 0:10,d} {r['epochs']:6d} {r.get('seconds') or 0:8.0f}")
    return "\n".join(lines)


def _front_2d(points):
    """The points (x, y) not dominated in (min x, max y), sorted by x."""
    best, out = -1.0, []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            out.append((x, y))
            best = y
    return out


OFFSETS = ((4, 4), (4, -11), (-4, 4), (-4, -11), (4, 14), (4, -21), (-4, 14), (-4, -21), (10, 24), (10, -31))


def _place_labels(ax, labels) -> list:
    """Annotate ``(x, y, text, fontsize)`` points, each at the first offset (points) whose estimated
    text box overlaps no label placed before (else the first offset); returns the boxes (points)."""
    import numpy as np
    fig = ax.figure
    fig.canvas.draw()                                   # the axes' final limits and transform
    scale = 72.0 / fig.dpi
    boxes = []
    for x, y, text, size in sorted(labels, key=lambda t: (t[0], t[1])):
        px, py = np.asarray(ax.transData.transform((x, y))) * scale
        w, h = 0.6 * size * len(text), 1.2 * size
        chosen = None
        for dx, dy in OFFSETS:
            left = px + dx - (w if dx < 0 else 0)
            box = (left, py + dy, left + w, py + dy + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes):
                chosen = (dx, dy, box)
                break
        if chosen is None:
            dx, dy = OFFSETS[0]
            chosen = (dx, dy, (px + dx, py + dy, px + dx + w, py + dy + h))
        dx, dy, box = chosen
        boxes.append(box)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=size,
                    ha="right" if dx < 0 else "left", va="bottom")
    return boxes


def plot_pareto(rows: list[dict], shipped: list[dict], path, accuracy: str = "val_accuracy",
                title: str = "", refined: list[dict] | None = None) -> Path:
    """Accuracy against weight memory and against cycles per inference (log x), one PNG.

    ``rows``: every completed trial (``pareto`` marks the three-objective front); ``refined``: the
    refined models, each drawn above its trial with an arrow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    colors = {"float": "tab:blue", "8-bit": "tab:green", "binary (naive)": "tab:red",
              "binary (redesign)": "tab:purple"}
    done = [r for r in rows if r.get(accuracy) is not None]
    for ax, key, label in ((axes[0], "weight_bits", "weight memory (kbit, log)"),
                           (axes[1], "cycles", "cycles per inference (default folding, log)")):
        pts = [(r[key] / (KBIT if key == "weight_bits" else 1), 100 * r[accuracy], r) for r in done
               if r.get(key)]
        ax.scatter([p[0] for p in pts if not p[2]["pareto"]], [p[1] for p in pts if not p[2]["pareto"]],
                   s=18, color="0.65", label="trial", zorder=2)
        front = [p for p in pts if p[2]["pareto"]]
        ax.scatter([p[0] for p in front], [p[1] for p in front], s=40, color="tab:orange",
                   edgecolor="black", label="Pareto front (3 objectives)", zorder=4)
        labels = [(x, y, str(r["number"]), 7) for x, y, r in front]
        line = _front_2d([(x, y) for x, y, _ in pts])
        if line:
            xs, ys = [], []
            for i, (x, y) in enumerate(line):
                if i:
                    xs.append(x)
                    ys.append(ys[-1])
                xs.append(x)
                ys.append(y)
            ax.plot(xs, ys, color="tab:orange", lw=1, alpha=0.7, zorder=3)
        for r in refined or []:
            acc = r.get(accuracy)
            trial_acc = r.get("trial_val_accuracy") if accuracy == "val_accuracy" else None
            if acc is None or not r.get(key):
                continue
            x = r[key] / (KBIT if key == "weight_bits" else 1)
            ax.scatter(x, 100 * acc, s=45, marker="D", color="tab:cyan", edgecolor="black",
                       label="refined (trained longer)", zorder=5)
            if trial_acc is not None:
                ax.annotate("", (x, 100 * acc), xytext=(x, 100 * trial_acc),
                            arrowprops={"arrowstyle": "->", "color": "tab:cyan", "lw": 1})
            labels.append((x, 100 * acc, f"{r['number']} ({r['epochs']} ep)", 7))
        for s in shipped:
            acc = s.get(accuracy)
            if acc is None or not s.get(key):
                continue
            x = s[key] / (KBIT if key == "weight_bits" else 1)
            ax.scatter(x, 100 * acc, s=70, marker="*", color=colors.get(s["kind"], "black"),
                       label=f"shipped: {s['kind']}", zorder=5)
            labels.append((x, 100 * acc, s["model"], 8))
        ax.set_xscale("log")
        _place_labels(ax, labels)
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"12-class {'validation' if accuracy == 'val_accuracy' else 'test'} accuracy (%)")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    axes[0].legend(handles, labels, loc="lower right", fontsize=7)
    fig.suptitle(title or "Architecture search: accuracy against memory and latency")
    which = ("validation accuracy (the search's objective; shipped models: their best validation "
             "accuracy), not the test accuracy given elsewhere") if accuracy == "val_accuracy" else \
        "test accuracy (the split's testing list)"
    fig.text(0.5, 0.01, f"y axis: {which}", ha="center", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save_figure(fig, path)


def search_title(study: str, counts: dict, front: int) -> str:
    """The plot's title: every trial the study ran, how each ended, and the front's size."""
    total = sum(counts.get(k, 0) for k in ("complete", "pruned", "rejected", "failed"))
    parts = [f"{counts.get('complete', 0)} complete"] + \
        [f"{counts[k]} {k if k != 'rejected' else 'rejected by the budget'}"
         for k in ("pruned", "rejected", "failed") if counts.get(k)]
    return f"Search {study}: {total} trials ({', '.join(parts)}), {front} on the Pareto front"


def report(study, url: str, out, accuracy: str = "val_accuracy", shipped: bool = True,
           progress=None) -> dict:
    """Write ``out/pareto.json`` and ``out/pareto.png``; return the report dict."""
    import json

    from kwsbnn.paths import write_atomic

    res = summary(study, url=url)
    done = [r for r in res["trials"] if r["state"] == "COMPLETE"]
    ship = shipped_rows(progress=progress) if shipped else []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"study": res["study"], "storage": res["storage"], "counts": res["counts"],
              "objectives": res["objectives"], "pareto": res["pareto"], "refined": res["refined"],
              "recommended": res["recommended"], "shipped": ship,
              "completed": done, "table": str(out / "pareto.json"), "plot": str(out / "pareto.png")}
    write_atomic(out / "pareto.json", json.dumps(result, indent=2, default=str) + "\n")
    plot_pareto(done, ship, out / "pareto.png", accuracy=accuracy, refined=res["refined"],
                title=search_title(res["study"], res["counts"], len(res["pareto"])))
    return result


def export_trial(study, number: int, to) -> tuple[Path, str]:
    """The deployable model of trial ``number`` in folder ``to``: its refined weights when the
    study has them (:func:`kwsbnn.sw.search.refine`), else the trial's own.
    Returns ``(folder, model file)``."""
    from optuna.trial import TrialState

    from .export import export

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise KwsError(f"study {study.study_name} has no trial {number}",
                       f"its trials are 0..{max(trials) if trials else -1}")
    t = trials[number]
    if t.state != TrialState.COMPLETE:
        why = t.user_attrs.get("rejected") or t.user_attrs.get("pruned") or t.state.name.lower()
        raise KwsError(f"trial {number} did not finish training ({why})",
                       "export a completed trial, e.g. one of the Pareto front")
    model = t.user_attrs.get("model")
    refined = next((r for r in refined_rows(study) if r["number"] == number), None)
    if refined and Path(refined["model"]).is_file():
        model = refined["model"]
    if not model or not Path(model).is_file():
        raise KwsError(f"trial {number}: model file {model} is not here (trained on host "
                       f"{t.user_attrs.get('host')})",
                       "run the export on that machine, or copy its trial folder to this path")
    return export(model, to), model
