"""Evaluation: predict the class of every clip of a split with an engine, and score it.

Engines are functions ``engine(model, q) -> classes`` with ``q`` the int8 feature maps
``[N, T, F]`` (int8 values in a float32 tensor, the model's own quantizer applied) and ``classes`` an
int64 numpy array ``[N]``. :data:`ENGINES` holds them by name; ``torch`` is built in (the float model
runs in float, int8 and binary models run in the integer inference mode of
:mod:`kwsbnn.sw.integer`; a naive binary model in Honk's layout has no integer form and runs in its
float evaluation mode; ``float`` runs any model's float evaluation mode); other parts of the project add ``golden`` or ``rtl`` with
:func:`register_engine`.

Clips are in the split's stable order (:meth:`SpeechCommands.split`, sorted by label then path), the
same for every engine; a generated silence clip is named ``_silence_/<noise file>@<offset>x<gain>``.
"""

from pathlib import Path

import numpy as np
import torch

from kwsbnn.errors import KwsError

from .data import CLASSES, SpeechCommands, open_data
from .features import FeatureCache, FeatureConfig, FeatureQuantizer

ENGINES = {}


def register_engine(name: str, fn) -> None:
    """Make ``fn(model, q) -> classes`` available as ``--engine name``."""
    ENGINES[name] = fn


def has_integer_form(model) -> bool:
    """Whether the model has an integer inference mode (int8 or binary in the chain layout)."""
    return model.config.precision != "float" and model.config.layout == "chain"


def _torch_engine(model, q: torch.Tensor) -> np.ndarray:
    if not has_integer_form(model):     # float models, and naive binary (Honk layout) in float eval
        with torch.no_grad():
            model.eval()
            return model(q).argmax(1).numpy()
    from .integer import integer_forward, integer_spec
    spec = getattr(model, "_integer_spec", None)
    if spec is None:
        spec = model._integer_spec = integer_spec(model)
    scores, _ = integer_forward(spec, q)
    return torch.argmax(scores, dim=1).numpy()


def _float_engine(model, q: torch.Tensor) -> np.ndarray:
    """The model's own float evaluation mode (fake quantization for int8/binary): for comparisons."""
    with torch.no_grad():
        model.eval()
        return model(q).argmax(1).numpy()


register_engine("torch", _torch_engine)
register_engine("float", _float_engine)


