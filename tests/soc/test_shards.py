"""A run over two simulations at once: every image once and in order, a task beside the
images, and a crashed simulation named by its images while the other finishes the rest."""
import os
import signal
import threading

import numpy as np
import pytest

from nnhil.host import pace, shards
from nnhil.host.dut import open_dut
from nnhil.host.timeline import Timeline

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def two(sim_build):
    """Two sims whose firmware booted at once: each boot waits at a barrier until the other's
    has begun (a thread start: the host's scheduling allowance), so boots run one after the
    other would break it, whatever the machine's load; no wall-clock overlap is compared."""
    timeline, both = Timeline(), threading.Barrier(2, timeout=pace.SIM.allowance_s)

    def boot(d):
        both.wait()
        return d.firmware
    with shards.open_all(lambda: open_dut(), 2, ready=boot, timeline=timeline) as duts:
        assert len({d.sim.port for d in duts}) == 2          # each its own process and port
        assert sorted((n, w) for n, w, _, _ in timeline.spans) == [
            ("ready", "sim 1"), ("ready", "sim 2"), ("start", "sim 1"), ("start", "sim 2")]
        yield duts


def test_chunks_cover_the_images_in_shrinking_shares():
    for n, duts in ((301, 2), (10_000, 2), (49, 3), (7000, 1)):
        cs = shards.chunks(n, duts)
        assert cs[0][0] == 0 and cs[-1][1] == n and all(a[1] == b[0] for a, b in zip(cs, cs[1:]))
        sizes = [hi - lo for lo, hi in cs]
        assert sizes == sorted(sizes, reverse=True) and max(sizes) <= shards.MAX_CHUNK
        assert min(sizes[:-1] or [shards.MIN_CHUNK]) >= shards.MIN_CHUNK
    assert shards.chunks(10_000, 2)[:3] == [(0, 2000), (2000, 4000), (4000, 5500)]


def test_two_sims_give_every_image_in_order_beside_a_task(two, trained):
    t = trained("mlp")
    images = t.data.test[0][:301]                             # odd: no even split
    shards.run_each(two, lambda d: d.load(t.model), "load")
    seen, timeline = [], Timeline()
    done = shards.run(two, images, [("CPU", lambda d: d.cpu_infer(t.model, images[:1]))],
                      progress=lambda n, total: seen.append(n), timeline=timeline)
    assert len(done.results) == 301 and done.results.exact(t.model, images).all()
    assert done.tasks["CPU"].exact(t.model, images[:1]).all()
    assert seen[-1] == 301 and seen == sorted(seen)
    phases = sorted((n, w) for n, w, _, _ in timeline.spans)
    assert [n for n, _ in phases].count("CPU") == 1
    assert sum(n == "images" for n, _ in phases) == len(shards.chunks(301, 2))
    assert 0 < done.images_s and done.images_link_bytes > 301 * 784


def test_a_crashed_sim_fails_its_images_by_name(two, trained):
    """The last test of the module: it kills the second sim."""
    t = trained("mlp")
    images = t.data.test[0][:1200]
    shards.run_each(two, lambda d: d.load(t.model), "load")
    started = threading.Event()

    def kill_when_started(done, total):
        if done > 50 and not started.is_set():
            started.set()
            os.killpg(two[1].sim.proc.pid, signal.SIGKILL)
    with pytest.raises(shards.ShardError, match=r"^images (\d+)-(\d+) on DUT 2 failed: .*not running") as e:
        shards.run(two, images, progress=kill_when_started)
    (k, failed, _), = e.value.failures
    assert k == 1 and not e.value.not_run
    # the first sim ran every other image, and they are exact
    ran = sorted(e.value.done) + [tuple(failed)]
    assert sorted(ran) == shards.chunks(1200, 2)
    for (lo, hi), part in e.value.done.items():
        np.testing.assert_array_equal(part.logits, t.model.logits(images[lo:hi]))
