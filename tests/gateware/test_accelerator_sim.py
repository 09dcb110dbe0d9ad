"""The accelerator in Icarus Verilog: each cocotb test of cocotb_accelerator.py on the builds it
declares (collected from that module), one simulator run per test and build. With pytest -n
any worker runs any of them: the workers share each build (sim_harness.py)."""
import functools

import pytest

import cocotb_accelerator
import sim_harness

CASES = [(build, name) for name, builds in cocotb_accelerator.tests().items() for build in builds]
PARAMS = [pytest.param(b, t, id=f"{b}-{t}") for b, t in CASES]


@functools.cache
def built(build):
    return sim_harness.build(cocotb_accelerator.BUILDS[build], build)


@pytest.mark.parametrize("build, testcase", PARAMS)
def test_accelerator(build, testcase):
    runner, out = built(build)
    sim_harness.run(runner, out, testcase, build)


def test_every_build_runs_a_test():
    assert {b for b, _ in CASES} == set(cocotb_accelerator.BUILDS)
