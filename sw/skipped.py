"""Files a data scan skipped: counted, the first few named, on stderr and in ``--json`` output.

:class:`~kwsbnn.sw.data.SpeechCommands` records each WAV it cannot use in ``bad_files`` (path,
reason) and goes on; the commands that read a data folder (eval, train, search, report) report
them with :func:`summary` and :func:`warn`, and ``--strict`` turns them into an error (:func:`check`).
"""

import sys

from kwsbnn.errors import KwsError

SHOWN = 5


def summary(bad_files) -> dict:
    """``{"count": N, "files": [{"path", "reason"}, ...]}`` with the first :data:`SHOWN` files."""
    return {"count": len(bad_files),
            "files": [{"path": p, "reason": r} for p, r in list(bad_files)[:SHOWN]]}


def check(skipped: dict, data, strict: bool, command: str = "kwsbnn") -> None:
    """Raise (``strict``) or warn on stderr when ``skipped`` counts any file; silent otherwise."""
    n = skipped["count"]
    if not n:
        return
    first = "; ".join(f"{f['path']}: {f['reason']}" for f in skipped["files"][:2])
    if strict:
        raise KwsError(f"{data}: {n} unusable WAV file{'s' * (n != 1)} (--strict); first: {first}",
                       "fix or remove them, or drop --strict to skip them")
    print(f"{command}: warning: skipped {n} unusable WAV file{'s' * (n != 1)} in {data} "
          f"(--strict makes this an error):", file=sys.stderr)
    for f in skipped["files"]:
        print(f"  {f['path']}: {f['reason']}", file=sys.stderr)
    if n > len(skipped["files"]):
        print(f"  ... and {n - len(skipped['files'])} more", file=sys.stderr)


def scan(data, strict: bool = False, command: str = "kwsbnn", seed: int = 0) -> dict:
    """Scan a ``--data`` value once (one folder or several, headers only), report its skipped
    files, and return the summary."""
    from .data import open_data
    skipped = summary(open_data(data, seed=seed).bad_files)
    check(skipped, data, strict, command)
    return skipped
