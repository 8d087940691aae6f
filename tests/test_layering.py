"""The flow's direction: the software side (kwsbnn.sw) never imports the simulation side."""

import subprocess
import sys


def test_sw_does_not_import_sim_and_sim_registers_rtl():
    code = ("import sys, kwsbnn.sw.evaluate as e, kwsbnn.sw.engines, kwsbnn.sw.export\n"
            "assert not [m for m in sys.modules if m.startswith('kwsbnn.sim')], 'sw imported sim'\n"
            "assert 'rtl' not in e.ENGINES and 'golden' in e.ENGINES\n"
            "import kwsbnn.sim.engine\n"
            "assert 'rtl' in e.ENGINES\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
