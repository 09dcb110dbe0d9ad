"""Builds are cached, and a dead sim gives a clear error at once and leaves no process."""
import os
import signal

import pytest

from nnhil.gateware import buildcache, layout
from nnhil.host.bridge import BridgeError
from nnhil.host.simulator import Simulator, SimulatorError

pytestmark = pytest.mark.sim


def test_cached_build_is_reused_untouched(sim_build):
    stamp = sim_build.vsim.stat().st_mtime_ns
    lines = []
    again = buildcache.build_sim(layout.AccelConfig(), log=lines.append)
    assert again == sim_build
    assert lines == [f"sim model {sim_build.dir.name[4:]} is up to date in {sim_build.dir}"]
    assert sim_build.vsim.stat().st_mtime_ns == stamp


def test_killed_sim_fails_clearly_and_leaves_nothing(sim_build):
    s = Simulator(sim_build).start()
    pid = s.proc.pid
    try:
        b = s.bridge()
        os.killpg(pid, signal.SIGKILL)
        with pytest.raises(SimulatorError, match="not running") as died:
            b.csr_read("nnhil_magic")
        # seen from the closed link, not after waiting out the bridge's timeout
        assert isinstance(died.value.__cause__, BridgeError)
        assert "did not answer" not in str(died.value.__cause__), died.value.__cause__
        b.close()
    finally:
        s.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_missing_model_is_reported(tmp_path):
    with pytest.raises(SimulatorError, match="no sim model"):
        Simulator(buildcache.SimBuild(tmp_path)).start()
