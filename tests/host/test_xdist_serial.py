"""Under pytest -n, the tests that need the machine to themselves are left out, loudly, and run
(timed for real) in a serial pass; a pytest run started from a worker's test is no worker.
That is this repository's conftest.py (not the installed plugin's): a project of three tests
with a copy of it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"

TESTS = '''
import time
import pytest

def test_timed(benchmark):
    benchmark.pedantic(time.sleep, args=(0.002,), rounds=3)
    assert benchmark.stats.stats.min >= 0.002

@pytest.mark.serial
def test_loads_every_core():
    pass

def test_ordinary():
    pass
'''


def pytest_in(project, *args, **env):
    r = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *args], cwd=project,
                       capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return r.stdout


def test_serial_tests_leave_a_distributed_run_and_run_in_a_serial_one(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:pytest_embedded\n")
    shutil.copy(CONFTEST, tmp_path)
    (tmp_path / "test_mixed.py").write_text(TESTS)
    out = pytest_in(tmp_path, "-n", "2")
    ran, warned = out.split("warnings summary")
    assert "PASSED test_mixed.py::test_ordinary" in ran
    assert "test_timed" not in ran and "test_loads_every_core" not in ran
    assert "2 tests need the machine to themselves" in warned
    assert "test_mixed.py::test_timed" in warned and "test_mixed.py::test_loads_every_core" in warned
    # the serial pass, as a test of an xdist worker would start it: with the worker's variables
    out = pytest_in(tmp_path, "-m", "serial", PYTEST_XDIST_WORKER="gw0", PYTEST_XDIST_WORKER_COUNT="2")
    assert "test_mixed.py::test_timed PASSED" in out and "test_mixed.py::test_loads_every_core PASSED" in out
    assert "benchmark: 1 tests" in out and "test_ordinary" not in out
