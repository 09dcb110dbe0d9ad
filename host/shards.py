"""One batch spread over several DUTs (one simulation per core), in contiguous shards run at once.

Each DUT is its own sim process on its own port; the host drives them from threads
(the bridge waits on sockets, which releases the GIL). A shard that fails loses only its
own images: the others finish, and the error names the images that did not run.
"""
import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .results import Results


class ShardError(RuntimeError):
    """Some shards failed; ``done`` holds the Results of the others by (first, last) image."""

    def __init__(self, failures, done):
        self.failures, self.done = failures, done
        super().__init__("; ".join(f"images {lo}-{hi - 1} on DUT {k + 1} failed: {e}"
                                   for k, (lo, hi), e in failures))


def bounds(n, parts):
    """[(first, end)] of ``parts`` contiguous shards of n images, as even as can be."""
    edges = np.linspace(0, n, parts + 1).astype(int)
    return list(zip(edges[:-1], edges[1:]))


def infer(duts, images, progress=None):
    """The loaded model of every DUT on its shard of ``images``; Results in image order."""
    if len(duts) == 1:
        return duts[0].infer(images, progress)
    shards = bounds(len(images), len(duts))
    for dut in duts:
        dut.firmware                                # built and booted one at a time, before the threads
    done = [0] * len(duts)

    def work(k):
        lo, hi = shards[k]

        def report(n, _):
            done[k] = n
            if progress:
                progress(sum(done), len(images))
        return duts[k].infer(images[lo:hi], report)

    with ThreadPoolExecutor(len(duts)) as pool:
        futures = [pool.submit(work, k) for k in range(len(duts))]
    parts, failures = {}, []
    for k, f in enumerate(futures):
        try:
            parts[shards[k]] = f.result()
        except Exception as e:              # the shard's own error, named with its images below
            failures.append((k, shards[k], e))
    if failures:
        raise ShardError(failures, parts)
    return Results.concatenate([parts[s] for s in shards])


@contextlib.contextmanager
def open_all(opener, n):
    """n DUTs from ``opener()`` (a context manager each), all closed on exit."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(opener()) for _ in range(n)]
