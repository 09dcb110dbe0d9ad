"""host.cpu_cache on the simulation: a miss runs the C inference and stores it, a hit runs
nothing on the SoC, and another image or code is a miss."""
import numpy as np
import pytest

from nnhil.host import cpu_cache
from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import Dense, IntModel

pytestmark = pytest.mark.sim


def small_model(rng):
    """A 24-16-5 dense model of random int8 weights: a C inference of a few thousand cycles."""
    w = lambda *shape: rng.integers(fx.WEIGHT_MIN, fx.WEIGHT_MAX + 1, shape).astype(np.int8)
    rq = lambda n, shift: (rng.integers(-3000, 3000, n).astype(np.int32),
                           rng.integers(1 << 15, 1 << 16, n).astype(np.uint16), np.full(n, shift, np.uint8))
    return IntModel([Dense(w(16, 24), *rq(16, 17), fx.OUTPUT_U8), Dense(w(5, 16), *rq(5, 1), fx.OUTPUT_I32)],
                    input_shape=(24,))


def test_a_hit_runs_nothing_on_the_soc(dut, tmp_path, monkeypatch):
    dut.firmware                                        # booted from the run's home, before moving it
    monkeypatch.setenv("NNHIL_HOME", str(tmp_path))     # the cache's root: empty
    rng = np.random.default_rng(25)
    model = small_model(rng)
    images = rng.integers(0, 256, (3, 24), dtype=np.uint8)
    assert cpu_cache.lookup(dut, model, images, "plain") is None

    measured = cpu_cache.cpu_infer(dut, model, images, "plain")
    assert measured.cached is None and measured.path.parent == tmp_path / "cpu-baselines"
    np.testing.assert_array_equal(measured.results.logits, model.logits(images))
    assert (measured.results.driver_cycles > 0).all()

    link = dut.bridge.traffic()
    hit = cpu_cache.cpu_infer(dut, model, images, "plain")
    assert dut.bridge.traffic() == link                 # not a byte to the SoC
    assert hit.cached is not None and hit.path == measured.path
    for name in cpu_cache.FIELDS:
        np.testing.assert_array_equal(getattr(hit.results, name), getattr(measured.results, name))

    other = images.copy()
    other[2, 23] ^= 1
    assert cpu_cache.lookup(dut, model, other, "plain") is None
    assert cpu_cache.lookup(dut, model, images, "optimised") is None
    assert cpu_cache.lookup(dut, model, images[:2], "plain") is None
