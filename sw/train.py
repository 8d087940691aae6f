"""The training loop: one function, configuration as plain data.

:func:`train` (``TrainConfig``) does, per epoch ``e``: seed torch from ``(seed, e)``; for every
augmented training batch quantize the features with the model's int8 feature quantizer, compute
cross-entropy (label smoothing) plus, with a teacher, the distillation term
``distill * T^2 * KL(softmax(teacher / T) || softmax(student / T))``, step the optimizer and the
per-step learning-rate schedule (binary: clip latent weights to [-1, 1]); then (binary) re-estimate
batch-norm statistics on training batches, measure validation accuracy, keep the best model, and write
``state.pt`` (model, optimizer, scheduler, RNG states, epoch, best) atomically. ``resume=True``
continues from ``state.pt`` and gives the same result as an uninterrupted run. The best model goes to
``model.pt`` (see :mod:`kwsbnn.sw.checkpoint`) and the final figures to ``metrics.json``.
"""

import copy
import io
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from kwsbnn.errors import KwsError
from kwsbnn.paths import write_atomic

from .augment import Augmenter
from .checkpoint import load_model, model_payload, save_model
from .data import CLASSES, open_data
from .features import FeatureCache, FeatureConfig, FeatureQuantizer
from .loader import Batches, hash_seed
from .models import BinaryOptions, build_model, make_config, reestimate_bn

STATE_FORMAT = "kwsbnn-train-state"
STATE_VERSION = 1


@dataclass
class TrainConfig:
    """Every setting of a run (saved in ``state.pt`` and ``metrics.json``)."""
    data: str = ""
    arch: str = "res8"
    precision: str = "float"
    binary: str = "redesign"          # BinaryOptions.parse text (binary precision only)
    layout: str | None = None         # float only: honk (default) or chain
    width: int | None = None          # channels of every layer (None: the arch's); any precision
    epochs: int = 40
    seed: int = 0
    out: str = "runs/model"
    batch_size: int = 64
    optimizer: str = "sgd"            # float/int8; binary uses its options
    lr: float = 0.1
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    label_smoothing: float = 0.1
    dropout: float = 0.2
    spec_aug: dict = field(default_factory=lambda: dict(time_masks=2, time_width=12,
                                                        freq_masks=2, freq_width=5))
    teacher: str | None = None
    init: str | None = None           # model file whose weights start the run (two-step training)
    distill: float = 0.5              # used when a teacher is given (binary: its option)
    temperature: float = 4.0
    bn_batches: int = 20              # training batches for batch-norm re-estimation
    features: dict = field(default_factory=dict)   # FeatureConfig overrides
    threads: int = 2
    augment: dict = field(default_factory=dict)    # speed, reverb, vtlp (Augmenter), mixup (Beta alpha)
    unknown: float = 0.1              # training unknown clips per keyword clip (validation/test: 0.1)


def _log(msg: str):
    print(msg, file=sys.stderr, flush=True)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(s: dict):
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def _schedule(kind: str, total: int):
    if kind == "cosine":
        return lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
    if kind == "linear":
        return lambda t: max(0.0, 1 - t / total)
    if kind == "constant":
        return lambda t: 1.0
    raise KwsError(f"unknown schedule {kind!r}", "use cosine, linear or constant")


def _binary_latent(model) -> list:
    """Latent weights of binary convolutions (no weight decay, clipped to [-1, 1])."""
    out = []
    for m in model.modules():
        kq = getattr(m, "kernel_quantizer", None)
        if kq is not None and kq.prec == "bin":
            out.append(m.conv.weight if hasattr(m, "conv") else m.weight)
    return out


def _optimizer(model, kind: str, lr: float, wd: float):
    latent = {id(p) for p in _binary_latent(model)}
    decay = [p for n, p in model.named_parameters() if id(p) not in latent and p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if id(p) not in latent and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0},
              {"params": [p for p in model.parameters() if id(p) in latent], "weight_decay": 0.0}]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    if kind == "adam":
        return torch.optim.AdamW(groups, lr=lr)
    raise KwsError(f"unknown optimizer {kind!r}", "use sgd or adam")


