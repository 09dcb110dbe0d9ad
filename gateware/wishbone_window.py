"""The host's Wishbone view of the accelerator memories."""
from migen import *

from litex.gen import LiteXModule
from litex.soc.interconnect import wishbone

from .layout import address_bits


class WishboneWindow(LiteXModule):
    """The host's view of the accelerator memories: one 32-bit word-addressed Wishbone slave.

    ``ports`` maps each layout region to the bus-side port of its memory; a memory wider than
    32 bits shows as consecutive words, the lowest bits first. ``ack`` comes two cycles after
    the request (RAM read, then a registered read mux) so the wide mux stays off the bus path.
    """
    def __init__(self, cfg, ports):
        self.bus = bus = wishbone.Interface(data_width=32)

        # # #

        win_bits = address_bits(cfg.window_words)
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
