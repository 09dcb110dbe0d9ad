"""Block RAM of the Arty SoC: the CPU's small memories in LUT RAM, the margin each variant keeps."""
from pathlib import Path

import pytest
from litex import get_data_mod

from nnhil.gateware import arty, resources, variants

VEXRISCV = Path(get_data_mod("cpu", "vexriscv").data_location) / "VexRiscv.v"


def _styles(verilog):
    import re
    return dict((name, style) for style, name in
                re.findall(r'\(\* ram_style = "(\w+)" \*\) reg \[\d+:0\] (\w+) \[', verilog))


def test_cpu_small_memories_go_to_lut_ram():
    before, after = _styles(VEXRISCV.read_text()), _styles(arty.small_memories_in_lutram(VEXRISCV.read_text()))
    assert set(before.values()) == {"block"}
    assert after["RegFilePlugin_regFile"] == after["ways_0_tags"] == after["ways_0_data_symbol0"] == "distributed"
    assert after["banks_0"] == "block"          # the 32 Kbit instruction cache fills a RAMB36


def test_an_unexpected_cpu_source_is_refused():
    with pytest.raises(RuntimeError, match="VexRiscv.v: its source changed"):
        arty.small_memories_in_lutram("module VexRiscv(); endmodule")


def test_bram_margin_line():
    use = {"RAMB36": 44, "RAMB18": 2}
    line, ok = resources.bram_margin(use, variants.get("a7-35"))
    assert ok and "5 of 50 RAMB36 free (45 used, limit 45: kept)" in line
    line, ok = resources.bram_margin({"RAMB36": 45, "RAMB18": 1}, variants.get("a7-35"))
    assert not ok and "EXCEEDED" in line


@pytest.mark.slow
@pytest.mark.parametrize("name", list(variants.VARIANTS))
def test_arty_soc_keeps_its_bram_margin(tmp_path, name):
    v = variants.get(name)
    use = resources.estimate("soc", v.accel, tmp_path, variant=name)
    text, fits = resources.report(name, use)
    line, ok = resources.bram_margin(use, v)
    assert v.device in fits and ok, f"{text}\n{line}"