def predict(model, q: torch.Tensor, engine: str = "torch", batch_size: int = 256) -> np.ndarray:
    """Classes ``[N]`` of the int8 feature maps ``q [N, T, F]`` under ``engine``."""
    if engine not in ENGINES:
        raise KwsError(f"unknown engine {engine!r}", f"use one of: {', '.join(sorted(ENGINES))}")
    fn = ENGINES[engine]
    out = []
    for i in range(0, len(q), batch_size):
        res = fn(model, q[i:i + batch_size])
        if isinstance(res, tuple):          # (classes, figures): an engine that reports more
            res, figures = res
            _merge_figures(figures)
        out.append(np.asarray(res, dtype=np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


FIGURES = {}


def _merge_figures(figures: dict) -> None:
    """Accumulate an engine's per-batch figures (agreement counts add; rates average by clips)."""
    if "agreement" in figures:
        agg = FIGURES.setdefault("agreement", {"equal": 0, "total": 0})
        agg["equal"] += figures["agreement"]["equal"]
        agg["total"] += figures["agreement"]["total"]
    for key in ("cycles_per_inference", "sim_cycles_per_second"):
        if figures.get(key) is not None:
            FIGURES.setdefault(f"_{key}", []).append((figures[key], figures["agreement"]["total"]))
            pairs = FIGURES[f"_{key}"]
            FIGURES[key] = sum(v * n for v, n in pairs) / max(1, sum(n for _, n in pairs))


def clip_name(ex, root) -> str:
    """A stable name for a clip: its path relative to the data folder, or a synthetic silence name."""
    if ex.path is None:
        return f"_silence_/{ex.noise}@{ex.offset}x{ex.gain}"
    try:
        return str(Path(ex.path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(ex.path)


def select(ds: SpeechCommands, split: str, limit: int | None = None) -> list:
    """The examples of ``split``, thinned evenly to ``limit``. ``all`` is every clip in the folder,
    whatever its layout: the canonical test set's files, or every file of the full archive (all
    unknown-word clips, not a balanced draw) with the generated silence of its three splits."""
    if split == "all":
        splits = ("test",) if ds.layout == "canonical" else ("train", "validation", "test")
        exs = sorted((e for s in splits for e in ds.pool(s)), key=lambda e: e.sort_key())
    else:
        exs = ds.split(split)
    if limit is not None and 0 < limit < len(exs):
        idx = np.unique(np.linspace(0, len(exs) - 1, limit).round().astype(int))
        exs = [exs[i] for i in idx]
    return exs


def quantized_features(model, ds: SpeechCommands, examples) -> torch.Tensor:
    """int8 feature maps of ``examples`` with the model's feature settings and quantizer."""
    meta = getattr(model, "meta", {}) or {}
    if not meta.get("features") or not meta.get("quantizer"):
        raise KwsError("the model file has no feature settings or quantizer", "retrain it with `kwsbnn train`")
    cfg = FeatureConfig.from_dict(meta["features"])
    feats = FeatureCache(cfg).get(examples, ds)
    return FeatureQuantizer.from_dict(meta["quantizer"]).quantize(feats)


def evaluate(model, data, split: str = "test", engine: str = "torch", limit: int | None = None,
             strict: bool | None = None) -> dict:
    """Accuracy, per-class accuracy, confusion matrix and the prediction of every clip.

    ``skipped`` counts and names the unusable WAV files of the folder; ``strict`` True makes them an
    error, False warns on stderr, None says nothing (the caller reports them).
    """
    from .skipped import check, summary
    ds = open_data(data)
    skipped = summary(ds.bad_files)
    if strict is not None:
        check(skipped, data, strict, "kwsbnn")
    examples = select(ds, split, limit)
    if not examples:
        raise KwsError(f"{data}: the {split} split is empty")
    classes = list((getattr(model, "meta", {}) or {}).get("classes") or CLASSES)
    q = quantized_features(model, ds, examples)
    FIGURES.clear()
    pred = predict(model, q, engine)
    labels = np.array([e.label for e in examples], dtype=np.int64)
    k = len(classes)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (labels, pred), 1)
    per_class = {c: (float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None)
                 for i, c in enumerate(classes)}
    mode = {"torch": "integer" if has_integer_form(model) else "float", "float": "float"}.get(engine, "integer")
    return {"accuracy": float((pred == labels).mean()), "n": len(examples), "split": split,
            "engine": engine, "mode": mode, "classes": classes, "per_class": per_class,
            "counts": {c: int(conf[i].sum()) for i, c in enumerate(classes)},
            "confusion": conf.tolist(), "predictions": [classes[i] for i in pred],
            "labels": [classes[i] for i in labels], "clips": [clip_name(e, ds.root) for e in examples],
            "skipped": skipped,
            **{k: v for k, v in FIGURES.items() if not k.startswith("_")}}


def plot_confusion(result: dict, path, title: str = "") -> Path:
    """Write the confusion matrix of an :func:`evaluate` result as a PNG (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    conf = np.asarray(result["confusion"])
    classes = result["classes"]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(conf, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(conf.shape[0]):
        for j in range(conf.shape[1]):
            if conf[i, j]:
                ax.text(j, i, str(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if conf[i, j] > conf.max() / 2 else "black")
    ax.set_title(title or f"{result['split']}: accuracy {result['accuracy']:.3f} ({result['engine']})")
    fig.tight_layout()
    from .plots import save_figure
    return save_figure(fig, path)

from . import engines as _engines  # noqa: E402,F401  (registers the golden engine)
