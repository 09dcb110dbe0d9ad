"""The WishboneWindow alone (Migen simulation): the layout's memory map onto real memories.

Each region's first and last words land in its memory (a wide weight word as lanes/4 bus
words, the lowest first; activations by byte lanes), writes past a region's end and to the
logits are dropped, and every word reads back; ack comes two cycles after the request.
"""
import numpy as np
import pytest
from migen import Memory, Module
from migen.sim import run_simulation

from nnhil.gateware.layout import BIAS, DESCRIPTOR, REGIONS, AccelConfig
from nnhil.gateware.wishbone_window import WishboneWindow
from nnhil.training import fixedpoint as fx


class Bench(Module):
    """The window over memories shaped like the accelerator's, logits preset (read-only)."""
    def __init__(self, cfg, logits):
        widths = {"weights": 8 * cfg.lanes, "bias": BIAS.width, "program": DESCRIPTOR.width,
                  "act0": 32, "act1": 32, "logits": fx.ACC_BITS}
        depths = {"weights": cfg.weight_words, "bias": cfg.bias_entries, "program": cfg.max_layers,
                  "act0": cfg.act_bytes // 4, "act1": cfg.act_bytes // 4, "logits": cfg.logit_words}
        self.mems = {r: Memory(widths[r], depths[r], init=logits if r == "logits" else None)
                     for r in REGIONS}
        grain = {"act0": 8, "act1": 8, "logits": None}
        ports = {r: (m.get_port() if r == "logits" else
                     m.get_port(write_capable=True, we_granularity=grain.get(r, 32)))
                 for r, m in self.mems.items()}
        self.specials += [*self.mems.values(), *ports.values()]
        self.submodules.window = WishboneWindow(cfg, ports)


@pytest.mark.parametrize("cfg", [AccelConfig(lanes=8, weight_words=5, bias_entries=3, act_bytes=12,
                                             logit_words=3, max_layers=2),
                                 AccelConfig(lanes=4, weight_words=2, bias_entries=2, act_bytes=8,
                                             logit_words=2, max_layers=2)],
                         ids=["odd-sizes", "smallest"])
def test_regions_map_onto_their_memories(cfg):
    rng = np.random.default_rng(0)
    logits = [int(v) for v in rng.integers(0, 1 << 32, cfg.logit_words, dtype=np.int64)]
    bench = Bench(cfg, logits)
    bus = bench.window.bus
    base, size = cfg.region_base, cfg.region_words
    written, errors = {}, []

    def tb():
        for region in REGIONS:
            for offset in sorted({0, size[region] - 1}):
                value = int(rng.integers(0, 1 << 32))
                yield from bus.write(base[region] + offset, value)
                if region != "logits":
                    written[(region, offset)] = value
            aligned = 1 << (size[region] - 1).bit_length()
            if aligned > size[region]:   # past the end, inside the aligned region: dropped
                yield from bus.write(base[region] + size[region], 0xDEADBEEF)
        yield from bus.write(base["act0"] + 1, 0xAABBCCDD, sel=0b0101)   # byte lanes
        written[("act0", 1)] = (written.get(("act0", 1), 0) & 0xFF00FF00) | 0x00BB00DD
        for (region, offset), value in written.items():
            got = yield from bus.read(base[region] + offset)
            if got != value:
                errors.append((region, offset, hex(got), hex(value)))
        for k, value in enumerate(logits):
            got = yield from bus.read(base["logits"] + k)
            if got != value:
                errors.append(("logits", k, hex(got), hex(value)))
        # the memories themselves: bus word k of an entry is its bits 32 k .. 32 k + 31, and
        # nothing else was written (not the writes past the ends)
        for region in REGIONS[:-1]:
            mem = bench.mems[region]
            per = max(1, mem.width // 32)
            expect = [0] * mem.depth
            for (r, offset), value in written.items():
                if r == region:
                    expect[offset // per] |= value << 32 * (offset % per)
            for entry in range(mem.depth):
                got = yield mem[entry]
                if got != expect[entry]:
                    errors.append((region, "entry", entry, hex(got), hex(expect[entry])))

    run_simulation(bench, tb())
    assert errors == []


def test_ack_two_cycles_after_the_request():
    cfg = AccelConfig(lanes=4, weight_words=2, bias_entries=2, act_bytes=8, logit_words=2, max_layers=2)
    bench = Bench(cfg, [0, 0])
    bus = bench.window.bus
    seen = []

    def tb():
        yield bus.adr.eq(cfg.region_base["bias"])
        yield bus.cyc.eq(1)
        yield bus.stb.eq(1)
        for _ in range(4):
            yield
            seen.append((yield bus.ack))

    run_simulation(bench, tb())
    assert seen[:3] == [0, 0, 1]
