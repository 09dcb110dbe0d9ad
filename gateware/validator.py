"""The accelerator's program check: the ERR_* code of one layer descriptor against the build."""
from migen import *

from litex.gen import LiteXModule

from . import layout
from .layout import DIM_BITS as DIM, GEOM_BITS as G


class ProgramValidator(LiteXModule):
    """The first failing rule of :func:`gateware.program.check_program` for the layer the
    sequencer holds, as ``check`` (ERR_NONE when it passes), ``bad_count`` for n_layers and
    ``bad_stop`` for stop_after.

    Combinational on the sequencer's registers (the descriptor and the sizes it computed):
    feeding FSM outputs back into the FSM's combinatorial block would make a zero-delay loop
    in event-driven simulators. Past ERR_ACT_CAPACITY, window <= n_in <= act_bytes < 2**DIM,
    which the sequencer relies on for its weight span.
    """
    def __init__(self, cfg):
        # The program.
        self.n_layers = Signal(32)
        self.stop_after = Signal(32)
        self.layer    = Signal(max=cfg.max_layers + 1)
        self.is_last  = Signal()
        self.prev_out = Signal(DIM + 2*G)  # n_out of the previous layer
        # The descriptor.
        self.c_in, self.c_out = Signal(DIM), Signal(DIM)
        self.height, self.width, self.kernel = Signal(G), Signal(G), Signal(G)
        self.pool   = Signal()
        self.logits = Signal()
        # Its sizes.
        self.conv_h, self.conv_w = Signal(G + 1), Signal(G + 1)   # wrap when kernel > height
        self.n_in  = Signal(DIM + 2*G)
        self.n_out = Signal(DIM + 2*G)
        self.plane = Signal(2*G)
        self.w_end = Signal(34)            # one past its last weight word
        self.b_end = Signal(33)            # one past its last bias entry
        self.in_base  = Signal(DIM)        # words before its input, and its output (see Sequencer)
        self.out_base = Signal(DIM + 1)    # with the logits bank: may pass 2**DIM
        # Verdicts.
        self.bad_count = Signal()          # n_layers out of range: ERR_LAYER_COUNT
        self.bad_stop  = Signal()          # stop_after past n_layers: ERR_STOP_AFTER
        self.check     = Signal(layout.STATUS_ERROR_BITS)

        # # #

        in_end, out_end = Signal(DIM + 2*G + 1), Signal(DIM + 2*G + 1)   # one past, in bytes
        logit_end = Signal(DIM + 2)        # explicit widths: Verilog would wrap the sums
        self.comb += [
            logit_end.eq(self.c_out + self.out_base),
            in_end.eq(self.n_in + (self.in_base << 2)),
            out_end.eq(self.n_out + (self.out_base << 2)),
            self.bad_count.eq((self.n_layers == 0) | (self.n_layers > cfg.max_layers)),
            self.bad_stop.eq(self.stop_after > self.n_layers),
            If((self.c_in == 0) | (self.c_out == 0) | (self.height == 0) | (self.width == 0) |
               (self.kernel == 0),
                self.check.eq(layout.ERR_EMPTY_LAYER)
            ).Elif((self.kernel > self.height) | (self.kernel > self.width) |
                   (self.pool & ((self.conv_h < 2) | (self.conv_w < 2))),
                self.check.eq(layout.ERR_SHAPE)
            ).Elif((in_end > cfg.act_bytes) | (~self.is_last & (out_end > cfg.act_bytes)),
                self.check.eq(layout.ERR_ACT_CAPACITY)
            ).Elif(self.w_end > cfg.weight_words,
                self.check.eq(layout.ERR_WEIGHT_RANGE)
            ).Elif(self.b_end > cfg.bias_entries,
                self.check.eq(layout.ERR_BIAS_RANGE)
            ).Elif((self.layer != 0) & (self.n_in != self.prev_out),
                self.check.eq(layout.ERR_CHAIN)
            ).Elif((self.logits != self.is_last) |
                   (self.is_last & (self.pool | (self.plane != 1) | (logit_end > cfg.logit_words))),
                self.check.eq(layout.ERR_OUTPUT_KIND)
            ),
        ]
