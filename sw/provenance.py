"""Portable provenance in the shipped model records (``models/*.json``): no training machine's paths.

A record's ``command``, ``eval_command`` and ``config`` name the data folder, the teacher model and
the run folder. :func:`portable` rewrites them so the command runs as written from the repository
root on any machine: a data folder becomes ``data/<its name>`` (where ``kwsbnn data download`` puts
it, see README), a model file ``models/<name>.pt`` of any checkout becomes the shipped name
``<name>``, a path inside the repository becomes relative to it, any other absolute run folder
``runs/<its name>``; a leading ``nice -n N`` goes. Run ``python -m kwsbnn.sw.provenance FILE...``
on a record before committing it (tests/test_provenance.py checks the shipped ones).
"""

import json
import shlex
import sys
from pathlib import PurePosixPath

from kwsbnn.paths import ROOT, write_atomic

DATA_DIR = "data"
PATH_OPTIONS = {"--data": "data", "--teacher": "model", "--init": "model", "--out": "out",
                "--model": "model"}


def portable_path(value, kind: str):
    """One path option's value made portable (see the module docstring); other values unchanged.
    A comma-separated list (``--data A,B``, ``--teacher A,B``) is made portable item by item; a data
    folder given relative to the repository's parent (``../shared/...``) becomes ``data/<name>``."""
    if isinstance(value, str) and "," in value:
        return ",".join(portable_path(v, kind) for v in value.split(","))
    if isinstance(value, str) and kind == "data" and value.startswith("../"):
        return f"{DATA_DIR}/{PurePosixPath(value).name}"
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    p = PurePosixPath(value)
    try:
        return str(p.relative_to(ROOT.as_posix()))
    except ValueError:
        pass
    if kind == "data":
        return f"{DATA_DIR}/{p.name}"
    if kind == "model" and p.parent.name == "models" and p.suffix == ".pt":
        return p.stem
    return f"runs/{p.name}" if kind == "out" else value


def portable_command(command: str) -> str:
    """A shell command line with its path options made portable (``nice -n N`` dropped)."""
    words = shlex.split(command)
    if words[:1] == ["nice"]:
        words = words[3:] if len(words) > 2 and words[1] == "-n" else words[1:]
    out = []
    for i, w in enumerate(words):
        kind = PATH_OPTIONS.get(words[i - 1]) if i else None
        out.append(portable_path(w, kind) if kind else w)
    return shlex.join(out)


def portable(record: dict) -> dict:
    """A copy of a model record with portable paths in ``command``, ``eval_command`` and ``config``."""
    rec = dict(record)
    for key in ("command", "eval_command"):
        if isinstance(rec.get(key), str):
            rec[key] = portable_command(rec[key])
    if isinstance(rec.get("config"), dict):
        cfg = dict(rec["config"])
        for key, kind in (("data", "data"), ("teacher", "model"), ("init", "model"), ("out", "out")):
            if key in cfg:
                cfg[key] = portable_path(cfg[key], kind)
        rec["config"] = cfg
    return rec


def absolute_paths(record: dict) -> list[str]:
    """The absolute paths left in a record's command lines and config (what tests forbid)."""
    found = []
    for key in ("command", "eval_command"):
        found += [w for w in shlex.split(record.get(key) or "") if w.startswith("/")]
    found += [v for v in (record.get("config") or {}).values() if isinstance(v, str) and v.startswith("/")]
    return found


def main(argv=None) -> int:
    for name in (argv if argv is not None else sys.argv[1:]):
        text = open(name).read()
        rec = json.loads(text)
        new = portable(rec)
        if new != rec:
            write_atomic(name, json.dumps(new, indent=2) + ("\n" if text.endswith("\n") else ""))
            print(f"{name}: paths made portable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
