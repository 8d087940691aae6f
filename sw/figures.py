"""The README's table of current figures, generated from the project's own outputs so it cannot drift.

Rows come from every shipped model record (``models/*.json``: test accuracy on the subset's testing
list; the weight memory is counted from ``models/<name>.pt``) and every build report in
``benchmarks/results/build-*.json`` (a ``kwsbnn build --json`` output with ``model`` added: clock,
cycles, resources, inferences per second). A new model record or build report appears in the table
with no code change. The table sits in README.md between ``<!-- figures:begin -->`` and
``<!-- figures:end -->``; ``kwsbnn report figures --write`` rewrites it, ``--check`` fails when it
differs (tests/test_figures.py runs the check).
"""

import json
from pathlib import Path

from kwsbnn.errors import KwsError
from kwsbnn.paths import MODELS, ROOT, write_atomic
from kwsbnn.units import kbit

RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"
ORDER = {"float": 0, "int8": 1, "binary": 2}
BOARD_NAMES = {"icebreaker": "iCEBreaker", "ulx3s-85f": "ULX3S-85F"}


def _weight_bits(name: str, models: Path):
    pt = models / f"{name}.pt"
    if not pt.is_file():
        return None
    from .checkpoint import load_model
    from .footprint import footprint
    return footprint(load_model(pt))["weight_bits"]


def _builds(results: Path) -> dict:
    out = {}
    for f in sorted(results.glob("build-*.json")):
        rep = json.loads(f.read_text())
        out.setdefault(rep["model"], []).append(rep)
    return out


def _res(rep: dict) -> str:
    r = rep["resources"]
    logic = "LUT4" if rep["board"].startswith("ulx3s") else "logic cells"
    return (f"{r['logic_cells']['used']:,}/{r['logic_cells']['available']:,} {logic}, "
            f"{r['block_ram']['used']}/{r['block_ram']['available']} BRAM, "
            f"{r['dsp']['used']}/{r['dsp']['available']} DSP")


def table(models: Path = MODELS, results: Path = RESULTS) -> str:
    """The Markdown table: one row per model, one more per extra board it was built for."""
    records = [json.loads(f.read_text()) for f in sorted(Path(models).glob("*.json"))]
    records.sort(key=lambda r: (ORDER.get(r.get("precision"), 3), -(r.get("test_accuracy_on_subset_testing_list") or 0)))
    builds = _builds(Path(results))
    head = ("| model | precision | accuracy (testing list) | weight memory | board, clock | cycles per "
            "inference | resources | inferences/s |\n|---|---|---|---|---|---|---|---|")
    rows = []
    for r in records:
        name = r["name"]
        acc = r.get("test_accuracy_on_subset_testing_list")
        bits = _weight_bits(name, Path(models))
        cells = [f"`{name}`", r.get("precision", ""), f"{100 * acc:.1f}%" if acc is not None else "",
                 kbit(bits) if bits is not None else ""]
        reps = builds.get(name) or [None]
        for i, b in enumerate(reps):
            lead = cells if i == 0 else ["", "", "", ""]
            if b is None:
                rows.append("| " + " | ".join(lead + ["not built", "", "", ""]) + " |")
                continue
            cyc = f"{b['cycles_per_inference']:,}" + (f" ({b['cycles_simulated']:,} simulated)"
                                                      if b.get("cycles_simulated") else "")
            rows.append("| " + " | ".join(lead + [
                f"{BOARD_NAMES.get(b['board'], b['board'])}, {b['clock_mhz']:g} MHz (Fmax {b['fmax_mhz']:.1f})",
                cyc, _res(b), f"{b['inferences_per_second']:,.0f}"]) + " |")
    return head + "\n" + "\n".join(rows)


def _split(text: str):
    if BEGIN not in text or END not in text:
        raise KwsError(f"{README}: no {BEGIN} ... {END} block", "add the markers where the table goes")
    a, rest = text.split(BEGIN, 1)
    _, b = rest.split(END, 1)
    return a, b


def check(readme: Path = README) -> bool:
    """Whether the README's table equals the generated one."""
    a, b = _split(Path(readme).read_text())
    return Path(readme).read_text() == f"{a}{BEGIN}\n{table()}\n{END}{b}"


def write(readme: Path = README) -> bool:
    """Rewrite the README's table; True when it changed."""
    text = Path(readme).read_text()
    a, b = _split(text)
    new = f"{a}{BEGIN}\n{table()}\n{END}{b}"
    if new != text:
        write_atomic(Path(readme), new)
    return new != text
