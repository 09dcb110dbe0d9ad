"""The trace window (gateware.tracewindow) in Migen's simulator.

A counter stands in for the accelerator's: ``busy`` for 40 cycles from cycle 3, ``cycles``
counting from 0 while busy. The window [first, last] is open exactly while the count is in it,
only after an arming, once per arming, and off at time 0; ``closed`` says it has been dumped.
"""
from migen import Module, Signal, If, run_simulation

from nnhil.gateware.tracewindow import TraceWindow

RUN = (3, 43)          # busy from cycle 3 to 42


class Bench(Module):
    def __init__(self):
        self.busy, self.cycles, self.t = Signal(), Signal(32), Signal(32)
        self.submodules.window = TraceWindow(self.busy, self.cycles)
        self.comb += self.busy.eq((self.t >= RUN[0]) & (self.t < RUN[1]))
        self.sync += [self.t.eq(self.t + 1), If(self.busy, self.cycles.eq(self.cycles + 1))]


def record(first, last, arm_at, restart=None):
    """[(cycles, trace, closed)] of every cycle, the window armed at cycle ``arm_at``."""
    b, seen = Bench(), []

    def bench():
        yield from b.window.first.write(first)
        yield from b.window.last.write(last)
        for t in range(2, 60):
            if t == arm_at:
                yield from b.window.control.write(1)
            seen.append(((yield b.cycles), (yield b.window.trace), (yield b.window.closed.status),
                         (yield b.busy)))
            yield
    run_simulation(b, bench())
    return seen


def test_the_window_is_open_for_its_cycles_of_a_run_once_per_arming():
    seen = record(10, 20, arm_at=2)
    open_ = [c for c, trace, _, busy in seen if trace]
    assert open_ == list(range(10, 21))
    assert all(busy for c, trace, _, busy in seen if trace)
    last_open = max(i for i, (_, trace, *_) in enumerate(seen) if trace)
    closed = [closed for *_, closed, _ in seen]
    assert closed[:last_open + 2] == [0] * (last_open + 2)       # 0 while open and as it closes,
    assert set(closed[last_open + 2:]) == {1}                    # 1 from the cycle after


def test_unarmed_it_stays_off():
    assert not any(trace for _, trace, *_ in record(0, 100, arm_at=None))


def test_a_window_past_the_run_never_opens():
    assert not any(trace for _, trace, *_ in record(50, 60, arm_at=2))

