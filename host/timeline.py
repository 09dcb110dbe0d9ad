"""Where a run's wall time goes: each phase's start and end, and on which simulation.

Phases may overlap (several simulations at once, host work beside them), so a run keeps
spans, not a sum: ``nnhil run`` prints them and writes them to board.json, so whoever waits
on a long run can see what it waited for.
"""
import contextlib
import os
import threading
import time

HOST = "host"                 # the main thread; "host2" the reference beside the sims (host.run)


def process_age():
    """Seconds since this process started (Python's start-up and imports before a run)."""
    with open("/proc/self/stat") as f:
        started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


class Timeline:
    """Spans (phase, where, start, end) in seconds from the timeline's start; thread-safe."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.startup_s = process_age()
        self.spans = []
        self._lock = threading.Lock()

    def now(self):
        return time.perf_counter() - self.t0

    @contextlib.contextmanager
    def phase(self, name, where=HOST):
        start = self.now()
        try:
            yield
        finally:
            self.add(name, where, start, self.now())

    def add(self, name, where, start, end):
        with self._lock:
            self.spans.append((name, where, start, end))

    def merged(self):
        """The spans in order of their start, a place's consecutive spans of one phase (the
        chunks of images of a batch, the outputs of each model of a demo) as one, with the
        seconds spent in them, which a gap between them does not count:
        [(phase, where, start, end, count, seconds)]."""
        out = []
        for n, w, s, e in sorted(self.spans, key=lambda x: (x[1] != HOST, x[1], x[2])):
            if out and out[-1][:2] == (n, w):
                out[-1] = (n, w, out[-1][2], e, out[-1][4] + 1, out[-1][5] + e - s)
            else:
                out.append((n, w, s, e, 1, e - s))
        return sorted(out, key=lambda x: (x[2], x[1]))

    def records(self):
        """The phases for board.json: the process's start-up, then each span from the timeline's start."""
        return {"startup_s": round(self.startup_s, 2), "wall_s": round(self.startup_s + self.now(), 2),
                "phases": [{"phase": n, "on": w, "start_s": round(s, 2), "end_s": round(e, 2),
                            **({"count": c, "seconds": round(d, 2)} if c > 1 else {})}
                           for n, w, s, e, c, d in self.merged()]}

    def lines(self):
        """The wall time so far, then one line per place (the host, each DUT): its phases in
        order, each from-to (seconds) and the seconds spent in it."""
        spans = self.merged()
        places = sorted({w for _, w, *_ in spans}, key=lambda w: (w != HOST, w))
        out = [f"{self.startup_s + self.now():.1f} s of wall time so far ({self.startup_s:.1f} s of it Python's "
               f"start-up, then from 0 s), each phase from-to (seconds):"]
        for place in places:
            out.append(f"  {place:<6} " + ", ".join(
                f"{n}{f' ({c})' if c > 1 else ''} {s:.1f}-{e:.1f} ({d:.1f})"
                for n, w, s, e, c, d in spans if w == place))
        return out
