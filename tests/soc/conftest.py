"""Fixtures of the SoC tests: one cached sim build, one sim shared by the session, the firmware."""
import numpy as np
import pytest

from gateware import layout, sim as simbuild
from host.firmware import build_firmware
from host.simulator import Simulator
from training import fixedpoint as fx
from training.intmodel import Dense, IntModel


@pytest.fixture(scope="session")
def sim_build():
    """The default configuration's sim model (built once, then taken from build/sim-<hash>)."""
    return simbuild.build_sim(layout.AccelConfig())


@pytest.fixture(scope="session")
def sim(sim_build):
    with Simulator(sim_build) as s:
        yield s


@pytest.fixture(scope="session")
def firmware_bin(sim_build):
    return build_firmware(sim_build.dir)


def random_dense(rng, n_in, n_out, output, shift=26):
    return Dense(rng.integers(-127, 128, (n_out, n_in)).astype(np.int8),
                 rng.integers(-20000, 20000, n_out).astype(np.int32),
                 rng.integers(1 << 15, 1 << 16, n_out).astype(np.uint16),
                 np.full(n_out, shift, np.uint8), output)


@pytest.fixture(scope="session")
def model_784_128_10():
    """A random 784-128-10 integer model: the shape of the README's headline model."""
    rng = np.random.default_rng(4)
    return IntModel([random_dense(rng, 784, 128, fx.OUTPUT_U8), random_dense(rng, 128, 10, fx.OUTPUT_I32)])
