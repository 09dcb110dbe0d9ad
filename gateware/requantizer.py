"""The accelerator's requantizer: accumulators to uint8 activations or int32 logits, one lane per cycle."""
from migen import *

from litex.gen import LiteXModule

from nnhil.training import fixedpoint as fx

from . import cyclemodel, layout
from .layout import DIM_BITS as DIM, address_bits


class Requantizer(LiteXModule):
    """Drains one output position from the drain bank, one lane per cycle, into the next layer's input.

    Per lane: the drain-bank values of its channel's lane groups (a dense layer may split
    its fan-in, see MACArray) -> their sum, and the bias-RAM read -> acc + bias -> * mult (two stages, for the
    DSP pipeline) -> + rounding -> ReLU and shift -> clamp and write. Lane k of a window
    is channel ``chan + k`` and goes to output index ``out + k * plane`` (channel-major).
    Hidden layers write uint8 results to the output activation buffer; the last layer writes
    acc + bias to the logits RAM and keeps the argmax (first maximum wins).
    """
    LATENCY = cyclemodel.DRAIN_LATENCY   # sweep of a lane to its write

    def __init__(self, cfg, bank):
        # Layer parameters, held by the sequencer during a layer.
        self.b_base = Signal(32)
        self.c_out  = Signal(DIM)
        self.plane  = Signal(DIM)      # output index stride between channels
        self.logits = Signal()
        self.split  = Signal(2)        # 2**split lane groups hold parts of each sum (MACArray)
        # The position in the drain bank, valid with ``start``.
        self.start     = Signal()      # the drain bank holds a new position from the next cycle
        self.tile_out  = Signal(DIM)   # output index of lane 0
        self.tile_chan = Signal(DIM)   # channel of lane 0
        self.flush  = Signal()
        # Memory ports (read bias, write activations or logits).
        self.bias_adr = Signal(address_bits(cfg.bias_entries))
        self.bias_dat = Signal(layout.BIAS.width)
        self.out_adr  = Signal(DIM)     # output index: byte address or logit word
        self.out_dat  = Signal(fx.ACC_BITS)
        self.act_we   = Signal()
        self.logit_we = Signal()
        # Status.
        self.busy   = Signal()
        self.argmax = Signal(DIM)

        # # #

        lanes  = cfg.lanes
        # Sweep: read bank[k], channel c = tile_chan + k, output j = tile_out + k * plane.
        active = Signal()
        k      = Signal(max=lanes)
        j      = Signal(DIM)
        c      = Signal(DIM)
        last_k = (k == lanes - 1) | (c == self.c_out - 1)
        self.sync += [
            If(active, k.eq(k + 1), j.eq(j + self.plane), c.eq(c + 1), If(last_k, active.eq(0))),
            If(self.start, active.eq(1), k.eq(0), j.eq(self.tile_out), c.eq(self.tile_chan)),
            If(self.flush, active.eq(0)),
        ]
        c_read = Signal(DIM, reset_less=True)   # the bias is read a cycle after the sweep
        self.sync += c_read.eq(c)
        self.comb += self.bias_adr.eq(self.b_base + c_read)

        # Pipeline: stage n holds the lane swept n cycles earlier.
        valid = Signal(self.LATENCY)
        index = [Signal(DIM, reset_less=True) for _ in range(self.LATENCY)]
        self.sync += [valid.eq(Cat(active, valid[:-1])), If(self.flush, valid.eq(0))]
        self.sync += [index[0].eq(j)] + [index[n].eq(index[n - 1]) for n in range(1, self.LATENCY)]
        self.comb += self.busy.eq(active | (valid != 0))

        acc   = Signal((fx.ACC_BITS, True), reset_less=True)
        bias  = Signal((fx.ACC_BITS, True))
        mult  = Signal(fx.MULT_BITS, reset_less=True)
        shift = [Signal(layout.BIAS["shift"].width, reset_less=True) for _ in range(4)]
        half  = [Signal(fx.PRODUCT_BITS, reset_less=True) for _ in range(3)]
        total = [Signal((fx.ACC_BITS, True), reset_less=True) for _ in range(5)]
        prod  = [Signal((fx.PRODUCT_BITS + 1, True), reset_less=True) for _ in range(2)]
        rnd   = Signal((fx.PRODUCT_BITS + 2, True), reset_less=True)
        neg   = Signal(reset_less=True)
        q     = Signal(fx.PRODUCT_BITS + 1, reset_less=True)
        field = {f.name: self.bias_dat[f.bits] for f in layout.BIAS}
        shift_in = field["shift"]
        self.comb += bias.eq(field["bias"])
        # stage 1: the lane groups' values of channel c (a group of lanes/G lanes each); the
        # narrow multiplexers see only the lanes a group can start at.
        n = lanes // 4
        kq = k[:(n - 1).bit_length()] if n > 1 else 0
        kh = k[:(2*n - 1).bit_length()]
        part = [Signal((fx.ACC_BITS, True), reset_less=True, name=f"part{g}") for g in range(4)]
        by_quarter = lambda first, n: Array(bank[first:first + n]) if n > 1 else Array([bank[first]] * 2)
        self.sync += [
            part[0].eq(bank[k]),
            Case(self.split, {
                0: [p.eq(0) for p in part[1:]],
                1: [part[1].eq(by_quarter(2*n, 2*n)[kh]), part[2].eq(0), part[3].eq(0)],
                "default": [part[g].eq(by_quarter(g*n, n)[kq]) for g in (1, 2, 3)],
            }),
        ]
        self.sync += [
            # stage 2: their sum; the bias RAM answers during stage 2.
            acc.eq((part[0] + part[1]) + (part[2] + part[3])),
            # stage 3: acc + bias, latch mult, shift and the rounding constant.
            total[0].eq(acc + bias),
            mult.eq(field["mult"]),
            shift[0].eq(shift_in),
            Case(shift_in, {"default": half[0].eq(0),
                **{s: half[0].eq(1 << (s - 1)) for s in range(1, fx.SHIFT_MAX + 1)}}),
            # stages 4-5: the 32x16 product, registered twice.
            prod[0].eq(total[0] * mult),
            prod[1].eq(prod[0]),
            # stage 6: round half up.
            rnd.eq(prod[1] + half[2]),
            # stage 7: ReLU, then a logical shift of the non-negative value.
            neg.eq(rnd < 0),
            q.eq(rnd[:fx.PRODUCT_BITS + 1] >> shift[3]),
        ]
        self.sync += [total[n].eq(total[n - 1]) for n in range(1, 5)]
        self.sync += [shift[n].eq(shift[n - 1]) for n in range(1, 4)]
        self.sync += [half[n].eq(half[n - 1]) for n in range(1, 3)]

        # Write stage: clamp to uint8, or pass the logit through.
        y = Signal(fx.ACT_BITS)
        self.comb += [
            If(neg, y.eq(0)).Elif(q[fx.ACT_BITS:] != 0, y.eq(fx.ACT_MAX)).Else(y.eq(q)),
            self.out_adr.eq(index[-1]),
            self.out_dat.eq(Mux(self.logits, total[4], Replicate(y, 4))),
            self.act_we.eq(valid[-1] & ~self.logits),
            self.logit_we.eq(valid[-1] & self.logits),
        ]
        best = Signal((fx.ACC_BITS, True), reset_less=True)
        self.sync += If(self.logit_we & ((index[-1] == 0) | (total[4] > best)),
            best.eq(total[4]),
            self.argmax.eq(index[-1]),
        )