@torch.no_grad()
def accuracy(model, batches: Batches, quantizer: FeatureQuantizer, device, epoch: int = 0) -> float:
    """Fraction of correct predictions of ``model`` (evaluation mode) on one pass of ``batches``."""
    model.eval()
    right = total = 0
    for x, y in batches.epoch(epoch):
        pred = model(quantizer.quantize(x).to(device)).argmax(1).cpu()
        right += int((pred == y).sum())
        total += len(y)
    return right / max(total, 1)


def _bn_batches(train_b: Batches, quantizer, device, epoch: int, n: int):
    it = train_b.epoch(10_000 + epoch)
    for i, (x, _) in enumerate(it):
        if i >= n:
            break
        yield quantizer.quantize(x).to(device)


def epoch_seconds(history: list[dict]) -> float | None:
    """Median wall time of an epoch in `history`: an epoch that spanned a pause does not inflate it."""
    return float(np.median([h["seconds"] for h in history])) if history else None


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None,
          progress: bool = True, on_epoch=None) -> dict:
    """Run (or resume) training; returns the metrics dict. ``stop_after`` ends the run after that
    many epochs of this call (simulates an interruption). ``on_epoch(entry)`` is called with each
    epoch's history entry after its state is saved (the search reports and prunes there; an
    exception it raises ends the run, which stays resumable)."""
    torch.set_num_threads(max(1, cfg.threads))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out)
    state_path = out / "state.pt"
    opts = BinaryOptions.parse(cfg.binary) if cfg.precision == "binary" else None

    ds = open_data(cfg.data, seed=cfg.seed, train_unknown_fraction=cfg.unknown)
    fcfg = FeatureConfig(**cfg.features)
    cache = FeatureCache(fcfg)
    extra = {k: v for k, v in cfg.augment.items() if k != "mixup"}
    unknown = set(extra) - set(AUGMENTS)
    if unknown:
        raise KwsError(f"unknown augmentation {', '.join(sorted(unknown))}",
                       f"known: {', '.join(AUGMENTS)} and mixup")
    aug = Augmenter(ds.noise_clips(), seed=cfg.seed, **extra)
    mixup = float(cfg.augment.get("mixup", 0.0))
    train_b = Batches(ds, "train", fcfg, aug, batch_size=cfg.batch_size, seed=cfg.seed,
                      spec_aug=cfg.spec_aug, drop_last=len(ds.split("train")) > 2 * cfg.batch_size)
    val_b = Batches(ds, "validation", fcfg, batch_size=256, cache=cache)

    state = None
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise KwsError(f"{state_path}: not a training state of this kwsbnn version",
                           "start a new run without --resume, or use another --out")
        if _comparable(state["train_config"]) != _comparable(_jsonable(asdict(cfg))):
            raise KwsError(f"{state_path}: was written with other settings",
                           "resume with the same options, or use another --out")
        quantizer = FeatureQuantizer.from_dict(state["quantizer"])
    else:
        quantizer = FeatureQuantizer.fit(cache.get(ds.split("train"), ds))

    try:
        mcfg = make_config(cfg.arch, cfg.precision, opts, n_classes=len(CLASSES), dropout=cfg.dropout,
                           layout=cfg.layout, width=cfg.width)
    except ValueError as e:
        raise KwsError(str(e), "see `kwsbnn train --help`") from None
    torch.manual_seed(cfg.seed)
    model = build_model(mcfg).to(device)
    model.meta = {"classes": list(CLASSES), "features": fcfg.to_dict(), "quantizer": quantizer.to_dict(),
                  "input_shape": [fcfg.frames, fcfg.n_features]}
    if cfg.init and state is None:
        _init_from(model, cfg.init)
    teacher = None
    if cfg.teacher:
        teacher = _teacher([load_model(t).to(device).eval() for t in cfg.teacher.split(",")])
        for t, ref in zip(teacher.members, cfg.teacher.split(",")):
            if t.meta.get("features") != model.meta["features"]:
                raise KwsError(f"{ref}: the teacher was trained on other features",
                               "use a teacher trained with the same feature settings")
    distill = (opts.distill if opts else cfg.distill) if teacher is not None else 0.0
    feat_distill = opts.feat_distill if opts else 0.0
    if feat_distill > 0:
        _check_feature_teacher(model, teacher)
    if opts:
        optimizer = _optimizer(model, opts.optimizer, opts.lr, cfg.weight_decay)
        sched_kind = opts.schedule
    else:
        optimizer = _optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay)
        sched_kind = cfg.schedule
    steps = cfg.epochs * len(train_b)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(sched_kind, steps))
    latent = _binary_latent(model)
    bn_reest = bool(opts and opts.bn_reestimate)

    start, best, history, best_state = 0, -1.0, [], None
    if state is not None:
        model.load_state_dict(state["model"]["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, best, history = state["epoch"], state["best"], state["history"]
        best_state = state["best_state"]
        _set_rng_state(state["rng"])
        _log(f"resuming {out} after epoch {start}")

    t_run = time.time()
    for epoch in range(start, cfg.epochs):
        if stop_after is not None and epoch - start >= stop_after:
            break
        t0 = time.time()
        torch.manual_seed(hash_seed(cfg.seed, epoch))
        model.train()
        right = total = 0
        loss_sum = 0.0
        bar = tqdm(train_b.epoch(epoch), total=len(train_b), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   file=sys.stderr, disable=not progress, leave=False)
        for x, y in bar:
            y = y.to(device)
            if mixup > 0:       # the teacher sees the same mixed input (consistent distillation)
                lam = float(np.random.default_rng(hash_seed(cfg.seed, epoch * 100_003 + total))
                            .beta(mixup, mixup))
                perm = torch.randperm(len(y))
                x = lam * x + (1 - lam) * x[perm]
                y2 = y[perm.to(device)]
            q = quantizer.quantize(x).to(device)
            if feat_distill > 0:
                logits, acts = model(q, return_activations=True)
            else:
                logits = model(q)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if mixup > 0:
                loss = lam * loss + (1 - lam) * F.cross_entropy(logits, y2,
                                                                label_smoothing=cfg.label_smoothing)
            if teacher is not None and distill > 0:
                with torch.no_grad():
                    t_logits = teacher(q)
                t = opts.temperature if opts else cfg.temperature
                kl = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(t_logits / t, 1),
                              log_target=True, reduction="batchmean") * t * t
                loss = (1 - distill) * loss + distill * kl
            if feat_distill > 0:
                with torch.no_grad():
                    _, t_acts = teacher.members[0](q, return_activations=True)
                loss = loss + feat_distill * attention_loss(acts, t_acts)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if opts and opts.clip_latent:
                with torch.no_grad():
                    for p in latent:
                        p.clamp_(-1, 1)
            right += int((logits.argmax(1) == y).sum())
            total += len(y)
            loss_sum += float(loss.detach()) * len(y)
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{right / total:.3f}")
        if bn_reest:
            reestimate_bn(model, _bn_batches(train_b, quantizer, device, epoch, cfg.bn_batches))
        val = accuracy(model, val_b, quantizer, device)
        secs = time.time() - t0
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(total, 1),
                        "train_accuracy": right / max(total, 1), "val_accuracy": val, "seconds": secs})
        _log(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss_sum / max(total, 1):.3f} "
             f"train {right / max(total, 1):.3f} val {val:.3f} ({secs:.1f} s)")
        if val > best:
            best = val
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            save_model(out / "model.pt", model, {"val_accuracy": val, "epoch": epoch + 1})
        _save_state(state_path, cfg, model, optimizer, scheduler, epoch + 1, best, best_state,
                    history, quantizer)
        if on_epoch is not None:
            on_epoch(dict(history[-1]))

    done = len(history) >= cfg.epochs
    metrics = {"arch": cfg.arch, "precision": cfg.precision, "epochs": len(history), "complete": done,
               "best_val_accuracy": best,
               "final_train_accuracy": history[-1]["train_accuracy"] if history else None,
               "final_val_accuracy": history[-1]["val_accuracy"] if history else None,
               "seconds_per_epoch": epoch_seconds(history),
               "total_seconds": float(sum(h["seconds"] for h in history)),
               "run_seconds": time.time() - t_run, "device": str(device),
               "steps_per_epoch": len(train_b), "optimizer_steps": len(history) * len(train_b),
               "model": str(out / "model.pt"), "config": _portable(_jsonable(asdict(cfg))),
               "history": history}
    if done and best_state is not None:
        best_model = build_model(mcfg)
        best_model.load_state_dict(best_state)
        best_model.meta = model.meta
        test_b = Batches(ds, "test", fcfg, batch_size=256, cache=cache)
        metrics["test_accuracy"] = accuracy(best_model.to(device), test_b, quantizer, device)
        metrics["binary_options"] = asdict(opts) if opts else None
        save_model(out / "model.pt", best_model,
                   {k: metrics[k] for k in ("best_val_accuracy", "test_accuracy", "seconds_per_epoch",
                                            "epochs", "final_train_accuracy")})
        write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


