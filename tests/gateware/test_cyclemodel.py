"""gateware.cyclemodel: the headline target, and properties of the formula.

The simulation tests compare the model with the hardware counter for many shapes.
"""
import pytest

from nnhil.gateware import cyclemodel, layout
from nnhil.gateware.layout import AccelConfig

S = layout.LayerShape
HEADLINE = [S.dense(784, 128), S.dense(128, 10, logits=True)]
HEADLINE_MACS = sum(s.macs for s in HEADLINE)
TARGET_CYCLES = 3600


def test_headline_meets_the_target():
    cfg = AccelConfig()
    assert cfg.lanes == 64
    cycles = cyclemodel.shape_cycles(HEADLINE, cfg.lanes)
    assert cycles <= TARGET_CYCLES
    assert HEADLINE_MACS / cycles >= 32
    # the drain of every tile but each layer's last is hidden behind MAC cycles
    mac_cycles = sum(s.weight_words(cfg.lanes) for s in HEADLINE)
    assert cycles - mac_cycles < 2 * cfg.lanes


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
    """One tile: a position costs max(F n, c) cycles: F n MAC cycles, or the drain of c lanes."""
    lanes = 64
    fixed = (cyclemodel.LOAD_CYCLES + cyclemodel.MAC_LATENCY + cyclemodel.PUBLISH_LATENCY
             + cyclemodel.DRAIN_LATENCY + 1)
    mac_bound = S(16, 13, 13, 2, 32, pool=True)           # n = 64 >= 32 channels
    assert cyclemodel.layer_cycles(mac_bound, lanes) == 4 * 36 * 64 + 32 + fixed
    drain_bound = S(1, 28, 28, 2, 16, pool=True)          # n = 4 < 16 channels
    assert cyclemodel.layer_cycles(drain_bound, lanes) == 169 * 4 * 4 + 16 + fixed   # 4 * 4 = 16 lanes
    narrow = S(1, 28, 28, 2, 24, pool=True)               # 16 MAC cycles < 24 channels
    assert cyclemodel.layer_cycles(narrow, lanes) == 169 * 16 + 168 * 8 + 24 + fixed


def test_pool_computes_only_the_positions_it_keeps():
    lanes = 8
    odd = S(1, 6, 6, 2, 4, pool=True)       # conv 5x5: the fifth row and column are dropped
    even = S(1, 5, 5, 2, 4)                 # conv 4x4, no pool: the same 16 positions
    assert odd.macs == even.macs
    assert cyclemodel.layer_cycles(odd, lanes) == cyclemodel.layer_cycles(even, lanes)


def test_rejected_programs_are_short():
    assert cyclemodel.rejected_cycles() < cyclemodel.rejected_cycles(0) < cyclemodel.rejected_cycles(1)
