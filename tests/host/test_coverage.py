"""host.coverage on models small enough to count their edges by hand."""
import numpy as np

from nnhil.gateware.compiled import CompiledModel
from nnhil.gateware.layout import AccelConfig
from nnhil.host import coverage
from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D

CFG = AccelConfig(lanes=8, weight_words=256, bias_entries=64, act_bytes=512, logit_words=16, max_layers=4)


def dense(weights, bias, mult, shift, last=False):
    w = np.asarray(weights, np.int8)
    n = len(w)
    return Dense(w, np.full(n, bias, np.int32) if np.ndim(bias) == 0 else np.asarray(bias, np.int32),
                 np.full(n, mult, np.uint16), np.full(n, shift, np.uint8), fx.OUTPUT_I32 if last else fx.OUTPUT_U8)


def test_requantization_edges_by_hand():
    """x = (4, 0), mult 1, shift 1: hidden sums 4, -4, 600, 1023, 5 give (acc + 1) >> 1 =
    2, -2, 300, 512, 3: one negative (clamped to 0), four positive, two saturated at 255 of
    which one (300) in 256..511; the rounding constant changes only 5 (truncated: 2), a doubled
    one only 4 ((4 + 2) >> 1 = 3). The logits take the two saturated outputs: a tie."""
    hidden = dense([[1, 0], [-1, 0], [1, 0], [1, 0], [1, 0]], [0, 0, 596, 1019, 1], 1, 1)
    last = dense([[0, 0, 1, 0, 0], [0, 0, 0, 1, 0]], 0, 1, 1, last=True)
    model = IntModel([hidden, last], input_shape=(2,))
    cov = coverage.measure(CompiledModel.of(model, CFG), np.array([[4, 0]], np.uint8))
    (_, h), (_, l) = cov.layers
    assert (h["negative"], h["positive"], h["saturated_0"], h["saturated_255"]) == (1, 4, 1, 2)
    assert (h["saturation_wrap"], h["rounding"], h["rounding_high"]) == (1, 1, 1)
    assert h["beyond_2_23"] == 0 and l["argmax_tie"] == 1
    assert cov.reason("negative") is None and cov.reason("beyond_2_23") == coverage.EDGES["beyond_2_23"][1]


def test_lane_groups_and_ties():
    """A dense layer of 2 outputs on 8 lanes splits its fan-in over four lane groups (inputs
    g, g + 4, ...); the last group's sum is what split_last_group counts, and its channel
    P/4 - 1 = 1 holds the last lane."""
    w = np.zeros((2, 8), np.int8)
    w[1, 3] = 2                             # group 3 (inputs 3, 7) of channel 1: the last lane
    w[0, 0] = 1
    model = IntModel([dense(w, [0, 0], 1, 1, last=True)], input_shape=(8,))
    x = np.array([[0, 0, 0, 5, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], [0] * 8], np.uint8)
    cov = coverage.measure(CompiledModel.of(model, CFG), x)
    (_, c), = cov.layers
    assert c["split_last_group"] == 1       # image 0, channel 1
    assert c["last_lane"] == 1              # an even weight (2) over input 3 = 5: the logit changes
    assert c["argmax_tie"] == 1             # image 2: both logits 0
    assert cov.first["argmax_tie"] == 2 and cov.run["two_slots"] == 1   # image 1 runs in slot 1


def test_pool_edges_and_the_unread_last_word():
    """conv 1x1 on (1, 3, 3) + pool keeps the top-left 2x2 window: the third row and column
    are never read, so the last input word (pixels 8..11 of 9: pixel 8) cannot matter."""
    conv = Conv2D(np.ones((1, 1, 1, 1), np.int8), np.zeros(1, np.int32), np.ones(1, np.uint16),
                  np.ones(1, np.uint8), fx.OUTPUT_U8, (1, 3, 3))
    pool = MaxPool2D(conv.shape_out)
    model = IntModel([conv, pool, dense([[1]], 0, 1, 1, last=True)], input_shape=(1, 3, 3))
    x = np.zeros((3, 1, 3, 3), np.uint8)
    x[0, 0, 0, :2] = [10, 10]               # a tie in the window
    x[1, 0, 1, 1] = 7                       # values differ, no tie
    x[:, 0, 2, 2] = [1, 2, 3]               # the last word differs in every image
    cov = coverage.measure(CompiledModel.of(model, CFG), x)
    (_, c), _ = cov.layers
    assert c["pool_differs"] == 2 and c["pool_tie"] == 2     # image 2's all-zero window ties too
    assert cov.run["image_tail"] == 0 and cov.reason("image_tail") == coverage.EDGES["image_tail"][1]


def test_lanes_used():
    """On 8 lanes: 2 outputs split over four groups use 8 lanes, 3 outputs over two groups 6,
    a conv of 3 channels in position pairs 6, 11 outputs in two tiles all 8 of the first."""
    rng = np.random.default_rng(0)
    conv = Conv2D(rng.integers(-5, 5, (3, 1, 2, 2)).astype(np.int8), np.zeros(3, np.int32),
                  np.ones(3, np.uint16), np.full(3, 4, np.uint8), fx.OUTPUT_U8, (1, 3, 4))
    w = lambda o, i: rng.integers(-5, 5, (o, i))
    model = IntModel([conv, dense(w(11, 18), 0, 1, 4), dense(w(3, 11), 0, 1, 4), dense(w(2, 3), 0, 1, 1, last=True)],
                     input_shape=(1, 3, 4))
    cov = coverage.measure(CompiledModel.of(model, CFG), np.zeros((1, 1, 3, 4), np.uint8))
    assert [(c["lanes"], c["lane_groups"]) for _, c in cov.layers] == [(6, 2), (8, 1), (6, 2), (8, 4)]
