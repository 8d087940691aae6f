"""The README's figures table is the generated one, and new model records join it by themselves."""

import json
import shutil

from kwsbnn.paths import MODELS
from kwsbnn.sw import figures


def test_readme_table_is_current():
    assert figures.check(), "README.md's figures table is out of date: run `kwsbnn report figures`"


def test_a_new_model_record_and_build_report_appear(tmp_path):
    models, results = tmp_path / "models", tmp_path / "results"
    models.mkdir()
    results.mkdir()
    shutil.copy(MODELS / "binary-ice40.json", models / "binary-ice40.json")
    shutil.copy(MODELS / "binary-ice40.pt", models / "binary-ice40.pt")
    rec = json.loads((MODELS / "binary-wide.json").read_text()) | {"name": "binary-new",
                                                                   "test_accuracy_on_subset_testing_list": 0.75}
    (models / "binary-new.json").write_text(json.dumps(rec))
    (results / "build-binary-new-ulx3s-85f.json").write_text(json.dumps(
        {"model": "binary-new", "board": "ulx3s-85f", "clock_mhz": 60.0, "fmax_mhz": 61.0,
         "cycles_per_inference": 5200, "inferences_per_second": 11538,
         "resources": {"logic_cells": {"used": 70000, "available": 83640},
                       "block_ram": {"used": 52, "available": 208}, "dsp": {"used": 5, "available": 156}}}))
    text = figures.table(models, results)
    lines = text.splitlines()
    assert lines[2].startswith("| `binary-new` | binary | 75.0% |")      # most accurate binary first
    assert "ULX3S-85F, 60 MHz (Fmax 61.0) | 5,200 | 70,000/83,640 LUT4, 52/208 BRAM, 5/156 DSP | 11,538 |" in lines[2]
    assert lines[3].startswith("| `binary-ice40` | binary | 54.0% | 13.3 kbit | not built")
