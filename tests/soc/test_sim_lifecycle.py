"""Builds are cached, and a dead sim gives a clear error at once and leaves no process."""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nnhil.gateware import buildcache, layout
from nnhil.host.bridge import BridgeError
from nnhil.host.simulator import Simulator, SimulatorError

pytestmark = pytest.mark.sim
ROOT = Path(__file__).resolve().parents[2]


def test_cached_build_is_reused_untouched(sim_build, caplog):
    stamp = sim_build.vsim.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="nnhil"):
        again = buildcache.build_sim(layout.AccelConfig())
    assert again == sim_build
    assert [r.getMessage() for r in caplog.records] == [f"sim model {sim_build.dir.name[4:]} is up to date in {sim_build.dir}"]
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
    variant = key["sim"]["variant"]
    assert not variant["trace"] and not variant["faults"] and variant["trace_scope"] == "accelerator"
    assert "VM_TRACE = 0" in (sim_build.gateware_dir / "obj_dir" / "Vsim_classes.mk").read_text()
    with Simulator(sim_build) as s:
        assert s.bridge().csr_read("nnhil_magic") == layout.MAGIC
    assert not list(sim_build.gateware_dir.glob("sim.vcd"))


@pytest.mark.slow
def test_the_traced_variant_is_its_own_build_and_writes_only_where_asked():
    """The traced build (cached beside the default one, as tests/soc/test_wave.py uses it) has
    FST trace support, and its main writes no file of its own: a run's trace goes only to the
    file $NNHIL_TRACE_FILE names, and only while the trace window is armed (host.wave)."""
    traced = buildcache.build_sim(layout.AccelConfig(),
                                  variant=buildcache.SimVariant(trace=True))
    assert traced.dir.name != f"sim-{buildcache.build_key('sim', layout.AccelConfig())[1]}"
    classes = (traced.gateware_dir / "obj_dir" / "Vsim_classes.mk").read_text()
    assert "VM_TRACE = 1" in classes and "VM_TRACE_FST = 1" in classes
    with Simulator(traced) as s:
        assert s.bridge().csr_read("nnhil_magic") == layout.MAGIC
    assert not list(traced.gateware_dir.glob("sim.*st")) and not list(traced.gateware_dir.glob("sim.vcd"))


PAUSE_TESTS = """
import time
from pathlib import Path

import conftest

def state(pid):
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()[0]

def settled(pid, want):       # a signal lands asynchronously: a few ms
    deadline = time.monotonic() + 10
    while state(pid) not in want and time.monotonic() < deadline:
        time.sleep(0.01)
    return state(pid)

def test_uses_the_sim(sim):
    Path("sim.pid").write_text(str(sim.proc.pid))
    assert settled(sim.proc.pid, "RS") in "RS"

def test_without_the_sim():
    (s,) = conftest.PAUSABLE_SIMS
    assert settled(s.proc.pid, "T") == "T"
    with conftest.frozen([s]):          # a block inside (a training) ends: still frozen for the test
        pass
    assert settled(s.proc.pid, "T") == "T"

def test_uses_it_again(dut):
    assert settled(dut.sim.proc.pid, "RS") in "RS"
    assert dut.bridge.csr_read("nnhil_magic") == MAGIC

def test_a_model_is_trained_or_loaded_with_it_frozen(sim, trained, monkeypatch):
    from nnhil.training import workflow
    real, seen = workflow.ensure_model, []
    def watched(*args, **kwargs):
        seen.append(settled(sim.proc.pid, "T"))
        return real(*args, **kwargs)
    monkeypatch.setattr(workflow, "ensure_model", watched)
    trained("mlp")
    assert seen == ["T"] and settled(sim.proc.pid, "RS") in "RS"
"""


def test_the_session_sim_is_frozen_while_a_test_does_not_use_it(sim_build, trained, tmp_path):
    """conftest.py's pause, in a session of its own (this repository's conftest.py): a test that
    uses neither the sim nor the DUT finds the session sim stopped (state T), not spinning beside
    it; the next test that uses the DUT finds it running and answering; a model is trained (or
    taken from the cache) with it stopped, and none is left after."""
    trained("mlp")                # cached first: the inner session only loads it, within its timeout
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_pause.py").write_text(f"MAGIC = {layout.MAGIC}\n" + PAUSE_TESTS)
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:pytest_embedded",
                        "-q", "test_pause.py"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "4 passed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "sim.pid").read_text()), 0)
