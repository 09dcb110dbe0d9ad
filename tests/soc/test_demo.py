"""The README's main command, end to end on the sim: every model, exact, side by side."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from training import workflow

pytestmark = pytest.mark.sim
ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_every_model_bit_exact(trained, sim_build, tmp_path):
    for name in workflow.MODELS:      # trained (or taken from out/) before the demo needs them
        trained(name)
    r = subprocess.run([sys.executable, "-m", "host.cli", "demo", "--model", "all", "--images", "40",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("bit-exact        40/40 images") == len(workflow.MODELS)
    assert "| | cnn on fashion-mnist | cnn on mnist | mlp on fashion-mnist |" in r.stdout
    records = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert sorted((rec["model"], rec["dataset"]) for rec in records) == sorted(workflow.MODELS.values())
    for rec in records:
        assert rec["accelerator_cycles"] == rec["model_cycles"] and rec["cpu_bit_exact"]
        assert rec["bit_exact_images"] == rec["images"] == 40
        assert (tmp_path / "board" / f"{rec['model']}-{rec['dataset']}" / "board.json").exists()
    assert "## Models side by side" in (tmp_path / "report" / "report.md").read_text()
