"""gateware.timing: the logic-only timing budget holds on the accelerator, and a long path fails it."""
import pytest
from migen import Module, Signal
from migen.fhdl.verilog import convert

from nnhil.gateware import resources, timing
from nnhil.gateware.layout import AccelConfig


class AdderChain(Module):
    """A register fed by ``stages`` 32-bit adders in series (each takes the previous sum bit-reversed,
    so its carry chain starts where the previous one ends and Yosys cannot merge them), and a
    register fed by one adder."""
    def __init__(self, stages):
        self.ins = [Signal(32, name=f"in{i}") for i in range(stages + 1)]
        regs = [Signal(32, name=f"operand{i}") for i in range(stages + 1)]
        self.long_sum, self.short_sum = Signal(32, name="long_sum"), Signal(32, name="short_sum")
        self.sync += [r.eq(i) for r, i in zip(regs, self.ins)]
        x = regs[0]
        for i, r in enumerate(regs[1:]):
            stage = Signal(32, name=f"stage{i}")   # a wire per stage: Migen would copy the whole
            self.comb += stage.eq((x[::-1] ^ r) + r)   # expression into each of the 32 reversed bits
            x = stage
        self.sync += [self.long_sum.eq(x), self.short_sum.eq(regs[0] + regs[1])]


def _estimate(module, ios, top, workdir):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{top}.v").write_text(str(convert(module, ios=ios, name=top)))
    resources.synthesize([workdir / f"{top}.v"], top, workdir, timing=True)
    return timing.read_estimate(workdir, top)


def test_a_long_path_exceeds_the_budget_and_is_named(tmp_path):
    m = AdderChain(stages=4)
    est = _estimate(m, {*m.ins, m.long_sum, m.short_sum}, "chain", tmp_path)
    assert not est.missing
    over = est.over_budget()
    assert [p.end for p in over] == ["long_sum (FDRE.D)"], est.report()
    assert over[0].start.startswith("operand*") and over[0].levels >= 4
    short = next(p for p in est.paths if p.end.startswith("short_sum"))
    assert short.ns < timing.BUDGET_NS / 2
    # the report names the failing path, its start and end, and says the budget is missed
    text = est.report()
    assert "1 paths OVER BUDGET" in text and "operand* (FDRE.Q) -> long_sum (FDRE.D)" in text


def test_library_has_arcs_for_what_yosys_sta_skips():
    """The flip-flops and LUT RAMs, whose conditional arcs Yosys's sta ignores, are timed here."""
    lib = timing.cell_library()
    for cell in ("FDRE", "FDSE", "FDCE", "FDPE", "RAM32M", "RAM64M", "SRL16E"):
        assert lib[cell].clk2q and lib[cell].setup, cell
    assert lib["CARRY4"].comb[("CI", None)] and lib["LUT6"].comb[("I0", None)]


def test_dsp_arcs_follow_its_registers():
    registered = timing._dsp48e1({"AREG": 1, "BREG": 1, "MREG": 1, "PREG": 1})
    comb = timing._dsp48e1({r: 0 for r in ("AREG", "BREG", "CREG", "MREG", "PREG")})
    assert "A" in registered.setup and "P" in registered.clk2q and not registered.comb
    assert "A" not in comb.setup and comb.comb[("A", None)] and not comb.clk2q
    with pytest.raises(ValueError, match="USE_DPORT"):
        timing._dsp48e1({"USE_DPORT": "TRUE"})


@pytest.fixture(scope="module")
def accelerator_timing(tmp_path_factory):
    """The default accelerator synthesised alone once (about a minute)."""
    workdir = tmp_path_factory.mktemp("accelerator")
    sources, top = resources.accelerator_sources(AccelConfig(), workdir)
    resources.synthesize(sources, top, workdir / "yosys", timing=True)
    return timing.read_estimate(workdir / "yosys", top)


@pytest.mark.slow        # the accelerator's Yosys synthesis (minutes), beside the slow tier's others
def test_accelerator_meets_the_timing_budget(accelerator_timing):
    est = accelerator_timing
    print(est.report())
    assert not est.missing, est.missing
    assert len(est.paths) > 100          # every register of the design, not a handful
    assert not est.over_budget(), est.report()


@pytest.mark.slow
def test_yosys_sta_sees_a_subset_of_the_paths(accelerator_timing):
    """Yosys's sta uses the same arcs but only block-RAM and DSP endpoints: it can never report a
    later arrival than the full analysis (a lower figure here means a path was lost)."""
    est = accelerator_timing
    assert est.yosys_sta_ps is not None
    assert est.worst.ps >= est.yosys_sta_ps
