"""The Arty A7 target: litex-boards' digilent_arty SoC with what soc.py adds to every nnhil SoC.

The Arty's one FTDI UART carries both the host's Wishbone bridge and the CPU's console
(LiteX's ``crossover+uartbone``), so the host reaches the accelerator without firmware.
The SoC is trimmed to leave block RAM for the accelerator: main RAM is the DDR3, the L2
cache only merges DDR3 bursts, and the integrated ROM is sized for the BIOS built with
LTO and the lite console (22 KiB with LiteX 2024.12; the full console needs 28 KiB,
and a 32 KiB ROM would not fit next to the accelerator). The board variant
(gateware.variants) picks the FPGA and the default accelerator.

With Vivado on PATH the bitstream is built too, and kept only if the routed design meets
timing (gateware.vivado): Vivado writes it either way.
"""
import json
import logging
import re
import shutil
from pathlib import Path

from litex.soc.integration.builder import Builder
from litex_boards.targets.digilent_arty import BaseSoC

from . import analyzer, link, soc as nnsoc, variants, vivado

log = logging.getLogger(__name__)

ROM_SIZE = 0x5C00         # 23 KiB: the BIOS of BIOS_OPTIONS is 22.1 KiB (LiteX 2024.12); LiteX refuses a larger one
BIOS_OPTIONS = dict(bios_lto=True, bios_console="lite")
L2_SIZE = 0x1000


class ArtySoC(BaseSoC):
    def __init__(self, accel_config=None, variant=variants.DEFAULT, rom_init=None, litescope=False,
                 analyzer_csv=None):
        if litescope:          # before any work: the A7-35 may not carry it
            analyzer.check(variant)
        accel_config = accel_config or variants.get(variant).accel
        kwargs = dict(nnsoc.SOC_KWARGS, with_uart=True, uart_name="crossover+uartbone",
                      uart_baudrate=link.BAUD, integrated_rom_size=ROM_SIZE, l2_size=L2_SIZE)
        if rom_init is not None:
            kwargs["integrated_rom_init"] = rom_init
        BaseSoC.__init__(self, variant=variant, toolchain="vivado", sys_clk_freq=link.CLOCK_HZ, **kwargs)
        nnsoc.add_accelerator(self, accel_config)
        if litescope:          # a board's view of a layer's window (docs/waveforms.md)
            analyzer.add(self, variant, csr_csv=analyzer_csv)


LUTRAM_MAX_BITS = 8192     # a CPU memory this small goes to LUT RAM (a RAMB18 holds 18 Kbit)


def small_memories_in_lutram(verilog):
    """VexRiscv's Verilog with its small memories moved from ``ram_style = "block"`` to
    distributed RAM: the register file (1 Kbit), the two cache tag memories (2.8 Kbit) and the
    four byte lanes of the data cache (8 Kbit each), which fill a RAMB18 each to a half or less:
    with the 23 KiB ROM, 49 -> 45 RAMB36 for 1,250 LUTs. Reads stay registered: the behaviour is
    the same."""
    def style(m):
        bits = (int(m.group(1)) + 1) * (int(m.group(3)) + 1)
        return m.group(0).replace('"block"', '"distributed"') if bits <= LUTRAM_MAX_BITS else m.group(0)
    out, n = re.subn(r'\(\* ram_style = "block" \*\) reg \[(\d+):0\] (\w+) \[0:(\d+)\]', style, verilog)
    if out == verilog:
        raise RuntimeError("found no small block-RAM memory in VexRiscv.v: its source changed, "
                           "update arty.small_memories_in_lutram")
    return out


def _use_lutram_cpu(soc, output_dir):
    """Give the SoC the VexRiscv of small_memories_in_lutram, written to ``output_dir``."""
    from litex import get_data_mod
    from litex.soc.cores.cpu.vexriscv.core import CPU_VARIANTS

    src = Path(get_data_mod("cpu", "vexriscv").data_location) / (CPU_VARIANTS[soc.cpu.variant] + ".v")
    dst = Path(output_dir) / "VexRiscv_nnhil.v"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(small_memories_in_lutram(src.read_text()))
    soc.cpu.use_external_variant(str(dst))


def generate(soc, output_dir, compile_software=False, compile_gateware=False, **builder_kwargs):
    """Write the SoC's Verilog (the BIOS and the bitstream if asked); return the gateware directory."""
    _use_lutram_cpu(soc, output_dir)
    builder = Builder(soc, output_dir=str(output_dir), compile_software=compile_software,
                      compile_gateware=compile_gateware, **BIOS_OPTIONS, **builder_kwargs)
    builder.build(run=compile_gateware)
    return builder.gateware_dir


def check_routed_timing(gateware_dir, build_name):
    """The post-route timing summary of a Vivado build; a bitstream that misses timing is renamed
    ``<name>.bit.timing-failed`` and vivado.TimingNotMet raised."""
    gateware_dir = Path(gateware_dir)
    try:
        return vivado.check_timing(gateware_dir / f"{build_name}_timing.rpt")
    except vivado.TimingNotMet as e:
        bit = gateware_dir / f"{build_name}.bit"
        if bit.exists():
            bit.rename(bit.with_name(bit.name + ".timing-failed"))
        raise vivado.TimingNotMet(f"{e}; the bitstream is not usable and was renamed "
                                  f"{bit.name}.timing-failed") from None


def build(cfg=None, out_dir=None, variant=variants.DEFAULT, litescope=False):
    """The Arty gateware, BIOS and Vivado project of ``variant`` (with ``litescope``, the
    gateware.analyzer and its analyzer.csv); the bitstream too when Vivado is on PATH and the
    routed design meets timing."""
    v = variants.get(variant)
    cfg = cfg or v.accel
    out = Path(out_dir)
    has_vivado = shutil.which("vivado") is not None
    soc = ArtySoC(cfg, variant=v.name, litescope=litescope,
                  analyzer_csv=str(out / analyzer.CSV) if litescope else None)
    gateware = generate(soc, out, compile_software=True, compile_gateware=has_vivado,
                        csr_json=str(out / "csr.json"), csr_csv=str(out / "csr.csv"))
    info = {"accel_config": cfg.to_dict(), "variant": v.name, "part": v.part, "litescope": litescope}
    (out / "build.json").write_text(json.dumps(info, indent=2))
    if has_vivado:
        summary = check_routed_timing(gateware, soc.platform.name)
        info["timing"] = {"wns_ns": summary.wns, "tns_ns": summary.tns, "whs_ns": summary.whs}
        (out / "build.json").write_text(json.dumps(info, indent=2))
        log.info(f"timing met ({summary.describe()})")
        log.info(f"bitstream: {Path(gateware) / (soc.platform.name + '.bit')}")
    else:
        log.info(f"generated the Arty {v.name} gateware, BIOS and Vivado project in {gateware}; Vivado is "
            f"not on PATH, so no bitstream was built: install Vivado and rerun 'nnhil build --target arty'")
    return out
