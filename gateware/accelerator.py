"""The inference accelerator: its memories, CSRs and blocks, wired together.

The blocks, one per module: :class:`~gateware.wishbone_window.WishboneWindow` (the host's
view of the memories), :class:`~gateware.sequencer.Sequencer` (with its
:class:`~gateware.validator.ProgramValidator` and
:class:`~gateware.addrgen.AddressGenerator`), :class:`~gateware.macarray.MACArray` and
:class:`~gateware.requantizer.Requantizer`. The numeric format is :mod:`training.fixedpoint`;
the memory map, program encoding and error codes are :mod:`gateware.layout`.
:mod:`gateware.cyclemodel` predicts the ``cycles`` CSR exactly, so any change to a pipeline
depth or state must be mirrored there (the tests compare the two).
"""
from migen import *

from litex.gen import LiteXModule
from litex.soc.interconnect.csr import CSRField, CSRStatus, CSRStorage

from nnhil.training import fixedpoint as fx

from . import layout
from .layout import DIM_BITS as DIM
from .macarray import MACArray
from .requantizer import Requantizer
from .sequencer import Sequencer
from .wishbone_window import WishboneWindow


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
    A dense layer is the 1x1 conv over (n_in, 1, 1); one of at most lanes/2 (lanes/4)
    outputs splits its fan-in over 2 (4) lane groups, which read adjacent bytes in the same
    cycle, and the requantizer adds the groups' sums. A conv of at most lanes/2 channels
    runs two adjacent output positions per window in 2 lane groups (their inputs 1 or, with
    a pool, 2 bytes apart), and the requantizer drains a channel's two outputs, adjacent
    bytes, in one cycle. The datapath keeps one port per activation buffer (the other is
    the bus's); each buffer is two banks of halfwords (bytes 0-1 and 2-3 of each word), so
    one read gives any three adjacent bytes and one write any two.
    """
    def __init__(self, cfg=layout.AccelConfig(), faults=False):
        if faults:
            raise NotImplementedError("the accelerator's fault injection (faults=True) is not built yet")
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
        # each activation buffer is two banks of 16-bit halfwords, bytes 0-1 and 2-3 of each
        # word: the datapath reads any two adjacent halfwords (any 3 adjacent bytes) in one cycle
        banks   = [[Memory(16, cfg.act_bytes // 4, name=f"act{b}_{half}") for half in ("lo", "hi")]
                   for b in range(2)]
        acts    = [m for pair in banks for m in pair]
        logits  = Memory(fx.ACC_BITS, cfg.logit_words, name="logits")
        bus_ports = {
            "weights": weights.get_port(write_capable=True, we_granularity=32),
            "bias":    bias.get_port(write_capable=True, we_granularity=32),
            "program": program.get_port(write_capable=True, we_granularity=32),
            "act0":    _WordPort(self, banks[0]),
            "act1":    _WordPort(self, banks[1]),
            "logits":  logits.get_port(),
        }
        w_port = weights.get_port()
        b_port = bias.get_port()
        p_port = program.get_port()
        a_ports = [[m.get_port(write_capable=True, we_granularity=8) for m in pair] for pair in banks]
        l_port = logits.get_port(write_capable=True)
        self.specials += [weights, bias, program, *acts, logits, w_port, b_port, p_port,
                          *(p for pair in a_ports for p in pair), l_port,
                          *(p for p in bus_ports.values() if not isinstance(p, _WordPort))]

        self.window = WishboneWindow(cfg, bus_ports)
        self.bus    = self.window.bus
        self.mac    = mac = MACArray(P)
        self.requant = rq = Requantizer(cfg, mac.drain)
        self.sequencer = seq = Sequencer(cfg)

        # CSRs -------------------------------------------------------------------------------
        self.control = CSRStorage(description="Starts or aborts a run.", fields=[
            CSRField("start", offset=layout.CTRL_START.bit_length() - 1, pulse=True,
                     description="Write 1 to validate and run the program (ERR_BUSY if running)."),
            CSRField("soft_reset", offset=layout.CTRL_SOFT_RESET.bit_length() - 1, pulse=True,
                     description="Write 1 to abort a run and return to idle."),
        ])
        self.n_layers = CSRStorage(32, description="Layers of the program to run.")
        self.stop_after = CSRStorage(32, description="Ends the run after layer ``stop_after - 1``, its "
            "output left in act[stop_after % 2] (for tracing a model layer by layer); 0 runs the whole "
            "program. Latched at start; the whole program is validated first; past n_layers: ERR_STOP_AFTER.")
        self.slot = CSRStorage(1, description="The input slot of act0 layer 0 reads (from word "
            "slot * AccelConfig.slot_words) and the logits bank the last layer writes (from word slot * "
            "slot_logits + its out_base), so the CPU can fill and read the other. Latched at start.")
        self.status = CSRStatus(description="State of the last run.", fields=[
            CSRField("busy", offset=layout.STATUS_BUSY.bit_length() - 1,
                     description="A run (or its validation) is in progress."),
            CSRField("done", offset=layout.STATUS_DONE.bit_length() - 1,
                     description="The last run ended (or its program was rejected); cleared by start."),
            CSRField("error", offset=layout.STATUS_ERROR_SHIFT, size=layout.STATUS_ERROR_BITS,
                     description="The layout.ERR_* code of the last start."),
        ])
        self.cycles = CSRStatus(32, description="Cycles from start to done of the last run.")
        self.argmax = CSRStatus(DIM, description="Index of the first largest logit.")
        self.magic = CSRStatus(32, reset=layout.MAGIC, description="layout.MAGIC: an nnhil accelerator.")
        self.version = CSRStatus(32, description="layout.VERSION, fixedpoint.FORMAT_VERSION above.",
            reset=layout.VERSION | (fx.FORMAT_VERSION << layout.VERSION_FORMAT_SHIFT))
        for name, value in cfg.to_dict().items():
            setattr(self, name, CSRStatus(32, reset=value, name=name,
                                          description=f"Build parameter AccelConfig.{name}."))
        self.comb += [
            seq.start.eq(self.control.fields.start),
            seq.soft_reset.eq(self.control.fields.soft_reset),
            seq.n_layers.eq(self.n_layers.storage),
            seq.stop_after.eq(self.stop_after.storage),
            seq.slot.eq(self.slot.storage),
            self.status.fields.busy.eq(seq.busy),
            self.status.fields.done.eq(seq.done),
            self.status.fields.error.eq(seq.error),
            self.cycles.status.eq(seq.cycles),
            self.argmax.status.eq(rq.argmax),
        ]

        # Datapath wiring --------------------------------------------------------------------
        self.comb += [
            mac.flush.eq(seq.soft_reset),
            rq.flush.eq(seq.soft_reset),
            p_port.adr.eq(seq.program_adr),
            seq.descriptor.eq(p_port.dat_r),
            seq.mac_busy.eq(mac.busy),
            seq.rq_busy.eq(rq.busy),
            mac.valid.eq(seq.valid),
            mac.first.eq(seq.first),
            mac.last.eq(seq.last),
            mac.merge.eq(seq.merge),
            mac.publish.eq(seq.publish),
            mac.split.eq(seq.split),
            mac.tail.eq(seq.tail),
            mac.wide.eq(seq.pair & seq.pool),
            rq.split.eq(seq.split),
            rq.pair.eq(seq.pair),
            rq.single.eq(seq.single),
            rq.b_base.eq(seq.b_base),
            rq.c_out.eq(seq.c_out),
            rq.plane.eq(seq.plane),
            rq.logits.eq(seq.logits),
            rq.tile_out.eq(seq.tile_out),
            rq.tile_chan.eq(seq.tile_chan),
            rq.start.eq(mac.published),
        ]
        in_buf = seq.layer[0]          # layer l reads act[l % 2] and writes act[(l + 1) % 2]
        word   = Signal(len(seq.addr) - 2)   # the input's word, past the layer's in_base (whole words)
        half   = Cat(seq.addr[1], word)      # halfword of the input byte: read it and the next one
        odd    = Signal()              # the read's first halfword is in the hi bank
        self.sync += odd.eq(half[0])
        lo_hi  = [Mux(in_buf, pair[1].dat_r, pair[0].dat_r) for pair in zip(*a_ports)]
        self.comb += [
            word.eq(seq.addr[2:] + seq.in_base),
            w_port.adr.eq(seq.w_adr),
            mac.byte.eq(seq.addr[0]),
            mac.weights.eq(w_port.dat_r),
            mac.act_word.eq(Mux(odd, Cat(lo_hi[1], lo_hi[0]), Cat(lo_hi[0], lo_hi[1]))),
            b_port.adr.eq(rq.bias_adr),
            rq.bias_dat.eq(b_port.dat_r),
            l_port.adr.eq(rq.out_adr + seq.out_base),
            l_port.dat_w.eq(rq.out_dat),
            l_port.we.eq(rq.logit_we),
        ]
        # the requantizer writes byte j (and with act_we_next j + 1: the other byte of j's
        # halfword, or the first of the next halfword, in the other bank)
        j, j_next = rq.out_adr, Signal(len(rq.out_adr))
        self.comb += j_next.eq(j + 1)
        y0, y1 = (rq.out_dat[fx.ACT_BITS*p:fx.ACT_BITS*(p + 1)] for p in range(2))
        pair_dat = Mux(j[0], Cat(y1, y0), Cat(y0, y1))
        for b, bank_pair in enumerate(a_ports):
            reads = in_buf == b
            for hi, port in enumerate(bank_pair):
                at_j, at_next = j[1] == hi, j_next[1] == hi
                first  = ~reads & rq.act_we & at_j
                second = ~reads & rq.act_we_next & at_next
                self.comb += [
                    port.adr.eq(Mux(reads, (half + (1 - hi))[1:], Mux(at_j, j[2:], j_next[2:]) + seq.out_base)),
                    port.dat_w.eq(pair_dat),
                    port.we.eq(Cat((first & ~j[0]) | (second & j[0]), (first & j[0]) | (second & ~j[0]))),
                ]


class _WordPort:
    """The bus's 32-bit, byte-writable view of an activation buffer's two halfword banks."""
    def __init__(self, module, pair):
        lo, hi = (m.get_port(write_capable=True, we_granularity=8) for m in pair)
        module.specials += [lo, hi]
        self.adr, self.dat_r, self.dat_w, self.we = Signal(len(lo.adr)), Signal(32), Signal(32), Signal(4)
        module.comb += [
            lo.adr.eq(self.adr), hi.adr.eq(self.adr),
            self.dat_r.eq(Cat(lo.dat_r, hi.dat_r)),
            Cat(lo.dat_w, hi.dat_w).eq(self.dat_w),
            Cat(lo.we, hi.we).eq(self.we),
        ]
