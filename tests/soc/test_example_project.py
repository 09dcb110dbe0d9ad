"""examples/my-model, a user's project, run as its user would: its own script, then pytest."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sim
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my-model"


def test_example_project_passes_on_the_sim(tmp_path, sim_build):
    project = shutil.copytree(EXAMPLE, tmp_path / "my-model")
    subprocess.run([sys.executable, "make_model.py"], cwd=project, check=True, timeout=60)
    # as in a user's venv of nnhil and pytest-embedded: without labgrid's plugin (nnhil's extra
    # "lab"), whose `target` fixture pytest-embedded's autouse fixtures would take
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:labgrid"], cwd=project,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "1 passed" in r.stdout
