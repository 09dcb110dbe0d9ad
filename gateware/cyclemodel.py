"""The exact cycle count the accelerator's ``cycles`` CSR reports (pure Python).

A run of L layers on P lanes takes, from the start pulse to done::

    1 + 4 L                              count check, then FETCH/LOAD/RANGE/CHECK per layer
    + sum over layers of
        2                                FETCH, LOAD
        + T n_in                         one MAC cycle per input and tile, T = ceil(n_out / P)
        + (T - 1) max(0, P - n_in)       a tile waits until the previous one left the shadow bank
        + v + MAC_LATENCY + DRAIN_LATENCY + 1
                                         the last tile (v = n_out - (T - 1) P valid lanes) drains
    + 1                                  FINISH

Every tile but the last drains while the next one computes, so a layer costs about
T n_in + n_out mod P cycles. The gateware takes its pipeline depths from here; the tests
compare this model with the hardware counter exactly.
"""
from . import layout

MAC_LATENCY = 4      # issue -> RAM data -> operands -> product -> accumulator
DRAIN_LATENCY = 6    # sweep -> acc + bias -> product -> product -> rounded -> shifted -> write
VALIDATE_CYCLES = 4  # per layer: FETCH, LOAD, RANGE, CHECK
LOAD_CYCLES = 2      # per layer when running: FETCH, LOAD


def layer_cycles(n_in, n_out, lanes):
    t = layout.tiles(n_out, lanes)
    last_valid = n_out - (t - 1) * lanes
    return (LOAD_CYCLES + t * n_in + (t - 1) * max(0, lanes - n_in)
            + last_valid + MAC_LATENCY + DRAIN_LATENCY + 1)


def shape_cycles(shapes, lanes):
    """Cycles for layers given as (n_in, n_out) pairs."""
    return 1 + VALIDATE_CYCLES * len(shapes) + sum(layer_cycles(i, o, lanes) for i, o in shapes) + 1


def cycles(model, cfg):
    """Cycles per inference of an IntModel (they do not depend on the values)."""
    return shape_cycles([(l.n_in, l.n_out) for l in model.layers], cfg.lanes)


def rejected_cycles(failing_layer=None):
    """Cycles of a start whose program is rejected: at the layer count check (None) or a layer."""
    return 2 if failing_layer is None else 2 + VALIDATE_CYCLES * (failing_layer + 1)


def macs_per_cycle(model, cfg):
    return model.macs / cycles(model, cfg)
