"""Export: a trained model (file, shipped name, or ``tiny``) -> a deployable model folder.

``tiny`` is the walking skeleton's network (:mod:`kwsbnn.sw.tiny`), made on the spot from a seed.
Every stage after export calls :func:`deployable`, which accepts a deployable folder as it is and
exports anything else into the cache (keyed by the model file's contents) first.
"""

import hashlib
from pathlib import Path

from kwsbnn.paths import cache_dir

from . import deploy

SKELETON = "tiny"


def integer_spec_of(ref: str, seed: int = 0) -> dict:
    """The integer-contract spec of a model reference."""
    if ref == SKELETON:
        import torch

        from .tiny import make_tiny
        with torch.random.fork_rng():
            return make_tiny(seed).integer_spec()
    from .checkpoint import load_model, resolve_model
    from .integer import integer_spec
    model = load_model(ref)
    return integer_spec(model, name=resolve_model(ref).stem)


def export(ref: str, out: str | Path, seed: int = 0) -> Path:
    """Write the deployable model of ``ref`` into ``out``; return the folder."""
    return deploy.save(integer_spec_of(ref, seed), out)


def deployable(ref: str, seed: int = 0) -> deploy.Deployable:
    """Load ``ref`` as a deployable model: a deployable folder, or a model exported into the cache."""
    p = Path(ref)
    if (p / deploy.MANIFEST).is_file() or (p.is_dir() and ref != SKELETON):
        return deploy.load(p)
    if ref == SKELETON:
        key = f"tiny-seed{seed}-v{deploy.VERSION}"
    else:
        from .checkpoint import resolve_model
        path = resolve_model(ref)
        key = hashlib.sha256(path.read_bytes()).hexdigest()[:16] + f"-v{deploy.VERSION}"
    folder = cache_dir("deployable") / key
    if not (folder / deploy.MANIFEST).is_file():
        export(ref, folder, seed)
    return deploy.load(folder)
