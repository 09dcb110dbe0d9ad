"""One run spread over several DUTs (one simulation per core): work handed to whichever is free.

Each DUT is its own sim process on its own port; the host drives them from threads (the
bridge waits on sockets, which releases the GIL). A run is a list of tasks: a few given
first (the CPU inferences of ``nnhil run``: millions of cycles each), then the images in
contiguous chunks, each chunk a share of what is left, so the DUTs finish together however
fast each runs or whatever it did first. A DUT whose task fails takes no more: its images
are named, the other DUTs run the rest and report theirs.
"""
import contextlib
import dataclasses
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

from .results import Results

MIN_CHUNK = 50                # images: the last chunks are this small, so the DUTs end within one
MAX_CHUNK = 2000              # and at most a firmware batch (host.firmware.Firmware.accel_batch)


class ShardError(RuntimeError):
    """Some tasks failed; ``done`` holds the Results of the images that ran, by (first, end)."""

    def __init__(self, failures, done, not_run=()):
        self.failures, self.done, self.not_run = failures, done, list(not_run)
        why = [f"{task} on DUT {k + 1} failed: {e}" for k, task, e in failures]
        why += [f"{task} did not run: no DUT was left" for task in self.not_run]
        super().__init__("; ".join(why))


class Images(tuple):
    """A chunk of images [first, end), as a task."""

    def __new__(cls, first, end):
        return super().__new__(cls, (first, end))

    def __str__(self):
        return f"images {self[0]}-{self[1] - 1}"


def chunks(n, n_duts):
    """[(first, end)] of n images in the order they are handed out: each a share of those
    left (a 2 * n_duts-th), between MIN_CHUNK and MAX_CHUNK images."""
    out, first = [], 0
    while first < n:
        size = min(MAX_CHUNK, max(MIN_CHUNK, math.ceil((n - first) / (2 * n_duts))))
        out.append((first, min(n, first + size)))
        first = out[-1][1]
    return out


@dataclasses.dataclass
class Done:
    """What a run gave: the images' Results in order, each task's result by name, and the
    images' own wall time (first chunk's start to last chunk's end) and link bytes."""
    results: Results
    tasks: dict
    images_s: float
    images_link_bytes: int


def run(duts, images, tasks=(), progress=None, timeline=None):
    """``tasks`` (name, fn(dut)) first, then the loaded model of the DUTs on ``images``, each
    task on whichever DUT is free: a :class:`Done`. ``progress(done, total)`` counts images;
    ``timeline`` (host.timeline) gets each task's span, an image chunk's as "images"."""
    queue = list(tasks) + [(Images(lo, hi), None) for lo, hi in chunks(len(images), len(duts))]
    lock, stop = threading.Lock(), threading.Event()
    results, failures, done, spans, link = {}, [], [0], [], [0]

    def report(n, first):
        with lock:
            done[0] += n - report.seen.get(first, 0)
            report.seen[first] = n
            total = done[0]
        if progress:
            progress(total, len(images))
    report.seen = {}

    def worker(k):
        dut, where = duts[k], _where(duts, k)
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                task, fn = queue.pop(0)
            start, link0 = time.perf_counter(), dut.bridge.traffic()
            try:
                if fn is None:
                    lo, hi = task
                    out = dut.infer(images[lo:hi], lambda n, _, lo=lo: report(n, lo))
                else:
                    out = fn(dut)
            except Exception as e:               # the task's own error, named with its images below
                with lock:
                    failures.append((k, task, e))
                return
            finally:
                end = time.perf_counter()
                if timeline:
                    timeline.add("images" if fn is None else str(task), where, start - timeline.t0, end - timeline.t0)
            with lock:
                results[task] = out
                if fn is None:
                    spans.append((start, end))
                    link[0] += dut.bridge.traffic() - link0

    pool = ThreadPoolExecutor(len(duts))
    futures = [pool.submit(worker, k) for k in range(len(duts))]
    try:
        wait(futures)
    except BaseException:                        # Ctrl-C: the DUTs close under the threads
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    parts = {t: r for t, r in results.items() if isinstance(t, Images)}
    if failures or queue:
        raise ShardError(failures, parts, [t for t, _ in queue])
    return Done(Results.concatenate([parts[t] for t in sorted(parts)]),
                {t: r for t, r in results.items() if not isinstance(t, Images)},
                max(e for _, e in spans) - min(s for s, _ in spans) if spans else 0.0, link[0])


def _where(duts, k):
    return f"sim {k + 1}" if len(duts) > 1 else duts[k].target


@contextlib.contextmanager
def open_all(opener, n, ready=None, timeline=None):
    """n DUTs from ``opener()`` (a context manager each), then ``ready(dut)`` (e.g. booting its
    firmware: the long part) on all of them at once, a thread each; all closed on exit.
    ``timeline`` gets each DUT's "start" and "ready" spans.

    The DUTs open one after the other in this thread: a sim dies with the thread that
    started it (its parent-death signal), and starting one takes well under a second."""
    with contextlib.ExitStack() as stack:
        duts = []
        for k in range(n):
            start = timeline.now() if timeline else 0
            duts.append(stack.enter_context(opener()))
            if timeline:
                timeline.add("start", f"sim {k + 1}" if n > 1 else duts[k].target, start, timeline.now())
        if ready:
            run_each(duts, ready, "ready", timeline)
        yield duts


def run_each(duts, fn, name, timeline=None):
    """fn(dut) on every DUT at once (a thread each), each span ``name`` in ``timeline``;
    the first error raised after all are done."""
    def one(k):
        start = timeline.now() if timeline else 0
        try:
            return fn(duts[k])
        finally:
            if timeline:
                timeline.add(name, _where(duts, k), start, timeline.now())
    if len(duts) == 1:
        return [one(0)]
    with ThreadPoolExecutor(len(duts)) as pool:
        futures = [pool.submit(one, k) for k in range(len(duts))]
    return [f.result() for f in futures]
