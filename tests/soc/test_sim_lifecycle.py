"""Builds are cached, and a dead sim gives a clear error quickly and leaves no process."""
import os
import signal
import time

import pytest

from gateware import layout, sim as simbuild
from host.simulator import Simulator, SimulatorError


def test_cached_build_returns_at_once(sim_build):
    t0 = time.perf_counter()
    again = simbuild.build_sim(layout.AccelConfig(), log=lambda line: None)
    assert again == sim_build and time.perf_counter() - t0 < 5


def test_boot_to_answer_is_quick(sim, record_property):
    print(f"\nboot to answering: {sim.boot_seconds:.2f} s")
    record_property("boot_to_answer_s", sim.boot_seconds)
    assert sim.boot_seconds < 10


def test_killed_sim_fails_clearly_and_leaves_nothing(sim_build):
    s = Simulator(sim_build).start()
    pid = s.proc.pid
    try:
        b = s.bridge(timeout=2.0)
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
