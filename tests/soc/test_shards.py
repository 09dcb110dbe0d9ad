"""A batch over two simulations at once: the same results as one, and a crashed one named by its images."""
import os
import signal
import threading

import numpy as np
import pytest

from nnhil.host import shards
from nnhil.host.dut import open_dut

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def two(sim_build):
    with shards.open_all(lambda: open_dut(log=lambda s: None), 2) as duts:
        assert len({d.sim.port for d in duts}) == 2          # each its own process and port
        yield duts


def test_two_shards_give_every_image_in_order(two, trained):
    t = trained("mlp")
    images = t.data.test[0][:301]                             # odd: the shards differ by one
    for dut in two:
        dut.load(t.model)
    seen = []
    r = shards.infer(two, images, progress=lambda done, total: seen.append(done))
    assert len(r) == 301 and r.exact(t.model, images).all()
    assert seen[-1] == 301 and seen == sorted(seen)
    assert shards.bounds(301, 2) == [(0, 150), (150, 301)]


def test_a_crashed_shard_fails_its_images_by_name(two, trained):
    """The last test of the module: it kills the second sim."""
    t = trained("mlp")
    images = t.data.test[0][:1200]
    for dut in two:
        dut.load(t.model)
    started = threading.Event()

    def kill_when_started(done, total):
        if done > 50 and not started.is_set():
            started.set()
            os.killpg(two[1].sim.proc.pid, signal.SIGKILL)
    with pytest.raises(shards.ShardError, match=r"images 600-1199 on DUT 2 failed: .*not running") as e:
        shards.infer(two, images, progress=kill_when_started)
    (first,) = e.value.done.values()                          # the other shard finished and reports
    np.testing.assert_array_equal(first.logits, t.model.logits(images[:600]))
