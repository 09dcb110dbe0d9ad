"""--sims: one simulation per core unless told otherwise, a board is one, a bad count refused
before any work starts."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnhil.host import options

ROOT = Path(__file__).resolve().parents[2]


def _target(*argv):
    p = argparse.ArgumentParser()
    options.add_arguments(p, options.Target)
    return options.from_namespace(options.Target, p.parse_args(list(argv)))


def test_the_default_is_one_simulation_per_core_and_one_board():
    assert _target().simulations() == len(os.sched_getaffinity(0)) >= 1
    assert _target("--sims", "3").simulations() == 3
    assert _target("--target", "arty").simulations() == 1


@pytest.mark.parametrize("argv", [("--sims", "0"), ("--sims", "-1"), ("--target", "arty", "--sims", "2")])
def test_a_bad_count_is_refused(argv):
    with pytest.raises(options.InputError, match="--sims"):
        _target(*argv).simulations()


def test_the_demo_refuses_a_bad_count_before_training(tmp_path):
    env = {**os.environ, "NNHIL_HOME": str(tmp_path / "home")}
    r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "demo", "--arch", "all", "--sims", "0"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode != 0 and "--sims 0: give a number of simulations" in r.stderr, r.stderr[-2000:]
    assert not list((tmp_path / "home").glob("out/*mnist*")), "the demo trained before checking --sims"
