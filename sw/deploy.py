"""The deployable model: one folder that holds every integer the hardware needs.

``manifest.json`` describes the network (docs/integer-network.md) and names the memory images;
each image is written twice, as ``<name>.hex`` (for ``$readmemh``) and ``<name>.bin`` (raw), with the
SHA-256 of the ``.bin`` in the manifest. Everything after export (golden model, hardware generator,
cost model, board builds) reads only this folder, through :func:`load`. The file format is
documented in docs/deployable-model.md.
"""

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kwsbnn.errors import KwsError
from kwsbnn.paths import write_atomic

from . import packing

FORMAT = "kwsbnn-deployable"
VERSION = 2              # 2 added the conv field ``in_threshold`` (the integer residual stream)
READS = (1, 2)           # a version-1 folder is a version-2 one without stream layers
MANIFEST = "manifest.json"

# Which arrays each op keeps in memory images, and their image kind.
#   bits: 2-D 0/1 array, one packed row per line;  ints: integer array, one element per line.
IMAGE_FIELDS = {
    "conv": {"weights": None, "direction": "bits", "threshold": "ints",
             "mul": "ints", "add": "ints", "smul": "ints", "in_threshold": "ints"},
    "dense": {"weights": None, "bias": "ints"},
    "gap": {},
}
OPS = set(IMAGE_FIELDS)


class DeployableError(KwsError):
    """A deployable model that cannot be read: names the file and what is wrong with it."""


@dataclass
class Deployable:
    """A loaded deployable model: the manifest dict plus every layer's arrays as numpy integers.

    ``layers[i]`` is the manifest's layer dict with each image field replaced by its array.
    """
    manifest: dict
    layers: list = field(default_factory=list)
    path: Path | None = None

    @property
    def classes(self) -> list:
        return self.manifest["classes"]

    @property
    def input(self) -> dict:
        return self.manifest["input"]

    @property
    def name(self) -> str:
        return self.manifest.get("name", "model")


