"""The default sim model is profile-guided: compiled with the profile of a real run of its
instrumented build (gateware.pgo), and not the instrumented binary itself."""
import json
import os
import signal
import subprocess

import pytest

from nnhil.gateware import cyclemodel, layout, pgo
from nnhil.gateware.program import ModelDoesNotFit
from nnhil.host.simulator import Simulator

pytestmark = pytest.mark.sim


def test_the_default_model_is_built_from_a_profile_of_its_workload(sim_build):
    record = json.loads((sim_build.dir / "build.json").read_text())
    assert record["key"]["sim"]["variant"]["pgo"] is True
    assert record["key"]["pgo"]["workload"] == pgo.digest()
    cfg = layout.AccelConfig(**record["key"]["accel"])
    models, batches, _ = pgo.workload()
    accelerator = 0
    for arch, model in models.items():
        try:
            accelerator += cyclemodel.cycles(model, cfg) * len(batches[arch])
        except ModelDoesNotFit:
            pass
    assert accelerator > 0                  # the default accelerator holds at least one of them
    # the run did at least its batches' accelerator cycles, and the BIOS's boot besides
    assert record["profile"]["cycles"] > accelerator + 1_000_000, record["profile"]
    profiles = sorted((sim_build.gateware_dir / "obj_dir").glob("*.gcda"))
    assert len(profiles) == record["profile"]["files"] and any(p.name.startswith("Vsim_sim__") for p in profiles)


def test_the_model_that_runs_is_not_the_instrumented_one(sim_build):
    """An instrumented model is several times slower and rewrites its profile at every exit."""
    symbols = subprocess.run(["nm", str(sim_build.vsim)], capture_output=True, text=True, check=True,
                             timeout=60).stdout
    assert "main" in symbols and "__gcov_" not in symbols


def test_sigterm_ends_the_model_normally(sim_build):
    """What lets the instrumented model write its profile: SIGTERM ends the run at the next
    cycle and the process exits with status 0, not killed by the signal."""
    with Simulator(sim_build) as s:
        os.killpg(s.proc.pid, signal.SIGTERM)
        assert s.proc.wait(timeout=60) == 0, s.tail()
