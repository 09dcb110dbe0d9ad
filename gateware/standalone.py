"""The accelerator alone behind one Wishbone port, its CSRs bridged as in a LiteX SoC.

Word addresses below ``1 << CSR_BIT`` reach the accelerator's memory window, those above
its CSR bank (through a Wishbone-to-CSR bridge). Used by the simulation tests and by the
resource estimate of the accelerator without a CPU.
"""
from migen import ClockDomain, Signal

from litex.gen import LiteXModule
from litex.gen.fhdl.verilog import convert
from litex.soc.interconnect import csr_bus, wishbone

from .accelerator import Accelerator

CSR_BIT = 20
WB_SIGNALS = ("cyc", "stb", "we", "adr", "dat_w", "sel", "ack", "dat_r")


class Standalone(LiteXModule):
    def __init__(self, cfg, faults=False):
        self.cd_sys = ClockDomain()
        self.accel = Accelerator(cfg, faults=faults)
        self.wb2csr = wishbone.Wishbone2CSR(bus_csr=csr_bus.Interface(data_width=32))
        self.csrbank = csr_bus.CSRBankArray(self,
            lambda name, memory: 0 if name == "accel" and memory is None else None, data_width=32)
        self.csrcon = csr_bus.Interconnect(self.wb2csr.csr, self.csrbank.get_buses())
        wb = wishbone.Interface(data_width=32)
        self.decoder = wishbone.Decoder(wb, [
            (lambda a: a[CSR_BIT] == 0, self.accel.bus),
            (lambda a: a[CSR_BIT] == 1, self.wb2csr.wishbone),
        ])
        # top-level ports with stable names: wb_cyc, wb_stb, ...
        self.ports = {f: Signal(len(getattr(wb, f)), name_override=f"wb_{f}") for f in WB_SIGNALS}
        for f in WB_SIGNALS:
            out = f in ("ack", "dat_r")
            self.comb += (self.ports[f].eq(getattr(wb, f)) if out else getattr(wb, f).eq(self.ports[f]))
        self.comb += wb.cti.eq(0)

    def csr_map(self):
        """Word address of every CSR, by name."""
        (_, csrs, _, _), = self.csrbank.banks
        addr, out = 1 << CSR_BIT, {}
        for c in csrs:
            out[c.name] = addr
            addr += -(-c.size // 32)
        return out

    def verilog(self, name):
        return str(convert(self, ios={self.cd_sys.clk, self.cd_sys.rst, *self.ports.values()}, name=name))