AUGMENTS = ("speed", "reverb", "vtlp", "time_shift_ms", "noise_prob")


class _teacher(torch.nn.Module):
    """One teacher model, or an ensemble whose logits are the mean of its members'."""

    def __init__(self, members):
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, q):
        return torch.stack([m(q) for m in self.members]).mean(dim=0)


def attention_loss(acts, teacher_acts) -> torch.Tensor:
    """Real-to-Binary's attention transfer: the mean over blocks of ``||a_s - a_t||^2``, where ``a``
    is a block output's spatial attention map (the channel mean of its square, flattened and
    L2-normalised per example), averaged over the batch."""
    total = 0.0
    for s, t in zip(acts, teacher_acts):
        a_s = F.normalize(s.float().square().mean(dim=1).flatten(1), dim=1)
        a_t = F.normalize(t.float().square().mean(dim=1).flatten(1), dim=1)
        total = total + (a_s - a_t).square().sum(dim=1).mean()
    return total / max(len(acts), 1)


def _check_feature_teacher(model, teacher) -> None:
    """Block-by-block distillation needs one teacher with the student's blocks (same output shapes)."""
    if teacher is None or len(teacher.members) != 1:
        raise KwsError("feat_distill needs exactly one --teacher",
                       "give one model of the same architecture, e.g. the real=true step-one model")
    t = teacher.members[0]

    def shapes(m):
        return [(b.cout, b.pool, b.dilation) for b in getattr(m, "blocks", [])]
    if not isinstance(t, type(model)) or shapes(t) != shapes(model):
        raise KwsError("feat_distill: the teacher's blocks do not match the student's "
                       f"(teacher {shapes(t) or type(t).__name__}, student {shapes(model)})",
                       "distil block by block from a model of the same architecture (same stages, "
                       "pooling and dilation), e.g. the real=true step-one model")


