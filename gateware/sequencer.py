"""The accelerator's layer sequencer: validates the program, then runs it layer by layer."""
from migen import *

from litex.gen import LiteXModule

from . import cyclemodel, faults, layout
from .addrgen import AddressGenerator
from .layout import DIM_BITS as DIM, GEOM_BITS as G
from .validator import ProgramValidator


class Sequencer(LiteXModule):
    """On ``start``, checks ``n_layers`` and every descriptor (:class:`ProgramValidator`; any
    ERR_* ends the run at once with ``done`` and the code), then runs each layer: loads its
    descriptor from the program RAM, computes its sizes in four cycles (no wide multiplier on
    a critical path) and issues its windows through the :class:`AddressGenerator`, one input
    per cycle. After a position of fewer MAC cycles than its tile has lanes it waits (GAP)
    until the drain bank is free; after a layer, until the MAC array and the requantizer
    are idle. ``cycles`` counts from start to done; :mod:`gateware.cyclemodel` predicts it.
    With ``stop_after`` = k > 0 the whole program is validated as always, then the run ends
    after layer k - 1, its output left in its activation buffer. ``in_base`` and ``out_base``
    are the words where the layer's input and output start (layout.DESCRIPTOR out_base, the
    input ``slot``), added to the buffers' word addresses by the accelerator.

    A dense layer narrow enough for 2 or 4 lane groups (layout.LayerShape.groups) issues
    its windows as ceil(n_in/G) word steps: the address generator sees c_in/G inputs of
    stride G. A conv of at most lanes/2 channels and two output columns or more runs
    position pairs (layout.LayerShape.pairs: ``pair``) in 2 lane groups.

    The window's place reaches the MAC array with its sums (``merge``, ``publish``,
    MAC_LATENCY cycles after issue) and the requantizer with the drain bank (``tile_out``,
    ``tile_chan``, PUBLISH_LATENCY cycles later).

    ``select``: a fault build's fault_select (gateware.faults), None in an ordinary build.
    """
    def __init__(self, cfg, select=None):
        P = cfg.lanes
        # Control and status (the CSRs).
        self.start      = Signal()
        self.soft_reset = Signal()         # abort: back to idle, done and error cleared
        self.n_layers   = Signal(32)       # latched at start: a CSR write cannot disturb a run
        self.stop_after = Signal(32)       # latched at start too; 0 runs the whole program
        self.slot       = Signal()         # latched at start too: the input slot and logits bank
        self.busy   = Signal()
        self.done   = Signal()             # set at the end of a run or a rejected program
        self.error  = Signal(layout.STATUS_ERROR_BITS)
        self.cycles = Signal(32)
        # The program RAM (read port).
        self.program_adr = Signal(max=cfg.max_layers + 1)
        self.descriptor  = Signal(layout.DESCRIPTOR.width)
        # The layer that runs: it reads act[layer % 2]; the requantizer's parameters.
        self.layer  = Signal(max=cfg.max_layers + 1)
        self.b_base = Signal(32)
        self.c_out  = Signal(DIM)
        self.plane  = Signal(2*G)
        self.logits = Signal()
        self.split  = Signal(2)            # log2 of the lane groups (layout.LayerShape.groups)
        self.tail   = Signal(2)            # the last lane group with an input on a window's last step
        self.in_base  = Signal(DIM)        # word of its input in the buffer it reads
        self.out_base = Signal(DIM + 1)    # word of its output in the buffer (or logits) it writes
        self.pair   = Signal()             # two output positions per window (a conv's lane groups)
        # Issue: the input and weight addresses of a MAC cycle.
        self.addr  = Signal(DIM)
        self.w_adr = Signal(32)
        self.valid = Signal()
        self.first = Signal()
        self.last  = Signal()
        # The window's place, delayed to the MAC array's tile_done and to the drain bank.
        self.merge     = Signal()
        self.publish   = Signal()
        self.tile_out  = Signal(DIM)
        self.tile_chan = Signal(DIM)
        self.single    = Signal()          # with tile_out: the pair's second position is past its row
        # The datapath is idle.
        self.mac_busy = Signal()
        self.rq_busy  = Signal()

        # # #

        self.fsm = fsm = ResetInserter()(FSM(reset_state="IDLE"))
        self.validator = v = ProgramValidator(cfg)
        self.addrgen = ag = ResetInserter()(AddressGenerator(P, select))
        self.comb += [fsm.reset.eq(self.soft_reset), ag.reset.eq(self.soft_reset)]

        idle       = fsm.ongoing("IDLE")
        start      = self.start
        fail_count = Signal()
        fail_stop  = Signal()
        fail       = Signal()              # layer `layer` is rejected with code v.check
        count      = Signal(32)
        self.comb += [self.busy.eq(~idle), self.cycles.eq(count)]
        self.sync += [
            If(idle, If(start, count.eq(faults.site(select, "cycles_from_1", 0, 1)))).Else(count.eq(count + 1)),
            If(start & ~idle, self.error.eq(layout.ERR_BUSY)),
            If(fail_count, self.error.eq(layout.ERR_LAYER_COUNT)),
            If(fail_stop, self.error.eq(layout.ERR_STOP_AFTER)),
            If(fail, self.error.eq(v.check)),
            If(start & idle, self.done.eq(0), self.error.eq(layout.ERR_NONE)),
            If(fsm.ongoing("FINISH"), self.done.eq(1)),
            If(self.soft_reset, self.done.eq(0), self.error.eq(layout.ERR_NONE)),
        ]

        # Descriptor of layer `layer`, latched in LOAD; its sizes, computed in SIZE1-4.
        layer    = self.layer
        n_layers = Signal(32)
        stop_after = Signal(32)
        slot     = Signal()
        c_in, c_out = Signal(DIM), self.c_out
        height, width, kernel = Signal(G), Signal(G), Signal(G)
        pool     = self.pool = Signal()
        is_logit = self.logits
        w_base   = Signal(32)
        b_base   = self.b_base
        lg_lanes = (P - 1).bit_length()
        kk, hw   = Signal(2*G), Signal(2*G)
        conv_h, conv_w = Signal(G + 1), Signal(G + 1)   # wrap when kernel > height: ERR_SHAPE
        out_h, out_w   = Signal(G), Signal(G)
        window   = Signal(DIM + 2*G)       # MAC cycles per window: c_in k^2, or ceil(n_in / groups)
        dense    = Signal()
        split    = self.split
        steps_in = Signal(DIM)             # what the address generator sees: c_in, or n_in / groups
        stride   = Signal(2*G)             # ... and its channel stride: h w, or the groups
        n_in     = Signal(DIM + 2*G)
        plane    = self.plane
        n_out    = Signal(DIM + 2*G)
        n_tiles  = Signal(DIM - lg_lanes + 1)
        v_last   = Signal(lg_lanes + 1)    # valid lanes of the last tile
        w_span   = Signal(DIM + DIM)
        position = Mux(pool, window << 2, window)   # MAC cycles of one output position
        w_end    = Signal(34)              # explicit widths: Verilog would wrap the sums at 32 bits
        b_end    = Signal(33)
        gap_full = Signal(lg_lanes + 1)    # idle cycles after a position so the drain bank is free
        gap_last = Signal(lg_lanes + 1)
        prev_out = Signal(DIM + 2*G)
        is_last  = Signal()
        ends     = Signal()                # the run's last layer: the program's, or stop_after - 1
        running  = Signal()                # validation done, running the program
        wait     = Signal(lg_lanes + 1)
        d        = self.descriptor
        fields   = dict(c_in=c_in, c_out=c_out, height=height, width=width, kernel=kernel,
                        w_base=w_base, b_base=b_base)
        flags    = d[layout.DESCRIPTOR["flags"].bits]
        self.comb += [
            self.program_adr.eq(layer),
            is_last.eq(layer == n_layers - 1),
            ends.eq(is_last | (layer + 1 == stop_after)),
        ]
        self.comb += [getattr(v, name).eq(value) for name, value in dict(
            n_layers=n_layers, layer=layer, is_last=is_last, prev_out=prev_out, c_in=c_in,
            c_out=c_out, height=height, width=width, kernel=kernel, pool=pool, logits=is_logit,
            conv_h=conv_h, conv_w=conv_w, n_in=n_in, n_out=n_out, plane=plane, w_end=w_end,
            b_end=b_end, stop_after=stop_after, in_base=self.in_base, out_base=self.out_base).items()]
        self.comb += [getattr(ag, name).eq(value) for name, value in dict(
            c_in=steps_in, kernel=kernel, width=width, hw=stride, pool=pool, pair=self.pair,
            window=window, plane=plane,
            out_h=out_h, out_w=out_w, n_tiles=n_tiles, w_base=w_base).items()]
        self.comb += [
            self.addr.eq(ag.addr),
            self.w_adr.eq(ag.w_adr),
            self.first.eq(ag.first),
            self.last.eq(ag.last),
        ]

        # The window's place: for the shadow bank when its sums are done, and for the
        # requantizer when they reach the drain bank, PUBLISH_LATENCY cycles later.
        meta = Cat(ag.out_index, ag.chan, ag.single, ag.merge, ag.publish)
        delay = [Signal(len(meta), reset_less=True)
                 for _ in range(cyclemodel.MAC_LATENCY + cyclemodel.PUBLISH_LATENCY)]
        self.sync += [delay[0].eq(meta)] + [delay[n].eq(delay[n - 1]) for n in range(1, len(delay))]
        at_done, at_drain = delay[cyclemodel.MAC_LATENCY - 1], delay[-1]
        self.comb += [
            Cat(self.merge, self.publish).eq(at_done[2*DIM + 1:]),
            Cat(self.tile_out, self.tile_chan, self.single).eq(at_drain[:2*DIM + 1]),
        ]

        fsm.act("IDLE",
            If(start,
                NextValue(n_layers, self.n_layers),
                NextValue(stop_after, self.stop_after),
                NextValue(slot, self.slot),
                NextValue(layer, 0),
                NextValue(running, 0),
                NextState("COUNT"),
            )
        )
        fsm.act("COUNT",
            If(v.bad_count,
                fail_count.eq(1), NextState("FINISH"),
            ).Elif(v.bad_stop,
                fail_stop.eq(1), NextState("FINISH"),
            ).Else(NextState("FETCH"))
        )
        fsm.act("FETCH", NextState("LOAD"))   # program RAM read
        fsm.act("LOAD",
            [NextValue(r, d[layout.DESCRIPTOR[name].bits]) for name, r in fields.items()],
            NextValue(is_logit, flags[layout.FLAGS["logits"].offset]),
            NextValue(pool, flags[layout.FLAGS["pool"].offset]),
            # layer 0 reads its slot of act0, a later layer where the one before (hidden, or
            # rejected already) wrote; the logits go to bank `slot`
            NextValue(self.in_base, Mux(layer == 0, Mux(faults.site(select, "input_slot_ignored", slot, 0),
                                                        cfg.slot_words, 0), self.out_base)),
            NextValue(self.out_base, d[layout.DESCRIPTOR["out_base"].bits] +
                      Mux(flags[layout.FLAGS["logits"].offset] & slot, cfg.slot_logits, 0)),
            ag.clear.eq(1),
            NextState("SIZE1"),
        )
        fsm.act("SIZE1",
            NextValue(kk, kernel * kernel),
            NextValue(hw, height * width),
            NextValue(conv_h, height - kernel + 1),
            NextValue(conv_w, width - kernel + 1),
            NextValue(n_tiles, (c_out + P - 1)[lg_lanes:]),
            NextValue(v_last, (c_out - 1)[:lg_lanes] + 1),
            NextValue(dense, (height == 1) & (width == 1) & (kernel == 1)),
            ag.init.eq(1),
            NextState("SIZE2"),
        )
        fsm.act("SIZE2",
            NextValue(window, c_in * kk),
            NextValue(split, 0), NextValue(steps_in, c_in), NextValue(stride, hw), NextValue(self.tail, 0),
            If(dense & (c_out <= P // 4),
                NextValue(split, 2), NextValue(steps_in, (c_in + 3)[2:]), NextValue(stride, 4),
                NextValue(window, (c_in + 3)[2:]), NextValue(self.tail, (c_in - 1)[:2]),
            ).Elif(dense & (c_out <= P // 2),
                NextValue(split, 1), NextValue(steps_in, (c_in + 1)[1:]), NextValue(stride, 2),
                NextValue(window, (c_in + 1)[1:]), NextValue(self.tail, (c_in - 1)[:1]),
            ),
            NextValue(n_in, c_in * hw),
            NextValue(out_h, Mux(pool, conv_h[1:], conv_h)),
            NextValue(out_w, Mux(pool, conv_w[1:], conv_w)),
            NextState("SIZE3"),
        )
        fsm.act("SIZE3",
            NextValue(plane, out_h * out_w),
            NextValue(w_span, n_tiles * window[:DIM]),
            NextValue(gap_full, Mux(position < P, P - position, 0)),
            NextValue(gap_last, Mux(position < v_last, v_last - position, 0)),
            NextValue(self.pair, 0),
            If((c_out <= P // 2) & (out_w > 1),
                NextValue(self.pair, 1), NextValue(split, 1), NextValue(self.tail, 1),
            ),
            NextState("SIZE4"),
        )
        fsm.act("SIZE4",
            NextValue(n_out, c_out * plane),
            NextValue(w_end, w_base + w_span),
            NextValue(b_end, b_base + c_out),
            If(running, NextState("ISSUE")).Else(NextState("CHECK")),
        )
        fsm.act("CHECK",
            If(v.check != layout.ERR_NONE,
                fail.eq(1), NextState("FINISH"),
            ).Else(
                NextValue(prev_out, n_out),
                NextValue(layer, layer + 1),
                If(is_last, NextValue(layer, 0), NextValue(running, 1)),
                NextState("FETCH"),
            )
        )
        gap = Mux(ag.tile_more, gap_full, gap_last)
        fsm.act("ISSUE",
            self.valid.eq(1),
            ag.step.eq(1),
            If(ag.last,   # the window is complete
                NextValue(wait, gap - 1),
                If(~ag.phase_more & ~ag.col_more & ~ag.row_more & ~ag.tile_more,
                    NextState("DRAIN"),
                ).Elif(~ag.phase_more & (gap != 0),
                    NextState("GAP"),   # the requantizer sweeps this position meanwhile
                )
            )
        )
        fsm.act("GAP",
            NextValue(wait, wait - 1),
            If(wait == 0, NextState("ISSUE"))
        )
        fsm.act("DRAIN",
            If(~self.mac_busy & ~self.rq_busy,
                NextValue(layer, layer + 1),
                If(ends, NextState("FINISH")).Else(NextState("FETCH")),
            )
        )
        fsm.act("FINISH", NextState("IDLE"))
