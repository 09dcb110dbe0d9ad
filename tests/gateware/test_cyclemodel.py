"""gateware.cyclemodel: the headline target, and properties of the formula.

The simulation tests compare the model with the hardware counter for many shapes.
"""
import pytest

from gateware import cyclemodel, layout
from gateware.layout import AccelConfig

HEADLINE = [(784, 128), (128, 10)]
HEADLINE_MACS = sum(i * o for i, o in HEADLINE)
TARGET_CYCLES = 3600


def test_headline_meets_the_target():
    cfg = AccelConfig()
    assert cfg.lanes == 64
    cycles = cyclemodel.shape_cycles(HEADLINE, cfg.lanes)
    assert cycles <= TARGET_CYCLES
    assert HEADLINE_MACS / cycles >= 32
    # the drain of every tile but each layer's last is hidden behind MAC cycles
    mac_cycles = sum(layout.tiles(o, cfg.lanes) * i for i, o in HEADLINE)
    assert cycles - mac_cycles < 2 * cfg.lanes


@pytest.mark.parametrize("lanes", [4, 8, 16, 32, 64])
def test_more_lanes_never_slower(lanes):
    assert cyclemodel.shape_cycles(HEADLINE, lanes) <= cyclemodel.shape_cycles(HEADLINE, max(4, lanes // 2))


def test_narrow_layers_wait_for_the_shadow_bank():
    # n_in < lanes: each tile after the first waits lanes - n_in cycles
    lanes = 64
    a = cyclemodel.layer_cycles(10, 3 * lanes, lanes)
    b = cyclemodel.layer_cycles(lanes, 3 * lanes, lanes)
    assert b - a == 3 * (lanes - 10) - 2 * (lanes - 10)


def test_rejected_programs_are_short():
    assert cyclemodel.rejected_cycles() < cyclemodel.rejected_cycles(0) < cyclemodel.rejected_cycles(1)
