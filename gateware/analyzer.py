"""A board's view of a layer's window: a LiteScope logic analyser on the accelerator's signals.

The sim answers "why is this output wrong?" with a dump of the layer's cycles
(gateware.tracewindow, host.wave); a board has no dump, so this option puts an on-chip
analyser in the Arty SoC instead: the same TraceWindow, armed through the same CSRs with the
cycles the cycle model gives, and a LiteScope analyzer sampling :func:`probes` every cycle,
which the host triggers on the window's rising edge and reads back with litescope_cli over
the SoC's UARTBone (docs/waveforms.md). It costs block RAM (``DEPTH`` samples of every probe
bit), so it is off by default and only some variants may carry it (:func:`check`).
"""
from . import variants

DEPTH = 1024              # samples kept from the trigger: a conv layer of the demo CNN takes 4,659 cycles
CSV = "analyzer.csv"      # its signal list, which litescope_cli reads, in the build directory
# The Arty variants whose build may carry it. Not the A7-35: its default SoC already uses 45 of
# its 50 RAMB36 (gateware.variants' limit), and the analyser's storage would take 4 of the 5
# left for users.
VARIANTS = ("a7-100",)


def check(variant):
    """Refuse the analyser for a variant that may not carry it, saying why and which may."""
    from .resources import DEVICES

    v = variants.get(variant)
    if v.name not in VARIANTS:
        raise ValueError(f"litescope: the Arty {v.name} has no block RAM to spare for the analyzer (its "
                         f"default SoC may use {v.ramb36_limit} of its {DEVICES[v.device]['RAMB36']} RAMB36, "
                         f"the rest is left for users); build it for {' or '.join(VARIANTS)} "
                         f"(--variant {VARIANTS[0]})")


def probes(soc, window):
    """What the analyser samples: the window, the sequencer's layer, cycle and read addresses,
    the MAC issue, and the requantizer's write port (output index, data, write enables)."""
    from . import soc as nnsoc

    accel = getattr(soc, nnsoc.NAME)
    seq, rq = accel.sequencer, accel.requant
    return [window.trace, seq.layer, seq.cycles, seq.addr, seq.w_adr, seq.valid, seq.first, seq.last,
            rq.out_adr, rq.out_dat, rq.act_we, rq.act_we_next, rq.logit_we]


def add(soc, variant, depth=DEPTH, csr_csv=None):
    """The TraceWindow of ``soc``'s accelerator and a LiteScope analyzer of :func:`probes`,
    ``depth`` samples, as ``analyzer``; its signal list written to ``csr_csv`` at build time
    (None: not written). Refused for a ``variant`` that may not carry it."""
    from litescope import LiteScopeAnalyzer

    from . import tracewindow

    check(variant)
    window = tracewindow.add(soc)
    soc.add_module(name="analyzer", module=LiteScopeAnalyzer(probes(soc, window), depth=depth,
                                                             clock_domain="sys", csr_csv=csr_csv))
    return window
