"""The sim SoC: soc.py's SoC on LiteX's SimPlatform, with integrated main RAM and a byte-stream
PHY that the sim_tcp module connects to the host's bridge."""
from pathlib import Path

SIM_MODULE_DIR = Path(__file__).resolve().parent / "sim_tcp"
SIM_MODULE = "sim_tcp"

SIM_CLK_FREQ = int(1e6)        # nominal, as litex_sim: the BIOS's timeouts are in cycles of it
BRIDGE_CLK_FREQ = int(1e8)     # UARTBone drops a half-received command after 0.1 s of this clock:
                               # 10M sim cycles, seconds of wall time even on a loaded host
MAIN_RAM_SIZE = 4 * 1024 * 1024


def _sim_io():
    from litex.build.generic_platform import Pins, Subsignal
    return [
        ("sys_clk", 0, Pins(1)),
        ("sys_rst", 0, Pins(1)),
        # A byte stream each way, driven by the sim_tcp module.
        ("serial", 0,
            Subsignal("source_valid", Pins(1)), Subsignal("source_ready", Pins(1)),
            Subsignal("source_data", Pins(8)),
            Subsignal("sink_valid", Pins(1)), Subsignal("sink_ready", Pins(1)),
            Subsignal("sink_data", Pins(8))),
    ]


def sim_soc(cfg, main_ram_size=MAIN_RAM_SIZE, variant=None):
    """The sim SoC: soc.py's SoC on a SimPlatform, integrated main RAM, a stream PHY for the
    bridge; ``variant`` a buildcache.SimVariant: its ``faults`` the selftest's fault build, a
    traced one drives the platform's trace pad from a gateware.tracewindow.TraceWindow on the
    accelerator's cycle counter."""
    from litex.build.sim import SimPlatform
    from litex.build.io import CRG
    from litex.soc.cores.uart import RS232PHYModel
    from litex.soc.integration.soc_core import SoCCore

    from . import soc as nnsoc

    class SimSoC(SoCCore):
        def __init__(self):
            platform = SimPlatform("SIM", _sim_io())
            self.crg = CRG(platform.request("sys_clk"))
            SoCCore.__init__(self, platform, clk_freq=SIM_CLK_FREQ, ident="nnhil sim",
                             integrated_main_ram_size=main_ram_size, **nnsoc.SOC_KWARGS)
            # The BIOS memtests main RAM at boot; a full pass costs seconds of sim time.
            self.add_constant("MEMTEST_DATA_SIZE", 8 * 1024)
            self.add_constant("MEMTEST_ADDR_SIZE", 8 * 1024)
            nnsoc.add_host_link(self, RS232PHYModel(platform.request("serial")),
                                bridge_clk_freq=BRIDGE_CLK_FREQ)
            nnsoc.add_accelerator(self, cfg, faults=bool(variant and variant.faults))
            if variant is not None and variant.trace:
                from . import tracewindow
                self.comb += platform.trace.eq(tracewindow.add(self).trace)

    return SimSoC()
