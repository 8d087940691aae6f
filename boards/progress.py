"""Progress of a bitstream build: which tool runs and for how long, every few seconds on stderr.

Amaranth runs Yosys, nextpnr and the packer as one silent script (75 s warm for the iCEBreaker
design, minutes cold). :class:`BuildTicker` watches the build folder from a thread: a file written
since the start marks the end of a phase (``NAME.json`` from Yosys, ``NAME.asc`` or ``NAME.config``
from nextpnr).
"""

import threading
import time
from pathlib import Path


class BuildTicker:
    """``with BuildTicker(folder, name, progress):`` reports ``phase ... elapsed`` when the phase
    changes and every ``every`` seconds within one."""

    def __init__(self, folder, name: str, progress, every: float = 30.0):
        self._folder, self._name, self._progress, self._every = Path(folder), name, progress, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0

    def _fresh(self, suffix: str) -> bool:
        p = self._folder / f"{self._name}{suffix}"
        try:
            return p.stat().st_mtime >= self._wall0
        except OSError:
            return False

    def phase(self) -> str:
        if self._fresh(".asc") or self._fresh(".config"):
            return "packing the bitstream"
        if self._fresh(".json"):
            return "nextpnr: place and route"
        return "yosys: synthesis"

    def _run(self):
        last, said = None, self._t0
        while not self._stop.wait(min(1.0, self._every)):
            now, phase = time.monotonic(), self.phase()
            if phase != last or now - said >= self._every:
                self._progress(f"  {phase} ... {now - self._t0:.0f} s")
                last, said = phase, now

    def __enter__(self):
        self._t0, self._wall0 = time.monotonic(), time.time() - 1
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False
