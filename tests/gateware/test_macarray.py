"""The MACArray alone (Migen simulation) against a Python reference of its banks.

Windows of 1 input up to more inputs than lanes, issued back to back (a window's first
input follows the previous window's last), at the int8 x uint8 extremes; the 2x2 pool's
max-merge into the shadow bank; and the drain bank loaded only on ``publish``.
"""
import numpy as np
from migen.sim import run_simulation

from nnhil.gateware.macarray import MACArray
from nnhil.training import fixedpoint as fx

LANES = 4


def simulate(windows):
    """Issue each window (weights [n, LANES], acts [n], merge, publish) back to back; returns
    the drain bank after each publish."""
    mac = MACArray(LANES)
    # per-cycle stimulus: issue in cycle c, RAM data in c + 1, merge/publish with tile_done
    length = sum(len(a) for _, a, _, _ in windows) + MACArray.LATENCY + 4
    stim = [dict() for _ in range(length)]
    c = 0
    for weights, acts, merge, publish in windows:
        for i, (w, x) in enumerate(zip(weights, acts)):
            stim[c].update(valid=1, first=int(i == 0), last=int(i == len(acts) - 1), byte=c % 4)
            stim[c + 1].update(weights=int.from_bytes(np.asarray(w, np.int8).tobytes(), "little"),
                               act_word=int(x) << 8 * (c % 4))
            c += 1
        stim[c - 1 + MACArray.LATENCY].update(merge=int(merge), publish=int(publish))
    drains = []

    def tb():
        loaded = False   # the drain bank is loaded at the end of a published cycle
        for values in stim + [{}]:
            for name in ("valid", "first", "last", "byte", "weights", "act_word", "merge", "publish"):
                yield getattr(mac, name).eq(values.get(name, 0))
            yield
            if loaded:
                bank = []
                for k in range(LANES):
                    bank.append((yield mac.drain[k]))
                drains.append(bank)
            loaded = yield mac.published
        assert not (yield mac.busy)

    run_simulation(mac, tb())
    return drains


def reference(windows):
    shadow, drains = np.zeros(LANES, np.int64), []
    for weights, acts, merge, publish in windows:
        acc = (np.asarray(weights, np.int64) * np.asarray(acts, np.int64)[:, None]).sum(axis=0)
        shadow = np.maximum(shadow, acc) if merge else acc
        if publish:
            drains.append(shadow.tolist())
    return drains


def window(rng, n, wlo=fx.WEIGHT_MIN, whi=fx.WEIGHT_MAX, xlo=0, xhi=fx.ACT_MAX, merge=False, publish=True):
    return (rng.integers(wlo, whi + 1, (n, LANES)), rng.integers(xlo, xhi + 1, n), merge, publish)


def test_windows_back_to_back():
    rng = np.random.default_rng(1)
    windows = [window(rng, n) for n in (1, 2, LANES - 1, LANES, LANES + 1, 3 * LANES + 2, 1, 1)]
    windows += [window(rng, 40, fx.WEIGHT_MIN, fx.WEIGHT_MIN, fx.ACT_MAX, fx.ACT_MAX),   # most negative
                window(rng, 40, fx.WEIGHT_MAX, fx.WEIGHT_MAX, fx.ACT_MAX, fx.ACT_MAX),   # most positive
                window(rng, 5, xlo=0, xhi=0)]
    assert simulate(windows) == reference(windows)


def test_pool_merges_four_windows_into_one_drain():
    rng = np.random.default_rng(2)
    windows = []
    for n in (1, 3, LANES + 2):
        windows += [window(rng, n, merge=q != 0, publish=q == 3) for q in range(4)]
    # the second of four windows is the largest for some lanes, the last for others
    got = simulate(windows)
    assert got == reference(windows) and len(got) == 3


def test_drain_bank_holds_until_the_next_publish():
    rng = np.random.default_rng(3)
    windows = [window(rng, 2), window(rng, 3, publish=False), window(rng, 2, publish=False),
               window(rng, 1)]
    got = simulate(windows)
    assert got == reference(windows) and len(got) == 2


def test_lane_groups_take_their_bytes():
    """Lane group g (a quarter, or with split 1 a half, of the lanes) takes byte byte + g of
    the activation word, or byte + 2 g with ``wide`` (a pooled conv position pair)."""
    word = [11, 22, 33, 44]
    cases = [(split, wide, byte) for split, wide in ((0, 0), (1, 0), (1, 1), (2, 0)) for byte in (0, 1)
             if byte + (3 if split == 2 else 1 + wide if split else 0) < 4]

    def drained(split, wide, byte):
        mac, out = MACArray(LANES), []

        def tb():
            for name, value in dict(split=split, wide=wide, tail=3, valid=1, first=1, last=1,
                                    byte=byte, publish=1).items():
                yield getattr(mac, name).eq(value)
            yield
            yield mac.valid.eq(0)
            yield mac.weights.eq(int.from_bytes(bytes([1] * LANES), "little"))
            yield mac.act_word.eq(int.from_bytes(bytes(word), "little"))
            for _ in range(MACArray.LATENCY + 2):
                yield
            for k in range(LANES):
                out.append((yield mac.drain[k]))

        run_simulation(mac, tb())
        return out

    for split, wide, byte in cases:
        groups = 1 << split
        expect = [word[byte + (k // (LANES // groups)) * (1 + wide)] for k in range(LANES)]
        assert drained(split, wide, byte) == expect, (split, wide, byte)