def _int_width(arr: np.ndarray) -> int:
    """Smallest two's-complement width (>= 2) that holds every value of ``arr``."""
    arr = np.asarray(arr, dtype=np.int64)
    if arr.size == 0:
        return 2
    lo, hi = int(arr.min()), int(arr.max())
    w = 2
    while not (-(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1):
        w += 1
    return w


def _weight_kind(layer: dict) -> str:
    return "bits" if layer.get("w_prec") == "bin" else "ints"


def _encode(kind: str, arr: np.ndarray) -> tuple[list[int], int, dict]:
    arr = np.asarray(arr)
    if kind == "bits":
        a2 = arr.reshape(arr.shape[0], -1) if arr.ndim != 1 else arr.reshape(1, -1)
        if a2.size and not np.isin(a2, (0, 1)).all():
            raise ValueError("a bits image holds only 0 and 1")
        width = a2.shape[1]
        return packing.pack_rows(a2), width, {"kind": "bits", "shape": list(arr.shape),
                                               "signed": False}
    width = _int_width(arr)
    return packing.signed_to_words(arr.ravel(), width), width, {"kind": "ints", "shape": list(arr.shape),
                                                                "signed": True}


def save(spec: dict, out: str | Path) -> Path:
    """Write ``spec`` (manifest fields + layers with numpy arrays) as a deployable model in ``out``.

    ``spec`` has ``name``, ``classes``, ``input`` and ``layers``; each layer's array fields listed in
    :data:`IMAGE_FIELDS` become memory images. Binary weights are 0/1 arrays ``[C_out, K]`` in the
    window order of docs/deployable-model.md. Returns the folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stream = any(layer.get("in_threshold") is not None for layer in spec["layers"])
    manifest = {"format": FORMAT, "version": VERSION if stream else 1,
                "name": spec.get("name", "model"), "classes": list(spec["classes"]),
                "input": copy.deepcopy(spec["input"]), "layers": [], "images": {}}
    for i, layer in enumerate(spec["layers"]):
        op = layer.get("op")
        if op not in OPS:
            raise KwsError(f"layer {i} has op {op!r}; the deployable format knows {sorted(OPS)}")
        entry = {}
        for key, value in layer.items():
            if key in IMAGE_FIELDS[op]:
                continue
            entry[key] = value.tolist() if isinstance(value, np.ndarray) else value
        entry["images"] = {}
        for key, kind in IMAGE_FIELDS[op].items():
            if key not in layer or layer[key] is None:
                continue
            kind = kind or _weight_kind(layer)
            image = f"{layer['name']}.{key}"
            arr = np.asarray(layer[key])
            if key == "direction":      # +1 / -1 in the spec; a bit (1: >=, 0: <=) in the image
                arr = (arr > 0).astype(np.int64)
            words, width, meta = _encode(kind, arr)
            data = packing.bin_bytes(words, width)
            write_atomic(out / f"{image}.hex", packing.hex_text(words, width))
            write_atomic(out / f"{image}.bin", data)
            manifest["images"][image] = {"width": width, "depth": len(words), **meta,
                                         "hex": f"{image}.hex", "bin": f"{image}.bin",
                                         "sha256": hashlib.sha256(data).hexdigest()}
            entry["images"][key] = image
        manifest["layers"].append(entry)
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return out


def _fail(path: Path, problem: str, hint: str | None = None):
    raise DeployableError(f"{path}: {problem}",
                          hint or "re-export the model with `kwsbnn export --model M --out DIR`")


def _read_image(folder: Path, name: str, meta: dict) -> np.ndarray:
    for key in ("width", "depth", "kind", "shape", "bin", "hex", "sha256"):
        if key not in meta:
            _fail(folder / MANIFEST, f"image {name!r} has no {key!r}")
    bin_path, hex_path = folder / meta["bin"], folder / meta["hex"]
    for p in (bin_path, hex_path):
        if not p.is_file():
            _fail(p, "memory image is missing")
    data = bin_path.read_bytes()
    try:
        words = packing.parse_bin(data, meta["width"], meta["depth"])
    except ValueError as e:
        _fail(bin_path, f"truncated or padded memory image: {e}")
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        _fail(bin_path, "contents do not match the checksum in manifest.json (file changed or corrupt)")
    try:
        hex_words = packing.parse_hex(hex_path.read_text(), meta["width"])
    except ValueError as e:
        _fail(hex_path, str(e))
    if hex_words != words:
        _fail(hex_path, f"does not hold the same {meta['depth']} words as {meta['bin']}")
    shape = tuple(meta["shape"])
    if meta["kind"] == "bits":
        arr = packing.unpack_rows(words, meta["width"]).astype(np.int64)
    elif meta["kind"] == "ints":
        arr = packing.words_to_signed(words, meta["width"])
    else:
        _fail(folder / MANIFEST, f"image {name!r} has unknown kind {meta['kind']!r}")
    if int(np.prod(shape)) != arr.size:
        _fail(bin_path, f"holds {arr.size} values but the manifest says shape {list(shape)}")
    return arr.reshape(shape)


def load(path: str | Path) -> Deployable:
    """Read and check a deployable model folder. Every problem is a :class:`DeployableError`."""
    folder = Path(path)
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise DeployableError(f"{folder}: no {MANIFEST}; this is not a deployable model folder",
                              "create one with `kwsbnn export --model M --out DIR`")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _fail(mpath, f"is not valid JSON ({e})")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        _fail(mpath, f"is not a {FORMAT} manifest")
    if manifest.get("version") not in READS:
        _fail(mpath, f"has format version {manifest.get('version')!r}; this kwsbnn reads versions "
              f"{', '.join(map(str, READS))}",
              "re-export the model with this version of kwsbnn")
    for key in ("classes", "input", "layers", "images"):
        if key not in manifest:
            _fail(mpath, f"has no {key!r}")
    layers = []
    for i, entry in enumerate(manifest["layers"]):
        if entry.get("op") not in OPS:
            _fail(mpath, f"layer {i} has unknown op {entry.get('op')!r}")
        layer = {k: v for k, v in entry.items() if k != "images"}
        for key, image in entry.get("images", {}).items():
            if image not in manifest["images"]:
                _fail(mpath, f"layer {entry.get('name', i)} names image {image!r} that is not listed")
            layer[key] = _read_image(folder, image, manifest["images"][image])
        layers.append(layer)
    dep = Deployable(manifest=manifest, layers=layers, path=folder)
    from .shapes import infer_shapes
    try:
        infer_shapes(dep.input, dep.layers, n_classes=len(dep.classes))
    except ValueError as e:
        _fail(mpath, f"shapes do not agree: {e}")
    return dep
