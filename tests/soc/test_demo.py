"""The README's main command, end to end on the sim: every model, exact, side by side."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nnhil.gateware import layout
from nnhil.host.simulator import Simulator
from nnhil.training import home, workflow

pytestmark = pytest.mark.sim
ROOT = Path(__file__).resolve().parents[2]


IMAGES = 40


def test_demo_runs_every_model_bit_exact(trained, sim_build, tmp_path):
    models = {workflow.MODELS[name]: trained(name) for name in workflow.MODELS}   # before the demo
    r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "demo", "--arch", "all", "--images", str(IMAGES),
                        "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count(f"bit-exact        {IMAGES}/{IMAGES} images") == len(workflow.MODELS)
    assert "| | cnn on fashion-mnist | cnn on mnist | mlp on fashion-mnist |" in r.stdout
    records = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert sorted((rec["model"], rec["dataset"]) for rec in records) == sorted(workflow.MODELS.values())
    for rec in records:
        assert rec["accelerator_cycles"] == rec["model_cycles"] and rec["cpu_bit_exact"]
        assert rec["bit_exact_images"] == rec["images"] == IMAGES
        board = tmp_path / "board" / f"{rec['model']}-{rec['dataset']}"
        assert (board / "board.json").exists()
        # the count checked here, not taken from the demo: every image's on-board outputs
        t = models[rec["model"], rec["dataset"]]
        images = t.data.test[0][:IMAGES]
        out = np.load(board / "results.npz")
        np.testing.assert_array_equal(out["logits"], t.model.logits(images))
        np.testing.assert_array_equal(out["argmax"], t.model.predict(images))
        assert (out["cycles"] == rec["model_cycles"]).all()
    assert "## Models side by side" in (tmp_path / "report" / "report.md").read_text()

    # again: every CPU baseline of the CNN (its 2 images in both C codes) from host.cpu_cache,
    # which the run above filled (or found filled), said so, and the same figures as above
    again = tmp_path / "again"
    r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "demo", "--arch", "cnn", "--images", str(IMAGES),
                        "--results-dir", str(again)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"on the CPU (4 of 4 C runs from the cache of {home.root() / 'cpu-baselines'}, measured " in r.stdout
    assert "in plain C (" in r.stdout and "; 4 of 4 C runs from the cache of " in r.stdout
    rec = json.loads((again / "history.jsonl").read_text())
    first = next(x for x in records if x["model"] == "cnn" and x["dataset"] == "fashion-mnist")
    assert len(rec["cpu_cached"]) == rec["cpu_runs"] == 4 and rec["cpu_bit_exact"]
    for figure in ("cpu_plain_cycles_per_inference", "cpu_optimised_cycles_per_inference"):
        assert rec[figure] == first[figure]


@pytest.mark.slow
def test_demo_with_its_defaults(trained, sim_build, tmp_path):
    """`nnhil demo` as the README runs it: the MLP on all 10,000 test images (five 2,000-image chunks)."""
    t = trained("mlp")
    r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "demo", "--results-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = np.load(tmp_path / "board" / "mlp-fashion-mnist" / "results.npz")
    images = t.data.test[0]
    assert len(out["logits"]) == len(images) == 10_000
    np.testing.assert_array_equal(out["logits"], t.model.logits(images))
    np.testing.assert_array_equal(out["argmax"], t.model.predict(images))


def _state_and_cpu(pid):
    """A process's state letter and its user + system CPU ticks, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[11]) + int(fields[12])


def test_a_paused_sim_takes_no_cpu_and_goes_on_after(sim_build):
    """What the demo does with its sims while no model is ready: stopped, they take no CPU;
    continued, the SoC answers as before; closed while paused, the sim ends on SIGTERM (its
    handler's clean exit, not stop()'s SIGKILL)."""
    with Simulator(sim_build) as sim:
        with sim.paused():
            deadline = time.monotonic() + 10         # SIGSTOP takes effect when the sim is next scheduled
            while (state := _state_and_cpu(sim.proc.pid)[0]) != "T" and time.monotonic() < deadline:
                time.sleep(0.01)
            state, cpu = _state_and_cpu(sim.proc.pid)
            time.sleep(0.5)                          # a running sim takes about 50 ticks meanwhile
            assert state == "T" and _state_and_cpu(sim.proc.pid) == (state, cpu)
        assert _state_and_cpu(sim.proc.pid)[0] != "T"
        with sim.bridge() as b:
            assert b.csr_read("nnhil_magic") == layout.MAGIC
        with sim.paused():
            sim.stop()
        assert sim.proc.returncode == 0     # sim_main.cpp ends cleanly on SIGTERM, not killed (-9)
