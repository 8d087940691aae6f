"""The search's Pareto plot: labels that do not overlap, a title that counts every trial, and a
y axis that says which accuracy it shows."""

import matplotlib

matplotlib.use("Agg")

from kwsbnn.sw.pareto import _place_labels, plot_pareto, search_title  # noqa: E402


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_close_points_get_labels_that_do_not_overlap():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    pts = [(50 + 0.3 * i, 50 + 0.2 * i, f"{i}", 7) for i in range(6)] + [(50.5, 50.5, "binary-sign-last", 8)]
    boxes = _place_labels(ax, pts)
    assert len(boxes) == 7 and len(ax.texts) == 7
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


def test_title_counts_every_trial():
    counts = {"complete": 18, "pruned": 5, "rejected": 3, "failed": 0, "running": 0}
    assert search_title("kws", counts, 7) == \
        "Search kws: 26 trials (18 complete, 5 pruned, 3 rejected by the budget), 7 on the Pareto front"


def test_plot_says_which_accuracy(tmp_path, monkeypatch):
    import kwsbnn.sw.pareto as pareto
    figs = []
    real = pareto.save_figure
    monkeypatch.setattr(pareto, "save_figure", lambda fig, path: (figs.append([t.get_text() for t in fig.texts]),
                                                                  real(fig, path))[1])
    rows = [{"number": i, "weight_bits": 1000 * (i + 1), "cycles": 1000 * (5 - i), "val_accuracy": 0.3 + 0.05 * i,
             "pareto": True} for i in range(5)]
    path = plot_pareto(rows, [], tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert any("validation accuracy" in t and "not the test accuracy" in t for t in figs[0])
