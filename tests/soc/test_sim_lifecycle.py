"""Builds are cached, and a dead sim gives a clear error quickly and leaves no process."""
import os
import signal
import time

import pytest

from gateware import layout, sim as simbuild
from host.simulator import Simulator, SimulatorError

pytestmark = pytest.mark.sim


def test_cached_build_is_reused_untouched(sim_build):
    stamp = sim_build.vsim.stat().st_mtime_ns
    lines = []
    again = simbuild.build_sim(layout.AccelConfig(), log=lines.append)
    assert again == sim_build
    assert lines == [f"sim model {sim_build.dir.name[4:]} is up to date in {sim_build.dir}"]
    assert sim_build.vsim.stat().st_mtime_ns == stamp


def test_boot_time_is_recorded(sim, record_property):
    """The launcher bounds the boot with its own timeout; the figure goes to the JUnit report."""
    print(f"\nboot to answering: {sim.boot_seconds:.2f} s")
    record_property("boot_to_answer_s", sim.boot_seconds)
    assert 0 < sim.boot_seconds < sim.start_timeout


def test_killed_sim_fails_clearly_and_leaves_nothing(sim_build):
    s = Simulator(sim_build).start()
    pid = s.proc.pid
    try:
        b = s.bridge()
        os.killpg(pid, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(SimulatorError, match="not running"):
            b.csr_read("nnhil_magic")
        assert time.monotonic() - t0 < 5
        b.close()
    finally:
        s.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_missing_model_is_reported(tmp_path):
    with pytest.raises(SimulatorError, match="no sim model"):
        Simulator(simbuild.SimBuild(tmp_path)).start()
