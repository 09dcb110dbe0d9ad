"""The Requantizer alone (Migen simulation) against training.fixedpoint.requantize.

Every shift from SHIFT_MIN to SHIFT_MAX, each with accumulators of both signs at the
rounding boundary (exact halves), at the int32 limits and around the 255 saturation, the
multiplier at 0, 1 and MULT_MAX; and the logits path with its argmax (first maximum wins).
"""
import numpy as np
from migen import Array, Memory, Module, Signal
from migen.sim import run_simulation

from nnhil.gateware import layout
from nnhil.gateware.layout import AccelConfig
from nnhil.gateware.requantizer import Requantizer
from nnhil.training import fixedpoint as fx

LANES = 4


class Bench(Module):
    """The Requantizer with a drain bank the test drives and a real bias RAM."""
    def __init__(self, entries):
        cfg = AccelConfig(lanes=LANES, bias_entries=len(entries))
        self.bank = Array(Signal((fx.ACC_BITS, True)) for _ in range(LANES))
        self.submodules.rq = rq = Requantizer(cfg, self.bank)
        mem = Memory(layout.BIAS.width, len(entries), init=[int(e) for e in entries])
        port = mem.get_port()
        self.specials += mem, port
        self.comb += [port.adr.eq(rq.bias_adr), rq.bias_dat.eq(port.dat_r)]


