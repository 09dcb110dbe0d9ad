"""What every nnhil SoC has, whichever board it runs on: one description for the sim and the Arty.

A target builds a LiteX ``SoCCore`` with :data:`SOC_KWARGS` (its CPU, ROM and SRAM) and
main RAM, then calls :func:`add_host_link` with the PHY of its one serial port and
:func:`add_accelerator`. The host reaches the SoC through that one port only: LiteX's
UARTBone (Wishbone master) on the physical link and a "crossover" UART for the BIOS
console, whose other end is a pair of CSRs the host reads and writes through the bridge
(what ``uart_name="crossover+uartbone"`` does on a board; here the PHY is a parameter so
the sim can pass a byte-stream model instead of a baud-rate UART).
"""
from litex.soc.cores.uart import UARTBone
from litex.soc.integration.soc import SoCRegion

from . import layout
from .accelerator import Accelerator

NAME = "nnhil"                  # module, CSR prefix, bus region and constant prefix
ORIGIN = 0x9000_0000            # in the CPU's uncached I/O region (0x8000_0000 and up)
CONST_PREFIX = "ACCEL_"         # soc.h makes a nnhil_x_read() for a constant NNHIL_X: it would clash with the CSRs

# The CPU: VexRiscv "standard" is RV32IM (a pipelined hardware multiplier) with I and D
# caches: a realistic soft-core baseline. "minimal" has no multiplier, so the CPU baseline
# would measure software multiplication; "full" is a larger core (more simulation and
# synthesis time) with nothing the benchmark needs.
SOC_KWARGS = dict(
    cpu_type             = "vexriscv",
    cpu_variant          = "standard",
    integrated_rom_size  = 0x10000,   # room for the full LiteX BIOS (about 24 KB; LiteX trims the ROM to fit)
    integrated_sram_size = 0x2000,    # BIOS data and stack, then the firmware's stack
    with_uart            = False,     # added by add_host_link
    with_timer           = True,
    timer_uptime         = True,      # 64-bit cycle counter the firmware times with
)


def add_host_link(soc, phy, bridge_clk_freq=None):
    """UARTBone on ``phy`` and a crossover UART for the console, as ``crossover+uartbone``.

    UARTBone abandons a command still incomplete 0.1 * ``bridge_clk_freq`` cycles after its
    first byte; the sim passes a larger value than its nominal clock because it runs
    far slower than real time on a busy host (default: the SoC clock, as on a board).
    """
    soc.add_uart("uart", uart_name="crossover")
    soc.uartbone_phy = phy
    soc.uartbone = UARTBone(phy, clk_freq=bridge_clk_freq or soc.sys_clk_freq,
                            address_width=soc.bus.address_width)
    soc.bus.add_master(name="uartbone", master=soc.uartbone.wishbone)


def layout_constants(cfg):
    """The build's configuration the firmware needs, as (name, value) pairs for soc.h (ACCEL_*):
    the AccelConfig, the regions and the slots. Only what this build decides goes here: the
    records' fields and flags are mailbox.h's (host/firmware_abi.py), the CSRs' bit fields
    csr.h's (the accelerator's CSRFields), each C name emitted by one generator."""
    consts = {
        "WINDOW_WORDS": cfg.window_words,
        "SLOT_WORDS": cfg.slot_words,
        "SLOT_LOGITS": cfg.slot_logits,
    }
    consts.update({k.upper(): v for k, v in cfg.to_dict().items()})
    for region in layout.REGIONS:
        consts[f"{region.upper()}_OFFSET"] = 4 * cfg.region_base[region]   # bytes from the window base
        consts[f"{region.upper()}_WORDS"] = cfg.region_words[region]
    return [(f"{CONST_PREFIX}{k}", v) for k, v in consts.items()]


def add_accelerator(soc, cfg=layout.AccelConfig(), origin=ORIGIN, faults=False):
    """The accelerator: CSRs named ``nnhil_*``, its memory window as the uncached ``nnhil`` region
    (``faults``: the selftest's fault build, gateware.faults; the sim only)."""
    accel = Accelerator(cfg, faults=faults)
    soc.add_module(name=NAME, module=accel)
    soc.bus.add_slave(name=NAME, slave=accel.bus,
                      region=SoCRegion(origin=origin, size=4 * cfg.window_words, cached=False))
    for name, value in layout_constants(cfg):
        soc.add_constant(name, value)
    return accel
