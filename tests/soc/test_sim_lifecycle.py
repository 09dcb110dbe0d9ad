"""Builds are cached, and a dead sim gives a clear error at once and leaves no process."""
import json
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


def test_the_default_model_is_untraced_and_writes_no_vcd(sim_build):
    """The default build has no trace support (LiteX's own sim opens sim.vcd and flushes it
    every half cycle): nothing is written beside the model, whichever sim runs."""
    key = json.loads((sim_build.dir / "build.json").read_text())["key"]
    assert key["sim"]["variant"] == {"trace": False, "faults": False, "trace_scope": "accelerator"}
    assert "VM_TRACE = 0" in (sim_build.gateware_dir / "obj_dir" / "Vsim_classes.mk").read_text()
    with Simulator(sim_build) as s:
        assert s.bridge().csr_read("nnhil_magic") == layout.MAGIC
    assert not list(sim_build.gateware_dir.glob("sim.vcd"))


@pytest.mark.slow
def test_the_traced_variant_is_its_own_build_and_writes_only_where_asked():
    """The traced build (cached beside the default one, as tests/soc/test_wave.py uses it) has
    FST trace support, and its main writes no file of its own: a run's trace goes only to the
    file $NNHIL_TRACE_FILE names, and only while the trace window is armed (host.wave)."""
    traced = buildcache.build_sim(layout.AccelConfig(), log=lambda line: None,
                                  variant=buildcache.SimVariant(trace=True))
    assert traced.dir.name != f"sim-{buildcache.build_key('sim', layout.AccelConfig())[1]}"
    classes = (traced.gateware_dir / "obj_dir" / "Vsim_classes.mk").read_text()
    assert "VM_TRACE = 1" in classes and "VM_TRACE_FST = 1" in classes
    with Simulator(traced) as s:
        assert s.bridge().csr_read("nnhil_magic") == layout.MAGIC
    assert not list(traced.gateware_dir.glob("sim.*st")) and not list(traced.gateware_dir.glob("sim.vcd"))
