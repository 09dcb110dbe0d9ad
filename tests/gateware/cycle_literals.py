"""Cycle counts of small programs on 8 lanes, derived by hand from the documented schedule
(the README's accelerator section and gateware/cyclemodel.py's docstring), written as
literals: they anchor the cycle model and the hardware counter to figures neither computes.

The RTL takes its pipeline depths from cyclemodel.py, so a depth constant changed there moves
the hardware and the model together; these numbers do not move. The schedule, per run of L
layers on P lanes::

    1 (count check) + 7 L (FETCH, LOAD, SIZE1-4, CHECK per layer: validation)
    + per layer: 6 (FETCH, LOAD, SIZE1-4)
                 + T N m                       MAC cycles: T tiles, N windows, m = F n per window
                 + (T - 1) N max(0, P - m)     the sweep of a full tile's P lanes outlasting m
                 + (N - 1) max(0, v - m)       ... of the last tile's v lanes
                 + v + 13                      last drain: v lanes, then 4 (MAC pipeline: issue,
                                               RAM data, operands, product, accumulator) + 1
                                               (shadow -> drain bank) + 7 (requantizer: sweep,
                                               groups, sum, + bias, product, product, rounded,
                                               shifted) + 1
    + 1 (FINISH)

Each entry: (name, in_shape, layers, cycles) with layers given as ("conv", c_out, k, pool)
or ("dense", n_out), the last one the logits. Derivations, P = 8:
"""
LANES = 8

CASES = [
    # dense 5 -> 12: one group (12 > P/2), T = 2 tiles, v = 4, N = 1, m = 5:
    #   6 + 2*1*5 + 1*1*(8 - 5) + 0 + 4 + 13 = 36
    # dense 12 -> 8 (logits): one group, T = 1, v = 8, m = 12: 6 + 12 + 0 + 0 + 8 + 13 = 39
    # run: 1 + 7*2 + 36 + 39 + 1 = 91
    ("dense, two tiles", (5,), [("dense", 12), ("dense", 8)], 91),
    # dense 30 -> 2: four lane groups (2 <= P/4), m = ceil(30/4) = 8, T = 1, v = 2:
    #   6 + 8 + 0 + 0 + 2 + 13 = 29
    # dense 2 -> 3 (logits): two groups (3 <= P/2), m = ceil(2/2) = 1, v = 3: 6 + 1 + 3 + 13 = 23
    # run: 1 + 14 + 29 + 23 + 1 = 68
    ("split fan-in", (30,), [("dense", 2), ("dense", 3)], 68),
    # conv 2x2 (1, 7, 7) -> 6 channels + pool: 6 > P/2, no pairs; conv 6x6, pooled 3x3: N = 9,
    #   F = 4, n = 1*2*2 = 4, m = 16, T = 1, v = 6: 6 + 9*16 + 0 + 8*max(0, 6 - 16) + 6 + 13 = 169
    # dense 54 -> 3 (logits): two groups, m = 27, v = 3: 6 + 27 + 3 + 13 = 49
    # run: 1 + 14 + 169 + 49 + 1 = 234
    ("conv with pool", (1, 7, 7), [("conv", 6, 2, True), ("dense", 3)], 234),
    # conv 1x1 (1, 6, 6) -> 7 channels + pool: no pairs, N = 3*3 = 9, m = 4*1 = 4, v = 7, the
    #   drain bound: 6 + 9*4 + 0 + 8*(7 - 4) + 7 + 13 = 86
    # dense 63 -> 5 (logits): one group (5 > P/2), m = 63, v = 5: 6 + 63 + 5 + 13 = 87
    # run: 1 + 14 + 86 + 87 + 1 = 189
    ("drain-bound conv with pool", (1, 6, 6), [("conv", 7, 1, True), ("dense", 5)], 189),
    # conv 2x2 (1, 5, 6) -> 3 channels: 3 <= P/2 and out_w = 5 >= 2: position pairs; conv 4x5,
    #   N = 4 * ceil(5/2) = 12 (each row's last window a single), m = 4, v = 3:
    #   6 + 12*4 + 0 + 11*max(0, 3 - 4) + 3 + 13 = 70
    # dense 60 -> 2 (logits): four groups, m = 15, v = 2: 6 + 15 + 2 + 13 = 36
    # run: 1 + 14 + 70 + 36 + 1 = 122
    ("position pairs", (1, 5, 6), [("conv", 3, 2, False), ("dense", 2)], 122),
]


def build(rng, in_shape, layers):
    """A random IntModel of this shape (tests.gateware.accel_models' layers)."""
    import numpy as np
    from nnhil.training.intmodel import IntModel, MaxPool2D
    from tests.gateware import accel_models as am

    out, shape = [], tuple(in_shape)
    for i, spec in enumerate(layers):
        last = i == len(layers) - 1
        if spec[0] == "conv":
            _, c_out, k, pool = spec
            out.append(am.conv(rng, shape, c_out, k))
            shape = out[-1].shape_out
            if pool:
                out.append(MaxPool2D(shape))
                shape = out[-1].shape_out
        else:
            out.append(am.dense(rng, int(np.prod(shape)), spec[1], last))
            shape = (spec[1],)
    return IntModel(out, input_shape=tuple(in_shape))
