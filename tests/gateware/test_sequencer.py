"""The Sequencer alone (Migen simulation, a real program RAM, an idle datapath).

Its verdict on every shared vector equals program.check_program, a rejected program takes
cyclemodel.rejected_cycles, a valid one issues exactly its MAC cycles and takes the cycle
model's count less the drain it does not wait for; start while busy and soft reset.
"""
import numpy as np
import pytest
from migen import Memory, Module
from migen.sim import run_simulation

from nnhil.gateware import cyclemodel, layout, program, vectors
from nnhil.gateware.layout import AccelConfig, LayerShape as S
from nnhil.gateware.sequencer import Sequencer

CFG = AccelConfig(lanes=4, weight_words=512, bias_entries=96, act_bytes=40, logit_words=12, max_layers=4)


class Bench(Module):
    def __init__(self, words):
        self.submodules.seq = seq = Sequencer(CFG)
        entries = [layout.DESCRIPTOR.from_words(words[4 * l:4 * l + 4])
                   for l in range(min(CFG.max_layers, len(words) // 4))]
        mem = Memory(layout.DESCRIPTOR.width, CFG.max_layers, init=entries)
        port = mem.get_port()
        self.specials += mem, port
        self.comb += [port.adr.eq(seq.program_adr), seq.descriptor.eq(port.dat_r)]


def run(n_layers, words, limit=20000, during=None, stop_after=0):
    """Start the program; returns (error, cycles CSR, MAC cycles issued). ``during(seq, cycle)``
    may act on the running sequencer each cycle."""
    bench = Bench(words)
    seq, out = bench.seq, {}

    def tb():
        yield seq.n_layers.eq(n_layers)
        yield seq.stop_after.eq(stop_after)
        yield seq.start.eq(1)
        yield
        yield seq.start.eq(0)
        issued = 0
        for cycle in range(limit):
            yield
            issued += yield seq.valid
            if during:
                yield from during(seq, cycle)
            if (yield seq.done) and not (yield seq.busy):
                out.update(error=(yield seq.error), cycles=(yield seq.cycles), issued=issued)
                return
        raise AssertionError(f"not done after {limit} cycles")

    run_simulation(bench, tb())
    return out["error"], out["cycles"], out["issued"]


def idle_drain_cycles(shapes, lanes, stop_after=0):
    """cyclemodel's count when the datapath is never busy: each layer's final drain (its last
    position's lanes through the MAC, publish and requantizer pipelines) takes one cycle."""
    tail = cyclemodel.MAC_LATENCY + cyclemodel.PUBLISH_LATENCY + cyclemodel.DRAIN_LATENCY + 1
    last_valid = [s.c_out - (layout.tiles(s.c_out, lanes) - 1) * lanes
                  for s in (shapes[:stop_after] if stop_after else shapes)]
    return cyclemodel.shape_cycles(shapes, lanes, stop_after) - sum(v + tail - 1 for v in last_valid)


def test_every_vector():
    seen = set()
    for name, n_layers, words in vectors.program_vectors(CFG, np.random.default_rng(1)):
        code, layer = program.check_program(words, n_layers, CFG)
        error, cycles, issued = run(n_layers, words)
        assert error == code, name
        if code == layout.ERR_NONE:
            shapes = [s for s, *_ in vectors.decode(words, n_layers)]
            assert issued == sum(s.weight_words(CFG.lanes) * s.windows(CFG.lanes) * s.phases for s in shapes), name
            assert cycles == idle_drain_cycles(shapes, CFG.lanes), name
        else:
            assert (cycles, issued) == (cyclemodel.rejected_cycles(layer), 0), name
        seen.add(code)
    # ERR_STOP_AFTER is a run's (stop_after past n_layers), not a program's: test_stop_after* has it
    assert seen == set(layout.ERROR_NAMES) - {layout.ERR_BUSY, layout.ERR_STOP_AFTER}


@pytest.mark.parametrize("shapes", [
    [S(1, 1, 3, 1, 3), S.dense(9, 2, logits=True)],           # window 1 < 3 lanes: waits 2 per position
    [S(1, 1, 2, 1, 6), S.dense(12, 2, logits=True)],          # a full tile waits 3, the last 1
    [S(2, 3, 3, 2, 7, pool=True), S.dense(7, 3, logits=True)],   # 8 MAC cycles a position: no wait
    [S(1, 2, 2, 2, 3), S.dense(3, 5), S.dense(5, 2, logits=True)],
], ids=["drain-bound", "drain-bound-tiles", "pool", "three-layers"])
def test_valid_programs_take_the_modelled_cycles(shapes):
    n, words = vectors.encode(shapes, CFG.lanes)
    assert program.check_program(words, n, CFG) == (layout.ERR_NONE, None)
    error, cycles, issued = run(n, words)
    assert (error, cycles) == (layout.ERR_NONE, idle_drain_cycles(shapes, CFG.lanes))
    assert issued == sum(s.weight_words(CFG.lanes) * s.windows(CFG.lanes) * s.phases for s in shapes)


def test_stop_after_runs_a_prefix_of_the_validated_program():
    """stop_after = k issues the MAC cycles of the first k layers only, after validating all;
    past n_layers it is refused at the count check; a bad later descriptor is still refused."""
    shapes = [S(1, 2, 2, 2, 3), S.dense(3, 5), S.dense(5, 2, logits=True)]
    n, words = vectors.encode(shapes, CFG.lanes)
    for k in range(n + 2):
        code, layer = program.check_program(words, n, CFG, k)
        error, cycles, issued = run(n, words, stop_after=k)
        assert error == code == (layout.ERR_STOP_AFTER if k > n else layout.ERR_NONE), k
        if k > n:
            assert (cycles, issued) == (cyclemodel.rejected_cycles(layer), 0)
        else:
            ran = shapes[:k] if k else shapes
            assert issued == sum(s.weight_words(CFG.lanes) * s.windows(CFG.lanes) * s.phases for s in ran), k
            assert cycles == idle_drain_cycles(shapes, CFG.lanes, k), k
    bad = list(words)
    bad[4 * 2:4 * 3] = S.dense(5, 2, logits=False).encode(*S.decode(words[8:12])[1:])
    assert program.check_program(bad, n, CFG, 1) == (layout.ERR_OUTPUT_KIND, 2)
    assert run(n, bad, stop_after=1) == (layout.ERR_OUTPUT_KIND, cyclemodel.rejected_cycles(2), 0)


def test_start_while_busy_is_refused_and_the_run_goes_on():
    n, words = vectors.encode([S(1, 5, 5, 2, 6, pool=True), S.dense(24, 3, logits=True)], CFG.lanes)

    def start_again(seq, cycle):
        if cycle == 30:
            assert (yield seq.busy)
            yield seq.start.eq(1)
        elif cycle == 31:
            yield seq.start.eq(0)
    shapes = [s for s, *_ in vectors.decode(words, n)]
    assert run(n, words, during=start_again)[:2] == (layout.ERR_BUSY, idle_drain_cycles(shapes, CFG.lanes))


@pytest.mark.parametrize("at", [1, 5, 40])
def test_soft_reset_returns_to_idle(at):
    n, words = vectors.encode([S(1, 5, 5, 2, 6, pool=True), S.dense(24, 3, logits=True)], CFG.lanes)
    bench = Bench(words)
    seq, seen = bench.seq, []

    def tb():
        yield seq.n_layers.eq(n)
        yield seq.start.eq(1)
        yield
        yield seq.start.eq(0)
        for _ in range(at):
            yield
        yield seq.soft_reset.eq(1)
        yield
        yield seq.soft_reset.eq(0)
        for _ in range(3):
            yield
            seen.append(((yield seq.busy), (yield seq.done), (yield seq.error), (yield seq.valid)))

    run_simulation(bench, tb())
    assert seen == [(0, 0, layout.ERR_NONE, 0)] * 3


@pytest.mark.parametrize("fields", [
    dict(c_in=0xFFFF, c_out=0x8001, height=255, width=1, kernel=0x80, flags=0xFF,
         w_base=0xFFFF, b_base=0x1234, out_base=0xA5A5),
    dict(c_in=1, c_out=0xFFFF, height=1, width=255, kernel=0x7F, flags=layout.FLAG_POOL,
         w_base=0x8000, b_base=0xFFFF, out_base=0xFFFF),
    dict(c_in=0x5A5A, c_out=1, height=0x81, width=0x7E, kernel=1, flags=layout.FLAG_LOGITS | 0x54,
         w_base=1, b_base=0, out_base=1),
], ids=["high", "low", "mixed"])
def test_descriptor_fields_latched(fields):
    """layout.DESCRIPTOR encoded in Python, decoded by the Sequencer's LOAD (its slices)."""
    words = layout.DESCRIPTOR.to_words(layout.DESCRIPTOR.encode(**fields))
    bench = Bench(words)
    seq, got = bench.seq, {}
    size1 = seq.fsm.ongoing("SIZE1")   # the cycle after LOAD

    def tb():
        yield seq.n_layers.eq(1)
        yield seq.start.eq(1)
        yield
        yield seq.start.eq(0)
        for _ in range(10):
            yield
            if (yield size1):
                v = seq.validator
                for name in ("c_in", "c_out", "height", "width", "kernel", "pool", "logits"):
                    got[name] = yield getattr(v, name)
                got["w_base"] = yield seq.addrgen.w_base
                got["b_base"] = yield seq.b_base
                got["out_base"] = yield seq.out_base
                return

    run_simulation(bench, tb())
    flags = layout.FLAGS.decode(fields.pop("flags"))
    assert got == {**fields, "pool": flags["pool"], "logits": flags["logits"]}
