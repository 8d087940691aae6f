"""Figures written atomically: one helper for every PNG the project makes."""

from pathlib import Path


def save_figure(fig, path) -> Path:
    """Save a matplotlib figure as PNG at ``path`` (via a temporary file, then rename) and close it."""
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
