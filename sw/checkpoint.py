"""Model files: one versioned torch file per trained model, and where shipped models live.

A model file is ``torch.save`` of a dict: ``format`` (``kwsbnn-model``), ``version``, ``config``
(:class:`~kwsbnn.sw.models.ModelConfig` as a dict), ``state_dict``, ``meta`` (``classes``,
``features`` = the FeatureConfig dict, ``quantizer`` = the FeatureQuantizer dict, ``input_shape``
``[T, F]``) and ``metrics``. Loading a file of another format or version is a :class:`KwsError`.
"""

import io
from pathlib import Path

import torch

from kwsbnn.errors import KwsError
from kwsbnn.paths import MODELS, write_atomic

from .models import ModelConfig, build_model

FORMAT = "kwsbnn-model"
VERSION = 2      # 2: binary options gained shortcut=int (a name, was a bool), rsign, stream_frac
READS = (1, 2)   # version-1 files load with the new options at their defaults


def model_payload(model, metrics: dict | None = None) -> dict:
    """The dict a model file holds (tensors on the CPU)."""
    return {"format": FORMAT, "version": VERSION, "config": model.config.to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "meta": dict(getattr(model, "meta", {}) or {}), "metrics": dict(metrics or {})}


def save_model(path, model, metrics: dict | None = None) -> Path:
    """Write ``model`` (with its ``.meta``) to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(model_payload(model, metrics), buf)
    write_atomic(Path(path), buf.getvalue())
    return Path(path)


def model_from_payload(payload: dict, where: str = "model"):
    """Rebuild a model (evaluation mode, ``.meta`` and ``.metrics`` set) from a model-file dict."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise KwsError(f"{where}: not a kwsbnn model file",
                       "give a file written by `kwsbnn train` (model.pt) or a shipped model's name")
    if payload.get("version") not in READS:
        raise KwsError(f"{where}: model file format version {payload.get('version')!r}; "
                       f"this kwsbnn reads versions {', '.join(map(str, READS))}",
                       "retrain the model with this version of kwsbnn")
    model = build_model(ModelConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.meta = dict(payload.get("meta") or {})
    model.metrics = dict(payload.get("metrics") or {})
    return model.eval()


def resolve_model(name_or_path) -> Path:
    """A model file path from a path or a shipped model's name (``models/<name>.pt``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = MODELS / f"{name_or_path}.pt"
    if "/" not in str(name_or_path) and shipped.is_file():
        return shipped
    known = sorted(f.stem for f in MODELS.glob("*.pt")) if MODELS.is_dir() else []
    raise KwsError(f"{name_or_path}: no such model file or shipped model",
                   f"give a .pt path or one of: {', '.join(known) or '(no shipped models yet)'}")


def _why(path, e: Exception) -> str:
    """One short clause for torch's (long, multi-line) reason a model file does not load."""
    import zipfile
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        size = Path(path).stat().st_size
    except OSError as err:
        return f"{err.strerror or err}"
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        return f"truncated or damaged: {size:,} bytes, its end is missing"
    if head != b"PK\x03\x04":
        return f"not a torch model file ({size:,} bytes)"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"{type(e).__name__}: {first[:80]}{'...' if len(first) > 80 else ''}"


def load_model(name_or_path):
    """Load a model file (a path or a shipped model's name) -> model in evaluation mode."""
    path = resolve_model(name_or_path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:   # torch raises many kinds for a damaged or foreign file
        raise KwsError(f"{path}: cannot read the model file ({_why(path, e)})",
                       "copy or download it again, or give a file written by `kwsbnn train`") from None
    return model_from_payload(payload, str(path))
