"""The Arty A7 SoC: litex-boards' digilent_arty target with the accelerator on its main bus.

One USB UART carries both the host's Wishbone (UARTBone) and, crossed over, the CPU's
console, so the host reaches the accelerator's memories and CSRs with no firmware help.
The SoC is trimmed to leave block RAM for the accelerator: main RAM is the DDR3, and the
integrated ROM is sized for the BIOS built with LTO and the lite console (22 KiB with
LiteX 2024.12, against 28 KiB for the full console, which would need 32 KiB of ROM).
"""
from litex.soc.integration.builder import Builder
from litex.soc.integration.soc import SoCRegion
from litex_boards.targets.digilent_arty import BaseSoC

from .accelerator import Accelerator
from .layout import AccelConfig

SYS_CLK_FREQ = int(100e6)
UART = "crossover+uartbone"
ROM_SIZE = 0x6000         # 24 KiB, not the 128 KiB default: see BIOS_OPTIONS
BIOS_OPTIONS = dict(bios_lto=True, bios_console="lite")
SRAM_SIZE = 0x2000
L2_SIZE = 0x1000          # the CPU has its own caches; the L2 only merges DDR3 bursts


class ArtySoC(BaseSoC):
    def __init__(self, accel_config=AccelConfig(), variant="a7-35", rom_init=None, **kwargs):
        kwargs.setdefault("cpu_type", "vexriscv")
        kwargs.setdefault("integrated_rom_size", ROM_SIZE)
        kwargs.setdefault("integrated_sram_size", SRAM_SIZE)
        kwargs.setdefault("l2_size", L2_SIZE)
        if rom_init is not None:
            kwargs["integrated_rom_init"] = rom_init
        BaseSoC.__init__(self, variant=variant, toolchain="vivado", sys_clk_freq=SYS_CLK_FREQ,
                         uart_name=UART, **kwargs)
        self.accel = Accelerator(accel_config)
        self.bus.add_slave("accel", self.accel.bus,
                           SoCRegion(size=4 * accel_config.window_words, cached=False))


def generate(soc, output_dir, compile_software=False):
    """Write the SoC's Verilog (and the BIOS if asked; no Vivado run); return the gateware directory."""
    builder = Builder(soc, output_dir=str(output_dir), compile_software=compile_software,
                      compile_gateware=False, **BIOS_OPTIONS)
    builder.build(run=False)
    return builder.gateware_dir
