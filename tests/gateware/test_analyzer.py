"""The LiteScope option (gateware.analyzer): where it may be built, that it elaborates into the
A7-100's SoC, and what it costs there (Yosys, slow tier)."""
import contextlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from nnhil.gateware import analyzer, arty, buildcache, resources, variants
from nnhil.gateware.arty import ArtySoC

ROOT = Path(__file__).resolve().parents[2]


def test_the_a7_35_refuses_the_option_saying_which_variant_may_carry_it():
    with pytest.raises(ValueError, match=r"a7-35 has no block RAM to spare.*45 of its 50 RAMB36.*--variant a7-100"):
        ArtySoC(variant="a7-35", litescope=True)
    analyzer.check("a7-100")


def test_nnhil_build_refuses_it_for_the_a7_35_default_build_before_any_work(tmp_path):
    env = {**os.environ, "NNHIL_HOME": str(tmp_path / "home")}
    for argv, message in ((["--target", "arty", "--litescope"], "--litescope: the Arty a7-35 has no block RAM"),
                          (["--litescope"], "--litescope is for --target arty")):
        r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "build", *argv], capture_output=True,
                           text=True, timeout=120, cwd=ROOT, env=env)
        assert r.returncode != 0 and message in r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "home" / "build").exists()


def test_the_option_is_a_build_of_its_own_and_leaves_the_default_key_alone():
    v = variants.get("a7-100")
    inputs = buildcache.build_inputs("arty")
    plain = buildcache.build_key("arty", v.accel, inputs=inputs, variant=v.name)[1]
    scoped = buildcache.build_key("arty", v.accel, inputs=inputs, variant=v.name, litescope=True)[1]
    assert scoped != plain
    assert buildcache.arty_dir("a7-100").name == f"arty-{plain}"
    assert buildcache.arty_dir("a7-100", litescope=True).name == f"arty-{scoped}"


def _generate(tmp_path, litescope, csv=None):
    rng = random.Random(0)
    tmp_path.mkdir(parents=True, exist_ok=True)
    with open(tmp_path / "litex.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        soc = ArtySoC(variant="a7-100", litescope=litescope, analyzer_csv=csv,
                      rom_init=[rng.getrandbits(32) for _ in range(arty.ROM_SIZE // 4)])
        gateware = Path(arty.generate(soc, tmp_path / "build"))
    return soc, (gateware / f"{soc.platform.name}.v").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("litescope", [False, True])
def test_the_a7_100_soc_has_the_analyzer_only_when_asked(litescope, tmp_path):
    """The option elaborates into the A7-100 SoC's Verilog, with its CSRs and the signal list
    litescope_cli reads (the window first, to trigger on); the default has none of them."""
    soc, verilog = _generate(tmp_path, litescope, tmp_path / analyzer.CSV if litescope else None)
    csrs = {n for n in soc.csr.locs if n in ("analyzer", "tracewindow")}
    assert csrs == ({"analyzer", "tracewindow"} if litescope else set())
    assert ("tracewindow_first_storage" in verilog) == litescope
    if litescope:
        rows = [line.split(",") for line in (tmp_path / analyzer.CSV).read_text().splitlines()]
        signals = [r[2] for r in rows if r[0] == "signal"]
        assert signals[0].endswith("tracewindow_trace") and len(signals) == 13   # what litescope_cli -r finds
        assert all(s in verilog for s in signals)
        width = sum(int(r[3]) for r in rows if r[0] == "signal")
        assert ["config", "None", "data_width", str(width)] in rows
        assert ["config", "None", "depth", str(analyzer.DEPTH)] in rows
    else:
        assert not (tmp_path / analyzer.CSV).exists()


@pytest.mark.slow
def test_the_a7_100_soc_with_the_analyzer_fits_and_keeps_its_block_ram_margin(tmp_path):
    """Yosys on the whole A7-100 SoC with and without the option (two syntheses, minutes): with
    it, the SoC still fits the XC7A100T and keeps the variant's RAMB36 limit, and the difference
    in block RAM is the analyzer's storage: DEPTH samples of every probe bit, at the 36-bit width
    a RAMB36 has when 1,024 deep."""
    v = variants.get("a7-100")
    without = resources.estimate("soc", v.accel, tmp_path / "plain", v.name)
    use = resources.estimate("soc", v.accel, tmp_path / "scope", v.name, litescope=True)
    text, fits = resources.report("a7-100 + litescope", use)
    line, kept = resources.bram_margin(use, v)
    assert v.device in fits and kept, f"{text}\n{line}"
    soc, _ = _generate(tmp_path / "elab", True)
    width = soc.analyzer.data_width
    storage = -(-width // 36) * -(-analyzer.DEPTH // 1024)
    bram = {k: u["RAMB36"] + u["RAMB18"] / 2 for k, u in (("with", use), ("without", without))}
    assert bram["with"] - bram["without"] == storage, (use, without)
    assert use["LUT"] > without["LUT"] and use["FF"] > without["FF"] + width
