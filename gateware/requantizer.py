"""The accelerator's requantizer: accumulators to uint8 activations or int32 logits, one channel per cycle."""
from migen import *

from litex.gen import LiteXModule

from nnhil.training import fixedpoint as fx

from . import cyclemodel, layout
from .layout import DIM_BITS as DIM, address_bits


class Requantizer(LiteXModule):
    """Drains one window from the drain bank, one channel per cycle, into the next layer's input.

    Per channel: the drain-bank values of its lane groups (a dense layer may split its
    fan-in, see MACArray) -> their sum, and the bias-RAM read -> acc + bias -> * mult (two
    stages, for the DSP pipeline) -> + rounding -> ReLU and shift -> clamp and write. Lane k
    of a window is channel ``chan + k`` and goes to output index ``out + k * plane``
    (channel-major). With ``pair`` the two lane groups hold two output positions, which a
    second pipeline requantizes beside the first: channel c's pair goes to the adjacent
    bytes out + c plane and the next (``act_we_next``; not for a ``single``, a row's odd
    last position). Hidden layers write uint8 results to the output activation buffer; the
    last layer writes acc + bias to the logits RAM and keeps the argmax (first maximum wins).
    """
    LATENCY = cyclemodel.DRAIN_LATENCY   # sweep of a lane to its write

    def __init__(self, cfg, bank):
        # Layer parameters, held by the sequencer during a layer.
        self.b_base = Signal(32)
        self.c_out  = Signal(DIM)
        self.plane  = Signal(DIM)      # output index stride between channels
        self.logits = Signal()
        self.split  = Signal(2)        # 2**split lane groups hold parts of each sum (MACArray)
        self.pair   = Signal()         # ... or, split = 1, two output positions
        # The position in the drain bank, valid with ``start``.
        self.start     = Signal()      # the drain bank holds a new position from the next cycle
        self.tile_out  = Signal(DIM)   # output index of lane 0
        self.tile_chan = Signal(DIM)   # channel of lane 0
        self.single    = Signal()      # a pair of one position
        self.flush  = Signal()
        # Memory ports (read bias, write activations or logits).
        self.bias_adr = Signal(address_bits(cfg.bias_entries))
        self.bias_dat = Signal(layout.BIAS.width)
        self.out_adr  = Signal(DIM)     # output index: byte address or logit word
        self.out_dat  = Signal(fx.ACC_BITS)   # a logit, or the pair's bytes: out_adr's, the next, repeated
        self.act_we   = Signal()
        self.act_we_next = Signal()     # write byte out_adr + 1 as well (a pair)
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
        both   = Signal()              # the window's pair has its second position
        last_k = (k == lanes - 1) | (c == self.c_out - 1)
        self.sync += [
            If(active, k.eq(k + 1), j.eq(j + self.plane), c.eq(c + 1), If(last_k, active.eq(0))),
            If(self.start, active.eq(1), k.eq(0), j.eq(self.tile_out), c.eq(self.tile_chan),
               both.eq(self.pair & ~self.single)),
            If(self.flush, active.eq(0)),
        ]
        c_read = Signal(DIM, reset_less=True)   # the bias is read a cycle after the sweep
        self.sync += c_read.eq(c)
        self.comb += self.bias_adr.eq(self.b_base + c_read)

        # Pipeline: stage n holds the lane swept n cycles earlier.
        valid = Signal(self.LATENCY)
        index = [Signal(DIM + 1, reset_less=True) for _ in range(self.LATENCY)]   # j, both
        self.sync += [valid.eq(Cat(active, valid[:-1])), If(self.flush, valid.eq(0))]
        self.sync += [index[0].eq(Cat(j, both))] + [index[n].eq(index[n - 1]) for n in range(1, self.LATENCY)]
        self.comb += self.busy.eq(active | (valid != 0))

        bias  = Signal((fx.ACC_BITS, True))
        mult  = Signal(fx.MULT_BITS, reset_less=True)
        shift = [Signal(layout.BIAS["shift"].width, reset_less=True) for _ in range(4)]
        half  = [Signal(fx.PRODUCT_BITS, reset_less=True) for _ in range(3)]
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
        # stage 2: their sum, or with pair the two positions' values; the bias RAM answers
        # during stage 2.
        acc = [Signal((fx.ACC_BITS, True), reset_less=True, name=f"acc{p}") for p in range(2)]
        self.sync += [
            acc[0].eq((part[0] + Mux(self.pair, 0, part[1])) + (part[2] + part[3])),
            acc[1].eq(part[1]),
            # stage 3: latch mult, shift and the rounding constant.
            mult.eq(field["mult"]),
            shift[0].eq(shift_in),
            Case(shift_in, {"default": half[0].eq(0),
                **{s: half[0].eq(1 << (s - 1)) for s in range(1, fx.SHIFT_MAX + 1)}}),
        ]
        self.sync += [shift[n].eq(shift[n - 1]) for n in range(1, 4)]
        self.sync += [half[n].eq(half[n - 1]) for n in range(1, 3)]
        total, y = [], []
        for p in range(2):   # position pipelines: the second one only for pairs
            # acc + bias, and for the logits (the first pipeline) delayed to the write stage
            t    = [Signal((fx.ACC_BITS, True), reset_less=True, name=f"total{p}_{n}") for n in range(5 - 4*p)]
            prod = [Signal((fx.PRODUCT_BITS + 1, True), reset_less=True) for _ in range(2)]
            rnd  = Signal((fx.PRODUCT_BITS + 2, True), reset_less=True)
            neg  = Signal(reset_less=True)
            q    = Signal(fx.PRODUCT_BITS + 1, reset_less=True)
            out  = Signal(fx.ACT_BITS, name=f"y{p}")
            self.sync += [
                # stage 3: acc + bias.
                t[0].eq(acc[p] + bias),
                # stages 4-5: the 32x16 product, registered twice.
                prod[0].eq(t[0] * mult),
                prod[1].eq(prod[0]),
                # stage 6: round half up.
                rnd.eq(prod[1] + half[2]),
                # stage 7: ReLU, then a logical shift of the non-negative value.
                neg.eq(rnd < 0),
                q.eq(rnd[:fx.PRODUCT_BITS + 1] >> shift[3]),
            ]
            self.sync += [t[n].eq(t[n - 1]) for n in range(1, len(t))]
            # Write stage: clamp to uint8.
            self.comb += If(neg, out.eq(0)).Elif(q[fx.ACT_BITS:] != 0, out.eq(fx.ACT_MAX)).Else(out.eq(q))
            total.append(t)
            y.append(out)
        total = total[0]
        self.comb += [
            self.out_adr.eq(index[-1][:DIM]),
            self.out_dat.eq(Mux(self.logits, total[4], Replicate(Cat(y[0], y[1]), 2))),
            self.act_we.eq(valid[-1] & ~self.logits),
            self.act_we_next.eq(valid[-1] & index[-1][DIM]),
            self.logit_we.eq(valid[-1] & self.logits),
        ]
        best = Signal((fx.ACC_BITS, True), reset_less=True)
        self.sync += If(self.logit_we & ((self.out_adr == 0) | (total[4] > best)),
            best.eq(total[4]),
            self.argmax.eq(self.out_adr),
        )
