"""Shipped model records name no training machine's paths; their commands run as written."""

import json

from kwsbnn.paths import MODELS, ROOT
from kwsbnn.sw.provenance import absolute_paths, portable


def test_shipped_records_have_no_absolute_paths():
    for f in sorted(MODELS.glob("*.json")):
        left = absolute_paths(json.loads(f.read_text()))
        assert not left, f"{f.name}: {left} (run python -m kwsbnn.sw.provenance {f})"


def test_portable_rewrites_data_teacher_repo_and_run_paths():
    rec = {"command": f"nice -n 10 kwsbnn train --data /srv/x/speech_commands_subset --teacher "
                      f"/home/a/kwsbnn/models/float.pt --init {ROOT}/runs/a/model.pt --out /tmp/r/b --json",
           "eval_command": "kwsbnn eval --model binary --data /mnt/sc --json",
           "config": {"data": "/srv/x/speech_commands_subset", "teacher": "/home/a/kwsbnn/models/float.pt",
                      "out": "/tmp/r/b", "epochs": 3, "init": None}}
    new = portable(rec)
    assert new["command"] == ("kwsbnn train --data data/speech_commands_subset --teacher float "
                              "--init runs/a/model.pt --out runs/b --json")
    assert new["eval_command"] == "kwsbnn eval --model binary --data data/sc --json"
    assert new["config"] == {"data": "data/speech_commands_subset", "teacher": "float", "out": "runs/b",
                             "epochs": 3, "init": None}
    assert absolute_paths(new) == [] and absolute_paths(rec)
    assert portable(new) == new
