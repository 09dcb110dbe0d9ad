"""A trace window for the traced sim build: the dump runs only for chosen cycles of a run.

LiteX's sim dumps while the platform's ``sim_trace`` pad is high, between ``trace_start`` and
``trace_end``: absolute times compiled into the model, which the host cannot know for a run.
This module drives that pad instead from the accelerator's own ``cycles`` counter (the one
:mod:`gateware.cyclemodel` predicts exactly): the host writes the first and last cycle of a
layer and arms the window, and the pad is high while a run's counter is in that range.
It is off at time 0 and after every run (the window disarms when it closes), so a
model that is never armed dumps nothing. The traced variant of :func:`gateware.simsoc.sim_soc`
adds it (:func:`add`); on a board, gateware.analyzer adds it with a LiteScope analyzer that
triggers on the same window (off by default; docs/waveforms.md).
"""
from migen import *

from litex.gen import LiteXModule
from litex.soc.interconnect.csr import CSRField, CSRStatus, CSRStorage

NAME = "tracewindow"          # its CSRs: tracewindow_first, _last, _control, _closed


class TraceWindow(LiteXModule):
    """``trace`` is high while armed and ``first <= cycles <= last`` of a busy accelerator."""
    def __init__(self, busy, cycles):
        self.trace = Signal()
        self.first = CSRStorage(32, description="First accelerator cycle (the ``cycles`` CSR's count "
                                "from start) that the traced sim dumps.")
        self.last = CSRStorage(32, description="Last accelerator cycle that the traced sim dumps.")
        self.control = CSRStorage(fields=[CSRField("arm", pulse=True, description="Write 1 to dump "
            "the window of the next run; the window disarms when it closes, so an arming dumps once.")])
        self.closed = CSRStatus(1, description="The window of the last arming has been dumped "
                                "(the sim has closed its trace file).")

        armed, was = Signal(), Signal()
        self.comb += self.trace.eq(armed & busy & (cycles >= self.first.storage) & (cycles <= self.last.storage))
        self.sync += [
            was.eq(self.trace),
            If(self.control.fields.arm,
                armed.eq(1),
                self.closed.status.eq(0),
            ).Elif(was & ~self.trace,
                armed.eq(0),
                self.closed.status.eq(1),
            ),
        ]


def add(soc):
    """The TraceWindow of ``soc``'s accelerator (gateware.soc.add_accelerator), as ``NAME``."""
    from . import soc as nnsoc

    seq = getattr(soc, nnsoc.NAME).sequencer
    window = TraceWindow(seq.busy, seq.cycles)
    soc.add_module(name=NAME, module=window)
    return window

