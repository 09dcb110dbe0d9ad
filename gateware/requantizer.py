"""The accelerator's requantizer: accumulators to uint8 activations or int32 logits, one channel per cycle."""
from migen import *
from migen.fhdl.bitcontainer import value_bits_sign

from litex.gen import LiteXModule

from nnhil.training import fixedpoint as fx

from . import cyclemodel, faults, layout
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

    ``select``: a fault build's fault_select (gateware.faults), None in an ordinary build.
    """
    LATENCY = cyclemodel.DRAIN_LATENCY   # sweep of a lane to its write

    def __init__(self, cfg, bank, select=None):
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
        last_k = faults.site(select, "partial_tile_lane_dropped", (k == lanes - 1) | (c == self.c_out - 1),
            (k == lanes - 1) | (c == self.c_out - 1) | ((c + 2 == self.c_out) & (k != lanes - 2)))
        self.sync += [
            If(active, k.eq(k + 1), j.eq(j + self.plane), c.eq(c + 1), If(last_k, active.eq(0))),
            If(self.start, active.eq(1), k.eq(0), j.eq(self.tile_out), c.eq(self.tile_chan),
               both.eq(self.pair & ~self.single)),
            If(self.flush, active.eq(0)),
        ]
        c_read = Signal(DIM, reset_less=True)   # the bias is read a cycle after the sweep
        self.sync += c_read.eq(c)
        self.comb += self.bias_adr.eq(self.b_base + faults.site(select, "neighbour_requant", c_read, c_read + 1))

        # Pipeline: stage n holds the lane swept n cycles earlier.
        valid = Signal(self.LATENCY)
        index = [Signal(DIM + 1, reset_less=True) for _ in range(self.LATENCY)]   # j, both
        self.sync += [valid.eq(Cat(active, valid[:-1])), If(self.flush, valid.eq(0))]
        self.sync += [index[0].eq(Cat(j, both))] + [index[n].eq(index[n - 1]) for n in range(1, self.LATENCY)]
        busy = active | (valid != 0)
        if select is None:
            self.comb += self.busy.eq(busy)

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
        if select is not None:   # the last lane group's sum lost after the multiplexers
            dropped = faults.active(select, "split_group_dropped")
            self.sync += [If(dropped & (self.split == 1) & ~self.pair, part[1].eq(0)),
                          If(dropped & (self.split == 2), part[3].eq(0))]
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
                rnd.eq(prod[1] + faults.site(select, "round_off_by_one",
                    faults.site(select, "round_dropped", half[2], 0), half[2] << 1)),
                # stage 7: ReLU, then a logical shift of the non-negative value.
                neg.eq(rnd < 0),
                q.eq(rnd[:fx.PRODUCT_BITS + 1] >> shift[3]),
            ]
            self.sync += [t[n].eq(t[n - 1]) for n in range(1, len(t))]
            # Write stage: clamp to uint8.
            self.comb += If(neg, out.eq(faults.site(select, "relu_broken", 0, fx.ACT_MAX))).Elif(
                faults.site(select, "saturation_short", q[fx.ACT_BITS:] != 0, q[fx.ACT_BITS + 1:] != 0),
                out.eq(fx.ACT_MAX)).Else(out.eq(q))
            total.append(t)
            y.append(out)
        total = total[0]
        writes = [   # the write stage: (output, its value)
            (self.out_adr, index[-1][:DIM]),
            (self.out_dat, Mux(self.logits, total[4], Replicate(Cat(y[0], y[1]), 2))),
            (self.act_we, valid[-1] & ~self.logits),
            (self.act_we_next, valid[-1] & index[-1][DIM]),
            (self.logit_we, valid[-1] & self.logits),
        ]
        logit = total[4]
        if select is not None:   # stage_longer: the write stage registered once more
            longer = faults.active(select, "stage_longer")
            late = [Signal(value_bits_sign(value)) for _, value in writes]
            late_logit = Signal(value_bits_sign(logit))
            self.sync += [r.eq(value) for r, (_, value) in zip(late, writes)] + [late_logit.eq(logit)]
            writes = [(out, Mux(longer, r, value)) for r, (out, value) in zip(late, writes)]
            logit = Mux(longer, late_logit, logit)
            self.comb += self.busy.eq(busy | (longer & (late[2] | late[3] | late[4])))
        self.comb += [out.eq(value) for out, value in writes]
        best = Signal((fx.ACC_BITS, True), reset_less=True)
        self.sync += If(self.logit_we & ((self.out_adr == 0) |
                                         faults.site(select, "argmax_ties_last", logit > best, logit >= best)),
            best.eq(logit),
            self.argmax.eq(self.out_adr),
        )