def run(acc, bias, mult, shift, logits=False, plane=1, split=0, pair=False, single=False, out0=0):
    """Drain ``acc`` (one value per channel) through the requantizer, LANES channels per
    position; returns {output index: value written} and the argmax register. With
    ``split``, ``acc`` is [channel, lane group]: channel c's part g sits in lane
    g * LANES / 2**split + c, and one position holds every channel; with ``pair`` (split 1)
    the groups are two positions, at output out0 + c plane and the next."""
    acc = np.asarray(acc)
    n = len(acc)
    if split:
        groups = 1 << split
        assert acc.shape == (n, groups) and n <= LANES // groups
        lanes = np.zeros(LANES, dtype=np.int64)
        for g in range(groups):
            lanes[g * LANES // groups:g * LANES // groups + n] = acc[:, g]
        acc = lanes
    entries = layout.BIAS.encode(bias=np.asarray(bias), mult=np.asarray(mult), shift=np.asarray(shift))
    bench = Bench(np.resize(entries, max(2, n)))   # a memory holds two entries or more
    rq, out = bench.rq, {}

    def tb():
        yield rq.c_out.eq(n)
        yield rq.plane.eq(plane)
        yield rq.logits.eq(int(logits))
        yield rq.split.eq(split)
        yield rq.pair.eq(int(pair))
        yield rq.single.eq(int(single))
        for chan in range(0, n, LANES):
            for k in range(LANES):
                yield bench.bank[k].eq(int(acc[chan + k]) if chan + k < len(acc) else 0)
            yield rq.tile_chan.eq(chan)
            yield rq.tile_out.eq(out0 + chan * plane)
            yield rq.start.eq(1)
            yield
            yield rq.start.eq(0)
            yield
            for _ in range(rq.LATENCY + LANES + 2):
                if (yield rq.act_we) or (yield rq.logit_we):
                    adr, dat = (yield rq.out_adr), (yield rq.out_dat)
                    assert adr not in out, f"output {adr} written twice"
                    out[adr] = dat - (1 << 32) * (dat >> 31) if logits else dat & 0xFF
                if (yield rq.act_we_next):
                    assert (yield rq.act_we) and adr + 1 not in out, f"output {adr + 1} written twice"
                    out[adr + 1] = (dat >> 8) & 0xFF
                yield
            assert not (yield rq.busy)
        out["argmax"] = yield rq.argmax

    run_simulation(bench, tb())
    return out


def shift_cases():
    """(acc, mult, shift) around every behaviour of every shift."""
    cases = []
    for s in range(fx.SHIFT_MIN, fx.SHIFT_MAX + 1):
        for mult in (1, 0x5A5A, fx.MULT_MAX):
            half = 1 << (s - 1)
            sat = (255 << s) // mult          # acc where the output reaches 255
            for acc in (fx.ACC_MIN, fx.ACC_MAX, 0, 1, -1, half // mult, -(half // mult),
                        half // mult + 1, -(half // mult) - 1, sat, sat + 1, sat - 1,
                        ((256 << s) - half) // mult, ((256 << s) - half) // mult + 1,
                        (17 << s) // mult + 1, (128 << s) // mult + 1, (254 << s) // mult + 1):
                cases.append((acc, mult, s))
    # exact halves: acc * mult = (2 m + 1) 2**(s-1) rounds up
    cases += [((2 * m + 1) << (s - 1), 1, s) for s in range(fx.SHIFT_MIN, 31) for m in (0, 3, 127)]
    cases += [(-((2 * m + 1) << (s - 1)), 1, s) for s in range(fx.SHIFT_MIN, 31) for m in (0, 3)]
    cases += [(acc, 0, s) for acc in (fx.ACC_MIN, fx.ACC_MAX) for s in (fx.SHIFT_MIN, fx.SHIFT_MAX)]
    return [c for c in cases if fx.ACC_MIN <= c[0] <= fx.ACC_MAX]


def test_every_shift_both_signs_and_saturation():
    acc, mult, shift = (np.array(v, dtype=np.int64) for v in zip(*shift_cases()))
    # half the cases carry their value in the bias: acc + bias is what is requantized
    bias = np.where(np.arange(len(acc)) % 2, acc // 2, 0)
    got = run(acc - bias, bias, mult, shift)
    expect = fx.requantize(acc, mult, shift)
    np.testing.assert_array_equal([got[j] for j in range(len(acc))], expect)
    assert {0, 1, 17, 128, 254, 255} <= set(expect.tolist())
    assert set(shift.tolist()) == set(range(fx.SHIFT_MIN, fx.SHIFT_MAX + 1))


def test_channel_major_output_indices():
    """Lane k of a position goes to tile_out + k * plane; a partial last tile stops at c_out."""
    acc = np.arange(1, 7) * 1000
    got = run(acc, np.zeros(6), np.full(6, fx.MULT_MAX), np.full(6, 16), plane=3)
    assert sorted(k for k in got if k != "argmax") == [3 * c for c in range(6)]
    np.testing.assert_array_equal([got[3 * c] for c in range(6)],
                                  fx.requantize(acc, fx.MULT_MAX, 16))


def test_logits_and_argmax():
    rng = np.random.default_rng(0)
    acc = rng.integers(fx.ACC_MIN // 2, fx.ACC_MAX // 2, 9)
    bias = rng.integers(fx.ACC_MIN // 2, fx.ACC_MAX // 2, 9)
    acc[[2, 6]] = fx.ACC_MAX // 2
    bias[[2, 6]] = fx.ACC_MAX // 2 + 1           # two equal maxima at int32's limit: 2 wins
    got = run(acc, bias, np.zeros(9), np.ones(9), logits=True)
    np.testing.assert_array_equal([got[j] for j in range(9)], acc + bias)
    assert got["argmax"] == 2
    acc[:] = fx.ACC_MIN // 2
    bias[:] = fx.ACC_MIN // 2                     # all equal, at int32's minimum: index 0
    assert run(acc, bias, np.zeros(9), np.ones(9), logits=True)["argmax"] == 0


def test_lane_groups_are_summed():
    """A dense layer's fan-in split over 2 or 4 lane groups: each channel is the sum of its
    groups' lanes (here near both int32 bounds, the sum in range)."""
    rng = np.random.default_rng(1)
    for split in (1, 2):
        groups = 1 << split
        n = LANES // groups
        edge = (fx.ACC_MAX - 1000) // groups           # the sum plus the bias stays in range
        parts = rng.integers(-edge, edge, (n, groups))
        parts[0], parts[-1] = edge, -edge
        bias = rng.integers(-1000, 1000, n)
        got = run(parts, bias, np.zeros(n), np.ones(n), logits=True, split=split)
        np.testing.assert_array_equal([got[j] for j in range(n)], parts.sum(axis=1) + bias)


def test_position_pairs_are_requantized_side_by_side():
    """A conv's position pair: channel c's two positions (lanes c and LANES/2 + c) go to the
    adjacent bytes out0 + c plane and the next in one cycle (both in one halfword or not); a
    single writes only the first. Cases of every shift in the second position too."""
    cases = shift_cases()
    by_shift = {s: [c for c in cases if c[2] == s] for s in range(fx.SHIFT_MIN, fx.SHIFT_MAX + 1)}
    picked = [group[i * 7 % len(group)] for group in by_shift.values() for i in range(2)]
    acc, mult, shift = (np.array(v, dtype=np.int64) for v in zip(*picked))
    n, plane = LANES // 2, 7
    for start in range(0, len(acc), 2):   # channel c: (acc, mult, shift) of cases 2c' and 2c'+1
        a = np.stack([acc[start:start + 2], acc[start:start + 2][::-1]])   # [channel, position]
        m, s = mult[start:start + 2], shift[start:start + 2]
        out0, single = 3 + start % 3, start % 6 == 4
        got = run(a, np.zeros(n), m, s, plane=plane, split=1, pair=True, single=single, out0=out0)
        got.pop("argmax")
        expect = {out0 + c * plane + p: int(fx.requantize(a[c, p], m[c], s[c]))
                  for c in range(n) for p in range(1 if single else 2)}
        assert got == expect
