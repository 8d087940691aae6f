"""Shared test set-up: one torch thread (2-core machines), fixtures importable as `fixtures`."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

try:
    import torch
    torch.set_num_threads(1)
except ImportError:        # pragma: no cover
    pass


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets the project cache in a temporary folder (never the user's ~/.cache/kwsbnn)."""
    monkeypatch.setenv("KWSBNN_CACHE", str(tmp_path_factory.getbasetemp() / "kwsbnn-cache"))
