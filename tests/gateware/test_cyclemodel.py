"""gateware.cyclemodel: the headline target, and properties of the formula.

The simulation tests compare the model with the hardware counter for many shapes.
"""
import numpy as np
import pytest

from nnhil.gateware import cyclemodel, layout
from tests.gateware import cycle_literals
from nnhil.gateware.layout import AccelConfig

S = layout.LayerShape
HEADLINE = [S.dense(784, 128), S.dense(128, 10, logits=True)]
HEADLINE_MACS = sum(s.macs for s in HEADLINE)
TARGET_CYCLES = 1750          # issue 13: 58 MACs/cycle or more


def test_headline_meets_the_target():
    cfg = AccelConfig()
    assert cfg.lanes == 64
    cycles = cyclemodel.shape_cycles(HEADLINE, cfg.lanes)
    assert cycles <= TARGET_CYCLES
    assert HEADLINE_MACS / cycles >= 58
    # the drain of every tile but each layer's last is hidden behind MAC cycles: what is
    # left is the validation, and per layer its setup and its last tile's drain
    mac_cycles = sum(s.weight_words(cfg.lanes) for s in HEADLINE)
    tail = (cyclemodel.MAC_LATENCY + cyclemodel.PUBLISH_LATENCY + cyclemodel.DRAIN_LATENCY + 1)
    last_tiles = cfg.lanes + 10
    assert cycles - mac_cycles == (2 + cyclemodel.VALIDATE_CYCLES * 2
                                   + 2 * (cyclemodel.LOAD_CYCLES + tail) + last_tiles)
    # the 10 logits split the fan-in of 128 over four lane groups
    assert HEADLINE[1].weight_words(cfg.lanes) == 128 // 4


def test_default_cnn_meets_the_target():
    """Issue 13: the default CNN at 55 MACs/cycle or more (7,500 cycles or fewer); its convs
    run position pairs, conv 2's 64 lanes MAC-bound, conv 1's drain no longer the bound."""
    lanes = AccelConfig().lanes
    cnn = [S(1, 28, 28, 2, 16, pool=True), S(16, 13, 13, 2, 32, pool=True),
           S.dense(1152, 64), S.dense(64, 10, logits=True)]
    cycles = cyclemodel.shape_cycles(cnn, lanes)
    assert cycles <= 7500 and sum(s.macs for s in cnn) / cycles >= 55
    assert [s.pairs(lanes) for s in cnn] == [2, 2, 1, 1]
    assert [cyclemodel.layer_bound(s, lanes) for s in cnn[:2]] == ["memory port", "MAC"]