def _init_from(model, ref) -> None:
    """Copy every parameter and buffer of the model file ``ref`` into ``model`` (same shapes)."""
    src = load_model(ref)
    if type(src) is not type(model):
        raise KwsError(f"--init {ref}: a {src.config.layout}-layout model cannot start a "
                       f"{model.config.layout}-layout one", "give a model of the same layout and widths")
    mine, theirs = model.state_dict(), src.state_dict()
    wrong = [k for k in mine if k not in theirs or theirs[k].shape != mine[k].shape]
    if wrong:
        raise KwsError(f"--init {ref}: its layers do not match this network ({', '.join(wrong[:4])})",
                       "use the same --arch and the same width/stages options as step one")
    model.load_state_dict(theirs)
    _log(f"initialised from {ref}")


def _portable(config: dict) -> dict:
    """The run's settings with portable paths (kwsbnn.sw.provenance), as model records keep them."""
    from .provenance import portable
    return portable({"config": config})["config"]


def _comparable(d: dict) -> dict:
    """The settings that must not change on resume (thread count may; a ``width`` of None and an
    ``unknown`` share of 0.1 are the state of runs written before those settings existed)."""
    return {k: v for k, v in d.items() if k != "threads" and not (k == "width" and v is None)
            and not (k == "unknown" and v == 0.1)}


def _jsonable(d):
    return json.loads(json.dumps(d, default=str))


def _save_state(path, cfg, model, optimizer, scheduler, epoch, best, best_state, history, quantizer):
    state = {"format": STATE_FORMAT, "version": STATE_VERSION, "train_config": _jsonable(asdict(cfg)),
             "model": model_payload(model), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": epoch, "best": best,
             "best_state": best_state, "history": copy.deepcopy(history), "rng": _rng_state(),
             "quantizer": quantizer.to_dict()}
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(path, buf.getvalue())
