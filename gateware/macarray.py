"""The accelerator's MAC lanes and their shadow and drain accumulator banks."""
from migen import *

from litex.gen import LiteXModule

from nnhil.training import fixedpoint as fx

from . import cyclemodel, faults


class MACArray(LiteXModule):
    """``lanes`` int8 x uint8 multiply-accumulate lanes sharing one broadcast activation.

    Issue (cycle c: the sequencer addresses the weight and activation RAMs) -> RAM data
    (c+1) -> operand registers (c+2) -> product (c+3) -> accumulator (c+4): one DSP48E1
    per lane with its A/B, M and P registers. In the cycle after a window's last product is
    accumulated, ``tile_done`` copies all lanes into a shadow bank. With ``merge`` (the
    2nd-4th conv position of a 2x2 pool window) each lane keeps the larger of its shadow
    value and the new sum: pooling the accumulators equals pooling the requantized outputs
    (fixedpoint), and costs one requantization per pooled output instead of four. With
    ``publish`` (the last window of an output position) the shadow bank is copied into the
    drain bank in the next cycle (``published``), and the requantizer sweeps the drain bank
    while the lanes compute the next position. Both banks load with a clock enable only: no
    data multiplexer in front of 2 x lanes x 32 flip-flops.

    A layer of G = 2**split lane groups gives group g byte byte + g of the activation word
    (the read's four bytes from the even byte below the input: ``byte`` is 0 or 1), or
    byte + 2 g with ``wide``: each quarter of the lanes has its own operand register, which
    takes its quarter's group's byte. A dense layer's groups split its fan-in
    (layout.LayerShape.groups; the requantizer adds them), a conv's two groups take two
    output positions (LayerShape.pairs: 1 byte apart, 2 with a pool).

    A sum never wraps: its window has at most act_bytes < 2**16 inputs, so
    |sum| <= 255 * 128 * 65535 < 2**31, and the comparison is exact.

    ``select``: a fault build's fault_select (gateware.faults), None in an ordinary build;
    a fault build has the input ``run_start`` (a run starts).
    """
    LATENCY = cyclemodel.MAC_LATENCY   # issue of a tile's last input to tile_done

    def __init__(self, lanes, select=None):
        # Issue (cycle c).
        self.valid = Signal()
        self.first = Signal()          # first input of a tile: restart the accumulators
        self.last  = Signal()          # last input of a tile
        self.byte  = Signal(2)         # activation byte within act_word (of lane group 0): 0 or 1
        # The layer: its fan-in split over 2**split lane groups (layout.LayerShape.groups);
        # on a window's last step, the groups past ``tail`` have no input (stale bytes).
        self.split = Signal(2)
        self.tail  = Signal(2)
        self.wide  = Signal()          # group g takes byte + 2 g (a pooled position pair)
        # RAM data (cycle c+1).
        self.weights  = Signal(8*lanes)
        self.act_word = Signal(32)
        # Outputs.
        self.drain     = Array(Signal((fx.ACC_BITS, True), reset_less=True) for _ in range(lanes))
        self.tile_done = Signal()      # the shadow bank is loaded at the end of this cycle
        self.merge     = Signal()      # with tile_done: keep max(shadow, sum) rather than the sum
        self.publish   = Signal()      # with tile_done: copy the result to the drain bank
        self.published = Signal()      # the drain bank is loaded at the end of this cycle
        self.busy      = Signal()
        self.flush     = Signal()      # soft reset: drop everything in flight

        # # #

        valid = Signal(self.LATENCY)   # valid[n]: stage n+1 holds an issued input
        first = Signal(self.LATENCY - 1)
        last  = Signal(self.LATENCY)
        byte  = Signal(2)
        # The registers load in one clocked block; its order does not matter to the hardware
        # (every assignment is non-blocking), but Verilator copies a register into a temporary
        # when the block reads it after assigning it. So each stage's statements come before
        # those of the stage that loads it: the lanes (drain, shadow, acc, prod, w), then the
        # activation registers, then the control pipeline (the model runs 1.13x faster).
        control = [
            self.published.eq(last[3] & self.publish),
            valid.eq(Cat(self.valid, valid[:-1])),
            first.eq(Cat(self.first, first[:-1])),
            last.eq(Cat(self.last & self.valid, last[:-1])),
            byte.eq(self.byte),
            If(self.flush, valid.eq(0), last.eq(0), self.published.eq(0)),
        ]
        self.comb += [
            self.tile_done.eq(last[3]),
            self.busy.eq((valid != 0) | self.published),
        ]

        restart = first[2]             # the accumulators restart at a window's first product
        if select is not None:         # acc_not_cleared: not at a run's first window
            self.run_start = Signal()
            fresh = Signal()
            control.insert(0, If(self.run_start, fresh.eq(1)).Elif(valid[2], fresh.eq(0)))
            restart = faults.site(select, "acc_not_cleared", restart, restart & ~fresh)

        quarter = lanes // 4
        xs, activations, datapath = [], [], []
        for q in range(4):
            x = Signal(fx.ACT_BITS, reset_less=True, name=f"act{q}")
            group = Signal(2, name=f"group{q}")   # this quarter's lane group
            sel = Signal(2, name=f"byte{q}")
            self.comb += [
                Case(self.split, {0: group.eq(0), 1: group.eq(q >> 1), "default": group.eq(q)}),
                sel.eq(byte + Mux(self.wide, group << 1, group)),
            ]
            activations.append(If(last[0] & (group > self.tail), x.eq(0)).Else(
                Case(sel, {b: x.eq(self.act_word[8*b:8*(b + 1)]) for b in range(4)})))
            xs.append(x)
        for k in range(lanes):
            x = xs[k // quarter]
            w    = Signal((fx.WEIGHT_BITS, True), reset_less=True)
            prod = Signal((fx.WEIGHT_BITS + fx.ACT_BITS + 1, True), reset_less=True)
            acc  = Signal((fx.ACC_BITS, True), reset_less=True)
            shadow = Signal((fx.ACC_BITS, True), reset_less=True)
            weight = self.weights[8*k:8*(k + 1)]
            if k == lanes - 1:
                weight = faults.site(select, "lane_weight_stuck", weight, weight | 1)
            total = Mux(restart, 0, acc) + prod
            datapath += [
                If(self.published, self.drain[k].eq(shadow)),
                # Nested: the enable last[3] & (~merge | shadow <= acc), but Verilator then
                # compares the lanes only in a tile's last cycle, not in every cycle (the model
                # runs 1.2x faster). No ~ over the comparison: Migen widens "merge & (a > b)"
                # to two signed bits, and ~ of that is never 0.
                If(last[3],
                   If(~self.merge | faults.site(select, "maxpool_min", shadow <= acc, shadow >= acc),
                      shadow.eq(acc))),
                If(valid[2], acc.eq(faults.site(select, "acc_24_bits", total,
                                                Cat(total[:24], Replicate(total[23], 8))))),
                prod.eq(w * x),
                w.eq(weight),
            ]
        self.sync += datapath + activations + control
