"""The Arty A7 target: litex-boards' digilent_arty SoC with what soc.py adds to every nnhil SoC.

The Arty's one FTDI UART carries both the host's Wishbone bridge and the CPU's console
(LiteX's ``crossover+uartbone``), so the host reaches the accelerator without firmware.
The SoC is trimmed to leave block RAM for the accelerator: main RAM is the DDR3, the L2
cache only merges DDR3 bursts, and the integrated ROM is sized for the BIOS built with
LTO and the lite console (22 KiB with LiteX 2024.12; the full console needs 28 KiB,
and a 32 KiB ROM would not fit next to the accelerator).
"""
import json
import shutil
from pathlib import Path

from litex.soc.integration.builder import Builder
from litex_boards.targets.digilent_arty import BaseSoC

from . import soc as nnsoc
from .layout import AccelConfig

SYS_CLK_FREQ = int(100e6)
ROM_SIZE = 0x6000         # 24 KiB: see BIOS_OPTIONS
BIOS_OPTIONS = dict(bios_lto=True, bios_console="lite")
L2_SIZE = 0x1000


class ArtySoC(BaseSoC):
    def __init__(self, accel_config=AccelConfig(), variant="a7-35", rom_init=None):
        kwargs = dict(nnsoc.SOC_KWARGS, with_uart=True, uart_name="crossover+uartbone",
                      integrated_rom_size=ROM_SIZE, l2_size=L2_SIZE)
        if rom_init is not None:
            kwargs["integrated_rom_init"] = rom_init
        BaseSoC.__init__(self, variant=variant, toolchain="vivado", sys_clk_freq=SYS_CLK_FREQ, **kwargs)
        nnsoc.add_accelerator(self, accel_config)


def generate(soc, output_dir, compile_software=False, compile_gateware=False, **builder_kwargs):
    """Write the SoC's Verilog (the BIOS and the bitstream if asked); return the gateware directory."""
    builder = Builder(soc, output_dir=str(output_dir), compile_software=compile_software,
                      compile_gateware=compile_gateware, **BIOS_OPTIONS, **builder_kwargs)
    builder.build(run=compile_gateware)
    return builder.gateware_dir


def build(cfg=AccelConfig(), out_dir=None, log=print):
    """The Arty A7-35 gateware, BIOS and Vivado project; the bitstream too when Vivado is on PATH."""
    out = Path(out_dir)
    vivado = shutil.which("vivado") is not None
    soc = ArtySoC(cfg)
    gateware = generate(soc, out, compile_software=True, compile_gateware=vivado,
                        csr_json=str(out / "csr.json"), csr_csv=str(out / "csr.csv"))
    (out / "build.json").write_text(json.dumps({"accel_config": cfg.to_dict()}, indent=2))
    if vivado:
        log(f"bitstream: {Path(gateware) / (soc.platform.name + '.bit')}")
    else:
        log(f"generated the Arty gateware, BIOS and Vivado project in {gateware}; Vivado is not on "
            f"PATH, so no bitstream was built: install Vivado and rerun 'nnhil build --target arty'")
    return out
