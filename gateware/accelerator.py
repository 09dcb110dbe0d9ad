"""The inference accelerator: P int8 MAC lanes, a serial requantizer and pool, a layer sequencer.

The numeric format is :mod:`training.fixedpoint`; the memory map, program encoding and
error codes are :mod:`gateware.layout`. :mod:`gateware.cyclemodel` predicts the
``cycles`` CSR exactly, so any change to a pipeline depth or state here must be
mirrored there (the tests compare the two).
"""
from migen import *

from litex.gen import LiteXModule
from litex.soc.interconnect import wishbone
from litex.soc.interconnect.csr import CSRField, CSRStatus, CSRStorage

from training import fixedpoint as fx

from . import cyclemodel, layout


DIM = layout.DIM_BITS   # width of n_in, n_out and output indices


def _bits(n):
    """Address bits for n entries (at least one so a one-entry memory still has a port)."""
    return max(1, (n - 1).bit_length())


class WishboneWindow(LiteXModule):
    """The host's view of the accelerator memories: one 32-bit word-addressed Wishbone slave.

    ``ports`` maps each layout region to the bus-side port of its memory; a memory wider than
    32 bits shows as consecutive words, the lowest bits first. ``ack`` comes two cycles after
    the request (RAM read, then a registered read mux) so the wide mux stays off the bus path.
    """
    def __init__(self, cfg, ports):
        self.bus = bus = wishbone.Interface(data_width=32)

        # # #

        win_bits = _bits(cfg.window_words)
        access   = Signal()
        ack      = Signal()
        self.comb += access.eq(bus.cyc & bus.stb & ~bus.ack)
        self.sync += [
            ack.eq(access & ~ack),
            bus.ack.eq(access & ack),
        ]
        write = access & ~ack & bus.we
        rdata = Signal(32)
        cases = []
        for name, port in ports.items():
            size_bits = (cfg.region_words[name] - 1).bit_length()   # aligned to 2**size_bits
            words     = len(port.dat_r) // 32
            sel_bits  = (words - 1).bit_length()
            hit       = Signal(name=f"{name}_hit")
            offset    = bus.adr[:size_bits] if size_bits else C(0, 1)
            word      = offset[:sel_bits] if sel_bits else 0
            self.comb += [
                hit.eq(bus.adr[size_bits:win_bits] == (cfg.region_base[name] >> size_bits)),
                port.adr.eq(offset[sel_bits:]),
            ]
            if port.we is not None:
                in_range = offset < cfg.region_words[name]
                if len(port.we) == 4 and words == 1:   # byte-writable activations
                    self.comb += port.we.eq(Replicate(write & hit & in_range, 4) & bus.sel)
                else:                                  # 32-bit lanes of a wide word
                    self.comb += port.we.eq(Mux(write & hit & in_range, 1 << word, 0))
                self.comb += port.dat_w.eq(Replicate(bus.dat_w, words))
            chunks = Array(port.dat_r[32*k:32*(k + 1)] for k in range(words))
            cases.append(If(hit, rdata.eq(chunks[word])))
        self.comb += cases
        self.sync += If(ack, bus.dat_r.eq(rdata))


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

    A sum never wraps: its window has at most act_bytes < 2**16 inputs, so
    |sum| <= 255 * 128 * 65535 < 2**31, and the comparison is exact.
    """
    LATENCY = cyclemodel.MAC_LATENCY   # issue of a tile's last input to tile_done

    def __init__(self, lanes):
        # Issue (cycle c).
        self.valid = Signal()
        self.first = Signal()          # first input of a tile: restart the accumulators
        self.last  = Signal()          # last input of a tile
        self.byte  = Signal(2)         # activation byte within act_word
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
        self.sync += [
            valid.eq(Cat(self.valid, valid[:-1])),
            first.eq(Cat(self.first, first[:-1])),
            last.eq(Cat(self.last & self.valid, last[:-1])),
            byte.eq(self.byte),
            self.published.eq(last[3] & self.publish),
            If(self.flush, valid.eq(0), last.eq(0), self.published.eq(0)),
        ]
        self.comb += [
            self.tile_done.eq(last[3]),
            self.busy.eq((valid != 0) | self.published),
        ]

        x = Signal(fx.ACT_BITS, reset_less=True, name="act")
        self.sync += Case(byte, {b: x.eq(self.act_word[8*b:8*(b + 1)]) for b in range(4)})
        for k in range(lanes):
            w    = Signal((fx.WEIGHT_BITS, True), reset_less=True)
            prod = Signal((fx.WEIGHT_BITS + fx.ACT_BITS + 1, True), reset_less=True)
            acc  = Signal((fx.ACC_BITS, True), reset_less=True)
            shadow = Signal((fx.ACC_BITS, True), reset_less=True)
            self.sync += [
                w.eq(self.weights[8*k:8*(k + 1)]),
                prod.eq(w * x),
                If(valid[2], acc.eq(Mux(first[2], 0, acc) + prod)),
                If(last[3] & ~(self.merge & (shadow > acc)), shadow.eq(acc)),
                If(self.published, self.drain[k].eq(shadow)),
            ]


class Requantizer(LiteXModule):
    """Drains one output position from the drain bank, one lane per cycle, into the next layer's input.

    Per lane: drain-bank value and bias-RAM read -> acc + bias -> * mult (two stages, for the
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
        # The position in the drain bank, valid with ``start``.
        self.start     = Signal()      # the drain bank holds a new position from the next cycle
        self.tile_out  = Signal(DIM)   # output index of lane 0
        self.tile_chan = Signal(DIM)   # channel of lane 0
        self.flush  = Signal()
        # Memory ports (read bias, write activations or logits).
        self.bias_adr = Signal(_bits(cfg.bias_entries))
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
        self.comb += self.bias_adr.eq(self.b_base + c)

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
        self.sync += [
            # stage 1: drain-bank value; the bias RAM answers during stage 1.
            acc.eq(bank[k]),
            # stage 2: acc + bias, latch mult, shift and the rounding constant.
            total[0].eq(acc + bias),
            mult.eq(field["mult"]),
            shift[0].eq(shift_in),
            Case(shift_in, {"default": half[0].eq(0),
                **{s: half[0].eq(1 << (s - 1)) for s in range(1, fx.SHIFT_MAX + 1)}}),
            # stages 3-4: the 32x16 product, registered twice.
            prod[0].eq(total[0] * mult),
            prod[1].eq(prod[0]),
            # stage 5: round half up.
            rnd.eq(prod[1] + half[2]),
            # stage 6: ReLU, then a logical shift of the non-negative value.
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


class Accelerator(LiteXModule):
    """Runs a whole quantized network (conv, max-pool, dense) from the layer program in its memories.

    The host fills weights, bias, program and act0 through ``bus``, writes ``n_layers`` and
    pulses ``control.start``. The sequencer first validates every descriptor (any ERR_*
    ends the run at once with ``done`` and the code), then runs each layer as windows: for
    each tile of ``lanes`` output channels, each output position (and, pooled, each of its
    four conv positions, max-pooled in the shadow bank) it issues the window's c_in k^2
    inputs, one per cycle, walking the input tensor with an address generator and the weight
    RAM in step. The requantizer drains an output position while the next one computes; a
    position of fewer MAC cycles than its tile has lanes waits until the drain bank is free.
    A dense layer is the 1x1 conv over (n_in, 1, 1).
    """
    def __init__(self, cfg=layout.AccelConfig()):
        self.cfg = cfg
        P = cfg.lanes
        depths = {"weight_words": cfg.weight_words, "bias_entries": cfg.bias_entries,
                  "act_bytes / 4": cfg.act_bytes // 4, "logit_words": cfg.logit_words,
                  "max_layers": cfg.max_layers}
        for name, depth in depths.items():
            if depth < 2:
                raise ValueError(f"{name} is {depth}: every accelerator memory needs two entries or more")

        # Memories (kept off the attributes: AutoCSR would map a Memory attribute into CSR space).
        weights = Memory(8*P, cfg.weight_words, name="weights")
        bias    = Memory(layout.BIAS.width, cfg.bias_entries, name="bias")
        program = Memory(layout.DESCRIPTOR.width, cfg.max_layers, name="program")
        acts    = [Memory(32, cfg.act_bytes // 4, name=f"act{b}") for b in range(2)]
        logits  = Memory(fx.ACC_BITS, cfg.logit_words, name="logits")
        bus_ports = {
            "weights": weights.get_port(write_capable=True, we_granularity=32),
            "bias":    bias.get_port(write_capable=True, we_granularity=32),
            "program": program.get_port(write_capable=True, we_granularity=32),
            "act0":    acts[0].get_port(write_capable=True, we_granularity=8),
            "act1":    acts[1].get_port(write_capable=True, we_granularity=8),
            "logits":  logits.get_port(),
        }
        w_port = weights.get_port()
        b_port = bias.get_port()
        p_port = program.get_port()
        a_ports = [m.get_port(write_capable=True, we_granularity=8) for m in acts]
        l_port = logits.get_port(write_capable=True)
        self.specials += [weights, bias, program, *acts, logits,
                          *bus_ports.values(), w_port, b_port, p_port, *a_ports, l_port]

        self.window = WishboneWindow(cfg, bus_ports)
        self.bus    = self.window.bus
        self.mac    = mac = MACArray(P)
        self.requant = rq = Requantizer(cfg, mac.drain)

        # CSRs -------------------------------------------------------------------------------
        self.control = CSRStorage(fields=[
            CSRField("start", offset=layout.CTRL_START.bit_length() - 1, pulse=True),
            CSRField("soft_reset", offset=layout.CTRL_SOFT_RESET.bit_length() - 1, pulse=True),
        ])
        self.n_layers = CSRStorage(32, description="Layers of the program to run.")
        self.status = CSRStatus(fields=[
            CSRField("busy", offset=layout.STATUS_BUSY.bit_length() - 1),
            CSRField("done", offset=layout.STATUS_DONE.bit_length() - 1),
            CSRField("error", offset=layout.STATUS_ERROR_SHIFT, size=layout.STATUS_ERROR_BITS),
        ])
        self.cycles = CSRStatus(32, description="Cycles from start to done of the last run.")
        self.argmax = CSRStatus(DIM, description="Index of the first largest logit.")
        self.magic = CSRStatus(32, reset=layout.MAGIC)
        self.version = CSRStatus(32,
            reset=layout.VERSION | (fx.FORMAT_VERSION << layout.VERSION_FORMAT_SHIFT))
        for name, value in cfg.to_dict().items():
            setattr(self, name, CSRStatus(32, reset=value, name=name))
        self.comb += self.argmax.status.eq(rq.argmax)

        # Sequencer --------------------------------------------------------------------------
        start      = self.control.fields.start
        soft_reset = self.control.fields.soft_reset
        self.fsm = fsm = ResetInserter()(FSM(reset_state="IDLE"))
        idle  = fsm.ongoing("IDLE")
        done  = Signal()
        error = Signal(layout.STATUS_ERROR_BITS)
        bad_count = Signal()           # n_layers out of range
        fail_count = Signal()
        fail  = Signal()               # layer `layer` is rejected with code `check`
        check = Signal(layout.STATUS_ERROR_BITS)
        self.comb += [
            fsm.reset.eq(soft_reset),
            mac.flush.eq(soft_reset),
            rq.flush.eq(soft_reset),
            self.status.fields.busy.eq(~idle),
            self.status.fields.done.eq(done),
            self.status.fields.error.eq(error),
        ]
        count = Signal(32)
        self.sync += [
            If(idle, If(start, count.eq(0))).Else(count.eq(count + 1)),
            If(start & ~idle, error.eq(layout.ERR_BUSY)),
            If(fail_count, error.eq(layout.ERR_LAYER_COUNT)),
            If(fail, error.eq(check)),
            If(start & idle, done.eq(0), error.eq(layout.ERR_NONE)),
            If(fsm.ongoing("FINISH"), done.eq(1)),
            If(soft_reset, done.eq(0), error.eq(layout.ERR_NONE)),
        ]
        self.comb += self.cycles.status.eq(count)

        # Descriptor of layer `layer`, latched in LOAD; its sizes, computed in SIZE1-4.
        G = layout.GEOM_BITS
        layer    = Signal(max=cfg.max_layers + 1)
        n_layers = Signal(32)          # latched at start: a CSR write cannot disturb a run
        c_in, c_out = Signal(DIM), Signal(DIM)
        height, width, kernel = Signal(G), Signal(G), Signal(G)
        pool     = Signal()
        is_logit = Signal()
        w_base   = Signal(32)
        b_base   = Signal(32)
        lg_lanes = (P - 1).bit_length()
        kk, hw   = Signal(2*G), Signal(2*G)
        conv_h, conv_w = Signal(G + 1), Signal(G + 1)   # wrap when kernel > height: ERR_SHAPE
        out_h, out_w   = Signal(G), Signal(G)
        window   = Signal(DIM + 2*G)   # c_in k^2 inputs per output value
        n_in     = Signal(DIM + 2*G)
        plane    = Signal(2*G)
        n_out    = Signal(DIM + 2*G)
        n_tiles  = Signal(DIM - lg_lanes + 1)
        v_last   = Signal(lg_lanes + 1)  # valid lanes of the last tile
        w_span   = Signal(DIM + DIM)
        position = Mux(pool, window << 2, window)   # MAC cycles of one output position
        w_end    = Signal(34)          # explicit widths: Verilog would wrap the sums at 32 bits
        b_end    = Signal(33)
        gap_full = Signal(lg_lanes + 1)  # idle cycles after a position so the drain bank is free
        gap_last = Signal(lg_lanes + 1)
        prev_out = Signal(DIM + 2*G)
        is_last  = Signal()
        running  = Signal()            # validation done, running the program
        d = p_port.dat_r
        flags = d[layout.DESCRIPTOR["flags"].bits]
        fields = dict(c_in=c_in, c_out=c_out, height=height, width=width, kernel=kernel,
                      w_base=w_base, b_base=b_base)
        self.comb += [
            p_port.adr.eq(layer),
            is_last.eq(layer == n_layers - 1),
            rq.b_base.eq(b_base),
            rq.c_out.eq(c_out),
            rq.plane.eq(plane),
            rq.logits.eq(is_logit),
        ]

        # Validation: the first failing check of the first failing layer sets the error. These
        # depend on registers only: feeding FSM outputs back into the FSM's combinatorial block
        # makes a zero-delay loop in event-driven simulators. Past ERR_ACT_CAPACITY, window <=
        # n_in <= act_bytes < 2**DIM, so w_span may use window's low DIM bits.
        self.comb += [
            bad_count.eq((n_layers == 0) | (n_layers > cfg.max_layers)),
            If((c_in == 0) | (c_out == 0) | (height == 0) | (width == 0) | (kernel == 0),
                check.eq(layout.ERR_EMPTY_LAYER)
            ).Elif((kernel > height) | (kernel > width) | (pool & ((conv_h < 2) | (conv_w < 2))),
                check.eq(layout.ERR_SHAPE)
            ).Elif((n_in > cfg.act_bytes) | (~is_last & (n_out > cfg.act_bytes)),
                check.eq(layout.ERR_ACT_CAPACITY)
            ).Elif(w_end > cfg.weight_words,
                check.eq(layout.ERR_WEIGHT_RANGE)
            ).Elif(b_end > cfg.bias_entries,
                check.eq(layout.ERR_BIAS_RANGE)
            ).Elif((layer != 0) & (n_in != prev_out),
                check.eq(layout.ERR_CHAIN)
            ).Elif((is_logit != is_last) | (is_last & (pool | (plane != 1) | (c_out > cfg.logit_words))),
                check.eq(layout.ERR_OUTPUT_KIND)
            ),
        ]

        # Run state: tile, output position (pr, pc) and pool phase q, window element (ci, ky, kx).
        tile      = Signal(DIM)
        w_tile    = Signal(32)         # first weight word of the tile
        w_ptr     = Signal(32)
        out_base  = Signal(DIM)        # output index of the tile's channel 0 at position 0
        chan_base = Signal(DIM)
        pr, pc    = Signal(G), Signal(G)
        q         = Signal(2)
        pos       = Signal(DIM)        # output position pr * out_w + pc
        row_base  = Signal(DIM)        # input address of the position's top-left conv position
        pos_addr  = Signal(DIM)
        ci        = Signal(DIM)
        ky, kx    = Signal(G), Signal(G)
        addr      = Signal(DIM)        # input byte address of the window element
        row_addr  = Signal(DIM)
        chan_addr = Signal(DIM)
        wait      = Signal(lg_lanes + 1)
        step_col  = Mux(pool, 2, 1)
        step_row  = Mux(pool, width << 1, width)

        # The next window and its first input address.
        q_next     = Signal(2)
        phase_more = Signal()
        col_more   = Signal()
        row_more   = Signal()
        tile_more  = Signal()
        next_base  = Signal(DIM)
        self.comb += [
            q_next.eq(q + 1),
            phase_more.eq(pool & (q != 3)),
            col_more.eq(pc != out_w - 1),
            row_more.eq(pr != out_h - 1),
            tile_more.eq(tile != n_tiles - 1),
            If(phase_more,
                next_base.eq(pos_addr + Mux(q_next[1], width, 0) + q_next[0]),
            ).Elif(col_more,
                next_base.eq(pos_addr + step_col),
            ).Elif(row_more,
                next_base.eq(row_base + step_row),
            ).Else(next_base.eq(0)),
        ]
        to_window = [NextValue(addr, next_base), NextValue(row_addr, next_base),
                     NextValue(chan_addr, next_base)]
        next_window = If(phase_more,
            NextValue(q, q_next),
        ).Elif(col_more,
            NextValue(q, 0), NextValue(pc, pc + 1), NextValue(pos, pos + 1),
            NextValue(pos_addr, next_base),
        ).Elif(row_more,
            NextValue(q, 0), NextValue(pc, 0), NextValue(pr, pr + 1), NextValue(pos, pos + 1),
            NextValue(row_base, next_base), NextValue(pos_addr, next_base),
        ).Else(
            NextValue(q, 0), NextValue(pc, 0), NextValue(pr, 0), NextValue(pos, 0),
            NextValue(row_base, 0), NextValue(pos_addr, 0),
            NextValue(tile, tile + 1),
            NextValue(w_tile, w_tile + window),
            NextValue(w_ptr, w_tile + window),
            NextValue(out_base, out_base + (plane << lg_lanes)),
            NextValue(chan_base, chan_base + P),
        )

        # The window's place: for the shadow bank when its sums are done, and for the
        # requantizer when they reach the drain bank, PUBLISH_LATENCY cycles later.
        out_index = Signal(DIM)        # explicit width: a sum inside a Verilog concatenation
        self.comb += out_index.eq(out_base + pos)   # is as wide as its widest operand, in Migen one more
        meta = Cat(out_index, chan_base, pool & (q != 0), ~pool | (q == 3))
        delay = [Signal(len(meta), reset_less=True)
                 for _ in range(MACArray.LATENCY + cyclemodel.PUBLISH_LATENCY)]
        self.sync += [delay[0].eq(meta)] + [delay[n].eq(delay[n - 1]) for n in range(1, len(delay))]
        at_done, at_drain = delay[MACArray.LATENCY - 1], delay[-1]
        self.comb += [
            Cat(mac.merge, mac.publish).eq(at_done[2*DIM:]),
            Cat(rq.tile_out, rq.tile_chan).eq(at_drain[:2*DIM]),
            rq.start.eq(mac.published),
        ]

        fsm.act("IDLE",
            If(start,
                NextValue(n_layers, self.n_layers.storage),
                NextValue(layer, 0),
                NextValue(running, 0),
                NextState("COUNT"),
            )
        )
        fsm.act("COUNT",
            If(bad_count,
                fail_count.eq(1), NextState("FINISH"),
            ).Else(NextState("FETCH"))
        )
        fsm.act("FETCH", NextState("LOAD"))   # program RAM read
        fsm.act("LOAD",
            [NextValue(r, d[layout.DESCRIPTOR[name].bits]) for name, r in fields.items()],
            NextValue(is_logit, flags[layout.FLAGS["logits"].offset]),
            NextValue(pool, flags[layout.FLAGS["pool"].offset]),
            [NextValue(r, 0) for r in (tile, out_base, chan_base, pr, pc, q, pos, row_base, pos_addr,
                                       ci, ky, kx, addr, row_addr, chan_addr)],
            NextState("SIZE1"),
        )
        fsm.act("SIZE1",
            NextValue(kk, kernel * kernel),
            NextValue(hw, height * width),
            NextValue(conv_h, height - kernel + 1),
            NextValue(conv_w, width - kernel + 1),
            NextValue(n_tiles, (c_out + P - 1)[lg_lanes:]),
            NextValue(v_last, (c_out - 1)[:lg_lanes] + 1),
            NextValue(w_tile, w_base),
            NextValue(w_ptr, w_base),
            NextState("SIZE2"),
        )
        fsm.act("SIZE2",
            NextValue(window, c_in * kk),
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
            NextState("SIZE4"),
        )
        fsm.act("SIZE4",
            NextValue(n_out, c_out * plane),
            NextValue(w_end, w_base + w_span),
            NextValue(b_end, b_base + c_out),
            If(running, NextState("ISSUE")).Else(NextState("CHECK")),
        )
        fsm.act("CHECK",
            If(check != layout.ERR_NONE,
                fail.eq(1), NextState("FINISH"),
            ).Else(
                NextValue(prev_out, n_out),
                NextValue(layer, layer + 1),
                If(is_last, NextValue(layer, 0), NextValue(running, 1)),
                NextState("FETCH"),
            )
        )
        last_kx = kx == kernel - 1
        last_ky = ky == kernel - 1
        last_ci = ci == c_in - 1
        fsm.act("ISSUE",
            mac.valid.eq(1),
            mac.first.eq((ci == 0) & (ky == 0) & (kx == 0)),
            mac.last.eq(last_kx & last_ky & last_ci),
            NextValue(w_ptr, w_ptr + 1),
            If(~last_kx,
                NextValue(kx, kx + 1), NextValue(addr, addr + 1),
            ).Elif(~last_ky,
                NextValue(kx, 0), NextValue(ky, ky + 1),
                NextValue(row_addr, row_addr + width), NextValue(addr, row_addr + width),
            ).Elif(~last_ci,
                NextValue(kx, 0), NextValue(ky, 0), NextValue(ci, ci + 1),
                NextValue(chan_addr, chan_addr + hw), NextValue(row_addr, chan_addr + hw),
                NextValue(addr, chan_addr + hw),
            ).Else(   # the window is complete
                NextValue(kx, 0), NextValue(ky, 0), NextValue(ci, 0),
                NextValue(w_ptr, w_tile),
                *to_window,
                next_window,
                NextValue(wait, Mux(tile_more, gap_full, gap_last) - 1),
                If(~phase_more & ~col_more & ~row_more & ~tile_more,
                    NextState("DRAIN"),
                ).Elif(~phase_more & (Mux(tile_more, gap_full, gap_last) != 0),
                    NextState("GAP"),   # the requantizer sweeps this position meanwhile
                )
            )
        )
        fsm.act("GAP",
            NextValue(wait, wait - 1),
            If(wait == 0, NextState("ISSUE"))
        )
        fsm.act("DRAIN",
            If(~mac.busy & ~rq.busy,
                NextValue(layer, layer + 1),
                If(is_last, NextState("FINISH")).Else(NextState("FETCH")),
            )
        )
        fsm.act("FINISH", NextState("IDLE"))

        # Datapath wiring --------------------------------------------------------------------
        in_buf = layer[0]              # layer l reads act[l % 2] and writes act[(l + 1) % 2]
        self.comb += [
            w_port.adr.eq(w_ptr),
            mac.byte.eq(addr[:2]),
            mac.weights.eq(w_port.dat_r),
            mac.act_word.eq(Mux(in_buf, a_ports[1].dat_r, a_ports[0].dat_r)),
            b_port.adr.eq(rq.bias_adr),
            rq.bias_dat.eq(b_port.dat_r),
            l_port.adr.eq(rq.out_adr),
            l_port.dat_w.eq(rq.out_dat),
            l_port.we.eq(rq.logit_we),
        ]
        for b, port in enumerate(a_ports):
            reads = in_buf == b
            self.comb += [
                port.adr.eq(Mux(reads, addr[2:], rq.out_adr[2:])),
                port.dat_w.eq(rq.out_dat),
                If(~reads & rq.act_we, port.we.eq(1 << rq.out_adr[:2])),
            ]