def test_narrow_dense_layers_split_their_fan_in():
    lanes = 64
    for n_out, groups in [(16, 4), (17, 2), (32, 2), (33, 1)]:
        shape = S.dense(130, n_out)
        assert shape.groups(lanes) == groups
        assert shape.weight_words(lanes) == -(-130 // groups)
    assert S(2, 1, 1, 1, 3).groups(lanes) == 4 and S(1, 1, 2, 1, 3).groups(lanes) == 1   # conv keeps 1


def test_narrow_convs_run_position_pairs():
    lanes = 64
    for c_out, width, pool, pairs, windows in [(32, 9, False, 2, 8 * 4), (32, 9, True, 2, 5 * 2),
                                                (33, 9, False, 1, 8 * 8), (8, 2, False, 1, 8),
                                                (8, 3, True, 1, 5), (8, 12, True, 2, 5 * 3)]:
        shape = S(3, 11 if pool else 9, width, 2, c_out, pool=pool)
        assert (shape.pairs(lanes), shape.windows(lanes), shape.groups(lanes)) == (pairs, windows, 1)
    assert S.dense(64, 8).pairs(lanes) == 1


@pytest.mark.parametrize("lanes", [4, 8, 16, 32, 64])
def test_more_lanes_never_slower(lanes):
    assert cyclemodel.shape_cycles(HEADLINE, lanes) <= cyclemodel.shape_cycles(HEADLINE, max(4, lanes // 2))


def test_narrow_layers_wait_for_the_shadow_bank():
    # n_in < lanes: each tile after the first waits lanes - n_in cycles
    lanes = 64
    a = cyclemodel.layer_cycles(S.dense(10, 3 * lanes), lanes)
    b = cyclemodel.layer_cycles(S.dense(lanes, 3 * lanes), lanes)
    assert b - a == 3 * (lanes - 10) - 2 * (lanes - 10)


def test_conv_is_mac_or_drain_bound():
    """One tile: a window costs max(F n, c) cycles: F n MAC cycles, or the drain of c
    channels (of both positions of a pair at once)."""
    lanes = 64
    fixed = (cyclemodel.LOAD_CYCLES + cyclemodel.MAC_LATENCY + cyclemodel.PUBLISH_LATENCY
             + cyclemodel.DRAIN_LATENCY + 1)
    mac_bound = S(16, 13, 13, 2, 32, pool=True)           # n = 64 >= 32 channels, 3 x 6 pairs
    assert cyclemodel.layer_cycles(mac_bound, lanes) == 4 * 18 * 64 + 32 + fixed
    wide = S(16, 13, 13, 2, 40, pool=True)                # 40 channels: no pairs
    assert cyclemodel.layer_cycles(wide, lanes) == 4 * 36 * 64 + 40 + fixed
    balanced = S(1, 28, 28, 2, 16, pool=True)             # 16 MAC cycles = 16 channels, 7 x 13 pairs
    assert cyclemodel.layer_cycles(balanced, lanes) == 91 * 16 + 16 + fixed
    narrow = S(1, 28, 28, 2, 24, pool=True)               # 16 MAC cycles < 24 channels
    assert cyclemodel.layer_cycles(narrow, lanes) == 91 * 16 + 90 * 8 + 24 + fixed
    unpaired = S(1, 28, 28, 2, 40, pool=True)             # 16 MAC cycles < 40 channels
    assert cyclemodel.layer_cycles(unpaired, lanes) == 169 * 16 + 168 * 24 + 40 + fixed


def test_layer_bounds():
    lanes = 64
    assert cyclemodel.layer_bound(S(1, 28, 28, 2, 24, pool=True), lanes) == "drain"   # 16 < 24
    assert cyclemodel.layer_bound(S(1, 28, 28, 2, 16, pool=True), lanes) == "memory port"   # 2 x 16
    assert cyclemodel.layer_bound(S(16, 13, 13, 2, 32, pool=True), lanes) == "MAC"   # 2 x 32
    assert cyclemodel.layer_bound(S(16, 13, 13, 2, 40, pool=True), lanes) == "memory port"
    assert cyclemodel.layer_bound(S.dense(64, 10), lanes) == "memory port"   # 40 of 64 lanes
    assert cyclemodel.layer_bound(S.dense(64, 16), lanes) == "MAC"           # 4 groups of 16
    assert cyclemodel.layer_bound(S.dense(784, 128), lanes) == "MAC"


def test_pool_computes_only_the_positions_it_keeps():
    lanes = 8
    odd = S(1, 6, 6, 2, 4, pool=True)       # conv 5x5: the fifth row and column are dropped
    even = S(1, 5, 5, 2, 4)                 # conv 4x4, no pool: the same 16 positions
    assert odd.macs == even.macs
    assert cyclemodel.layer_cycles(odd, lanes) == cyclemodel.layer_cycles(even, lanes)


def test_rejected_programs_are_short():
    assert cyclemodel.rejected_cycles() < cyclemodel.rejected_cycles(0) < cyclemodel.rejected_cycles(1)


@pytest.mark.parametrize("case", cycle_literals.CASES, ids=[c[0] for c in cycle_literals.CASES])
def test_model_equals_hand_derived_literals(case):
    """The cycle model against figures derived by hand from the documented schedule
    (tests/gateware/cycle_literals.py): a changed depth constant in cyclemodel.py fails here,
    although the RTL, which imports it, would still agree with the model."""
    name, in_shape, layers, cycles = case
    model = cycle_literals.build(np.random.default_rng(0), in_shape, layers)
    cfg = AccelConfig(lanes=cycle_literals.LANES, weight_words=512, bias_entries=128,
                      act_bytes=512, logit_words=16, max_layers=4)
    assert cyclemodel.cycles(model, cfg) == cycles
